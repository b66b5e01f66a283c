"""Sealing sessions over the v1 batch format (sls_envelope/format.py is the wire format).

:class:`BatchCodec` is the engine a :class:`~sls_envelope.LogstoreCipher` drives; it
knows the Logstore's data key, key_ref and context but nothing of KMSs.  Here live the
nonce policy: each process session derives its key (format.session_info, format._derive)
under a fresh salt and counts nonces from 0; a new session starts before
``SESSION_MAX_BATCHES`` batches or ``SESSION_MAX_BYTES`` bytes, in every forked child
(the at-fork hook below, and C's fork-generation check, :mod:`sls_envelope.records`,
for a libc fork() that skips it) and in every new process.  Records are sealed and opened through
:class:`~sls_envelope.records.RecordKey`, one per session; sealing many batches is one C
call (``RecordKey.seal_many``): the header template is copied and the nonce counter
written in C; batches of ``records.EACH_FROM`` bytes or more go one C call each
(``RecordKey.seal_each``), which is faster once packing outgrows the caches.  Opening
keeps the session of the last record opened (its key and checked header): a record of
the same session is compared with it and opened in one C call
(``RecordKey.open_as``), and anything else goes through the full checks, which name
every error.
"""

from __future__ import annotations

import collections
import hmac
import os
import secrets
import threading
import weakref
from typing import Any, List, Optional, Sequence, Tuple

from .aead import Buffer
from .exceptions import FormatError, InvalidTag, KeyInvalidError
from .format import (
    _HEADER, COMMIT_OFFSET, HEADER_LEN, KEY_REF_OFFSET, MAGIC, NONCE_OFFSET, NONCE_PREFIX_LEN, SALT_LEN,
    SALT_OFFSET, SESSION_MAX_BATCHES, SESSION_MAX_BYTES, VERSION, _as_bytes, _check_structure, _derive,
    session_info, suite_by_name,
)
from .records import EACH_FROM, ProcessForked, RecordKey, fork_generation

_DECRYPT_CACHE_SIZE = 128
_NONCE_END = NONCE_OFFSET + 12

# ---- sealing and opening --------------------------------------------------------


class _Session:
    """One session key on the sealing side, with its header template and counter."""

    __slots__ = ("fork_gen", "salt", "prefix", "key", "header", "next", "used")

    def __init__(self, fork_gen: int, salt: bytes, prefix: bytes, key: RecordKey, header: bytes,
                 counter: int) -> None:
        self.fork_gen = fork_gen  # records.fork_generation() when the session began
        self.salt = salt
        self.prefix = prefix
        self.key = key
        self.header = header
        self.next = counter
        self.used = 0


_Plan = List[Tuple[_Session, int, int, int]]  # (session, counter0, first, end)

# Every live codec, so that a forked child can drop the sessions it inherited.
_LIVE: "weakref.WeakSet[BatchCodec]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for codec in list(_LIVE):
        codec._forget_sessions_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class BatchCodec:
    """Seals and opens v1 batches for one Logstore data key.  Thread-safe.

    The data key is copied into a private bytearray that :meth:`wipe` zeroes; session
    keys live only inside C contexts.  Counters are reserved under a lock (a call with
    n batches takes n consecutive counters at once), the sealing itself runs outside it.
    """

    def __init__(
        self,
        suite: str,
        data_key: Buffer,
        key_ref: bytes,
        project: str,
        logstore: str,
        *,
        max_batches: int = SESSION_MAX_BATCHES,
        max_bytes: int = SESSION_MAX_BYTES,
    ) -> None:
        self._suite = suite_by_name(suite)
        if not 16 <= len(data_key) <= 64:
            raise ValueError("data key must be 16 to 64 bytes")
        if not 1 <= max_batches <= SESSION_MAX_BATCHES or not 1 <= max_bytes <= SESSION_MAX_BYTES:
            raise ValueError("session limits must be positive and no larger than the defaults")
        self._key = bytearray(data_key)
        self._key_ref = bytes(key_ref)
        self._info = session_info(self._suite, self._key_ref, project, logstore)
        self._max_batches = max_batches
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        self._session: Optional[_Session] = None
        self._cache: "collections.OrderedDict[bytes, Tuple[RecordKey, bytes]]" = collections.OrderedDict()
        # The session the last record opened came from: its key and its whole header (the
        # nonce aside, every record of the session has it), checked by _session_of.  open()
        # tries it first, in one C call (RecordKey.open_as).  One tuple, so that threads
        # read and replace it atomically.
        self._opened: Optional[Tuple[RecordKey, bytes]] = None
        self._wiped = False
        _LIVE.add(self)

    def __repr__(self) -> str:
        state = "wiped" if self._wiped else "ready"
        return f"<BatchCodec suite={self._suite.name} key_ref={self._key_ref.hex()} {state}>"

    def __reduce__(self) -> Any:
        raise TypeError("BatchCodec objects hold key material and cannot be pickled")

    @property
    def suite(self) -> str:
        return self._suite.name

    @property
    def key_ref(self) -> bytes:
        return self._key_ref

    @property
    def wiped(self) -> bool:
        return self._wiped

    def wipe(self) -> None:
        """Zero the data key and drop every session context (their C memory is wiped
        when freed).  Calls after this raise KeyInvalidError."""
        with self._lock:
            self._key[:] = bytes(len(self._key))
            self._session = None
            self._cache.clear()
            self._opened = None
            self._wiped = True

    # ---- sessions -------------------------------------------------------------

    def _start_session(
        self, salt: Optional[bytes] = None, prefix: Optional[bytes] = None, counter: int = 0
    ) -> _Session:
        """Begin a sealing session (caller holds the lock).  salt/prefix/counter are a
        private hook for test vectors; production passes none of them."""
        if self._wiped:
            raise KeyInvalidError("the Logstore key has been wiped", code="Rejected.KeyWiped")
        salt = secrets.token_bytes(SALT_LEN) if salt is None else salt
        prefix = secrets.token_bytes(NONCE_PREFIX_LEN) if prefix is None else prefix
        if len(salt) != SALT_LEN or len(prefix) != NONCE_PREFIX_LEN:
            raise ValueError("bad session salt or nonce prefix length")
        aead, commitment = _derive(self._suite, self._key, salt, self._info)
        key = RecordKey(aead)
        header = _HEADER.pack(
            MAGIC, VERSION, self._suite.id, 0, self._key_ref, salt, prefix + bytes(8), commitment
        )
        session = _Session(fork_generation(), salt, prefix, key, header, counter)
        self._remember(salt, key, commitment)
        self._session = session
        return session

    def _forget_sessions_after_fork(self) -> None:
        # The lock may have been held by a thread that does not exist in the child.
        self._lock = threading.Lock()
        self._session = None

    def _remember(self, salt: bytes, key: RecordKey, commitment: bytes) -> None:
        self._cache[salt] = (key, commitment)
        self._cache.move_to_end(salt)
        while len(self._cache) > _DECRYPT_CACHE_SIZE:
            self._cache.popitem(last=False)

    def _reserve(self, count: int, size: int) -> _Session:
        """A session with room for count batches of size bytes in all (lock held)."""
        session = self._session
        if (
            session is None
            or session.next + count > self._max_batches
            or (session.used and session.used + size > self._max_bytes)
        ):
            session = self._start_session()
        return session

    # ---- sealing ----------------------------------------------------------------

    def seal(self, batch: Buffer) -> bytes:
        size = len(batch) if type(batch) is bytes else _nbytes(batch)
        while True:
            # _reserve(1, size), inlined: this is the per-batch hot path (explicit
            # acquire/release costs half of a `with` block).  Forks are checked in C
            # against the session's fork generation (no getpid here).
            lock = self._lock
            lock.acquire()
            try:
                session = self._session
                if (
                    session is None
                    or session.next >= self._max_batches
                    or (session.used and session.used + size > self._max_bytes)
                ):
                    session = self._start_session()
                counter = session.next
                session.next = counter + 1
                session.used += size
            finally:
                lock.release()
            try:
                return session.key.seal(session.header, session.prefix, counter, batch, session.fork_gen)
            except ProcessForked:
                self._drop_forked(session)

    def seal_many(self, batches: Sequence[Buffer]) -> List[bytes]:
        count = len(batches)
        if count == 0:
            return []
        try:
            total = sum(map(len, batches))
        except TypeError:
            raise TypeError("every batch must be bytes, bytearray or memoryview") from None
        while True:
            # As in seal(), forks are checked in C (RecordKey.seal_many) against each
            # session's fork generation, not here.
            with self._lock:
                session = self._session
                if (
                    session is not None
                    and session.next + count <= self._max_batches
                    and session.used + total <= self._max_bytes
                ):
                    plan: _Plan = [(session, session.next, 0, count)]
                    session.next += count
                    session.used += total
                else:
                    plan = self._plan(batches)
            # Large batches go one C call each: packing them would outgrow the caches.
            seal = RecordKey.seal_each if total >= EACH_FROM * count else RecordKey.seal_many
            sealing, counter0, _, _ = plan[0]
            try:
                if len(plan) == 1:
                    return seal(sealing.key, sealing.header, sealing.prefix, counter0, batches, sealing.fork_gen)
                out: List[bytes] = []
                for sealing, counter0, first, end in plan:
                    out += seal(sealing.key, sealing.header, sealing.prefix, counter0, batches[first:end],
                                sealing.fork_gen)
                return out
            except ProcessForked:
                # Whatever this call sealed before the refusal is dropped with it: its
                # counters stay used, so nothing is sealed twice on the retry.
                self._drop_forked(sealing)

    def _drop_forked(self, session: _Session) -> None:
        """Forget a session C refused because the process forked after it began (a fork
        that bypassed os.register_at_fork); the caller then retries under a new one."""
        with self._lock:
            if self._session is session:
                self._session = None

    def _plan(self, batches: Sequence[Buffer]) -> _Plan:
        """Split a call across sessions at the batch and byte limits (lock held)."""
        plan: _Plan = []
        first = 0
        while first < len(batches):
            session = self._reserve(1, len(batches[first]))
            end = first
            while (
                end < len(batches)
                and session.next + (end - first) < self._max_batches
                and (end == first and session.used == 0 or session.used + len(batches[end]) <= self._max_bytes)
            ):
                session.used += len(batches[end])
                end += 1
            plan.append((session, session.next, first, end))
            session.next += end - first
            first = end
        return plan

    # ---- opening ------------------------------------------------------------------

    def open(self, blob: Any) -> bytes:
        """Verify and decrypt one sealed batch: FormatError if malformed, InvalidTag if
        it was not sealed under this key and context or was altered."""
        opened = self._opened
        if opened is not None and blob.__class__ is bytes:
            # The common case: a record of the session the last one came from.  Its header
            # compared with that session's in C, then opened; a header that differs (another
            # session, a malformed batch) goes through the full checks below.
            out = opened[0].open_as(opened[1], blob)
            if out is not None:
                return out
        data = _as_bytes(blob)
        key = self._session_of(data)
        out = key.open(data)
        self._keep(key, data)
        return out

    def _keep(self, key: RecordKey, record: bytes) -> None:
        """Keep the session of a record just opened (its header checked by _session_of)."""
        with self._lock:
            if not self._wiped:  # wipe() may have run since _session_of: not past it
                self._opened = (key, record[:HEADER_LEN])

    def _session_of(self, data: bytes) -> RecordKey:
        """The session key a sealed batch names, once its header checks out: structure
        (FormatError), this Logstore's suite and key, and the key commitment (InvalidTag)."""
        suite = _check_structure(data)
        if suite is not self._suite or data[KEY_REF_OFFSET:SALT_OFFSET] != self._key_ref:
            raise InvalidTag("the batch was not sealed with this Logstore's key")
        claimed = data[COMMIT_OFFSET:HEADER_LEN]
        key, commitment = self._session_for(data[SALT_OFFSET:NONCE_OFFSET], claimed)
        if not hmac.compare_digest(commitment, claimed):
            raise InvalidTag("key commitment mismatch")
        return key

    def open_many(self, blobs: Sequence[Any]) -> List[bytes]:
        """Open every blob or none: the first failure raises, naming its index."""
        if len(blobs) > 1:
            opened = self._open_session(blobs)
            if opened is not None:
                return opened
        out: List[bytes] = []
        for index, blob in enumerate(blobs):
            try:
                out.append(self.open(blob))
            except InvalidTag as exc:
                raise InvalidTag(f"batch {index}: {exc}" if str(exc) else f"batch {index}: authentication failed",
                                 index=index) from None
            except FormatError as exc:
                raise FormatError(f"batch {index}: {exc}") from None
        return out

    def _open_session(self, blobs: Sequence[Any]) -> Optional[List[bytes]]:
        """The common case of open_many, in one C call: every blob from the first one's
        session (its header, nonce aside, repeated: what one seal_many makes).  The
        first header is checked here as open() checks it; C checks that every other
        header equals it outside the nonce.  None when that does not hold, or when the
        first blob fails its checks: open_many then goes blob by blob, for the errors."""
        first = blobs[0]
        if type(first) is not bytes:
            return None
        opened = self._opened
        if (
            opened is not None
            and len(first) >= HEADER_LEN
            and hmac.compare_digest(first[:NONCE_OFFSET], opened[1][:NONCE_OFFSET])
            and hmac.compare_digest(first[_NONCE_END:HEADER_LEN], opened[1][_NONCE_END:])
        ):
            key = opened[0]  # the kept session (see open()): its header is checked
        else:
            try:
                key = self._session_of(first)
            except (FormatError, InvalidTag):
                return None
        try:
            if len(first) >= EACH_FROM:
                out = key.open_each(first[:HEADER_LEN], blobs)
            else:
                out = key.open_many(first[:HEADER_LEN], blobs)
        except (TypeError, ValueError):  # an item that is not a bytes-like buffer: named below
            return None
        except InvalidTag as exc:
            raise InvalidTag(f"batch {exc.index}: authentication failed", index=exc.index) from None
        if out is not None and (opened is None or opened[0] is not key):
            self._keep(key, first)  # a new session, checked by _session_of
        return out

    def _session_for(self, salt: bytes, claimed: bytes) -> Tuple[RecordKey, bytes]:
        with self._lock:
            entry = self._cache.get(salt)
            if entry is not None:
                self._cache.move_to_end(salt)
                return entry
            if self._wiped:
                raise KeyInvalidError("the Logstore key has been wiped", code="Rejected.KeyWiped")
            aead, commitment = _derive(self._suite, self._key, salt, self._info)
            key = RecordKey(aead)
            # Cache only sessions that this key really made, so forged salts cannot
            # evict genuine entries.
            if hmac.compare_digest(commitment, claimed):
                self._remember(salt, key, commitment)
            return key, commitment


def _nbytes(batch: Any) -> int:
    try:
        return memoryview(batch).nbytes
    except TypeError:
        raise TypeError("a batch must be bytes, bytearray or memoryview") from None


def _seal_with(
    suite: str,
    data_key: bytes,
    key_ref: bytes,
    project: str,
    logstore: str,
    *,
    salt: bytes,
    nonce_prefix: bytes,
    counter: int,
    batches: Sequence[bytes],
) -> List[bytes]:
    """Deterministic sealing for test vectors (private: never reuse a salt in production)."""
    codec = BatchCodec(suite, data_key, key_ref, project, logstore)
    try:
        with codec._lock:
            codec._start_session(salt, nonce_prefix, counter)
        return codec.seal_many(list(batches))
    finally:
        codec.wipe()

