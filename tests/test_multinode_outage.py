"""outage_grace (issue 17 item 4): a KMS outage is not a revoked key.  A BYOK key
verified within the grace keeps working while the KMS cannot be reached, never once the
KMS refused it; while the KMS is down at most one caller probes, the others do not wait.

These are the rules on a LocalKms with injected faults and a moved clock (exact
boundaries); tests/test_multinode_cluster_down.py checks them on the real OpenBao raft
cluster, stopped entirely under N node processes."""

from __future__ import annotations

import threading
import time

import pytest

from sls_envelope import KeyManager
from sls_envelope.exceptions import KeyInvalidError, KmsUnavailableError
from tests.test_keys import World


def _world(revalidate_after: float = 10.0, grace: float = 10.0) -> World:
    world = World(revalidate_after=revalidate_after)
    world.manager = KeyManager(world.kms, revalidate_after=revalidate_after, outage_grace=grace, clock=world.clock)
    return world


def test_writes_go_on_within_the_grace_then_fail_closed() -> None:
    world = _world()
    cipher = world.manager.create_logstore("p", "l", world.byok())
    assert cipher is not None
    blob = cipher.encrypt(b"x")
    world.clock.now += 10  # the check is due
    world.kms.inject_faults(1000)  # the KMS is unreachable
    assert cipher.decrypt(cipher.encrypt(b"y")) == b"y"  # within the grace: the verified key works
    world.clock.now += 9.9
    assert cipher.decrypt(blob) == b"x"
    world.clock.now += 0.2  # verified_at + revalidate_after + grace has passed
    with pytest.raises(KmsUnavailableError):
        cipher.encrypt(b"z")
    with world.kms._store.lock:
        world.kms._store.faults.clear()  # the KMS is back: the next call checks and succeeds
    assert cipher.decrypt(blob) == b"x"


def test_a_refusal_is_never_graced() -> None:
    world = _world()
    cipher = world.manager.create_logstore("p", "l", world.byok())
    assert cipher is not None
    cipher.encrypt(b"x")
    world.kms.disable_key(world.cmk)
    world.clock.now += 10
    with pytest.raises(KeyInvalidError):
        cipher.encrypt(b"x")
    world.kms.inject_faults(1000)  # an outage after the refusal does not bring the key back
    world.clock.now += 1
    with pytest.raises((KeyInvalidError, KmsUnavailableError)):
        cipher.encrypt(b"x")


def test_zero_grace_keeps_the_old_behaviour() -> None:
    world = _world(grace=0)
    cipher = world.manager.create_logstore("p", "l", world.byok())
    assert cipher is not None
    world.clock.now += 10
    world.kms.inject_faults(2)
    with pytest.raises(KmsUnavailableError):
        cipher.encrypt(b"x")


def test_others_do_not_wait_on_the_prober() -> None:
    """While one caller is inside the KMS call (held here by a slow unwrap), the others
    return at once with the verified key: by structure they never take the lock."""
    world = _world()
    cipher = world.manager.create_logstore("p", "l", world.byok())
    assert cipher is not None
    world.clock.now += 10
    entered, release, probe_over = threading.Event(), threading.Event(), threading.Event()
    real = type(cipher._source).unwrap
    probes = []

    def slow_unwrap(self: object) -> bytes:
        probes.append(1)
        entered.set()
        release.wait(30)
        probe_over.set()
        raise KmsUnavailableError("down", code="ServiceUnavailable")

    type(cipher._source).unwrap = slow_unwrap  # type: ignore[method-assign]
    try:
        prober = threading.Thread(target=cipher.encrypt, args=(b"p",))
        prober.start()
        assert entered.wait(30)
        latencies = []
        for _ in range(200):
            t0 = time.perf_counter()
            cipher.encrypt(b"w")
            latencies.append(time.perf_counter() - t0)
        # Every call returned while the prober was still inside the KMS call, holding the
        # lock: none waited for it (one that had could return only after the probe ended,
        # released below or timed out after 30 s).
        still_probing = not probe_over.is_set()
        release.set()
        prober.join(30)
    finally:
        type(cipher._source).unwrap = real  # type: ignore[method-assign]
    assert probes == [1]  # one prober; the 200 others did not probe ...
    assert still_probing  # ... nor wait for it (structure, not time)
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    print(f"p99 write latency while the KMS is down: {p99 * 1e3:.3f} ms (not asserted: shared machine)")
