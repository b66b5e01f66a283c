"""Framed streams: a file of any size sealed as a sequence of v1 batches, in constant memory.

Layout (big-endian; docs/STREAM.md is the specification)::

    stream header
         0    4  magic        b"SLSS"
         4    1  version      1
         5    1  flags        0 (reserved; anything else is refused)
         6    4  chunk_size   plaintext bytes per frame, 1 .. MAX_CHUNK_SIZE
        10   16  stream_id    random (secrets.token_bytes)
        26   16  key_ref      the Logstore key record the frames are sealed under
        42    2  len(project)  || project (UTF-8)
         .    2  len(logstore) || logstore (UTF-8)
    frames, each
         0    4  len(blob)
         4    n  blob         a v1 batch (sls_envelope.format) of the Logstore, whose
                              plaintext is  frame_meta || data
    frame_meta (41 bytes, inside the authenticated plaintext)
         0   32  SHA-256 of the stream header bytes (so of the stream id too)
        32    8  frame index, from 0
        40    1  flags        1 = final frame; every other bit is refused

Every frame but the final one carries exactly ``chunk_size`` bytes of data; the final
one carries 0 .. chunk_size and must be followed by the end of the stream.  So a frame
that is altered, moved, dropped, duplicated or taken from another stream fails (its tag,
its header digest or its index), and a stream cut anywhere, even at a frame boundary,
lacks its final frame.

Decryption authenticates each frame before it releases the frame's data; the data of a
stream is complete only when :func:`decrypt_stream` returns.  :func:`atomic_output`
(from :mod:`sls_envelope.atomic_output`) writes to an unnamed file in the target's
directory where the platform allows it, and links it into place only after the whole
stream has verified, so a failed or killed run leaves no output behind.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import secrets
import struct
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, BinaryIO, Callable, Optional, Sequence, Tuple, TypeVar

from .aead import Buffer
from .atomic_output import atomic_output
from .exceptions import FormatError, InvalidTag
from .format import HEADER_LEN, TAG_LEN
from .keys import LogstoreCipher

__all__ = [
    "STREAM_MAGIC",
    "STREAM_VERSION",
    "DEFAULT_CHUNK_SIZE",
    "MAX_CHUNK_SIZE",
    "FRAME_META_LEN",
    "StreamHeader",
    "StreamStats",
    "read_header",
    "encrypt_stream",
    "decrypt_stream",
    "atomic_output",
]

STREAM_MAGIC = b"SLSS"
STREAM_VERSION = 1
DEFAULT_CHUNK_SIZE = 1 << 20  # 1 MiB: per-frame overhead (160 bytes, one C call) is lost in the noise
MAX_CHUNK_SIZE = 64 << 20  # bounds the memory a reader commits to before authenticating anything

_FIXED = struct.Struct(">4sBBI16s16s")  # magic, version, flags, chunk_size, stream_id, key_ref
_LEN16 = struct.Struct(">H")
_LEN32 = struct.Struct(">I")
_META = struct.Struct(">32sQB")  # header digest, frame index, flags
FRAME_META_LEN = _META.size  # 41
_FINAL = 0x01
_FRAME_OVERHEAD = HEADER_LEN + FRAME_META_LEN + TAG_LEN  # sealed bytes around the data of a frame

Progress = Callable[[int], None]
T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class StreamHeader:
    """The stream header: what the stream says about itself before any frame."""

    version: int
    chunk_size: int
    stream_id: bytes
    key_ref: bytes
    project: str
    logstore: str
    raw: bytes  #: the header bytes as written (what frames bind by digest)

    @property
    def digest(self) -> bytes:
        return hashlib.sha256(self.raw).digest()

    @classmethod
    def new(cls, cipher: LogstoreCipher, chunk_size: int) -> "StreamHeader":
        if type(chunk_size) is not int or not 1 <= chunk_size <= MAX_CHUNK_SIZE:
            raise ValueError(f"chunk_size must be an integer from 1 to {MAX_CHUNK_SIZE}")
        stream_id = secrets.token_bytes(16)
        key_ref = bytes.fromhex(cipher.key_ref)
        parts = [_FIXED.pack(STREAM_MAGIC, STREAM_VERSION, 0, chunk_size, stream_id, key_ref)]
        for name in (cipher.project, cipher.logstore):
            raw = name.encode("utf-8")
            parts.append(_LEN16.pack(len(raw)) + raw)
        return cls(STREAM_VERSION, chunk_size, stream_id, key_ref, cipher.project, cipher.logstore,
                   b"".join(parts))


@dataclasses.dataclass(frozen=True)
class StreamStats:
    """What a call moved: frames, plaintext bytes and stream (ciphertext) bytes."""

    frames: int
    plaintext_bytes: int
    stream_bytes: int


def _read_exact(src: BinaryIO, size: int) -> bytes:
    """Up to size bytes: fewer only at the end of the stream (pipes return short reads)."""
    data = src.read(size)
    if data is None:
        data = b""
    if len(data) == size or not data:
        return bytes(data)
    parts = [data]
    got = len(data)
    while got < size:
        more = src.read(size - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def _fill(src: BinaryIO, view: memoryview) -> int:
    """readinto until view is full or the stream ends; returns the bytes read."""
    readinto: Optional[Callable[[Any], Optional[int]]] = getattr(src, "readinto", None)
    got, size = 0, len(view)
    while got < size:
        if readinto is not None:
            n = readinto(view[got:])
        else:
            chunk = src.read(size - got)
            n = len(chunk) if chunk else 0
            view[got : got + n] = chunk
        if not n:
            break
        got += n
    return got


def read_header(src: BinaryIO) -> StreamHeader:
    """Parse a stream header; FormatError if it is not one (nothing is authenticated yet:
    every frame binds the header by digest)."""
    fixed = _read_exact(src, _FIXED.size)
    if len(fixed) < 4 or fixed[:4] != STREAM_MAGIC:
        if fixed[:4] == b"SLSE":
            raise FormatError("this is a single sealed batch, not a sls-envelope stream")
        raise FormatError("not a sls-envelope stream (bad magic)" if len(fixed) >= 4 else "empty or truncated stream")
    if len(fixed) < _FIXED.size:
        raise FormatError("truncated stream header")
    _, version, flags, chunk_size, stream_id, key_ref = _FIXED.unpack(fixed)
    if version != STREAM_VERSION:
        raise FormatError(f"unsupported stream version {version}")
    if flags != 0:
        raise FormatError(f"reserved stream flags are {flags}, must be 0")
    if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
        raise FormatError(f"stream chunk size {chunk_size} is out of range")
    raw = [fixed]
    names = []
    for _ in ("project", "logstore"):
        prefix = _read_exact(src, 2)
        if len(prefix) < 2:
            raise FormatError("truncated stream header")
        (length,) = _LEN16.unpack(prefix)
        name = _read_exact(src, length)
        if len(name) < length:
            raise FormatError("truncated stream header")
        try:
            names.append(name.decode("utf-8"))
        except UnicodeDecodeError:
            raise FormatError("stream header names are not UTF-8") from None
        raw += [prefix, name]
    return StreamHeader(version, chunk_size, stream_id, key_ref, names[0], names[1], b"".join(raw))


def encrypt_stream(
    cipher: LogstoreCipher,
    src: BinaryIO,
    dst: BinaryIO,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    progress: Optional[Progress] = None,
) -> StreamStats:
    """Seal everything src yields into dst as a framed stream, in constant memory
    (three chunk buffers and two sealed frames).

    Reading, sealing and writing overlap: a reader thread fills the chunk after next and
    a writer thread writes the previous frame while this thread seals (every C call and
    every file call releases the GIL).  ``progress(n)`` gets the plaintext bytes of each
    frame sealed."""
    header = StreamHeader.new(cipher, chunk_size)
    digest = header.digest
    # Buffers laid out as frame_meta || data, so a frame is sealed straight from the
    # buffer it was read into.  Sealing chunk i needs to know whether chunk i+1 exists
    # (the final flag), so chunk i+1 is complete and chunk i+2 is being read meanwhile.
    buffers = [bytearray(FRAME_META_LEN + chunk_size) for _ in range(3)]
    views = [memoryview(buf)[FRAME_META_LEN:] for buf in buffers]
    with _Pipeline() as pipe:
        pipe.write(dst, header.raw)
        size = _fill(src, views[0])
        ahead: Optional["Future[int]"] = pipe.read(_fill, src, views[1]) if size == chunk_size else None
        index = plaintext = 0
        written = len(header.raw)
        while True:
            next_size = 0 if ahead is None else ahead.result()
            ahead = None
            if size == chunk_size and next_size == chunk_size:
                ahead = pipe.read(_fill, src, views[(index + 2) % 3])
            final = next_size == 0
            current = buffers[index % 3]
            _META.pack_into(current, 0, digest, index, _FINAL if final else 0)
            blob = cipher.encrypt(current if size == chunk_size else memoryview(current)[: FRAME_META_LEN + size])
            pipe.write(dst, _LEN32.pack(len(blob)), blob)
            written += 4 + len(blob)
            plaintext += size
            index += 1
            if progress is not None:
                progress(size)
            if final:
                pipe.flush()
                return StreamStats(index, plaintext, written)
            size = next_size


def _read_frame(src: BinaryIO, max_blob: int) -> Tuple[bytes, bytes]:
    """The next frame's length prefix and blob, as far as the stream has them."""
    prefix = _read_exact(src, 4)
    if len(prefix) < 4:
        return prefix, b""
    (length,) = _LEN32.unpack(prefix)
    if not _FRAME_OVERHEAD <= length <= max_blob:
        return prefix, b""  # refused by the caller before it looks at the blob
    return prefix, _read_exact(src, length)


def decrypt_stream(
    cipher: LogstoreCipher,
    src: BinaryIO,
    dst: BinaryIO,
    *,
    header: Optional[StreamHeader] = None,
    progress: Optional[Progress] = None,
) -> StreamStats:
    """Verify and decrypt a framed stream from src into dst.

    Each frame is authenticated before its data is written; the stream is whole only if
    this returns.  FormatError: not a stream, truncated (also at a frame boundary), or
    data after the final frame.  InvalidTag: a frame altered, out of place (dropped,
    duplicated, reordered) or from another stream, or a stream of another Logstore or key.
    ``header``: one already read with :func:`read_header`.  ``progress(n)``: stream
    bytes consumed, per frame.  Reading the next frame and writing the previous one
    overlap with opening this one, as in :func:`encrypt_stream`."""
    if header is None:
        header = read_header(src)
    if (header.project, header.logstore) != (cipher.project, cipher.logstore):
        raise InvalidTag(
            f"the stream was sealed for Logstore {header.project}/{header.logstore}, "
            f"not {cipher.project}/{cipher.logstore}"
        )
    if not hmac.compare_digest(header.key_ref, bytes.fromhex(cipher.key_ref)):
        raise InvalidTag(
            f"the stream was sealed under another key of Logstore {cipher.project}/{cipher.logstore} "
            "(was the Logstore deleted and created again?)"
        )
    digest = header.digest
    max_blob = _FRAME_OVERHEAD + header.chunk_size
    index = plaintext = 0
    consumed = len(header.raw)
    if progress is not None:
        progress(consumed)
    with _Pipeline() as pipe:
        ahead = pipe.read(_read_frame, src, max_blob)
        while True:
            prefix, blob = ahead.result()
            if len(prefix) < 4:
                raise FormatError(
                    f"truncated stream: it ends after {index} frame(s) without its final frame"
                    if not prefix else f"truncated stream: frame {index} is cut short"
                )
            (length,) = _LEN32.unpack(prefix)
            if not _FRAME_OVERHEAD <= length <= max_blob:
                raise FormatError(f"frame {index} has an impossible length ({length} bytes)")
            if len(blob) < length:
                raise FormatError(f"truncated stream: frame {index} is cut short")
            ahead = pipe.read(_read_frame, src, max_blob)
            try:
                frame = cipher.decrypt(blob)
            except InvalidTag:
                raise InvalidTag(f"frame {index} failed authentication: the stream was altered",
                                 index=index) from None
            except FormatError as exc:
                raise FormatError(f"frame {index}: {exc}") from None
            del blob
            frame_digest, frame_index, flags = _META.unpack_from(frame)
            if not hmac.compare_digest(frame_digest, digest):
                raise InvalidTag(f"frame {index} belongs to another stream", index=index)
            if frame_index != index:
                raise InvalidTag(
                    f"frame {index} is out of place (it was sealed as frame {frame_index}): "
                    "frames were dropped, duplicated or reordered", index=index,
                )
            if flags & ~_FINAL:
                raise FormatError(f"frame {index} has reserved flags set ({flags})")
            final = bool(flags & _FINAL)
            size = len(frame) - FRAME_META_LEN
            if not final and size != header.chunk_size:
                raise FormatError(f"frame {index} holds {size} bytes; only the final frame may be short")
            if final:
                trailing, _ = ahead.result()
                if trailing:
                    raise FormatError(f"data follows the final frame (frame {index}, counting from 0): "
                                      "the stream has trailing bytes after its end")
            pipe.write(dst, memoryview(frame)[FRAME_META_LEN:])
            plaintext += size
            consumed += 4 + length
            index += 1
            if progress is not None:
                progress(4 + length)
            if final:
                pipe.flush()
                return StreamStats(index, plaintext, consumed)


class _Pipeline:
    """One reader thread and one writer thread beside the caller's.

    Reads run in order on the reader; writes run in order on the writer, at most one
    behind the caller (so memory stays bounded and an error in a write surfaces at the
    next call).  Leaving the block waits for both threads, so nothing touches the
    files afterwards."""

    def __init__(self) -> None:
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="sls-envelope-read")
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="sls-envelope-write")
        self._pending: Optional["Future[None]"] = None

    def __enter__(self) -> "_Pipeline":
        return self

    def __exit__(self, *exc: Any) -> None:
        self._reader.shutdown(wait=True)
        self._writer.shutdown(wait=True)

    def read(self, fn: Callable[..., T], *args: Any) -> "Future[T]":
        return self._reader.submit(fn, *args)

    def write(self, dst: BinaryIO, *parts: Buffer) -> None:
        self.flush()
        self._pending = self._writer.submit(_write_all, dst, parts)

    def flush(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()


def _write_all(dst: BinaryIO, parts: Sequence[Buffer]) -> None:
    for part in parts:
        dst.write(part)


