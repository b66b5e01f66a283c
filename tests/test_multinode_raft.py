"""The KMS on a three-node OpenBao raft cluster (tests/cluster.py): the active node is
killed (SIGKILL) while N node processes (tests/nodes.py, each its own KeyManager over
every cluster address and the shared PostgreSQL store) create Logstores and write to
them.  Writes go on through the kill and after raft has elected another active node,
with the pause measured and printed (the slowest create+write that overlapped the kill,
per node, and the time to the election); no batch is lost or sealed twice under one
nonce.  (OpenBao 2.7's standbys answer transit requests themselves, so the nodes are
served during the election too: docs/SCALE.md.)  The killed node is started again at the end (the cluster is
shared by the session)."""

from __future__ import annotations

import time
from typing import List

from sls_envelope.kms.base import RetryPolicy
from tests.backends import require_module

require_module("hvac", extra="openbao")

from sls_envelope.kms.openbao import transit_policy
from tests.cluster import (  # the servers: session fixtures of conftest.py
    OpenBaoCluster,
    PostgresServer,
)
from tests.nodes import Node, NodeSpec, Op, start_nodes

NODES = 3
PROJECT = "raft-nodes"


def _wait_progress(nodes: List[Node], targets: List[int], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while any(n.call("progress") < t for n, t in zip(nodes, targets)):
        assert time.monotonic() < deadline, "the nodes stopped making progress"
        time.sleep(0.05)


def test_active_node_killed_mid_writes(openbao_cluster: OpenBaoCluster, postgres: PostgresServer) -> None:
    c = openbao_cluster
    fleet = c.transit_key("fleet")  # the service CMK of every node
    # Generous bounds: a raft election takes seconds; retries walk the node list.
    spec = NodeSpec(tuple(c.urls), c.token_for(transit_policy(fleet)), postgres.url, service_key_id=fleet,
                    kms_timeout=2.0, retry_policy=RetryPolicy(attempts=40, base_delay=0.05, max_delay=0.25))
    nodes = start_nodes(NODES, spec)
    try:
        for n in nodes:
            n.call("start", PROJECT, [], threads=1, pause=0.01, create_each=True)
        _wait_progress(nodes, [5] * NODES)
        active = c.active()
        assert active is not None
        c.kill(active)
        killed_at = time.monotonic()
        new_active = c.wait_for_active()  # raft elects another node
        elected_at = time.monotonic()
        _wait_progress(nodes, [n.call("progress") + 5 for n in nodes])
        runs = [n.call("stop") for n in nodes]
    finally:
        for n in nodes:
            n.close()
        c.start_all()  # the killed node back, unsealed, a follower

    pauses = []
    for ops in runs:
        assert ops and all(op.outcome == "ok" for op in ops), [op.outcome for op in ops if op.outcome != "ok"]
        assert [op for op in ops if op.start > elected_at], "no write after the re-election"
        overlapping = [op for op in ops if op.start + op.latency >= killed_at]
        pauses.append(max(op.latency for op in overlapping))
    print(f"OpenBao failover pause (active node {active} killed, {NODES} node processes): slowest create+5 writes "
          f"overlapping the kill {', '.join(f'{p * 1e3:.0f}' for p in pauses)} ms per node; "
          f"node {new_active} active {(elected_at - killed_at) * 1e3:.0f} ms after the kill")
    # No batch lost, none sealed twice under one nonce (every blob differs), and every
    # node's Logstores open on the next node with every batch.
    every: List[Op] = [op for ops in runs for op in ops]
    blobs = [b for op in every for b in op.blobs]
    assert len(blobs) == 5 * len(every) and len(set(blobs)) == len(blobs)
    readers = start_nodes(NODES, spec)
    try:
        for op in every:
            reader = readers[(op.node + 1) % NODES]
            assert reader.call("read", PROJECT, op.logstore, list(op.blobs)) == list(op.plains)
    finally:
        for n in readers:
            n.close()
