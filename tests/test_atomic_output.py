"""sls_envelope.atomic_output: whole or nothing, unnamed while written, stale named temporaries swept."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import sls_envelope.atomic_output as atomic_module
from sls_envelope.atomic_output import _open_unnamed, atomic_output, remove_stale_temporaries


def _needs_o_tmpfile(directory: Path) -> None:
    fd = _open_unnamed(str(directory))
    if fd is None:
        pytest.skip(f"O_TMPFILE is not available for {directory} on this platform")
    os.close(fd)


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True)
    return int(proc.stdout)


def test_unnamed_while_written(tmp_path: Path) -> None:
    _needs_o_tmpfile(tmp_path)
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with atomic_output(target) as handle:
        handle.write(b"new data")
        handle.flush()
        assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]  # nothing named but the old file
        assert target.read_bytes() == b"old"
    assert target.read_bytes() == b"new data"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


@pytest.mark.parametrize("unnamed", [True, False])
def test_failure_leaves_nothing(tmp_path: Path, unnamed: bool) -> None:
    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError), atomic_output(target, unnamed=unnamed) as handle:
        handle.write(b"partial")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    target.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt), atomic_output(target, unnamed=unnamed) as handle:
        handle.write(b"partial")
        raise KeyboardInterrupt
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"] and target.read_bytes() == b"old"


def test_named_fallback_forced_by_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLS_ENVELOPE_NAMED_TEMP", "1")
    target = tmp_path / "out.bin"
    with atomic_output(target) as handle:
        handle.write(b"data")
        names = [p.name for p in tmp_path.iterdir()]
        assert len(names) == 1 and names[0].startswith(f".out.bin.sls-envelope-{os.getpid()}-")
        assert stat.S_IMODE((tmp_path / names[0]).stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"] and target.read_bytes() == b"data"


def test_stale_temporaries_of_dead_writers_are_removed(tmp_path: Path) -> None:
    dead = _dead_pid()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        stale = tmp_path / f".a.log.sls-envelope-{dead}-0123456789abcdef.part"
        kept_live = tmp_path / f".b.log.sls-envelope-{live.pid}-0123456789abcdef.part"
        mine = tmp_path / f".c.log.sls-envelope-{os.getpid()}-0123456789abcdef.part"
        other = tmp_path / f".d.log.{dead}.part"  # not our naming: never touched
        for path in (stale, kept_live, mine, other):
            path.write_bytes(b"secret")
        assert remove_stale_temporaries(str(tmp_path)) == 1
        assert not stale.exists() and kept_live.exists() and mine.exists() and other.exists()
        # and atomic_output sweeps on its way in
        stale.write_bytes(b"secret")
        with atomic_output(tmp_path / "x", unnamed=True) as handle:
            handle.write(b"x")
        assert not stale.exists() and kept_live.exists()
    finally:
        live.kill()
        live.wait()


def test_exclusive_sweep_removes_every_temporary_of_ours(tmp_path: Path) -> None:
    """Under a lock every writer takes, a temporary is a dead writer's whatever pid it names."""
    mine = tmp_path / f".a.log.sls-envelope-{os.getpid()}-0123456789abcdef.part"
    other = tmp_path / f".d.log.{os.getpid()}.part"  # not our naming: never touched
    for path in (mine, other):
        path.write_bytes(b"secret")
    assert remove_stale_temporaries(str(tmp_path)) == 0
    assert remove_stale_temporaries(str(tmp_path), exclusive=True) == 1
    assert not mine.exists() and other.exists()


def test_a_refused_linkat_copies_the_unnamed_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No /proc or a sandbox refusing linkat: the complete unnamed file is copied to a named
    temporary (owner-only) and renamed, rather than the write failing."""
    _needs_o_tmpfile(tmp_path)
    created = []
    real_open_named = atomic_module._open_named

    def refuse_link(fd: int, directory: str, name: str) -> None:
        raise OSError(errno.EXDEV, "linkat refused")

    def open_named(directory: str, name: str) -> tuple[str, int]:
        tmp, fd = real_open_named(directory, name)
        created.append(stat.S_IMODE(os.fstat(fd).st_mode))
        return tmp, fd

    monkeypatch.setattr(atomic_module, "_link_unnamed", refuse_link)
    monkeypatch.setattr(atomic_module, "_open_named", open_named)
    payload = os.urandom(3 << 20)  # more than one copied chunk
    with atomic_output(tmp_path / "out.bin") as handle:
        handle.write(payload)
    assert created == [0o600] and (tmp_path / "out.bin").read_bytes() == payload
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


@pytest.mark.parametrize("code,raised", [(errno.EIO, True), (errno.EINVAL, False)])
def test_directory_fsync_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, raised: bool) -> None:
    """A failed write-back of the directory is an error; a filesystem that cannot sync one is not."""
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(code, os.strerror(code))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    if raised:
        with pytest.raises(OSError) as info, atomic_output(tmp_path / "out.bin") as handle:
            handle.write(b"x")
        assert info.value.errno == code
    else:
        with atomic_output(tmp_path / "out.bin") as handle:
            handle.write(b"x")
    assert (tmp_path / "out.bin").read_bytes() == b"x"  # renamed either way: only its durability is in doubt
