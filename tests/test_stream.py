"""The framed stream format (sls_envelope.stream, docs/STREAM.md) at library level."""

from __future__ import annotations

import hashlib
import io
import os
import struct
import tracemalloc
from pathlib import Path
from typing import Any, List, Optional, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sls_envelope import FormatError, InvalidTag, KeyManager, LogstoreCipher, SlsEnvelopeError
from sls_envelope.format import HEADER_LEN, TAG_LEN
from sls_envelope.kms import LocalKms
from sls_envelope.stream import (
    FRAME_META_LEN,
    MAX_CHUNK_SIZE,
    StreamHeader,
    atomic_output,
    decrypt_stream,
    encrypt_stream,
    read_header,
)

CHUNK = 64  # small frames: many of them from little data


@pytest.fixture(scope="module")
def manager() -> KeyManager:
    manager = KeyManager(LocalKms())
    manager.create_logstore("proj", "aes", {"enable": True, "encrypt_type": "default"})
    manager.create_logstore("proj", "sm4", {"enable": True, "encrypt_type": "sm4"})
    return manager


@pytest.fixture(params=["aes", "sm4"])
def cipher(request: Any, manager: KeyManager) -> LogstoreCipher:
    cipher = manager.open_logstore("proj", request.param)
    assert cipher is not None
    return cipher


def seal(cipher: LogstoreCipher, data: bytes, chunk_size: int = CHUNK) -> bytes:
    out = io.BytesIO()
    stats = encrypt_stream(cipher, io.BytesIO(data), out, chunk_size=chunk_size)
    assert stats.plaintext_bytes == len(data) and stats.stream_bytes == len(out.getvalue())
    return out.getvalue()


def open_(cipher: LogstoreCipher, stream: bytes) -> bytes:
    out = io.BytesIO()
    stats = decrypt_stream(cipher, io.BytesIO(stream), out)
    assert stats.plaintext_bytes == len(out.getvalue()) and stats.stream_bytes == len(stream)
    return out.getvalue()


def split(stream: bytes) -> Tuple[bytes, List[bytes]]:
    """The header bytes and every frame (length prefix included)."""
    header = read_header(io.BytesIO(stream))
    pos, frames = len(header.raw), []
    while pos < len(stream):
        (length,) = struct.unpack_from(">I", stream, pos)
        frames.append(stream[pos : pos + 4 + length])
        pos += 4 + length
    return header.raw, frames


# ---- round trips -----------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 3 * CHUNK + 5])
def test_round_trip_sizes(cipher: LogstoreCipher, size: int) -> None:
    data = os.urandom(size)
    stream = seal(cipher, data)
    header, frames = split(stream)
    # one frame per started chunk, and one (empty, final) frame for empty input
    assert len(frames) == max(1, -(-size // CHUNK))
    assert open_(cipher, stream) == data


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=2000), chunk_size=st.integers(1, 300))
def test_round_trip_any(cipher: LogstoreCipher, data: bytes, chunk_size: int) -> None:
    assert open_(cipher, seal(cipher, data, chunk_size)) == data


class Trickle(io.RawIOBase):
    """A pipe-like source: short reads of at most `step` bytes."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data = memoryview(data)
        self._pos = 0
        self._step = step

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        n = min(len(buf), self._step, len(self._data) - self._pos)
        buf[:n] = self._data[self._pos : self._pos + n]
        self._pos += n
        return n


def test_short_reads_are_not_frame_boundaries(cipher: LogstoreCipher) -> None:
    data = os.urandom(10 * CHUNK + 3)
    out = io.BytesIO()
    encrypt_stream(cipher, Trickle(data, 7), out, chunk_size=CHUNK)  # type: ignore[arg-type]
    assert out.getvalue()[:4] == b"SLSS"
    assert len(split(out.getvalue())[1]) == 11
    plain = io.BytesIO()
    decrypt_stream(cipher, Trickle(out.getvalue(), 5), plain)  # type: ignore[arg-type]
    assert plain.getvalue() == data


def test_header_names_the_logstore_and_key(cipher: LogstoreCipher) -> None:
    stream = seal(cipher, b"x" * 100)
    header = read_header(io.BytesIO(stream))
    assert (header.project, header.logstore) == ("proj", cipher.logstore)
    assert header.key_ref.hex() == cipher.key_ref
    assert header.chunk_size == CHUNK and header.version == 1
    assert seal(cipher, b"")[:len(header.raw)] != header.raw  # a fresh random stream id each time


def test_progress_reports_every_byte(cipher: LogstoreCipher) -> None:
    data = os.urandom(5 * CHUNK + 1)
    seen: List[int] = []
    out = io.BytesIO()
    encrypt_stream(cipher, io.BytesIO(data), out, chunk_size=CHUNK, progress=seen.append)
    assert sum(seen) == len(data) and len(seen) == 6
    consumed: List[int] = []
    decrypt_stream(cipher, io.BytesIO(out.getvalue()), io.BytesIO(), progress=consumed.append)
    assert sum(consumed) == len(out.getvalue())


@pytest.mark.parametrize("chunk_size", [0, -1, MAX_CHUNK_SIZE + 1])
def test_chunk_size_bounds(cipher: LogstoreCipher, chunk_size: int) -> None:
    with pytest.raises(ValueError):
        encrypt_stream(cipher, io.BytesIO(b"x"), io.BytesIO(), chunk_size=chunk_size)


def test_constant_memory(manager: KeyManager) -> None:
    """32 MiB through 1 MiB frames: Python allocations stay at a few frames (AES only:
    the portable SM4 path is slow and the code is the same)."""
    cipher = manager.open_logstore("proj", "aes")
    assert cipher is not None

    class Zeros(io.RawIOBase):
        def __init__(self, size: int) -> None:
            self.left = size

        def readable(self) -> bool:
            return True

        def readinto(self, buf: Any) -> int:
            n = min(len(buf), self.left)
            buf[:n] = bytes(n) if n < 4096 else memoryview(bytearray(n))  # fresh, not kept
            self.left -= n
            return n

    class Sink(io.RawIOBase):
        def __init__(self) -> None:
            self.hash = hashlib.sha256()

        def writable(self) -> bool:
            return True

        def write(self, data: Any) -> int:
            self.hash.update(data)
            return len(data)

    size = 32 << 20
    tracemalloc.start()
    try:
        sealed = Sink()
        encrypt_stream(cipher, Zeros(size), sealed)  # type: ignore[arg-type]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 10 << 20, f"peak {peak} bytes"


# ---- damage is detected -------------------------------------------------------------------------


def refused(cipher: LogstoreCipher, stream: bytes) -> SlsEnvelopeError:
    with pytest.raises(SlsEnvelopeError) as info:
        open_(cipher, stream)
    assert isinstance(info.value, (InvalidTag, FormatError))
    return info.value


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_any_flipped_bit_is_refused(cipher: LogstoreCipher, data: Any) -> None:
    stream = bytearray(seal(cipher, bytes(3 * CHUNK + 10)))
    pos = data.draw(st.integers(0, len(stream) - 1))
    stream[pos] ^= 1 << data.draw(st.integers(0, 7))
    refused(cipher, bytes(stream))


def test_truncation_anywhere_is_refused(cipher: LogstoreCipher) -> None:
    stream = seal(cipher, os.urandom(3 * CHUNK + 10))
    header, frames = split(stream)
    boundaries = {len(header) + sum(map(len, frames[:i])) for i in range(len(frames))}
    for cut in range(len(stream)):
        error = refused(cipher, stream[:cut])
        assert isinstance(error, FormatError)
        if cut in boundaries and cut > len(header):
            assert "without its final frame" in str(error)


def test_reordered_frames_are_refused(cipher: LogstoreCipher) -> None:
    header, frames = split(seal(cipher, os.urandom(4 * CHUNK)))
    swapped = [frames[0], frames[2], frames[1], frames[3]]
    error = refused(cipher, header + b"".join(swapped))
    assert isinstance(error, InvalidTag) and "out of place" in str(error) and error.index == 1


def test_dropped_frame_is_refused(cipher: LogstoreCipher) -> None:
    header, frames = split(seal(cipher, os.urandom(4 * CHUNK)))
    error = refused(cipher, header + b"".join(frames[:1] + frames[2:]))
    assert isinstance(error, InvalidTag) and "out of place" in str(error)


def test_dropped_final_frame_is_refused(cipher: LogstoreCipher) -> None:
    header, frames = split(seal(cipher, os.urandom(4 * CHUNK)))
    error = refused(cipher, header + b"".join(frames[:-1]))
    assert isinstance(error, FormatError) and "without its final frame" in str(error)


def test_duplicated_frame_is_refused(cipher: LogstoreCipher) -> None:
    header, frames = split(seal(cipher, os.urandom(4 * CHUNK)))
    error = refused(cipher, header + b"".join(frames[:2] + frames[1:]))
    assert isinstance(error, InvalidTag) and "out of place" in str(error)


def test_duplicated_final_frame_is_refused(cipher: LogstoreCipher) -> None:
    header, frames = split(seal(cipher, os.urandom(2 * CHUNK + 1)))
    error = refused(cipher, header + b"".join(frames + frames[-1:]))
    assert isinstance(error, FormatError) and "follows the final frame" in str(error)


def test_trailing_bytes_are_refused(cipher: LogstoreCipher) -> None:
    stream = seal(cipher, os.urandom(CHUNK))
    for tail in (b"\x00", b"junk", bytes(4)):
        assert isinstance(refused(cipher, stream + tail), FormatError)


def test_frame_from_another_stream_is_refused(cipher: LogstoreCipher) -> None:
    data = os.urandom(3 * CHUNK)
    header_a, frames_a = split(seal(cipher, data))
    _, frames_b = split(seal(cipher, data))
    error = refused(cipher, header_a + b"".join([frames_a[0], frames_b[1], frames_a[2]]))
    assert isinstance(error, InvalidTag) and "another stream" in str(error)


def test_stream_of_another_logstore_is_refused(manager: KeyManager) -> None:
    aes, sm4 = manager.open_logstore("proj", "aes"), manager.open_logstore("proj", "sm4")
    assert aes is not None and sm4 is not None
    error = refused(sm4, seal(aes, b"data"))
    assert "sealed for Logstore proj/aes, not proj/sm4" in str(error)


def test_stream_of_a_recreated_logstore_is_refused() -> None:
    manager = KeyManager(LocalKms())
    old = manager.create_logstore("p", "l", {"enable": True, "encrypt_type": "default"})
    assert old is not None
    stream = seal(old, b"data")
    manager.delete_logstore("p", "l")
    new = manager.create_logstore("p", "l", {"enable": True, "encrypt_type": "default"})
    assert new is not None
    assert "another key" in str(refused(new, stream))


def test_single_batch_is_not_a_stream(cipher: LogstoreCipher) -> None:
    error = refused(cipher, cipher.encrypt(b"a batch"))
    assert "single sealed batch" in str(error)
    assert "bad magic" in str(refused(cipher, b"hello world, not a stream"))
    assert isinstance(refused(cipher, b""), FormatError)


def _frame(cipher: LogstoreCipher, header: StreamHeader, index: int, flags: int, data: bytes) -> bytes:
    blob = cipher.encrypt(struct.pack(">32sQB", header.digest, index, flags) + data)
    return struct.pack(">I", len(blob)) + blob


def test_short_frame_before_the_final_is_refused(cipher: LogstoreCipher) -> None:
    """Well-sealed frames in the right order that break the chunking rule."""
    header = StreamHeader.new(cipher, CHUNK)
    stream = header.raw + _frame(cipher, header, 0, 0, b"short") + _frame(cipher, header, 1, 1, b"end")
    assert "only the final frame may be short" in str(refused(cipher, stream))


def test_reserved_frame_flags_are_refused(cipher: LogstoreCipher) -> None:
    header = StreamHeader.new(cipher, CHUNK)
    assert "reserved flags" in str(refused(cipher, header.raw + _frame(cipher, header, 0, 0x03, b"x")))


def test_impossible_frame_length_is_refused(cipher: LogstoreCipher) -> None:
    header = StreamHeader.new(cipher, CHUNK)
    for length in (0, HEADER_LEN + FRAME_META_LEN + TAG_LEN - 1, HEADER_LEN + FRAME_META_LEN + TAG_LEN + CHUNK + 1):
        error = refused(cipher, header.raw + struct.pack(">I", length) + bytes(length))
        assert "impossible length" in str(error)


def test_stream_header_fields_are_checked(cipher: LogstoreCipher) -> None:
    raw = seal(cipher, b"x")
    for offset, value, message in [(4, 2, "unsupported stream version"), (5, 1, "reserved stream flags")]:
        bad = bytearray(raw)
        bad[offset] = value
        assert message in str(refused(cipher, bytes(bad)))
    bad = bytearray(raw)
    bad[6:10] = struct.pack(">I", MAX_CHUNK_SIZE + 1)
    assert "chunk size" in str(refused(cipher, bytes(bad)))


# ---- the pipeline and atomic output ----------------------------------------------------------


def test_write_errors_surface(cipher: LogstoreCipher) -> None:
    class Broken(io.RawIOBase):
        def writable(self) -> bool:
            return True

        def write(self, data: Any) -> int:
            raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        encrypt_stream(cipher, io.BytesIO(os.urandom(10 * CHUNK)), Broken(), chunk_size=CHUNK)  # type: ignore[arg-type]


def test_read_errors_surface(cipher: LogstoreCipher) -> None:
    class Broken(io.RawIOBase):
        calls = 0

        def readable(self) -> bool:
            return True

        def readinto(self, buf: Any) -> Optional[int]:
            self.calls += 1
            if self.calls > 3:
                raise OSError(5, "Input/output error")
            buf[: len(buf)] = bytes(len(buf))
            return len(buf)

    with pytest.raises(OSError, match="Input/output"):
        encrypt_stream(cipher, Broken(), io.BytesIO(), chunk_size=CHUNK)  # type: ignore[arg-type]


def test_atomic_output_appears_only_when_complete(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    with atomic_output(target) as handle:
        handle.write(b"complete")
        assert not target.exists()
    assert target.read_bytes() == b"complete"
    assert (target.stat().st_mode & 0o777) == 0o600
    with pytest.raises(RuntimeError):
        with atomic_output(target) as handle:
            handle.write(b"partial")
            raise RuntimeError("failed half way")
    assert target.read_bytes() == b"complete"  # the old file is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]  # no temporary left


def test_failed_decrypt_leaves_no_file(cipher: LogstoreCipher, tmp_path: Path) -> None:
    stream = bytearray(seal(cipher, os.urandom(5 * CHUNK)))
    stream[-3] ^= 1  # in the final frame's tag: every earlier frame verifies and is written first
    target = tmp_path / "plain.bin"
    with pytest.raises(InvalidTag):
        with atomic_output(target) as handle:
            decrypt_stream(cipher, io.BytesIO(bytes(stream)), handle)
    assert list(tmp_path.iterdir()) == []
