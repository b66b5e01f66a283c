"""Worker processes, each its own KeyManager: the "nodes" of the multi-node tests
(issue 17, harness item 3), readable as the shape of a fleet in docs/SCALE.md.

A :class:`Node` forks a process that builds ``KeyManager(OpenBaoKms(<every cluster
address>), "postgresql://...")`` and then does what the test process asks over a pipe:
create or open Logstores, seal and open batches, and run writer threads in the
background (``start`` ... ``stop``) that record every operation as an :data:`Op`.

Two things are watched inside each node so that tests can assert on structure, never on
time: which operations asked the KMS (``probed``: the call went to ``decrypt``, i.e. a
key check or a probe of an unreachable KMS) and which had to wait for a cipher's lock
held by another caller (``waited``).  Timestamps are ``time.monotonic()``, one clock for
every process of the machine, so the test process can place operations before or after
what it did to the servers.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import threading
import time
import traceback
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

from sls_envelope import KeyManager
from sls_envelope.exceptions import SlsEnvelopeError
from sls_envelope.kms.base import DataKey, EncryptionContext, KmsClient, RetryPolicy

__all__ = ["Node", "NodeError", "NodeSpec", "Op", "start_nodes"]


@dataclasses.dataclass(frozen=True)
class NodeSpec:
    """How every node of a test is configured (the fleet's settings)."""

    kms_urls: Tuple[str, ...]
    token: str
    store_url: str
    revalidate_after: float = 60.0
    outage_grace: Optional[float] = None
    service_key_id: Optional[str] = None
    retry_policy: RetryPolicy = dataclasses.field(default_factory=RetryPolicy)
    kms_timeout: float = 2.0


class Op(NamedTuple):
    """One operation of a node's writer thread."""

    node: int
    thread: int
    kind: str  # "write" (encrypt), "read" (decrypt the thread's first batch) or "create" (+ 5 writes)
    logstore: str
    start: float  # time.monotonic() when it began
    latency: float  # seconds
    outcome: str  # "ok", or "<ErrorClass>:<code>"
    plains: Tuple[bytes, ...]  # the batches written (or read back)
    blobs: Tuple[bytes, ...]  # the sealed batches of a successful write or create, else ()
    probed: bool  # the operation called the KMS (a key check or probe)
    waited: bool  # the operation blocked on a cipher lock another caller held


class NodeError(Exception):
    """A library error raised in a node, as seen by the test process."""

    def __init__(self, kind: str, code: str, message: str) -> None:
        super().__init__(f"{kind}:{code}: {message}")
        self.kind = kind
        self.code = code


_local = threading.local()


def _mark(flag: str) -> None:
    setattr(_local, flag, True)


def _take(flag: str) -> bool:
    value = bool(getattr(_local, flag, False))
    setattr(_local, flag, False)
    return value


class _WatchedKms(KmsClient):
    """The node's KMS, counting the calls that unwrap (key checks and outage probes)."""

    def __init__(self, inner: KmsClient) -> None:
        self._inner = inner
        self._guard = threading.Lock()
        self._in_flight: Dict[bytes, int] = {}
        self.max_in_flight = 0  # unwraps of one wrapped key at once, the most seen

    def generate_data_key(self, key_id: str, *, context: EncryptionContext, number_of_bytes: int = 32) -> DataKey:
        return self._inner.generate_data_key(key_id, context=context, number_of_bytes=number_of_bytes)

    def decrypt(self, ciphertext_blob: bytes, *, context: EncryptionContext) -> bytes:
        _mark("probed")
        with self._guard:
            self._in_flight[ciphertext_blob] = self._in_flight.get(ciphertext_blob, 0) + 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight[ciphertext_blob])
        try:
            return self._inner.decrypt(ciphertext_blob, context=context)
        finally:
            with self._guard:
                self._in_flight[ciphertext_blob] -= 1

    def describe_key(self, key_id: str) -> Dict[str, Any]:
        return self._inner.describe_key(key_id)

    def assume_role(self, arn: str) -> "KmsClient":
        self._inner.assume_role(arn)  # OpenBao: the same client (docs/KMS.md)
        return self

    def close(self) -> None:
        self._inner.close()


class _WatchedLock:
    """A cipher's lock that notes, per thread, a blocking acquire that found it held."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if self._lock.acquire(False):
            return True
        if not blocking:
            return False
        _mark("waited")
        return self._lock.acquire(True, timeout)

    def release(self) -> None:
        self._lock.release()

    def locked(self) -> bool:
        return self._lock.locked()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _outcome(exc: BaseException) -> str:
    return f"{type(exc).__name__}:{getattr(exc, 'code', '')}"


class _Worker:
    """The node's side (in its own process)."""

    def __init__(self, index: int, spec: NodeSpec) -> None:
        from sls_envelope.kms.openbao import OpenBaoKms

        self.index = index
        self.kms = _WatchedKms(OpenBaoKms(list(spec.kms_urls), token=spec.token, timeout=spec.kms_timeout,
                                          retry_policy=spec.retry_policy))
        self.manager = KeyManager(self.kms, spec.store_url, revalidate_after=spec.revalidate_after,
                                  outage_grace=spec.outage_grace, service_key_id=spec.service_key_id)
        self.ops: List[Op] = []
        self._ops_lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: List[threading.Thread] = []
        self._seq = 0

    def _cipher(self, project: str, logstore: str) -> Any:
        """The Logstore's cipher, its lock watched (swapped while no other thread uses it:
        in start() before the writers, or by the one writer that created it)."""
        cipher = self.manager.open_logstore(project, logstore)
        assert cipher is not None
        if not isinstance(cipher._lock, _WatchedLock):  # watched, not changed: the node observes its own cipher
            cipher._lock = _WatchedLock()  # type: ignore[assignment]  # duck-typed: acquire, release, with
        return cipher

    # -- commands ------------------------------------------------------------------

    def create(self, project: str, logstore: str, conf: Dict[str, Any]) -> str:
        """"created", or the code of the ConfigError (LogStoreAlreadyExist)."""
        from sls_envelope.exceptions import ConfigError

        try:
            self.manager.create_logstore(project, logstore, conf)
        except ConfigError as exc:
            return exc.code
        return "created"

    def write(self, project: str, logstore: str, plain: bytes) -> bytes:
        return bytes(self._cipher(project, logstore).encrypt(plain))

    def read(self, project: str, logstore: str, blobs: Sequence[bytes]) -> List[bytes]:
        cipher = self._cipher(project, logstore)
        return [bytes(cipher.decrypt(b)) for b in blobs]

    def start(self, project: str, logstores: Sequence[str], threads: int = 2, pause: float = 0.005,
              create_each: bool = False) -> None:
        """Writer threads until stop(): each cycles over logstores, a write then a read
        of its first batch (or, with create_each, a fresh Logstore made and written)."""
        self._stop.clear()
        self.ops = []
        for name in logstores:  # the locks are swapped before any writer can hold one
            self._cipher(project, name)
        self._threads = [threading.Thread(target=self._run, args=(t, project, list(logstores), pause, create_each),
                                          daemon=True) for t in range(threads)]
        for t in self._threads:
            t.start()

    def stop(self) -> List[Op]:
        self._stop.set()
        for t in self._threads:
            t.join(120)
        with self._ops_lock:
            return list(self.ops)

    def progress(self) -> int:
        """Operations recorded so far by the running writers."""
        with self._ops_lock:
            return len(self.ops)

    def kms_stats(self) -> Dict[str, int]:
        return {"max_in_flight": self.kms.max_in_flight}

    # -- the writers ---------------------------------------------------------------

    def _run(self, thread: int, project: str, logstores: List[str], pause: float, create_each: bool) -> None:
        first: Dict[str, bytes] = {}
        i = 0
        while not self._stop.is_set():
            if create_each:
                name = f"n{self.index}t{thread}x{i}"
                self._record(thread, "create", name, lambda n=name: self._create_and_write(project, n))
            else:
                name = logstores[i % len(logstores)]
                plain = f"node{self.index}-t{thread}-{i}".encode()
                if name not in first or (i // len(logstores)) % 2 == 0:  # write, read, write, ... on each
                    blobs = self._record(thread, "write", name,
                                         lambda n=name, p=plain: ((p,), (self._cipher(project, n).encrypt(p),)))
                    if blobs and name not in first:
                        first[name] = blobs[0]
                else:
                    self._record(thread, "read", name,
                                 lambda n=name: ((self._cipher(project, n).decrypt(first[n]),), ()))
            i += 1
            time.sleep(pause)

    def _create_and_write(self, project: str, name: str) -> Tuple[Tuple[bytes, ...], Tuple[bytes, ...]]:
        cipher = self.manager.create_logstore(project, name, {"enable": True, "encrypt_type": "default"})
        assert cipher is not None
        plains = tuple(f"{name}-{j}".encode() for j in range(5))
        return plains, tuple(cipher.encrypt(p) for p in plains)

    def _record(self, thread: int, kind: str, name: str, op: Any) -> Tuple[bytes, ...]:
        _take("probed")
        _take("waited")
        start = time.monotonic()
        t0 = time.perf_counter()
        plains: Tuple[bytes, ...] = ()
        blobs: Tuple[bytes, ...] = ()
        outcome = "ok"
        try:
            plains, blobs = op()
        except SlsEnvelopeError as exc:
            outcome = _outcome(exc)
        latency = time.perf_counter() - t0
        with self._ops_lock:
            self.ops.append(Op(self.index, thread, kind, name, start, latency, outcome, tuple(map(bytes, plains)),
                               tuple(map(bytes, blobs)), _take("probed"), _take("waited")))
        return blobs


def _serve(index: int, spec: NodeSpec, conn: Any) -> None:
    worker = _Worker(index, spec)
    while True:
        message = conn.recv()
        if message is None:
            worker.manager.close()
            conn.send(("ok", None))
            return
        method, args, kwargs = message
        try:
            conn.send(("ok", getattr(worker, method)(*args, **kwargs)))
        except SlsEnvelopeError as exc:
            conn.send(("error", (type(exc).__name__, exc.code, str(exc))))
        except BaseException:  # noqa: BLE001 - shown in the test process, not lost in a child
            conn.send(("crash", traceback.format_exc()))


class Node:
    """One node: a forked process holding its own KeyManager, driven over a pipe."""

    def __init__(self, index: int, spec: NodeSpec) -> None:
        ctx = multiprocessing.get_context("fork")
        self.index = index
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(index, spec, child), daemon=True)
        self._proc.start()

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Run the worker's method in the node; NodeError for a library error."""
        self._conn.send((method, args, kwargs))
        if not self._conn.poll(180):
            raise AssertionError(f"node {self.index} did not answer {method}")
        status, value = self._conn.recv()
        if status == "error":
            raise NodeError(*value)
        if status == "crash":
            raise AssertionError(f"node {self.index} failed in {method}:\n{value}")
        return value

    def close(self) -> None:
        if self._proc.is_alive():
            try:
                self._conn.send(None)
                self._conn.poll(30) and self._conn.recv()
            except (OSError, EOFError):
                pass
        self._proc.join(30)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(10)


def start_nodes(count: int, spec: NodeSpec) -> List[Node]:
    return [Node(i, spec) for i in range(count)]
