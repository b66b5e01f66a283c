"""One JSON document in one owner-only file, shared by threads and processes.

This is LocalKms's persistence, apart from its KMS and RAM logic:

* **Locking.**  Threads share a re-entrant lock; processes sharing the directory take an
  exclusive ``flock`` on a lock file, held by the outermost holder for the whole
  operation, so no process loses another's update.
* **Reload.**  On taking the lock, the file is read again if another process replaced it
  since this one last read or wrote it (inode, mtime, size); if an operation fails after
  changing the state in memory but before saving it, memory is reloaded from the file.
* **Validation.**  Every read is checked whole by the owner's validator; a file of the
  wrong shape is refused with one line naming it and what is wrong, and never rewritten.
* **Atomic save.**  :func:`sls_envelope.atomic_output.atomic_output` writes the new
  document to an *unnamed* owner-only file (Linux ``O_TMPFILE``), fsyncs it, gives it a
  temporary name with ``linkat``, renames it over the file and fsyncs the directory.  A
  writer killed while writing leaves nothing; one killed in the microseconds between
  ``linkat`` and ``rename`` (or on a platform without ``O_TMPFILE``, where a named
  temporary file is used) leaves a temporary file, which the next process to open the
  store removes: writers write only while holding the exclusive lock, so a temporary file
  found by the lock's holder belongs to a writer that died, whatever its pid.  The
  temporary files hold the whole state (key material included), hence their removal
  rather than leaving them for an operator to find.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import threading
from typing import Any, Callable, Dict, Optional, Tuple

from ..atomic_output import atomic_output, remove_stale_temporaries

__all__ = ["JsonFileStore"]

#: Called with the parsed document and the file's path; raises ValueError naming what is wrong.
Validator = Callable[[Any, str], None]


class JsonFileStore:
    """The document ``<directory>/<file_name>`` guarded by ``<directory>/<lock_name>``.

    ``load_into`` receives every document read (after validation); ``dump`` returns the
    document to write.  With ``directory=None`` nothing is persisted and the lock is a
    plain re-entrant thread lock.  ``legacy_temp_prefix``: temporaries named
    ``<prefix><pid>-<hex>.tmp`` by releases before atomic_output wrote this file are removed
    on open like today's.
    """

    def __init__(
        self,
        directory: Optional[str],
        *,
        file_name: str,
        lock_name: str,
        legacy_temp_prefix: str,
        validate: Validator,
        load_into: Callable[[Dict[str, Any]], None],
        dump: Callable[[], Dict[str, Any]],
    ) -> None:
        self._thread_lock = threading.RLock()
        self._depth = 0  # nesting of `lock` in the thread that holds it
        self._lock_fd: Optional[int] = None
        self._seen: Optional[Tuple[int, int, int]] = None  # (inode, mtime_ns, size) last read or written
        self.dir = os.path.abspath(directory) if directory is not None else None
        self._path = None if self.dir is None else os.path.join(self.dir, file_name)
        self._lock_path = None if self.dir is None else os.path.join(self.dir, lock_name)
        self._lock = _Lock(self)
        self._legacy_temp_prefix = legacy_temp_prefix
        self._validate = validate
        self._load_into = load_into
        self._dump = dump
        #: True when the directory cannot be written (a read-only mount or home): the state
        #: is read under a shared lock (or none, if no lock file can be opened) and every
        #: change is refused with one line; reading commands keep working.
        self.read_only = False
        if self.dir is not None:
            os.makedirs(self.dir, mode=0o700, exist_ok=True)
            try:
                os.chmod(self.dir, 0o700)
            except OSError as exc:
                if exc.errno not in _READ_ONLY_ERRNOS:
                    raise

    @property
    def path(self) -> Optional[str]:
        return self._path

    @property
    def lock(self) -> "_Lock":
        """Threads: a re-entrant lock.  Processes: an exclusive flock taken by the
        outermost holder, which also reloads what another process wrote since."""
        return self._lock

    def _acquire(self) -> None:
        self._thread_lock.acquire()
        self._depth += 1
        try:
            if self._depth == 1 and self.dir is not None:
                self._lock_file()
                try:
                    if self._seen is not None and self._signature() != self._seen:
                        self.load()
                except BaseException:
                    self._unlock_file()
                    raise
        except BaseException:
            self._depth -= 1
            self._thread_lock.release()
            raise

    def _release(self, failed: bool) -> None:
        outermost = self._depth == 1 and self.dir is not None
        try:
            if failed and outermost:
                # Whatever the failed operation changed in memory but did not save
                # (a full disk, say) is dropped: memory follows the file.
                self.load()
        finally:
            if outermost:
                self._unlock_file()
            self._depth -= 1
            self._thread_lock.release()

    def open(self) -> bool:
        """Under the lock: remove dead writers' temporaries, then load; False if no file yet."""
        if self.dir is None:
            return False
        with self.lock:
            if not self.read_only:
                assert self._lock_fd is not None  # every writer waits for this lock: none is writing
                remove_stale_temporaries(self.dir, exclusive=True)
                for name in os.listdir(self.dir):
                    if name.startswith(self._legacy_temp_prefix) and name.endswith(".tmp"):
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(os.path.join(self.dir, name))
            return self.load()

    def load(self) -> bool:
        """Read, validate and hand over the document; False if there is no file."""
        path = self.path
        if path is None:
            return False
        try:
            with open(path, "rb") as handle:
                if not self.read_only:
                    os.fchmod(handle.fileno(), 0o600)
                info = os.fstat(handle.fileno())
                raw = handle.read()
        except FileNotFoundError:
            return False
        try:
            document = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise ValueError(f"{path}: not a JSON document ({type(exc).__name__})") from None
        self._validate(document, path)
        self._load_into(document)
        self._seen = (info.st_ino, info.st_mtime_ns, info.st_size)
        return True

    def save(self) -> None:
        """Write the document atomically (see the module docstring)."""
        if self.dir is None:
            return
        with self.lock:
            if self.read_only:
                raise OSError(errno.EROFS, f"cannot change the LocalKms state: {self.dir} is read-only "
                              "(reading commands work; this one writes)", self.path)
            payload = json.dumps(self._dump(), sort_keys=True).encode("utf-8")
            assert self.path is not None
            with atomic_output(self.path) as handle:
                handle.write(payload)
            self._seen = self._signature()

    # ---- internals -------------------------------------------------------------------------------

    def _lock_file(self) -> None:
        import fcntl

        assert self.dir is not None
        lock_path = self._lock_path
        assert lock_path is not None
        mode = fcntl.LOCK_EX
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            if exc.errno not in _READ_ONLY_ERRNOS:
                raise
            # A read-only home: read under a shared lock (writers elsewhere hold it
            # exclusively while they write), or with none if the lock file is absent or not
            # ours to open, then refuse every change (save).
            self.read_only = True
            try:
                fd = os.open(lock_path, os.O_RDONLY)
            except FileNotFoundError:
                return
            except PermissionError:
                raise PermissionError(errno.EACCES, "cannot take the LocalKms lock (permission denied: "
                                      "is this home another user's?)", lock_path) from None
            mode = fcntl.LOCK_SH
        try:
            fcntl.flock(fd, mode)
        except BaseException:
            os.close(fd)
            raise
        self._lock_fd = fd

    def _unlock_file(self) -> None:
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            os.close(fd)  # closing releases the flock

    def _signature(self) -> Optional[Tuple[int, int, int]]:
        assert self.path is not None
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (info.st_ino, info.st_mtime_ns, info.st_size)


class _Lock:
    """JsonFileStore.lock: one context-manager object per store, not a generator-based one per
    use: every KMS call takes the lock, and ``kms serve`` answers hundreds a second (issue 15
    item 9)."""

    __slots__ = ("_store",)

    def __init__(self, store: JsonFileStore) -> None:
        self._store = store

    def __enter__(self) -> None:
        self._store._acquire()

    def __exit__(self, exc_type: Optional[type], exc: Optional[BaseException], tb: Any) -> None:
        self._store._release(exc_type is not None)


#: What a read-only directory or file answers a write: EROFS (read-only mount), EACCES/EPERM
#: (no write permission).
_READ_ONLY_ERRNOS = (errno.EROFS, errno.EACCES, errno.EPERM)
