"""A BYOK CMK disabled on the OpenBao raft cluster, seen by N nodes (issue 17): every
node refuses reads and writes within ``revalidate_after``; enabled again, every node
recovers and nothing written is lost.

The nodes are processes of tests/nodes.py, each its own KeyManager over every cluster
address and the shared PostgreSQL store.  Transit has no disable switch: the way
docs/KMS.md documents to stop a key is soft-delete, refused as
``Rejected.PendingDeletion`` and undone by soft-delete-restore (OpenBaoCluster.disable_key,
enable_key).  A refusal is never graced, so ``outage_grace`` changes nothing here.
"""

from __future__ import annotations

import time
from typing import Any, Dict, List

import pytest

from sls_envelope.kms.base import RetryPolicy
from tests.backends import require_module

require_module("hvac", extra="openbao")

from sls_envelope.kms.openbao import transit_policy
from tests.cluster import (  # the servers: session fixtures of conftest.py
    OpenBaoCluster,
    PostgresServer,
)
from tests.nodes import NodeError, NodeSpec, Op, start_nodes

NODES = 3
REVALIDATE = 1.0  # seconds: short, so that the test waits little
REFUSED = "KeyInvalidError:Rejected.PendingDeletion"


def byok(cmk: str) -> Dict[str, Any]:
    # OpenBao has no RAM roles (assume_role is the token's own rights); the region is not checked.
    return {"enable": True, "encrypt_type": "default",
            "user_cmk_info": {"cmk_key_id": cmk, "arn": "acs:ram::1:role/sls-byok", "region_id": "cn-hangzhou"}}


def test_cmk_disabled_and_enabled_on_the_cluster(openbao_cluster: OpenBaoCluster, postgres: PostgresServer) -> None:
    c = openbao_cluster
    cmk = c.transit_key("byok")
    spec = NodeSpec(tuple(c.urls), c.token_for(transit_policy(cmk)), postgres.url, revalidate_after=REVALIDATE,
                    retry_policy=RetryPolicy(attempts=6, base_delay=0.05, max_delay=0.5))
    nodes = start_nodes(NODES, spec)
    try:
        assert sorted(n.call("create", "cmk", "ls", byok(cmk)) for n in nodes) == \
            ["LogStoreAlreadyExist"] * (NODES - 1) + ["created"]
        for n in nodes:
            n.call("start", "cmk", ["ls"], threads=1, pause=0.01)
        time.sleep(0.5)
        c.disable_key(cmk)  # returns once every cluster node reports the key soft-deleted
        disabled_at = time.monotonic()
        time.sleep(REVALIDATE + 0.3)
        before = [n.call("stop") for n in nodes]
        # Every node's last check is older than disabled_at, so past disabled_at +
        # revalidate_after every call checks again and is refused: writes and reads.
        written = [op for ops in before for op in ops if op.kind == "write" and op.outcome == "ok"]
        for n in nodes:
            for command, argument in (("write", b"x"), ("read", [written[0].blobs[0]])):
                with pytest.raises(NodeError) as info:
                    n.call(command, "cmk", "ls", argument)
                assert f"{info.value.kind}:{info.value.code}" == REFUSED
        for ops in before:
            late = [op for op in ops if op.start >= disabled_at + REVALIDATE]
            assert late and {op.kind for op in late} == {"write", "read"}
            assert {op.outcome for op in late} == {REFUSED}, "a node used the key past revalidate_after"
            assert {op.outcome for op in ops} <= {"ok", REFUSED}  # a refusal, never an outage
            first = min(op.start for op in ops if op.outcome != "ok")
            print(f"node {ops[0].node}: first refusal {(first - disabled_at) * 1e3:.0f} ms after the CMK was "
                  f"disabled (revalidate_after {REVALIDATE * 1e3:.0f} ms)")

        c.enable_key(cmk)
        enabled_at = time.monotonic()
        time.sleep(REVALIDATE + 0.1)  # a refusal is remembered for revalidate_after
        for n in nodes:
            n.call("start", "cmk", ["ls"], threads=1, pause=0.01)
        time.sleep(0.5)
        after = [n.call("stop") for n in nodes]
        for ops in after:
            assert ops and {op.outcome for op in ops} == {"ok"}, "a node did not recover"
        # Nothing lost: every batch any node wrote, before the CMK was disabled and after
        # it came back, opens on every node; no two sealed alike.
        every: List[Op] = [op for ops in before + after for op in ops if op.kind == "write" and op.outcome == "ok"]
        blobs = [op.blobs[0] for op in every]
        assert len(set(blobs)) == len(blobs)
        for n in nodes:
            assert n.call("read", "cmk", "ls", blobs) == [op.plains[0] for op in every]
        assert any(op.start > enabled_at for op in every)
    finally:
        for n in nodes:
            n.close()
