"""The batch format's records in C: header || C || T, the whole header the AAD.

The sealing side of :mod:`sls_envelope.session_codec` goes through this one interface to
the C entry points of ``csrc/gcm/records.c``; :mod:`sls_envelope.aead` stays the
pyca-style API.  A :class:`RecordKey` is one session key (the C context of its AEAD);
the header layout comes from :mod:`sls_envelope.format` (``HEADER_LEN``,
``NONCE_OFFSET``), and C knows of it only that the 12-byte nonce inside the header is the
session's 4-byte prefix and a 64-bit big-endian counter, which C writes.

Forks: :func:`fork_generation` counts the forks of this process's line (a
``pthread_atfork`` handler in ``csrc/util.c``, so a libc ``fork()`` that skips Python's
``os.register_at_fork`` hooks counts too).  :meth:`RecordKey.seal` takes the generation
its session began in, and so does :meth:`RecordKey.seal_many`; C refuses to seal,
raising :class:`ProcessForked`, if the process has forked since, so a child never
continues its parent's nonce sequence.  This check in C is the only one: the Python
side's ``os.register_at_fork`` hook (:mod:`sls_envelope.session_codec`) merely saves an
``os.fork()`` child the refused first call.

:meth:`RecordKey.open_as` opens a record whose header equals one the caller has already
checked (outside the nonce, compared in constant time in C): the reading side's hot
path.  :meth:`RecordKey.seal_each` and :meth:`RecordKey.open_each` are the batch calls
for large records (``EACH_FROM``), one C call per record.
"""

from __future__ import annotations

from typing import Any, List, Optional, Sequence, Union

from ._native import ffi, lib
from .aead import MAX_MESSAGE, AESGCM, SM4GCM, context_of
from .cbuffers import (
    EACH_FROM, FILL_FROM, TAG_SIZE, Buffer, Packed, raise_for, scratch, shifted, split, view,
)
from .exceptions import InvalidTag
from .format import HEADER_LEN, NONCE_OFFSET

__all__ = ["EACH_FROM", "ProcessForked", "RecordKey", "fork_generation"]

#: How many times this process's line has forked since the library was loaded.
fork_generation = lib.sls_env_fork_generation

# Bound once: a module global is cheaper to reach than an attribute of `lib` per call.
_seal_record_scratch = lib.sls_env_seal_record_scratch
_seal_records = lib.sls_env_seal_records
_open_record = lib.sls_env_open_record
_open_record_as = lib.sls_env_open_record_as
_open_record_into = lib.sls_env_open_record_into
_last_error = lib.sls_env_last_error
_unpack = ffi.unpack
_from_buffer = ffi.from_buffer
_BYTE_ARRAY = ffi.typeof("uint8_t[]")
_ERR_FORKED = lib.SLS_ENV_ERR_FORKED
_ERR_AUTH = lib.SLS_ENV_ERR_AUTH
_ERR_HEADER = lib.SLS_ENV_ERR_HEADER
_ERR_SHORT = lib.SLS_ENV_ERR_SHORT
#: What a record adds to its message.
_OVERHEAD = HEADER_LEN + TAG_SIZE
#: Sealing writes a record straight into the bytes returned (see cbuffers.FILL_FROM)
#: from this many message bytes on: through seal_records, which takes three more
#: arguments than seal_record_scratch and cannot place the ciphertext on a 64-byte
#: boundary, so the copy it saves pays only from larger records than FILL_FROM (Intel
#: Xeon family 6 model 167, LogstoreCipher.encrypt, alternating: 1.03x the time at
#: 1 KiB, 1.00x at 4 KiB, 0.98x at 8 KiB, 0.96x at 16 KiB, 0.94x at 64 KiB).
SEAL_FILL_FROM = 8 * FILL_FROM


class ProcessForked(Exception):
    """A record was refused because the process forked since its session began (see
    :func:`fork_generation`); the caller starts a new session and retries."""


class RecordKey:
    """One session key: seals and opens records under the C context of ``aead``.

    ``header`` arguments are whole headers (``HEADER_LEN`` bytes) whose nonce C fills
    in; ``prefix`` is the session's 4-byte nonce prefix."""

    __slots__ = ("aead", "_ctx")

    def __init__(self, aead: Union[AESGCM, SM4GCM]) -> None:
        self.aead = aead  # owns the C context, which is wiped when it is freed
        self._ctx = context_of(aead)

    def __repr__(self) -> str:
        return f"<RecordKey {self.aead!r}>"

    def __reduce__(self) -> Any:
        raise TypeError("RecordKey objects hold key material and cannot be pickled")

    def seal(self, header: bytes, prefix: bytes, counter: int, message: Buffer, fork_gen: int) -> bytes:
        """One record with nonce prefix || be64(counter).  Raises ProcessForked, sealing
        nothing, if the process forked after fork_gen was read."""
        data, size = (message, len(message)) if type(message) is bytes else view(message, "batch")
        if SEAL_FILL_FROM <= size <= MAX_MESSAGE:  # large: C writes the bytes returned
            record = bytes(size + _OVERHEAD)
            rc = _seal_records(self._ctx, header, HEADER_LEN, NONCE_OFFSET, prefix, counter, 1, data, ffi.NULL,
                               size, record, fork_gen)
            if not rc:
                return record
        else:
            out = _seal_record_scratch(self._ctx, header, HEADER_LEN, NONCE_OFFSET, prefix, counter, data, size,
                                       fork_gen)
            if out:
                return _unpack(out, size + _OVERHEAD)  # type: ignore[no-any-return]
            rc = _last_error()
        if rc == _ERR_FORKED:
            raise ProcessForked()
        raise_for(rc)

    def seal_many(
        self, header: bytes, prefix: bytes, counter0: int, messages: Sequence[Buffer], fork_gen: int
    ) -> List[bytes]:
        """Records of messages, record i with nonce prefix || be64(counter0 + i), in one C
        call.  Raises ProcessForked, sealing nothing, as seal() does."""
        packed = Packed(messages, "messages")
        sizes = shifted(packed, _OVERHEAD)
        buf = scratch(sum(sizes))
        rc = _seal_records(
            self._ctx, header, HEADER_LEN, NONCE_OFFSET, prefix, counter0,
            len(sizes), packed.blob, packed.lens, packed.each, buf, fork_gen,
        )
        if rc != lib.SLS_ENV_OK:
            if rc == _ERR_FORKED:
                raise ProcessForked()
            raise_for(rc)
        return split(buf, sizes)

    def open(self, record: Buffer) -> bytes:
        """Verify and decrypt one record; raises InvalidTag on any mismatch."""
        data, size = (record, len(record)) if type(record) is bytes else view(record, "record")
        if FILL_FROM <= size - _OVERHEAD <= MAX_MESSAGE:  # as in seal()
            plain = bytes(size - _OVERHEAD)
            rc = _open_record_into(self._ctx, ffi.NULL, data, size, HEADER_LEN, NONCE_OFFSET, plain)
            if rc:
                raise_for(rc)
            return plain
        out = _open_record(self._ctx, data, size, HEADER_LEN, NONCE_OFFSET)
        if not out:
            raise_for(_last_error())
        return _unpack(out, size - _OVERHEAD)  # type: ignore[no-any-return]

    def open_as(self, header: bytes, record: bytes) -> Optional[bytes]:
        """Verify and decrypt a record whose header equals `header` (one the caller has
        checked) outside the nonce, compared in constant time in C.  None, having opened
        nothing, if it differs or the record is too short (the caller then runs its full
        checks, which name the error); InvalidTag if the tag fails."""
        size = len(record)
        if FILL_FROM <= size - _OVERHEAD <= MAX_MESSAGE:  # as in seal()
            plain = bytes(size - _OVERHEAD)
            rc = _open_record_into(self._ctx, header, record, size, HEADER_LEN, NONCE_OFFSET, plain)
            if not rc:
                return plain
        else:
            out = _open_record_as(self._ctx, header, record, size, HEADER_LEN, NONCE_OFFSET)
            if out:
                return _unpack(out, size - _OVERHEAD)  # type: ignore[no-any-return]
            rc = _last_error()
        if rc == _ERR_AUTH:
            raise InvalidTag()
        if rc in (_ERR_HEADER, _ERR_SHORT):
            return None
        raise_for(rc)

    def seal_each(self, header: bytes, prefix: bytes, counter0: int, messages: Sequence[Buffer],
                  fork_gen: int) -> List[bytes]:
        """What :meth:`seal_many` returns, one C call per record (large records, see
        EACH_FROM).  Raises ProcessForked as :meth:`seal` does."""
        for message in messages:  # every item checked first, named as seal_many names them
            if message.__class__ is not bytes:
                try:
                    _from_buffer(_BYTE_ARRAY, message)
                except TypeError:
                    raise TypeError("every item of messages must be bytes, bytearray or memoryview") from None
                except (ValueError, BufferError):
                    raise ValueError("every item of messages must be a C-contiguous buffer") from None
        seal = self.seal
        return [seal(header, prefix, counter0 + i, message, fork_gen) for i, message in enumerate(messages)]

    def open_each(self, header: bytes, records: Sequence[Any]) -> Optional[List[bytes]]:
        """What :meth:`open_many` returns, one C call per record (large records, see
        EACH_FROM), each header compared with `header` as :meth:`open_as` does.  None if
        one differs, is too short or is not ``bytes`` (nothing is returned; the caller
        goes record by record for the exact error); raises InvalidTag naming the first
        record that fails."""
        out: List[bytes] = []
        open_as = self.open_as
        for index, record in enumerate(records):
            if record.__class__ is not bytes:
                return None
            try:
                plain = open_as(header, record)
            except InvalidTag:
                raise InvalidTag(f"authentication failed for record {index}", index=index) from None
            if plain is None:
                return None
            out.append(plain)
        return out

    def open_many(self, header: bytes, records: Sequence[Buffer]) -> Optional[List[bytes]]:
        """Verify and decrypt records whose headers all equal `header` outside their
        nonce (one session's records), in one C call.  Returns None, having opened
        nothing, if one differs or is too short (the caller then goes record by record
        for the exact error); raises InvalidTag naming the first record that fails."""
        packed = Packed(records, "records")
        sizes = shifted(packed, -_OVERHEAD)
        if packed.sizes and min(packed.sizes) < _OVERHEAD:
            return None
        buf = scratch(sum(sizes))
        failed = ffi.new("size_t *")
        rc = lib.sls_env_open_records(
            self._ctx, header, HEADER_LEN, NONCE_OFFSET, len(sizes), packed.blob, packed.lens, packed.each,
            buf, failed,
        )
        if rc in (lib.SLS_ENV_ERR_HEADER, lib.SLS_ENV_ERR_SHORT):
            return None
        if rc == lib.SLS_ENV_ERR_AUTH:
            raise InvalidTag(f"authentication failed for record {failed[0]}", index=int(failed[0]))
        if rc != lib.SLS_ENV_OK:
            raise_for(rc)
        return split(buf, sizes)
