"""The whole OpenBao raft cluster stopped during a run of writes (issue 17, item 4 on
real servers): N node processes (tests/nodes.py), several writer threads each, on two
BYOK Logstores.

* Writes go on for ``outage_grace`` past the due check, then fail with
  KmsUnavailableError (never KeyInvalidError: an outage is not a refusal).
* While the KMS is down at most one caller at a time probes it and no other caller waits
  for it: asserted on structure (every operation notes whether it called the KMS and
  whether it blocked on the cipher's lock), never on time; the p99 latency is printed.
* The cluster back (restarted and unsealed): writes resume, and a CMK disabled
  meanwhile (before any node asks again) is refused at the first check.

The unit tests of the same rules, on a fake KMS with a moved clock, are in
tests/test_multinode_outage.py.
"""

from __future__ import annotations

import math
import time
from typing import Any, Dict, List

from sls_envelope.keys import _OUTAGE_PROBE_INTERVAL
from sls_envelope.kms.base import RetryPolicy
from tests.backends import require_module

require_module("hvac", extra="openbao")

from sls_envelope.kms.openbao import transit_policy
from tests.cluster import (  # the servers: session fixtures of conftest.py
    OpenBaoCluster,
    PostgresServer,
)
from tests.nodes import NodeSpec, Op, start_nodes

NODES = 2
THREADS = 3
REVALIDATE = 1.0
# Writes are graced from down_at + REVALIDATE until at least stopping_at + GRACE (the last
# good check began at most REVALIDATE before stopping_at): a window while stopping the
# cluster (about 1 s here) takes less than GRACE - REVALIDATE.
GRACE = 4.0
UNAVAILABLE = "KmsUnavailableError"


def byok(cmk: str) -> Dict[str, Any]:
    return {"enable": True, "encrypt_type": "default",
            "user_cmk_info": {"cmk_key_id": cmk, "arn": "acs:ram::1:role/sls-byok", "region_id": "cn-hangzhou"}}


def p99(values: List[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(len(ordered) * 0.99) - 1)] if ordered else math.nan


def test_kms_cluster_stopped_during_writes(openbao_cluster: OpenBaoCluster, postgres: PostgresServer) -> None:
    c = openbao_cluster
    kept, disabled = c.transit_key("kept"), c.transit_key("gone")
    # A probe of a dead cluster costs its retries (about 0.2-0.4 s here): the callers
    # that do not probe must not pay them.
    spec = NodeSpec(tuple(c.urls), c.token_for(transit_policy(kept) + transit_policy(disabled)), postgres.url,
                    revalidate_after=REVALIDATE, outage_grace=GRACE, kms_timeout=1.0,
                    retry_policy=RetryPolicy(attempts=3, base_delay=0.1, max_delay=0.2))
    nodes = start_nodes(NODES, spec)
    stopped = False
    try:
        assert nodes[0].call("create", "down", "a", byok(kept)) == "created"
        assert nodes[0].call("create", "down", "b", byok(disabled)) == "created"
        for n in nodes:
            n.call("start", "down", ["a", "b"], threads=THREADS, pause=0.005)
        time.sleep(0.5)
        stopping_at = time.monotonic()
        c.stop_all()
        stopped = True
        down_at = time.monotonic()  # every check that succeeded began before this
        time.sleep(REVALIDATE + GRACE + 1.0)
        during = [n.call("stop") for n in nodes]  # no writer left to ask the cluster when it is back
        c.start_all()
        stopped = False
        c.disable_key(disabled)  # "meanwhile": before any node asks again
        back_at = time.monotonic()
        for n in nodes:
            n.call("start", "down", ["a", "b"], threads=THREADS, pause=0.005)
        time.sleep(0.7)
        after = [n.call("stop") for n in nodes]
        stats = [n.call("kms_stats") for n in nodes]
    finally:
        if stopped:
            c.start_all()  # the cluster is shared by the session
        for n in nodes:
            n.close()

    served: List[float] = []
    for ops in during:
        assert all(op.outcome == "ok" for op in ops if op.start + op.latency < stopping_at)
        outage = [op for op in ops if op.start >= down_at]
        # An outage is never a refusal: ok, or KmsUnavailableError.
        assert {op.outcome.split(":")[0] for op in outage} <= {"ok", UNAVAILABLE}
        for name in ("a", "b"):
            mine = [op for op in outage if op.logstore == name]
            # Past a due check (every check that succeeded began before down_at), writes
            # and reads went on: only the grace allows that ...
            graced = [op for op in mine if op.start >= down_at + REVALIDATE and op.outcome == "ok"]
            assert {op.kind for op in graced} == {"write", "read"}, "no write went on within the grace"
            # ... until it ran out: then every call is KmsUnavailableError.
            late = [op for op in mine if op.start >= down_at + REVALIDATE + GRACE]
            assert late and all(op.outcome.startswith(UNAVAILABLE) for op in late)
            # At most one probe per probe interval in the grace, out of hundreds of calls ...
            ok = [op for op in mine if op.outcome == "ok"]
            probes = [op for op in ok if op.probed]
            assert len(probes) <= GRACE / _OUTAGE_PROBE_INTERVAL + 2, len(probes)
            assert len(ok) > 10 * len(probes)
            # ... and no caller that did not probe waited for one that did.
            assert not [op for op in ok if not op.probed and op.waited], "a caller waited on another's probe"
            served += [op.latency for op in ok if not op.probed]
    assert all(s["max_in_flight"] == 1 for s in stats)  # one prober at a time per key
    print(f"KMS cluster down: {len(served)} graced calls on {NODES} nodes x {THREADS} threads, "
          f"p99 latency {p99(served) * 1e3:.3f} ms (probes excluded; shared 2-core machine)")

    # The cluster back: the kept key's writes resume; the key disabled meanwhile is
    # refused at its first check, on every node, and never used again.
    for ops in after:
        a = [op for op in ops if op.logstore == "a"]
        assert a and all(op.outcome == "ok" for op in a)
        b = sorted((op for op in ops if op.logstore == "b"), key=lambda op: op.start)
        assert b and all(op.outcome == "KeyInvalidError:Rejected.PendingDeletion" for op in b)
        assert [op for op in b if op.probed], "the refusal came from a check"
    # Nothing written is lost: every batch sealed on "a" opens on every node.
    written: List[Op] = [op for ops in during + after for op in ops
                         if op.logstore == "a" and op.kind == "write" and op.outcome == "ok"]
    nodes = start_nodes(1, spec)
    try:
        assert nodes[0].call("read", "down", "a", [op.blobs[0] for op in written]) == \
            [op.plains[0] for op in written]
    finally:
        nodes[0].close()
    assert back_at > down_at
