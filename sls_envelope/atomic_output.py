"""Output files that appear whole or not at all, and leave nothing behind when the writer dies.

Where the platform allows it (Linux 3.11+ with a filesystem that supports ``O_TMPFILE``:
ext4, xfs, btrfs, tmpfs...), the data is written to an *unnamed* file in the target's
directory (open(2), ``O_TMPFILE``) that is linked into the directory only when complete
(linkat(2) through ``/proc/self/fd``, ``AT_SYMLINK_FOLLOW``).  A process killed mid-write
(SIGKILL, power loss) leaves no file: the kernel frees the inode when its last descriptor
closes.  The link goes to a named temporary that is then renamed over the target, since
linkat cannot replace an existing name; that name is the fallback's, so a kill in that
instant is cleaned up the same way.

Elsewhere (no ``O_TMPFILE``: EOPNOTSUPP from the filesystem, ENOENT/EISDIR/EINVAL from an
older kernel), the data goes to a named temporary ``.<name>.sls-envelope-<pid>-<random>.part``
(mode 0600).  Every run first removes such files in the directory whose writer process no
longer exists (``kill(pid, 0)`` fails with ESRCH) and that belong to the same user; a live
writer's file is never touched.  A reused pid only keeps a stale file longer, never removes a live one.

A caller holding a lock that every writer into the directory takes while writing (the LocalKms
state store does) sweeps with ``exclusive=True``: every temporary there is then a dead writer's,
even one whose pid was reused, and is removed at once (it may hold key material).

Where linkat is refused (no ``/proc``, a sandbox: ENOENT/EXDEV/EPERM/EOPNOTSUPP), the complete
unnamed file is copied to a named temporary instead.  Temporaries are created with mode 0600
(owner only) from the start, never widened.  A directory fsync that fails with a real error
(EIO...) is raised; one the platform or filesystem cannot do is skipped.

``SLS_ENVELOPE_NAMED_TEMP=1`` in the environment (or ``unnamed=False``) forces the named
fallback, so it can be tested on a platform that has ``O_TMPFILE``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
from typing import BinaryIO, Iterator, Optional, Union

__all__ = ["FORCE_NAMED_ENV", "atomic_output", "remove_stale_temporaries", "temporary_name"]

#: Set to 1 to use the named-temporary fallback even where O_TMPFILE works.
FORCE_NAMED_ENV = "SLS_ENVELOPE_NAMED_TEMP"

_TEMP_RE = re.compile(r"^\..+\.sls-envelope-(\d+)-[0-9a-f]{16}\.part$")
#: open(O_TMPFILE) errors that mean "not supported here" (ENOENT, EISDIR, EINVAL: kernels that
#: predate it; EOPNOTSUPP/ENOTSUP: the filesystem): fall back to a named temporary.
_NO_TMPFILE = (errno.EOPNOTSUPP, errno.ENOTSUP, errno.EISDIR, errno.EINVAL, errno.ENOENT)
#: linkat errors that mean "cannot link /proc/self/fd/N here" (no /proc, a sandbox): copy instead.
_NO_LINK = (errno.ENOENT, errno.EXDEV, errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP)
#: fsync errors of a directory that mean "this filesystem cannot sync a directory".
_NO_DIR_FSYNC = (errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP)


def temporary_name(name: str) -> str:
    """The named temporary for ``name``: hidden, with this process's pid (for the stale sweep)."""
    return f".{name}.sls-envelope-{os.getpid()}-{secrets.token_hex(8)}.part"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    return True


def remove_stale_temporaries(directory: str, *, exclusive: bool = False) -> int:
    """Remove our named temporaries in ``directory`` whose writer is dead; how many were removed.

    ``exclusive``: the caller holds a lock that every writer into ``directory`` holds while it
    writes, so every temporary there is a dead writer's, whatever its pid (reused or ours)."""
    removed = 0
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return 0
    for entry in entries:
        match = _TEMP_RE.match(entry.name)
        if not match:
            continue
        pid = int(match.group(1))
        if not exclusive and (pid == os.getpid() or _alive(pid)):
            continue
        with contextlib.suppress(OSError):
            info = entry.stat(follow_symlinks=False)
            if info.st_uid == os.geteuid():
                os.unlink(entry.path)
                removed += 1
    return removed


def _open_unnamed(directory: str) -> Optional[int]:
    """A descriptor of an unnamed file in ``directory``, or None where that is not possible."""
    flag = getattr(os, "O_TMPFILE", None)
    if flag is None or not os.path.isdir("/proc/self/fd"):
        return None
    try:
        # O_RDWR, not O_WRONLY: where linkat is refused, the file is read back into a named copy.
        return os.open(directory, flag | os.O_RDWR | getattr(os, "O_CLOEXEC", 0), 0o600)
    except OSError as exc:
        if exc.errno in _NO_TMPFILE:
            return None
        raise  # anything else (EACCES...) is real


def _open_named(directory: str, name: str) -> tuple[str, int]:
    """A new named temporary for ``name`` in ``directory``, owner-only from creation: (path, fd)."""
    tmp = os.path.join(directory, temporary_name(name))
    return tmp, os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)


def _link_unnamed(fd: int, directory: str, name: str) -> None:
    """Give the unnamed file ``fd`` the name ``directory/name``: linkat(2) with AT_SYMLINK_FOLLOW.

    os.link calls plain link(2), which does not follow the /proc symlink (EXDEV), unless a
    directory fd is given; then it calls linkat with AT_SYMLINK_FOLLOW."""
    dir_fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.link(f"/proc/self/fd/{fd}", name, dst_dir_fd=dir_fd, follow_symlinks=True)
    finally:
        os.close(dir_fd)


def _name_unnamed(fd: int, directory: str, name: str, durable: bool) -> str:
    """The path of a named temporary holding the complete unnamed file ``fd``: a link to it, or
    where linkat is refused a copy of it (so a sandbox without /proc still works)."""
    tmp_name = temporary_name(name)
    try:
        _link_unnamed(fd, directory, tmp_name)
        return os.path.join(directory, tmp_name)
    except OSError as exc:
        if exc.errno not in _NO_LINK:
            raise
    tmp, copy_fd = _open_named(directory, name)
    try:
        with os.fdopen(copy_fd, "wb") as copy:
            offset = 0
            while True:
                chunk = os.pread(fd, 1 << 20, offset)
                if not chunk:
                    break
                copy.write(chunk)
                offset += len(chunk)
            copy.flush()
            if durable:
                os.fsync(copy.fileno())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return tmp


def _fsync_directory(directory: str) -> None:
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:  # not every platform can open a directory
        return
    try:
        os.fsync(dir_fd)
    except OSError as exc:
        if exc.errno not in _NO_DIR_FSYNC:
            raise  # a failed write-back (EIO...): the rename may not survive a crash
    finally:
        os.close(dir_fd)


@contextlib.contextmanager
def atomic_output(path: Union[str, "os.PathLike[str]"], *, durable: bool = True,
                  unnamed: Optional[bool] = None) -> Iterator[BinaryIO]:
    """A file that appears at ``path`` only if the block completes.

    On any exception nothing is left and ``path`` is as it was; if the process is killed,
    nothing is left where ``O_TMPFILE`` works, and the next run removes the named temporary
    otherwise.  ``durable`` fsyncs the file and the directory.  ``unnamed=False`` (or
    ``SLS_ENVELOPE_NAMED_TEMP=1``) forces the named fallback."""
    target = os.path.abspath(os.fspath(path))
    directory, name = os.path.split(target)
    if unnamed is None:
        unnamed = os.environ.get(FORCE_NAMED_ENV, "") not in ("1", "true", "yes")
    remove_stale_temporaries(directory)
    fd = _open_unnamed(directory) if unnamed else None
    tmp: Optional[str] = None
    if fd is None:
        tmp, fd = _open_named(directory, name)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
            if tmp is None:
                tmp = _name_unnamed(handle.fileno(), directory, name, durable)
        os.replace(tmp, target)
    except BaseException:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        raise
    if durable:
        _fsync_directory(directory)
