"""`sls-envelope kms serve` as a process, over raw sockets: malformed and truncated requests get one
log line and no traceback, and SIGTERM finishes the request in flight then exits 0 (issue 15 items 10-11).
The limits themselves (timeouts, connection bound, backlog) are tested on the server base in test_httpd.py."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

AK, SECRET = "LTAI5tCliRoot", "cli-root-secret-456"


def _start(home: Path) -> "tuple[subprocess.Popen[str], int]":
    env = dict(os.environ, SLS_ENVELOPE_KMS_ACCESS_KEY_SECRET=SECRET)
    proc = subprocess.Popen(
        [sys.executable, "-m", "sls_envelope", "--home", str(home), "kms", "serve",
         "--host", "127.0.0.1", "--port", "0", "--access-key-id", AK],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    assert proc.stdout is not None
    match = re.search(r"http://127\.0\.0\.1:(\d+)", proc.stdout.readline())
    assert match
    proc.stdout.readline()
    return proc, int(match.group(1))


def _read_all(sock: socket.socket) -> bytes:
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, socket.timeout):
            return data
        if not chunk:
            return data
        data += chunk


def test_sigterm_finishes_the_request_in_flight_and_exits_0(tmp_path: Path) -> None:
    proc, port = _start(tmp_path)
    try:
        # A truncated request: dispatched never, one log line.
        cut = socket.create_connection(("127.0.0.1", port), timeout=10)
        cut.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
        cut.close()
        # An HTTP/0.9 line: answered at once.
        old = socket.create_connection(("127.0.0.1", port), timeout=10)
        old.sendall(b"GET /\r\n")
        assert _read_all(old).startswith(b"HTTP/1.1 400")
        old.close()
        # A request whose body is still coming when SIGTERM arrives.
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                     b"Content-Length: 6\r\n\r\nKey")
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert proc.poll() is None  # still finishing the request in flight
        sock.sendall(b"Id=")
        reply = _read_all(sock)
        assert reply.startswith(b"HTTP/1.1 400 ") and b"IncompleteSignature" in reply  # answered in full
        assert b"Connection: close" in reply
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.stderr is not None
    stderr = proc.stderr.read()
    assert "Traceback" not in stderr and SECRET not in stderr
    assert len([line for line in stderr.splitlines() if "mid-body" in line]) == 1
