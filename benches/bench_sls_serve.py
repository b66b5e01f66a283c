"""PutLogs and PullLogs through aliyun-log-python-sdk against ``sls-envelope serve``:
an encrypted (AES-256-GCM, service key) and an unencrypted Logstore, alternating rounds
(A/B) so a phase of the shared machine hits both alike.  Not a test: prints a table.

    PYTHONPATH=. python benches/bench_sls_serve.py [--rounds 5] [--groups 40] [--logs 1000]

Runs as root (the SDK needs the endpoint on port 80 of a 127.x address, docs/SERVE.md).
MB/s counts the raw (uncompressed) LogGroup bytes the SDK reports (x-log-bodyrawsize).
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time

from aliyun.log import LogClient, LogItem, PutLogsRequest

from sls_envelope.bench import cpu_model
from sls_envelope.home import Home
from sls_envelope.sls.api import SlsApi
from sls_envelope.sls.server import SlsServer
from sls_envelope.sls.wire import LogGroup


def _items(n: int, seed: int) -> list[LogItem]:
    return [LogItem(timestamp=1700000000 + i, contents=[
        ("method", "GET"), ("path", f"/api/v1/items/{seed}/{i}"), ("status", "200"),
        ("ua", "Mozilla/5.0 (X11; Linux x86_64) bench"), ("latency_ms", str(i % 997)),
        ("request_id", f"{seed:08x}{i:08x}")]) for i in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--groups", type=int, default=40, help="PutLogs calls per round")
    ap.add_argument("--logs", type=int, default=1000, help="logs per LogGroup")
    args = ap.parse_args()
    host = f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(2, 254)}"
    with tempfile.TemporaryDirectory() as tmp:
        home = Home(tmp)
        kms = home.open_kms()
        manager = home.open_manager(kms)
        api = SlsApi(f"{tmp}/sls", manager)
        server = SlsServer(api, {"bench": "bench-secret"}, host=host, port=80).start()
        client = LogClient(host, "bench", "bench-secret")
        client.create_project("bench", "bench")
        stores = {"encrypted": {"enable": True, "encrypt_type": "default"}, "plain": {"enable": False}}
        for name, conf in stores.items():
            client.create_logstore("bench", name, shard_count=1, encrypt_conf=conf)
        groups = [_items(args.logs, g) for g in range(args.groups)]
        raw_group = LogGroup()
        for it in groups[0]:
            log = raw_group.Logs.add()
            log.Time = it.get_time()
            for k, v in it.get_contents():
                c = log.Contents.add()
                c.Key, c.Value = k, v
        raw = len(raw_group.SerializeToString()) * args.groups
        put: dict[str, list[float]] = {n: [] for n in stores}
        pull: dict[str, list[float]] = {n: [] for n in stores}
        for r in range(args.rounds):
            order = list(stores) if r % 2 == 0 else list(reversed(stores))
            for name in order:
                begin = client.get_cursor("bench", name, 0, "end").get_cursor()
                t = time.perf_counter()
                for g in groups:
                    client.put_logs(PutLogsRequest("bench", name, "", "", g))
                put[name].append(time.perf_counter() - t)
                end = client.get_cursor("bench", name, 0, "end").get_cursor()
                t = time.perf_counter()
                cursor, n = begin, 0
                while cursor != end:
                    res = client.pull_logs("bench", name, 0, cursor, 10)
                    n += res.get_log_count()
                    cursor = res.get_next_cursor()
                pull[name].append(time.perf_counter() - t)
                assert n == args.groups * args.logs
        server.stop()
        api.close()
        manager.close()
    logs = args.groups * args.logs
    print(f"CPU: {cpu_model()}; {args.rounds} alternating rounds of {args.groups} PutLogs x {args.logs} logs "
          f"({raw / 1e6:.1f} MB raw); median round")
    print(f"{'':10} {'PutLogs logs/s':>15} {'MB/s':>7} {'PullLogs logs/s':>16} {'MB/s':>7}")
    for name in stores:
        pt, lt = statistics.median(put[name]), statistics.median(pull[name])
        print(f"{name:10} {logs / pt:15,.0f} {raw / pt / 1e6:7.1f} {logs / lt:16,.0f} {raw / lt / 1e6:7.1f}")
    for what, d in (("PutLogs", put), ("PullLogs", pull)):
        ratios = [e / p for e, p in zip(d["encrypted"], d["plain"])]
        print(f"{what}: encrypted/plain time per round, median {statistics.median(ratios):.3f} "
              f"(rounds: {', '.join(f'{x:.3f}' for x in ratios)})")


if __name__ == "__main__":
    main()
