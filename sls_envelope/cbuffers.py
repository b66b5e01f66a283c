"""Python buffers in and out of the C kernel, shared by :mod:`sls_envelope.aead` (the
pyca-style API) and :mod:`sls_envelope.records` (the batch format's records).

A bytes-like argument becomes a C pointer without a copy (``bytes`` as is, anything
else through ``ffi.from_buffer``); many arguments of one call are packed back to back
with their lengths (:class:`Packed`); results are written into the calling thread's C
scratch buffer and cut out of it with one cached ``struct.Struct`` (:func:`split`), or,
large ones, straight into the bytes object returned (:data:`FILL_FROM`); C result codes
become the library's exceptions (:func:`raise_for`).
"""

from __future__ import annotations

import functools
import struct
import sys
from typing import Any, List, NoReturn, Sequence, Tuple, Union

from ._native import ffi, lib
from .exceptions import InvalidTag

Buffer = Union[bytes, bytearray, memoryview]

TAG_SIZE = 16

#: Batch calls whose messages are at least this many bytes on average go one C call per
#: message (a loop over the single-message entry points) instead of packed into one:
#: packing copies every input into one blob and every output out of a scratch buffer
#: that, for a batch of large messages, outgrows the L2 cache (issue 19: 100 x 64 KiB
#: packed cost 1.9x a loop of single calls on a Zen 4), while a crossing costs well under
#: a microsecond, little beside sealing this much.  Where the two paths cross, measured:
#: docs/BENCHMARKS.md.  Used by aead.py's *_many and records.py's seal_each/open_each.
EACH_FROM = 16384

_from_buffer = ffi.from_buffer
_BYTE_ARRAY = ffi.typeof("uint8_t[]")


def _writes_reach_bytes() -> bool:
    """Whether C writing through a ``bytes`` argument writes into that object: the tag of
    GCM's first test case (AES-128, zero key and nonce, nothing to encrypt) written into
    a new bytes object."""
    ctx = ffi.new("sls_env_aead **")
    if lib.sls_env_aead_new(ctx, lib.SLS_ENV_AES_GCM, bytes(16), 16, ffi.NULL) != lib.SLS_ENV_OK:
        return False
    try:
        probe = bytes(16)
        lib.sls_env_aead_encrypt(ctx[0], bytes(12), b"", 0, b"", 0, probe)
        return probe == bytes.fromhex("58e2fccefa7e3061367f1d57a4e7455a")
    finally:
        lib.sls_env_aead_free(ctx[0])


#: Results of at least this many bytes are written by C straight into the bytes object
#: the call returns, ``bytes(n)`` passed as the output pointer, rather than into the
#: thread's scratch buffer and then copied into a new bytes object by ``ffi.unpack``.
#: The copy is a second pass over the result: on the Intel Xeon of docs/BENCHMARKS.md
#: (family 6 model 167), AES-GCM sealing or opening in C and returning bytes took
#: 0.94-0.98x the time at 1-8 KiB and 0.92x at 64 KiB, and AESGCM.decrypt 1 MiB 120 us instead
#: of 169 us; at 512 bytes the zeroing of ``bytes(n)`` costs more than the copy saves
#: (1.03x the time).  ``bytes(n)`` for n > 0 is a new object that nothing else
#: references, so filling it before it is returned is what a C extension does with
#: ``PyBytes_FromStringAndSize(NULL, n)`` (pyca/cryptography's AEADs do the same
#: through PyO3's ``PyBytes::new_with``); cffi's warning never to let C modify a byte
#: string is about strings others may share.  An interpreter whose cffi passed C a copy
#: of a bytes argument fails the probe above, and every result then goes through the
#: scratch buffer.
FILL_FROM = 1024 if _writes_reach_bytes() else sys.maxsize

_ERRORS = {
    lib.SLS_ENV_ERR_KEY_SIZE: "invalid key size",
    lib.SLS_ENV_ERR_IMPL: "implementation not available",
    lib.SLS_ENV_ERR_TOO_LONG: "message or associated data longer than GCM allows",
    lib.SLS_ENV_ERR_ARG: "invalid argument",
}


def raise_for(rc: int) -> NoReturn:
    """The exception for a C result code other than SLS_ENV_OK."""
    if rc in (lib.SLS_ENV_ERR_AUTH, lib.SLS_ENV_ERR_SHORT):
        raise InvalidTag()
    if rc == lib.SLS_ENV_ERR_NOMEM:
        raise MemoryError("sls-envelope: out of memory")
    raise ValueError(_ERRORS.get(rc, f"sls-envelope internal error {rc}"))


def view(data: Any, what: str) -> Tuple[Any, int]:
    """A C pointer for a bytes-like object and its size in bytes, without copying."""
    if type(data) is bytes:
        return data, len(data)
    try:
        cdata = _from_buffer(_BYTE_ARRAY, data)
    except TypeError:
        raise TypeError(f"{what} must be bytes, bytearray or memoryview") from None
    except (ValueError, BufferError):
        raise ValueError(f"{what} must be a C-contiguous buffer") from None
    return cdata, len(cdata)


def scratch(size: int) -> Any:
    """The calling thread's C scratch buffer, at least size bytes."""
    buf = lib.sls_env_scratch(size)
    if not buf:
        raise MemoryError("sls-envelope: out of memory")
    return buf


@functools.lru_cache(maxsize=64)
def _splitter(count: int, size: int) -> struct.Struct:
    """Cuts `count` equal results out of one buffer in a single C-level call."""
    return struct.Struct(f"{size}s" * count)


def split(buf: Any, sizes: List[int]) -> List[bytes]:
    """The results of a batch call, back to back in buf, as bytes objects."""
    if not sizes:
        return []
    total = sum(sizes)
    raw = ffi.buffer(buf, total)
    if sizes.count(sizes[0]) == len(sizes):
        return list(_splitter(len(sizes), sizes[0]).unpack_from(raw))
    return list(struct.unpack_from("".join(map("{}s".format, sizes)), raw))


class Packed:
    """A sequence of byte strings packed back to back for one C call: ``blob``, and
    either ``each`` (every item that long, ``lens`` NULL) or ``lens`` (a size_t array)."""

    __slots__ = ("blob", "lens", "each", "sizes")

    def __init__(self, items: Sequence[Buffer], what: str) -> None:
        try:
            blob = b"".join(items)
        except TypeError:
            raise TypeError(f"every item of {what} must be bytes, bytearray or memoryview") from None
        except BufferError:
            raise ValueError(f"every item of {what} must be a C-contiguous buffer") from None
        sizes = list(map(len, items))
        if sum(sizes) != len(blob):
            # Some items are multi-byte or multi-dimensional views: count bytes.
            sizes = [memoryview(item).nbytes for item in items]
        self.blob = blob
        self.sizes = sizes
        if sizes and sizes.count(sizes[0]) == len(sizes):
            self.lens: Any = ffi.NULL
            self.each = sizes[0]
        else:
            self.lens = ffi.new("size_t[]", sizes) if sizes else ffi.NULL
            self.each = 0


def shifted(packed: Packed, delta: int) -> List[int]:
    """Result sizes of a batch: every input size plus delta (no Python loop when equal)."""
    if packed.lens == ffi.NULL:
        return [packed.each + delta] * len(packed.sizes)
    return [size + delta for size in packed.sizes]
