"""Instructions per request of `kms serve`, counted by callgrind: the figure that the load of a
shared machine does not move (timings there do), for comparing two versions of the server.

    PYTHONPATH=. python benches/callgrind_kms_serve.py [--pairs 200] [--threads 1] [--top 0]

Starts `kms serve` under ``valgrind --tool=callgrind``, warms it up with the official SDK
(GenerateDataKey + Decrypt pairs, as benches/bench_kms_serve.py sends them), zeroes the counters
(``callgrind_control -z``), sends --pairs more pairs from --threads SDK threads, dumps the counters
(``callgrind_control -d``) and prints the server's instructions per call (all its threads: HTTP,
signature checks, LocalKms, logging).  --top N also prints the N C functions with the most
inclusive instructions (``callgrind_annotate --inclusive=yes``), e.g. to see a syscall or
hashing share.  Needs valgrind (Debian package ``valgrind``); a run takes about a minute.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from typing import List

from alibabacloud_kms20160120 import models as kms_models

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_kms_serve import one_pair, sdk, start_server, stop_server


def _control(*args: str) -> None:
    subprocess.run(["callgrind_control", *args], check=True, stdout=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=200, help="GenerateDataKey + Decrypt pairs counted")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--warm", type=int, default=20, help="pairs per thread before counting")
    parser.add_argument("--top", type=int, default=0)
    args = parser.parse_args()
    out = tempfile.mkdtemp(prefix="callgrind-kms-serve-")
    proc, endpoint = start_server(["valgrind", "--tool=callgrind", "-q",
                                   f"--callgrind-out-file={out}/callgrind.out.%p"])
    try:
        key_id = sdk(endpoint).create_key(kms_models.CreateKeyRequest(description="bench")).body.key_metadata.key_id
        clients = [sdk(endpoint) for _ in range(args.threads)]
        for client in clients:  # every connection opened and every code path taken once
            for _ in range(args.warm):
                one_pair(client, key_id)
        time.sleep(1.0)
        _control("-z", str(proc.pid))
        per_thread = [args.pairs // args.threads + (i < args.pairs % args.threads) for i in range(args.threads)]

        def run(i: int) -> None:
            for _ in range(per_thread[i]):
                one_pair(clients[i], key_id)

        threads: List[threading.Thread] = [threading.Thread(target=run, args=(i,)) for i in range(args.threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        _control("-d", "counted", str(proc.pid))
    finally:
        stop_server(proc)
    dumps = sorted(glob.glob(f"{out}/callgrind.out.{proc.pid}.*"))
    if not dumps:
        raise SystemExit(f"no callgrind dump in {out}")
    with open(dumps[0]) as f:
        totals = re.search(r"^(?:summary|totals): (\d+)", f.read(), re.M)
    assert totals, "no totals line in the dump"
    calls = 2 * args.pairs
    print(f"{int(totals.group(1)) / calls:,.0f} instructions per call ({calls} calls, {args.threads} SDK threads; "
          f"server process under callgrind; dump {dumps[0]})")
    if args.top:
        report = subprocess.run(["callgrind_annotate", "--inclusive=yes", dumps[0]], check=True,
                                capture_output=True, text=True).stdout
        rows = [line for line in report.splitlines() if re.match(r"^\s*[\d,]+ \(", line)]
        for line in rows[:args.top]:
            print(line)


if __name__ == "__main__":
    main()
