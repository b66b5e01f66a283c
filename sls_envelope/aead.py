"""AES-GCM and SM4-GCM with the API of pyca/cryptography's AEADs, over the C kernel.

``AESGCM(key).encrypt(nonce, data, associated_data)`` returns ciphertext || 16-byte tag;
``decrypt`` raises :class:`~sls_envelope.exceptions.InvalidTag` on any mismatch.  Nonces
are exactly 12 bytes (NIST SP 800-38D's recommended IV length, the only one RFC 8998
defines for SM4-GCM).  The layer knows nothing of Logstores or KMSs.

Speed notes (figures in docs/BENCHMARKS.md): ``bytes`` arguments go to C without a copy
and without ``ffi.from_buffer``; results are written into a per-thread C scratch buffer
and copied out once, or from ``cbuffers.FILL_FROM`` bytes on straight into the bytes
object returned; batch calls cross into C once and cut their results with one cached
``struct.Struct`` (the packing is :mod:`sls_envelope.cbuffers`, shared with the batch
format's records, :mod:`sls_envelope.records`), except batches of large messages
(``cbuffers.EACH_FROM``), which go one C call per message.  Every C call releases the GIL.
"""

from __future__ import annotations

import os
import secrets
from typing import Any, ClassVar, Dict, List, Optional, Sequence, Tuple, Union

from ._native import ffi, lib
from .cbuffers import (
    EACH_FROM, FILL_FROM, TAG_SIZE, Buffer, Packed, raise_for, scratch, shifted, split, view,
)
from .exceptions import InvalidTag

__all__ = ["AESGCM", "SM4GCM", "available_implementations", "Buffer"]

NONCE_SIZE = 12
#: SP 800-38D section 5.2.1.1: at most 2^39 - 256 bits of plaintext per message.
MAX_MESSAGE = (2**32 - 2) * 16

_ALGS = {"aes-gcm": lib.SLS_ENV_AES_GCM, "sm4-gcm": lib.SLS_ENV_SM4_GCM}


def _names(alg: int, count: Any, name: Any) -> List[str]:
    return [ffi.string(name(alg, i)).decode() for i in range(count(alg))]


_AVAILABLE: Dict[str, List[str]] = {
    label: _names(alg, lib.sls_env_impl_count, lib.sls_env_impl_name) for label, alg in _ALGS.items()
}
_COMPILED: Dict[str, List[str]] = {
    label: _names(alg, lib.sls_env_impl_count_all, lib.sls_env_impl_name_all)
    for label, alg in _ALGS.items()
}


def available_implementations() -> Dict[str, List[str]]:
    """Implementations that run on this CPU, per algorithm, fastest first.

    The first is the default.  ``SLS_ENVELOPE_DISABLE`` (read once, at import) hides
    CPU features, e.g. ``SLS_ENVELOPE_DISABLE=avx512`` or ``all``.
    """
    return {label: list(names) for label, names in _AVAILABLE.items()}


def _forced_impls(setting: str) -> Dict[str, str]:
    """Parse SLS_ENVELOPE_IMPL: ``name`` (for every algorithm that has it) or
    ``aes-gcm=name,sm4-gcm=name``.  This is the switch that runs a whole test suite
    over one path."""
    forced: Dict[str, str] = {}
    for item in filter(None, (part.strip() for part in setting.split(","))):
        label, sep, name = item.partition("=")
        if sep:
            if label not in _ALGS:
                raise ValueError(f"SLS_ENVELOPE_IMPL: unknown algorithm {label!r}")
            if name not in _AVAILABLE[label]:
                raise ValueError(f"SLS_ENVELOPE_IMPL: {label} has no implementation {name!r} here")
            forced[label] = name
        else:
            for label in _ALGS:
                if item in _AVAILABLE[label]:
                    forced.setdefault(label, item)
    return forced


_FORCED = _forced_impls(os.environ.get("SLS_ENVELOPE_IMPL", ""))

# The hot path's C entry points and helpers, bound once (a module global is cheaper
# to reach than an attribute of `lib` on every call).
_encrypt_scratch = lib.sls_env_aead_encrypt_scratch
_decrypt_scratch = lib.sls_env_aead_decrypt_scratch
_last_error = lib.sls_env_last_error
_encrypt = lib.sls_env_aead_encrypt
_decrypt = lib.sls_env_aead_decrypt
_unpack = ffi.unpack
_from_buffer = ffi.from_buffer
_BYTE_ARRAY = ffi.typeof("uint8_t[]")


def _address_range(cdata: Any, size: int) -> Tuple[int, int]:
    start = int(ffi.cast("uintptr_t", cdata))
    return start, start + size


def _nonce_bytes(nonce: Any) -> bytes:
    try:
        raw = nonce if type(nonce) is bytes else memoryview(nonce).tobytes()
    except TypeError:
        raise TypeError("nonce must be bytes, bytearray or memoryview") from None
    if len(raw) != NONCE_SIZE:
        raise ValueError(f"nonce must be {NONCE_SIZE} bytes")
    return raw


def _inputs(nonce: Any, data: Any, associated_data: Any) -> Tuple[bytes, Any, int, Any, int]:
    """Checked nonce, and C pointers with byte sizes for data and associated data."""
    if type(nonce) is not bytes or len(nonce) != NONCE_SIZE:
        nonce = _nonce_bytes(nonce)
    if type(data) is bytes:
        data_ptr, size = data, len(data)
    else:
        data_ptr, size = view(data, "data")
    if associated_data is None:
        aad_ptr, aad_size = b"", 0
    elif type(associated_data) is bytes:
        aad_ptr, aad_size = associated_data, len(associated_data)
    else:
        aad_ptr, aad_size = view(associated_data, "associated_data")
    return nonce, data_ptr, size, aad_ptr, aad_size


def _writable(buf: Any, needed: int, data_ptr: Any, size: int) -> Any:
    """A C pointer into the caller's writable buffer, checked for size and overlap."""
    try:
        # A bytearray is always writable and a memoryview says so itself: asking the
        # buffer protocol for writability costs more than the rest of a small call.
        if type(buf) is bytearray or (type(buf) is memoryview and not buf.readonly):
            out = _from_buffer(_BYTE_ARRAY, buf)
        else:
            out = _from_buffer(_BYTE_ARRAY, buf, require_writable=True)
    except (TypeError, BufferError):
        raise TypeError("buf must be a writable bytes-like object (bytearray, memoryview...)") from None
    if len(out) < needed:
        raise ValueError(f"buf must be at least {needed} bytes, got {len(out)}")
    if size and needed and type(data_ptr) is not bytes:  # bytes never share a writable buffer
        d0, d1 = _address_range(data_ptr, size)
        o0, o1 = _address_range(out, needed)
        if d0 != o0 and d0 < o1 and o0 < d1:
            raise ValueError("buf overlaps data other than exactly in place")
    return out


class _GcmAead:
    """Shared machinery of AESGCM and SM4GCM."""

    __slots__ = ("_ctx", "_impl", "_key_size")

    _ctx: Any
    _impl: str
    _key_size: int
    _alg: ClassVar[int]
    _label: ClassVar[str]
    _key_sizes: ClassVar[Tuple[int, ...]]

    def __init__(self, key: Buffer, *, impl: Optional[str] = None) -> None:
        key_ptr, key_size = view(key, "key")
        if key_size not in self._key_sizes:
            bits = [str(8 * n) for n in self._key_sizes]
            sizes = f"{', '.join(bits[:-1])} or {bits[-1]}" if len(bits) > 1 else bits[0]
            raise ValueError(f"{type(self).__name__} key must be {sizes} bits")
        if impl is None:
            impl = _FORCED.get(self._label)
        elif impl not in _AVAILABLE[self._label]:
            where = "is not available on this CPU" if impl in _COMPILED[self._label] else "is unknown"
            raise ValueError(
                f"{self._label} implementation {impl!r} {where}; "
                f"available: {', '.join(_AVAILABLE[self._label])}"
            )
        out = ffi.new("sls_env_aead **")
        rc = lib.sls_env_aead_new(out, self._alg, key_ptr, key_size, impl.encode() if impl else ffi.NULL)
        if rc != lib.SLS_ENV_OK:
            raise_for(rc)
        # The context holds the round keys and powers of H; sls_env_aead_free wipes it.
        self._ctx = ffi.gc(out[0], lib.sls_env_aead_free)
        self._impl = ffi.string(lib.sls_env_aead_impl(self._ctx)).decode()
        self._key_size = key_size

    @property
    def implementation(self) -> str:
        """The implementation chosen for this key (see :func:`available_implementations`)."""
        return self._impl

    def __repr__(self) -> str:
        return f"<{type(self).__name__} key_size={8 * self._key_size} impl={self._impl!r}>"

    def __reduce__(self) -> Any:
        raise TypeError(f"{type(self).__name__} objects hold key material and cannot be pickled")

    # ---- one message ---------------------------------------------------------

    def encrypt(self, nonce: Buffer, data: Buffer, associated_data: Optional[Buffer]) -> bytes:
        """Encrypt and authenticate; returns ciphertext || tag (len(data) + 16 bytes)."""
        # The argument checks of _inputs(), inlined: this is the shippers' hot path and a
        # Python call costs as much as encrypting a few hundred bytes.  (x.__class__ is
        # a slot read; type(x) a call.)
        if nonce.__class__ is not bytes or len(nonce) != 12:
            nonce = _nonce_bytes(nonce)
        if data.__class__ is not bytes:
            data, size = view(data, "data")
        else:
            size = len(data)
        if associated_data.__class__ is not bytes:
            if associated_data is None:
                associated_data, aad_size = b"", 0
            else:
                associated_data, aad_size = view(associated_data, "associated_data")
        else:
            aad_size = len(associated_data)
        if FILL_FROM <= size <= MAX_MESSAGE:  # large: C writes the bytes returned (FILL_FROM)
            out = bytes(size + 16)
            rc = _encrypt(self._ctx, nonce, associated_data, aad_size, data, size, out)
            if rc:
                raise_for(rc)
            return out
        try:
            # A NULL result (an error) makes unpack raise, so the common case pays no test.
            return _unpack(  # type: ignore[no-any-return]
                _encrypt_scratch(self._ctx, nonce, associated_data, aad_size, data, size), size + 16
            )
        except RuntimeError:
            pass
        raise_for(_last_error())  # outside the handler: no RuntimeError in the traceback

    def decrypt(self, nonce: Buffer, data: Buffer, associated_data: Optional[Buffer]) -> bytes:
        """Verify and decrypt ciphertext || tag; raises InvalidTag on any mismatch."""
        # _inputs(), inlined as in encrypt(): the readers' hot path (issue 19).
        if nonce.__class__ is not bytes or len(nonce) != 12:
            nonce = _nonce_bytes(nonce)
        if data.__class__ is not bytes:
            data, size = view(data, "data")
        else:
            size = len(data)
        if associated_data.__class__ is not bytes:
            if associated_data is None:
                associated_data, aad_size = b"", 0
            else:
                associated_data, aad_size = view(associated_data, "associated_data")
        else:
            aad_size = len(associated_data)
        if size < 16:
            raise InvalidTag()
        if FILL_FROM <= size - 16 <= MAX_MESSAGE:  # as in encrypt(); zeroed by C on InvalidTag
            out = bytes(size - 16)
            rc = _decrypt(self._ctx, nonce, associated_data, aad_size, data, size, out)
            if rc:
                raise_for(rc)
            return out
        try:
            return _unpack(  # type: ignore[no-any-return]
                _decrypt_scratch(self._ctx, nonce, associated_data, aad_size, data, size), size - 16
            )
        except RuntimeError:
            pass
        raise_for(_last_error())

    def encrypt_into(
        self, nonce: Buffer, data: Buffer, associated_data: Optional[Buffer], buf: Any
    ) -> int:
        """Encrypt into the writable buffer ``buf`` (at least len(data) + 16 bytes);
        returns the number of bytes written."""
        # The common case (bytes in, bytearray out) inlined, as in encrypt(): a bytes
        # input cannot share memory with a bytearray, so no overlap check is needed.
        if associated_data is None:
            associated_data = b""
        if (type(data) is bytes and type(buf) is bytearray and type(nonce) is bytes
                and len(nonce) == NONCE_SIZE and type(associated_data) is bytes):
            size = len(data)
            if len(buf) < size + TAG_SIZE:
                raise ValueError(f"buf must be at least {size + TAG_SIZE} bytes, got {len(buf)}")
            rc = _encrypt(self._ctx, nonce, associated_data, len(associated_data), data, size,
                          _from_buffer(_BYTE_ARRAY, buf))
        else:
            nonce, data, size, aad_ptr, aad_size = _inputs(nonce, data, associated_data)
            out = _writable(buf, size + TAG_SIZE, data, size)
            rc = _encrypt(self._ctx, nonce, aad_ptr, aad_size, data, size, out)
        if rc:
            raise_for(rc)
        return size + TAG_SIZE

    def decrypt_into(
        self, nonce: Buffer, data: Buffer, associated_data: Optional[Buffer], buf: Any
    ) -> int:
        """Verify and decrypt into ``buf`` (at least len(data) - 16 bytes); returns the
        number of bytes written.  On InvalidTag, ``buf`` is zeroed where it was written."""
        if associated_data is None:
            associated_data = b""
        if (type(data) is bytes and type(buf) is bytearray and type(nonce) is bytes
                and len(nonce) == NONCE_SIZE and type(associated_data) is bytes):
            size = len(data)
            if size < TAG_SIZE:
                raise InvalidTag()
            if len(buf) < size - TAG_SIZE:
                raise ValueError(f"buf must be at least {size - TAG_SIZE} bytes, got {len(buf)}")
            rc = _decrypt(self._ctx, nonce, associated_data, len(associated_data), data, size,
                          _from_buffer(_BYTE_ARRAY, buf))
        else:
            nonce, data, size, aad_ptr, aad_size = _inputs(nonce, data, associated_data)
            if size < TAG_SIZE:
                raise InvalidTag()
            out = _writable(buf, size - TAG_SIZE, data, size)
            rc = _decrypt(self._ctx, nonce, aad_ptr, aad_size, data, size, out)
        if rc:
            raise_for(rc)
        return size - TAG_SIZE

    # ---- many messages under this key, one C call ------------------------------

    def encrypt_many(
        self,
        nonces: Sequence[Buffer],
        messages: Sequence[Buffer],
        associated_data: Union[None, Buffer, Sequence[Buffer]] = None,
    ) -> List[bytes]:
        """Encrypt messages[i] under nonces[i]; ``associated_data`` is None, one
        bytes-like for all, or one per message.  Equal to a loop of :meth:`encrypt`."""
        aads = _each_args(nonces, messages, associated_data, 0)
        if aads is not None:  # large messages: one C call each (cbuffers.EACH_FROM)
            out: List[bytes] = []
            ctx = self._ctx
            for nonce, message, aad_i in zip(nonces, messages, aads):
                size = len(message)
                if size >= FILL_FROM:
                    sealed = bytes(size + TAG_SIZE)
                    rc = _encrypt(ctx, nonce, aad_i, len(aad_i), message, size, sealed)
                    if rc:
                        raise_for(rc)
                    out.append(sealed)
                    continue
                result = _encrypt_scratch(ctx, nonce, aad_i, len(aad_i), message, size)
                if not result:
                    raise_for(_last_error())
                out.append(_unpack(result, size + TAG_SIZE))
            return out
        nonce_blob, packed, aad = self._batch_args(nonces, messages, associated_data)
        sizes = shifted(packed, TAG_SIZE)
        buf = scratch(sum(sizes))
        rc = lib.sls_env_aead_encrypt_many(
            self._ctx, len(sizes), nonce_blob, aad.blob, aad.lens, aad.each, aad.shared,
            packed.blob, packed.lens, packed.each, buf,
        )
        if rc != lib.SLS_ENV_OK:
            raise_for(rc)
        return split(buf, sizes)

    def decrypt_many(
        self,
        nonces: Sequence[Buffer],
        ciphertexts: Sequence[Buffer],
        associated_data: Union[None, Buffer, Sequence[Buffer]] = None,
    ) -> List[bytes]:
        """Verify and decrypt every ciphertext; if any fails, raises InvalidTag whose
        ``index`` names the first failure and returns nothing."""
        aads = _each_args(nonces, ciphertexts, associated_data, TAG_SIZE)
        if aads is not None:  # large messages: one C call each (cbuffers.EACH_FROM)
            out: List[bytes] = []
            ctx = self._ctx
            for index, (nonce, sealed, aad_i) in enumerate(zip(nonces, ciphertexts, aads)):
                size = len(sealed)
                if size - TAG_SIZE >= FILL_FROM:
                    plain = bytes(size - TAG_SIZE)
                    rc = _decrypt(ctx, nonce, aad_i, len(aad_i), sealed, size, plain)
                else:
                    result = _decrypt_scratch(ctx, nonce, aad_i, len(aad_i), sealed, size)
                    rc = 0 if result else _last_error()
                    plain = _unpack(result, size - TAG_SIZE) if result else b""
                if rc:
                    if rc in (lib.SLS_ENV_ERR_AUTH, lib.SLS_ENV_ERR_SHORT):
                        raise InvalidTag(f"authentication failed for message {index}", index=index)
                    raise_for(rc)
                out.append(plain)
            return out
        nonce_blob, packed, aad = self._batch_args(nonces, ciphertexts, associated_data)
        if packed.sizes and min(packed.sizes) < TAG_SIZE:
            short = next(i for i, size in enumerate(packed.sizes) if size < TAG_SIZE)
            raise InvalidTag(f"message {short} is shorter than a tag", index=short)
        sizes = shifted(packed, -TAG_SIZE)
        buf = scratch(sum(sizes))
        failed = ffi.new("size_t *")
        rc = lib.sls_env_aead_decrypt_many(
            self._ctx, len(sizes), nonce_blob, aad.blob, aad.lens, aad.each, aad.shared,
            packed.blob, packed.lens, packed.each, buf, failed,
        )
        if rc in (lib.SLS_ENV_ERR_AUTH, lib.SLS_ENV_ERR_SHORT):
            raise InvalidTag(f"authentication failed for message {failed[0]}", index=int(failed[0]))
        if rc != lib.SLS_ENV_OK:
            raise_for(rc)
        return split(buf, sizes)

    # ---- helpers ---------------------------------------------------------------

    def _batch_args(
        self,
        nonces: Sequence[Buffer],
        messages: Sequence[Buffer],
        associated_data: Union[None, Buffer, Sequence[Buffer]],
    ) -> Tuple[bytes, Packed, "_BatchAad"]:
        if len(nonces) != len(messages):
            raise ValueError(f"{len(nonces)} nonces for {len(messages)} messages")
        packed_nonces = Packed(nonces, "nonces")
        if packed_nonces.sizes and (packed_nonces.lens != ffi.NULL or packed_nonces.each != NONCE_SIZE):
            raise ValueError(f"every nonce must be {NONCE_SIZE} bytes")
        packed = Packed(messages, "messages")
        # Checked with C-level max(); the Python loop runs only to name the culprit.
        if packed.sizes and max(packed.sizes) > MAX_MESSAGE + TAG_SIZE:
            too_long = next(i for i, size in enumerate(packed.sizes) if size > MAX_MESSAGE + TAG_SIZE)
            raise ValueError(f"message {too_long} is longer than GCM allows")
        return packed_nonces.blob, packed, _BatchAad(associated_data, len(messages))


def _each_args(nonces: Sequence[Any], messages: Sequence[Any], associated_data: Any,
               least: int) -> Optional[Sequence[bytes]]:
    """The associated data of each message if a batch call should go one C call per
    message (two or more messages of EACH_FROM bytes or more on average), else None.
    Only for arguments that the packed path could not refuse (all ``bytes``, nonces of
    12 bytes, every message at least `least` and at most GCM's limit), so that every
    error keeps coming from the one place that names it, the packed path."""
    count = len(messages)
    if count < 2 or len(nonces) != count:
        return None
    try:
        # First the test that turns away the common batch of small messages, in C
        # (sum over map): no Python loop, no list, before the packed path runs.
        if sum(map(len, messages)) < EACH_FROM * count:
            return None
    except TypeError:  # an item without a length: the packed path names it
        return None
    for message in messages:
        if message.__class__ is not bytes:
            return None
    if min(map(len, messages)) < least or max(map(len, messages)) > MAX_MESSAGE + least:
        return None
    for nonce in nonces:
        if nonce.__class__ is not bytes or len(nonce) != NONCE_SIZE:
            return None
    if associated_data is None:
        return [b""] * count
    if associated_data.__class__ is bytes:
        return [associated_data] * count
    try:
        if isinstance(associated_data, (bytearray, memoryview)) or len(associated_data) != count:
            return None
    except TypeError:
        return None
    for aad in associated_data:
        if aad.__class__ is not bytes:
            return None
    return associated_data  # type: ignore[no-any-return]


class _BatchAad:
    """Associated data of a batch: none, shared by all, or one per message."""

    __slots__ = ("blob", "lens", "each", "shared")

    def __init__(self, associated_data: Union[None, Buffer, Sequence[Buffer]], count: int) -> None:
        self.lens: Any = ffi.NULL
        if associated_data is None:
            self.blob: Any = ffi.NULL
            self.each, self.shared = 0, 1
        elif isinstance(associated_data, (bytes, bytearray, memoryview)):
            self.blob, self.each = view(associated_data, "associated_data")
            self.shared = 1
        else:
            if len(associated_data) != count:
                raise ValueError(f"{len(associated_data)} associated data items for {count} messages")
            packed = Packed(associated_data, "associated_data")
            self.blob, self.lens, self.each, self.shared = packed.blob, packed.lens, packed.each, 0


def context_of(aead: _GcmAead) -> Any:
    """The C context (``sls_env_aead *``) of an AEAD, for :mod:`sls_envelope.records`,
    which seals the batch format's records under the same key schedule.  It lives as
    long as ``aead`` does."""
    return aead._ctx


class AESGCM(_GcmAead):
    """AES-GCM with 128-, 192- or 256-bit keys (FIPS 197, NIST SP 800-38D)."""

    __slots__ = ()
    _alg = lib.SLS_ENV_AES_GCM
    _label = "aes-gcm"
    _key_sizes = (16, 24, 32)

    @classmethod
    def generate_key(cls, bit_length: int = 256) -> bytes:
        """A fresh random key from the OS CSPRNG."""
        if bit_length not in (128, 192, 256):
            raise ValueError("bit_length must be 128, 192 or 256")
        return secrets.token_bytes(bit_length // 8)


class SM4GCM(_GcmAead):
    """SM4-GCM (GB/T 32907-2016, RFC 8998) with a 128-bit key."""

    __slots__ = ()
    _alg = lib.SLS_ENV_SM4_GCM
    _label = "sm4-gcm"
    _key_sizes = (16,)

    @classmethod
    def generate_key(cls) -> bytes:
        """A fresh random 128-bit key from the OS CSPRNG."""
        return secrets.token_bytes(16)
