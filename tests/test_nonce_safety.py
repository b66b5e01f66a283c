"""Nonce uniqueness under threads and fork, checked from the outside.

Every sealed batch says which session key and nonce it used (``format.inspect``:
``session`` is the per-session HKDF salt, ``nonce`` the 12-byte GCM nonce).  GCM's
security rests on no (key, nonce) pair ever repeating (NIST SP 800-38D section 8), so
these tests collect the pairs of every batch written by threads sharing one
LogstoreCipher (or one BatchCodec, or one AESGCM) and by both sides of os.fork(), and
check that none repeats and that every batch reads back.
"""

from __future__ import annotations

import ctypes
import os
import random
import signal
import struct
import tempfile
import threading
from typing import Callable, Dict, List, Sequence, Tuple

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM as RefAESGCM

from sls_envelope import AESGCM, KeyManager, LogstoreCipher
from sls_envelope import format as fmt
from sls_envelope.kms import LocalKms
from sls_envelope.records import RecordKey
from sls_envelope.session_codec import BatchCodec

THREADS = 4
PER_THREAD = 5_000


def _cipher(encrypt_type: str = "default") -> Tuple[KeyManager, LogstoreCipher]:
    manager = KeyManager(LocalKms(None))
    cipher = manager.create_logstore("proj", f"store-{encrypt_type}", {"enable": True, "encrypt_type": encrypt_type})
    assert cipher is not None
    return manager, cipher


def _pairs(blobs: Sequence[bytes]) -> List[Tuple[str, str]]:
    out = []
    for blob in blobs:
        info = fmt.inspect(blob)
        out.append((info["session"], info["nonce"]))
    return out


def _assert_unique(pairs: Sequence[Tuple[str, str]]) -> None:
    seen: Dict[Tuple[str, str], int] = {}
    for index, pair in enumerate(pairs):
        assert pair not in seen, f"(session, nonce) {pair} used by batches {seen[pair]} and {index}"
        seen[pair] = index


def _batch(tag: str, i: int) -> bytes:
    # Distinct plaintexts, so a read-back also proves which batch came back.
    return f"{tag}:{i}:".encode() + bytes(i % 97)


def _writer(seal_one: Callable[[bytes], bytes], seal_many: Callable[[List[bytes]], List[bytes]],
            tag: str, count: int, seed: int) -> Callable[[List[Tuple[bytes, bytes]]], None]:
    """A thread body writing count batches, alternating single and many-batch calls."""
    def run(out: List[Tuple[bytes, bytes]]) -> None:
        rng = random.Random(seed)
        i = 0
        while i < count:
            if rng.random() < 0.5:
                plain = _batch(tag, i)
                out.append((plain, seal_one(plain)))
                i += 1
            else:
                chunk = [_batch(tag, j) for j in range(i, min(count, i + rng.randrange(1, 64)))]
                out.extend(zip(chunk, seal_many(chunk)))
                i += len(chunk)
    return run


def _run_threads(bodies: Sequence[Callable[[List[Tuple[bytes, bytes]]], None]]) -> List[Tuple[bytes, bytes]]:
    results: List[List[Tuple[bytes, bytes]]] = [[] for _ in bodies]
    errors: List[BaseException] = []
    start = threading.Barrier(len(bodies))

    def guarded(index: int) -> None:
        try:
            start.wait()
            bodies[index](results[index])
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(k,)) for k in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return [item for chunk in results for item in chunk]


@pytest.mark.parametrize("encrypt_type", ["default", "sm4"])
def test_threads_sharing_a_logstore_cipher_never_repeat_a_nonce(encrypt_type: str) -> None:
    manager, cipher = _cipher(encrypt_type)
    written = _run_threads([
        _writer(cipher.encrypt, cipher.encrypt_many, f"t{k}", PER_THREAD, k) for k in range(THREADS)
    ])
    assert len(written) == THREADS * PER_THREAD
    blobs = [blob for _, blob in written]
    _assert_unique(_pairs(blobs))
    assert cipher.decrypt_many(blobs) == [plain for plain, _ in written]
    manager.close()


def test_threads_across_session_rollovers_never_repeat_a_nonce() -> None:
    """A codec with tiny session limits changes session every few dozen batches, while
    four threads race to reserve counters: the changeover must not hand out a counter
    twice or reuse a session."""
    codec = BatchCodec("aes-256-gcm", os.urandom(32), os.urandom(16), "proj", "store",
                           max_batches=37, max_bytes=5_000)
    written = _run_threads([
        _writer(codec.seal, codec.seal_many, f"t{k}", 2_000, 10 + k) for k in range(THREADS)
    ])
    blobs = [blob for _, blob in written]
    pairs = _pairs(blobs)
    _assert_unique(pairs)
    sessions: Dict[str, List[int]] = {}
    for blob in blobs:
        info = fmt.inspect(blob)
        sessions.setdefault(info["session"], []).append(info["counter"])
    assert len(sessions) > 200  # the limits really were hit
    for counters in sessions.values():
        assert len(counters) <= 37 and max(counters) < 37
    # Every session's nonce prefix is its own (a prefix shared by two sessions is harmless
    # under different keys, but would mean the randomness is broken).
    assert [codec.open(blob) for blob in blobs] == [plain for plain, _ in written]
    codec.wipe()


def test_threads_sharing_an_aesgcm_get_their_own_results() -> None:
    """Threads sharing one AESGCM (the library's per-thread scratch buffers) each get the
    ciphertext of their own nonce and message, the same bytes as pyca/cryptography."""
    key = os.urandom(32)
    shared = AESGCM(key)
    reference = RefAESGCM(key)

    def body(k: int) -> Callable[[List[Tuple[bytes, bytes]]], None]:
        def run(out: List[Tuple[bytes, bytes]]) -> None:
            for i in range(PER_THREAD):
                nonce = struct.pack(">IQ", k, i)  # disjoint nonce spaces per thread
                msg = _batch(f"a{k}", i)
                if i % 3:
                    ct = shared.encrypt(nonce, msg, b"aad")
                else:
                    ct = shared.encrypt_many([nonce], [msg], b"aad")[0]
                assert shared.decrypt(nonce, ct, b"aad") == msg
                out.append((nonce + msg, ct))
        return run

    written = _run_threads([body(k) for k in range(THREADS)])
    nonces = [item[:12] for item, _ in written]
    assert len(set(nonces)) == len(nonces)
    for item, ct in written:
        assert ct == reference.encrypt(item[:12], item[12:], b"aad")


# ---- fork ------------------------------------------------------------------------------------------

def _write_blobs(path: str, blobs: Sequence[bytes]) -> None:
    with open(path, "wb") as f:
        for blob in blobs:
            f.write(struct.pack(">I", len(blob)) + blob)


def _read_blobs(path: str) -> List[bytes]:
    out = []
    with open(path, "rb") as f:
        data = f.read()
    pos = 0
    while pos < len(data):
        (n,) = struct.unpack_from(">I", data, pos)
        out.append(data[pos + 4:pos + 4 + n])
        pos += 4 + n
    return out


def _in_child(fork: Callable[[], int], work: Callable[[], List[bytes]]) -> List[bytes]:
    """Run work() in a forked child; return the blobs it wrote.  The child has 60 s
    (a deadlock there fails the test instead of hanging it)."""
    fd, path = tempfile.mkstemp(prefix="sls-fork-")
    os.close(fd)
    try:
        pid = fork()
        if pid == 0:  # child: never return into pytest
            status = 1
            try:
                signal.alarm(60)
                _write_blobs(path, work())
                status = 0
            finally:
                os._exit(status)
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"child failed: status {status}"
        return _read_blobs(path)
    finally:
        os.unlink(path)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_both_sides_writing_never_repeat_a_nonce() -> None:
    """Threads write before the fork; then parent and child both write.  The child must
    start its own session rather than continue the parent's counter."""
    manager, cipher = _cipher()
    before = _run_threads([
        _writer(cipher.encrypt, cipher.encrypt_many, f"t{k}", PER_THREAD, 20 + k) for k in range(THREADS)
    ])
    parent_session = fmt.inspect(before[-1][1])["session"]

    def child_work() -> List[bytes]:
        return [cipher.encrypt(_batch("child", i)) for i in range(1_000)] + cipher.encrypt_many(
            [_batch("child-many", i) for i in range(1_000)])

    child_blobs = _in_child(os.fork, child_work)
    parent_after = [cipher.encrypt(_batch("parent", i)) for i in range(1_000)] + cipher.encrypt_many(
        [_batch("parent-many", i) for i in range(1_000)])

    child_sessions = {fmt.inspect(b)["session"] for b in child_blobs}
    assert parent_session not in child_sessions
    assert fmt.inspect(parent_after[0])["session"] == parent_session  # the parent simply continues
    all_blobs = [blob for _, blob in before] + child_blobs + parent_after
    _assert_unique(_pairs(all_blobs))
    # Every batch, the child's included, reads back in the parent.
    expected = ([plain for plain, _ in before]
                + [_batch("child", i) for i in range(1_000)] + [_batch("child-many", i) for i in range(1_000)]
                + [_batch("parent", i) for i in range(1_000)] + [_batch("parent-many", i) for i in range(1_000)])
    assert cipher.decrypt_many(all_blobs) == expected
    manager.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_while_another_thread_holds_the_lock() -> None:
    """A fork that lands while another thread is sealing (and may hold the codec's lock)
    leaves the child a usable cipher with a fresh session, not a deadlock."""
    manager, cipher = _cipher()
    stop = threading.Event()
    parent_blobs: List[bytes] = []

    def hammer() -> None:
        while not stop.is_set():
            parent_blobs.extend(cipher.encrypt_many([b"x" * 10] * 8))

    thread = threading.Thread(target=hammer)
    thread.start()
    try:
        children: List[bytes] = []
        for _ in range(5):
            children += _in_child(os.fork, lambda: [cipher.encrypt(b"child %d" % i) for i in range(200)])
    finally:
        stop.set()
        thread.join()
    _assert_unique(_pairs(parent_blobs + children))
    assert {fmt.inspect(b)["session"] for b in children}.isdisjoint({fmt.inspect(b)["session"] for b in parent_blobs})
    assert cipher.decrypt_many(children)[:2] == [b"child 0", b"child 1"]
    manager.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_that_skips_the_python_hooks_still_starts_a_new_session() -> None:
    """libc's fork() called directly (as some C extensions do) runs no os.register_at_fork
    hook; the codec's pid check must still keep the child off the parent's session."""
    manager, cipher = _cipher()
    first = cipher.encrypt(b"parent")
    libc = ctypes.CDLL(None, use_errno=True)
    child_blobs = _in_child(lambda: int(libc.fork()), lambda: [cipher.encrypt(b"child %d" % i) for i in range(100)])
    last = cipher.encrypt(b"parent again")
    parent_session = fmt.inspect(first)["session"]
    assert all(fmt.inspect(b)["session"] != parent_session for b in child_blobs)
    _assert_unique(_pairs([first, last] + child_blobs))
    assert cipher.decrypt(child_blobs[-1]) == b"child 99"
    manager.close()


def test_inspect_reports_what_the_format_says() -> None:
    """The pairs above are only as good as inspect(): it must report the header's salt
    and nonce, which are the session key's HKDF salt and the GCM nonce."""
    manager, cipher = _cipher()
    blob = cipher.encrypt(b"hello")
    info = fmt.inspect(blob)
    assert bytes.fromhex(info["session"]) == blob[fmt.SALT_OFFSET:fmt.NONCE_OFFSET]
    assert bytes.fromhex(info["nonce"]) == blob[fmt.NONCE_OFFSET:fmt.NONCE_OFFSET + 12]
    assert info["counter"] == int.from_bytes(blob[fmt.NONCE_OFFSET + 4:fmt.NONCE_OFFSET + 12], "big")
    second = fmt.inspect(cipher.encrypt(b"again"))
    assert second["session"] == info["session"] and second["counter"] == info["counter"] + 1
    manager.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_libc_fork_then_batch_and_single_seals_never_repeat_a_nonce() -> None:
    """Issue 18 item 8: after a libc fork() (no Python at-fork hook), the child's first
    call is encrypt_many, the batch path.  Only C's fork check (sls_env_seal_records
    against the session's fork generation) keeps it off the parent's session: without
    it the child reused the parent's session and counters.  Both sides seal batches and
    single records after the fork."""
    manager, cipher = _cipher()
    before = cipher.encrypt_many([b"parent before %d" % i for i in range(10)])
    libc = ctypes.CDLL(None, use_errno=True)

    def child_work() -> List[bytes]:
        return (cipher.encrypt_many([b"child many %d" % i for i in range(50)])
                + [cipher.encrypt(b"child one %d" % i) for i in range(20)]
                + cipher.encrypt_many([b"child many again %d" % i for i in range(50)]))

    child_blobs = _in_child(lambda: int(libc.fork()), child_work)
    parent_after = (cipher.encrypt_many([b"parent many %d" % i for i in range(50)])
                    + [cipher.encrypt(b"parent one %d" % i) for i in range(20)]
                    + cipher.encrypt_many([b"parent many again %d" % i for i in range(50)]))
    _assert_unique(_pairs(before + child_blobs + parent_after))
    parent_sessions = {fmt.inspect(b)["session"] for b in before + parent_after}
    assert parent_sessions.isdisjoint({fmt.inspect(b)["session"] for b in child_blobs})
    assert cipher.decrypt_many(child_blobs[:1]) == [b"child many 0"]
    manager.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_libc_fork_then_a_batch_across_the_session_limit_never_repeats_a_nonce() -> None:
    """The same with a batch that spans the parent's session and a new one (a session
    limit of 64 batches, 40 used before the fork): C refuses the parent's part, so the
    child's whole call is sealed again under sessions of its own."""
    codec = BatchCodec("aes-256-gcm", bytes(range(32)), bytes(16), "proj", "store", max_batches=64)
    before = codec.seal_many([b"parent before %d" % i for i in range(40)])
    libc = ctypes.CDLL(None, use_errno=True)

    def child_work() -> List[bytes]:
        return codec.seal_many([b"child %d" % i for i in range(50)]) + [codec.seal(b"child one")]

    child_blobs = _in_child(lambda: int(libc.fork()), child_work)
    parent_after = codec.seal_many([b"parent %d" % i for i in range(50)]) + [codec.seal(b"parent one")]
    _assert_unique(_pairs(before + child_blobs + parent_after))
    parent_sessions = {fmt.inspect(b)["session"] for b in before + parent_after}
    assert parent_sessions.isdisjoint({fmt.inspect(b)["session"] for b in child_blobs})
    assert codec.open_many(child_blobs) == [b"child %d" % i for i in range(50)] + [b"child one"]
    codec.wipe()


def test_nonce_counters_run_0_1_2_without_gap_or_repeat(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 18 item 9: skipping one counter in 10,000 seals escaped the volume tests.
    A spy on the records path (RecordKey.seal / seal_many) logs every counter each
    session hands out; per session they must be exactly 0, 1, 2, ..."""
    handed: Dict[bytes, List[int]] = {}
    real_one, real_many = RecordKey.seal, RecordKey.seal_many

    def one(self: RecordKey, header: bytes, prefix: bytes, counter: int, message: bytes, fork_gen: int) -> bytes:
        handed.setdefault(prefix, []).append(counter)
        return real_one(self, header, prefix, counter, message, fork_gen)

    def many(self: RecordKey, header: bytes, prefix: bytes, counter0: int, messages: Sequence[bytes],
             fork_gen: int) -> List[bytes]:
        handed.setdefault(prefix, []).extend(range(counter0, counter0 + len(messages)))
        return real_many(self, header, prefix, counter0, messages, fork_gen)

    monkeypatch.setattr(RecordKey, "seal", one)
    monkeypatch.setattr(RecordKey, "seal_many", many)
    manager, cipher = _cipher()
    blobs: List[bytes] = []
    rng = random.Random(18)
    for i in range(3_000):
        if rng.random() < 0.7:
            blobs.append(cipher.encrypt(b"one %d" % i))
        else:
            blobs += cipher.encrypt_many([b"many %d" % i] * rng.randint(1, 40))
    assert handed
    for prefix, counters in handed.items():
        assert counters == list(range(len(counters))), f"session {prefix.hex()}: gap or repeat"
    # What the spy saw is what the records carry.
    seen = sorted((bytes.fromhex(fmt.inspect(b)["nonce"])[:4], fmt.inspect(b)["counter"]) for b in blobs)
    assert seen == sorted((p, c) for p, cs in handed.items() for c in cs)
    manager.close()
