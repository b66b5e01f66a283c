"""`kms serve` under load: 8 threads of the official KMS SDK, each looping GenerateDataKey + Decrypt.

    PYTHONPATH=. python benches/bench_kms_serve.py [--threads 8] [--seconds 20]

Starts `sls-envelope kms serve` as its own process (so the clients do not share its GIL), warms
every thread up, then counts calls for --seconds and prints calls/s, p50 and p99 latency per call.
Target (issue 15 item 9): >= 900 calls/s and p99 <= 20 ms with 8 threads on the 2-core machine of
docs/BENCHMARKS.md.  A benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import List

from alibabacloud_kms20160120 import models as kms_models
from alibabacloud_kms20160120.client import Client as KmsSdk
from alibabacloud_tea_openapi.utils_models import Config

AK, SECRET = "LTAI5tBenchRoot", "bench-root-secret-789"
CTX = {"project": "bench", "logstore": "store"}


def _worker(endpoint: str, key_id: str, start: threading.Event, stop: threading.Event,
            latencies: List[float], warm: threading.Barrier) -> None:
    sdk = KmsSdk(Config(access_key_id=AK, access_key_secret=SECRET, endpoint=endpoint, protocol="http",
                        region_id="cn-hangzhou"))

    def one_pair(record: bool) -> None:
        t0 = time.perf_counter()
        made = sdk.generate_data_key(kms_models.GenerateDataKeyRequest(key_id=key_id, encryption_context=CTX)).body
        t1 = time.perf_counter()
        sdk.decrypt(kms_models.DecryptRequest(ciphertext_blob=made.ciphertext_blob, encryption_context=CTX))
        t2 = time.perf_counter()
        if record:
            latencies.extend((t1 - t0, t2 - t1))

    for _ in range(5):
        one_pair(False)
    warm.wait()
    start.wait()
    while not stop.is_set():
        one_pair(True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="bench-kms-serve-")
    env = dict(os.environ, SLS_ENVELOPE_KMS_ACCESS_KEY_SECRET=SECRET)
    proc = subprocess.Popen([sys.executable, "-m", "sls_envelope", "--home", home, "kms", "serve",
                             "--host", "127.0.0.1", "--port", "0", "--access-key-id", AK],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        assert proc.stdout is not None
        match = re.search(r"http://(127\.0\.0\.1:\d+)", proc.stdout.readline())
        assert match, "kms serve did not announce its endpoint"
        endpoint = match.group(1)
        admin = KmsSdk(Config(access_key_id=AK, access_key_secret=SECRET, endpoint=endpoint, protocol="http",
                              region_id="cn-hangzhou"))
        key_id = admin.create_key(kms_models.CreateKeyRequest(description="bench")).body.key_metadata.key_id
        start, stop = threading.Event(), threading.Event()
        warm = threading.Barrier(args.threads + 1)
        per_thread: List[List[float]] = [[] for _ in range(args.threads)]
        threads = [threading.Thread(target=_worker, args=(endpoint, key_id, start, stop, per_thread[i], warm))
                   for i in range(args.threads)]
        for t in threads:
            t.start()
        warm.wait()
        began = time.perf_counter()
        start.set()
        time.sleep(args.seconds)
        stop.set()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - began
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    latencies = sorted(x for lat in per_thread for x in lat)
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
    print(f"{args.threads} threads, {elapsed:.1f} s: {len(latencies)} calls, {len(latencies) / elapsed:.0f} calls/s, "
          f"p50 {statistics.median(latencies) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms")


if __name__ == "__main__":
    main()
