"""`sls-envelope kms serve` as a process, over raw sockets: malformed and truncated requests get one
log line and no traceback, and SIGTERM finishes the request in flight then exits 0 (issue 15 items 10-11).
The limits themselves (timeouts, connection bound, backlog) are tested on the server base in test_httpd.py."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

from .servers import KMS_SERVE_SECRET as SECRET, read_until_closed, start_kms_serve

def test_sigterm_finishes_the_request_in_flight_and_exits_0(tmp_path: Path) -> None:
    proc, endpoint, _ = start_kms_serve(tmp_path)
    port = int(endpoint.rsplit(":", 1)[1])
    try:
        # A truncated request: dispatched never, one log line.
        cut = socket.create_connection(("127.0.0.1", port), timeout=10)
        cut.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
        cut.close()
        # An HTTP/0.9 line: answered at once.
        old = socket.create_connection(("127.0.0.1", port), timeout=10)
        old.sendall(b"GET /\r\n")
        assert read_until_closed(old).startswith(b"HTTP/1.1 400")
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
        reply = read_until_closed(sock)
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
