"""A multi-node harness: PostgreSQL from Debian's ``postgresql`` package on a loopback
port, in a temporary directory, run as an unprivileged user (the server refuses root).

Used by tests/test_multinode*.py (session-scoped fixture ``postgres``) and readable as
the recipe of docs/SCALE.md.  ``PostgresServer.restart`` and ``stop`` let tests take the
store away mid-run.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from typing import Iterator, List, Optional

import pytest

from tests.backends import missing_backend

__all__ = ["PostgresServer", "postgres", "free_port"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg_bin() -> Optional[str]:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return os.path.dirname(found[-1])
    initdb = shutil.which("initdb")
    return os.path.dirname(initdb) if initdb else None


class PostgresServer:
    """One PostgreSQL server in a fresh data directory on 127.0.0.1:port."""

    def __init__(self, bindir: str) -> None:
        self.bindir = bindir
        self.port = free_port()
        self.tmp = tempfile.mkdtemp(prefix="sls-env-pg-")
        self.data = os.path.join(self.tmp, "data")
        self._user: Optional[str] = None
        if os.geteuid() == 0:  # initdb and postgres refuse root: run as the 'postgres' user (or nobody)
            for name in ("postgres", "nobody"):
                try:
                    pw = pwd.getpwnam(name)
                except KeyError:
                    continue
                self._user = name
                os.chmod(self.tmp, 0o700)
                os.chown(self.tmp, pw.pw_uid, pw.pw_gid)
                break
        self._as(["initdb", "-D", self.data, "-U", "sls", "--auth=trust", "-E", "UTF8", "--no-sync"], check=True)
        self.start()

    def _as(self, argv: List[str], *, check: bool = False) -> "subprocess.CompletedProcess[str]":
        cmd = [os.path.join(self.bindir, argv[0])] + argv[1:]
        if self._user is not None:
            cmd = ["setpriv", f"--reuid={self._user}", f"--regid={pwd.getpwnam(self._user).pw_gid}",
                   "--clear-groups", "--"] + cmd
        return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=60, cwd=self.tmp)

    @property
    def url(self) -> str:
        return f"postgresql://sls@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        opts = f"-p {self.port} -h 127.0.0.1 -k {self.tmp} -c fsync=off -c full_page_writes=off"
        done = self._as(["pg_ctl", "-D", self.data, "-o", opts, "-l", os.path.join(self.tmp, "log"), "-w",
                         "start"])
        if done.returncode != 0:
            raise RuntimeError(f"postgres did not start: {done.stdout}{done.stderr}")

    def stop(self) -> None:
        self._as(["pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop"])

    def restart(self, down_for: float = 0.0) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    pytest.importorskip  # noqa: B018 - keep pytest referenced for the fixture decorator
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError as exc:
        missing_backend(f"psycopg is not installed ({exc}); install the 'postgres' extra")
    bindir = _pg_bin()
    if bindir is None:
        missing_backend("PostgreSQL is not installed (Debian package 'postgresql')")
        raise AssertionError("unreachable")
    server = PostgresServer(bindir)
    try:
        yield server
    finally:
        server.close()
