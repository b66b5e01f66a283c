"""Shard files: each shard is one append-only file of records, a record being one
PutLogs LogGroup sealed under the Logstore's key (the v1 batch format) or, for an
unencrypted Logstore (or one whose encryption was switched off by UpdateLogstore, as SLS
stores new data in the clear then), the plain LogGroup; the record's magic says which.

Record layout: ``"SLSE"`` (sealed) or ``"SLSP"`` (plain) ``| u32 length | u32 crc32(payload) | u32 receive time | u32 logs``
then the payload.  The cursor of a record is its index in the shard.  fsync schedule:
every append is written and fsync'd before PutLogs answers (a 200 means on disk).
Recovery: opening a shard scans it and truncates the file at the first record that is
incomplete or whose crc does not match (a torn tail after a crash), so a torn record is
never served.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import zlib

log = logging.getLogger(__name__)

__all__ = ["PLAIN", "SEALED", "Shard"]

_HEAD = struct.Struct("<4sIIII")
SEALED, PLAIN = b"SLSE", b"SLSP"


class Shard:
    """One shard file and its in-memory cursor index.  Thread-safe."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._index: list[tuple[int, int, int]] = []  # (offset, receive time, logs)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        self._f = os.fdopen(fd, "r+b", buffering=0)
        self._recover()

    def _recover(self) -> None:
        data = self._f.read()
        pos = 0
        while pos + _HEAD.size <= len(data):
            magic, length, crc, when, logs = _HEAD.unpack_from(data, pos)
            end = pos + _HEAD.size + length
            if magic not in (SEALED, PLAIN) or end > len(data) or zlib.crc32(data[pos + _HEAD.size:end]) != crc:
                break
            self._index.append((pos, when, logs))
            pos = end
        if pos != len(data):  # a torn tail: drop it, durably
            log.warning("shard %s: dropped a torn tail of %d bytes (a write cut short)", self.path, len(data) - pos)
            self._f.truncate(pos)
            os.fsync(self._f.fileno())
        self._end = pos

    def append(self, payload: bytes, when: int, logs: int, *, sealed: bool) -> int:
        """Write one record and fsync it; its cursor."""
        record = _HEAD.pack(SEALED if sealed else PLAIN, len(payload), zlib.crc32(payload), when, logs) + payload
        with self._lock:
            os.pwrite(self._f.fileno(), record, self._end)
            os.fsync(self._f.fileno())
            self._index.append((self._end, when, logs))
            self._end += len(record)
            return len(self._index) - 1

    def __len__(self) -> int:
        with self._lock:
            return len(self._index)

    def cursor_at(self, when: int) -> int:
        """The first record received at or after ``when`` (unix seconds)."""
        with self._lock:
            for i, (_, t, _) in enumerate(self._index):
                if t >= when:
                    return i
            return len(self._index)

    def read(self, start: int, count: int) -> list[tuple[bytes, bool]]:
        """(payload, sealed) of records [start, start+count)."""
        with self._lock:
            rows = self._index[start:start + count]
            end = self._index[start + count][0] if start + count < len(self._index) else self._end
        if not rows:
            return []
        blob = os.pread(self._f.fileno(), end - rows[0][0], rows[0][0])
        out = []
        for off, _, _ in rows:
            p = off - rows[0][0]
            magic, length, _, _, _ = _HEAD.unpack_from(blob, p)
            out.append((blob[p + _HEAD.size:p + _HEAD.size + length], magic == SEALED))
        return out

    def close(self) -> None:
        self._f.close()
