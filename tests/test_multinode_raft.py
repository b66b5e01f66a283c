"""The KMS on a three-node OpenBao raft cluster (tests/cluster.py): the active node is
killed during a run of Logstore creates and writes; after re-election the run goes on,
with the pause measured and printed; no batch is lost or sealed twice under one nonce."""

from __future__ import annotations

import time
from typing import Any, List

from sls_envelope import KeyManager
from sls_envelope.kms.base import RetryPolicy
from sls_envelope.kms.openbao import OpenBaoKms
from tests.cluster import OpenBaoCluster, openbao_cluster  # noqa: F401 - the session fixture


def test_active_node_killed_mid_writes(openbao_cluster: OpenBaoCluster) -> None:
    c = openbao_cluster
    admin: Any = c.hvac.Client(url=c.urls[c.active() or 0], token=c.root_token)
    if "transit/" not in admin.sys.list_mounted_secrets_engines()["data"]:
        admin.sys.enable_secrets_engine("transit")
    admin.secrets.transit.create_key(name="fleet", key_type="aes256-gcm96")
    # Generous bounds: a raft election takes seconds; retries walk the node list.
    kms = OpenBaoKms(c.urls, token=c.root_token, timeout=2,
                     retry_policy=RetryPolicy(attempts=40, base_delay=0.05, max_delay=0.25))
    manager = KeyManager(kms, service_key_id="fleet")
    sealed: List[tuple] = []
    latencies: List[float] = []
    killed_at = None
    for i in range(40):
        if i == 10:
            active = c.active()
            assert active is not None
            c.kill(active)
            killed_at = time.perf_counter()
        t0 = time.perf_counter()
        cipher = manager.create_logstore("raft", f"ls{i}", {"enable": True, "encrypt_type": "default"})
        latencies.append(time.perf_counter() - t0)
        assert cipher is not None
        for j in range(5):
            sealed.append((cipher, f"{i}-{j}".encode(), cipher.encrypt(f"{i}-{j}".encode())))
    assert killed_at is not None
    pause = max(latencies[10:])
    print(f"OpenBao failover pause (active node killed): {pause * 1e3:.0f} ms; "
          f"new active node {c.active()}")
    # No batch lost, none sealed twice under one nonce (v1 header: the nonce follows the key_ref).
    assert len(sealed) == 200
    assert len({blob for _, _, blob in sealed}) == 200
    for cipher, plain, blob in sealed:
        assert cipher.decrypt(blob) == plain
    # Every key opens again through the new active node.
    fresh = KeyManager(kms, manager._store, service_key_id="fleet")  # noqa: SLF001
    for i in (0, 39):
        reopened = fresh.open_logstore("raft", f"ls{i}")
        assert reopened is not None
        assert reopened.decrypt(sealed[i * 5][2]) == f"{i}-0".encode()
