"""The hardened HTTP server base (sls_envelope/httpd.py), over raw sockets: issue 15 items 9-11."""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Callable, Iterator, List

import pytest

from sls_envelope.httpd import HttpServer, Limits, Reply, Request

from .servers import read_until_closed


class Recorder:
    def __init__(self) -> None:
        self.requests: List[Request] = []
        self.release = threading.Event()
        self.release.set()
        self.entered = threading.Event()

    def __call__(self, request: Request) -> Reply:
        self.requests.append(request)
        self.entered.set()
        self.release.wait(10)
        return Reply(200, {"Content-Type": "text/plain"}, b"echo:" + request.body)


LIMITS = Limits(read_timeout=0.5, idle_timeout=0.5, max_connections=4, backlog=64, max_body=1024,
                shutdown_grace=5.0)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def server(recorder: Recorder) -> Iterator[HttpServer]:
    srv = HttpServer(("127.0.0.1", 0), recorder, LIMITS).start()
    yield srv
    recorder.release.set()
    srv.stop(grace=2)


def _connect(server: HttpServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    return sock


def _wait_until(done: Callable[[], bool], timeout: float = 5) -> None:
    """Polls done() until it holds or `timeout` seconds pass (the assertion that follows says which)."""
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        time.sleep(0.02)


def _post(body: bytes, length: int, extra: str = "") -> bytes:
    return (f"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: {length}\r\n{extra}\r\n").encode() + body


def test_keep_alive_round_trips_and_one_write(server: HttpServer, recorder: Recorder) -> None:
    sock = _connect(server)
    for i in range(3):
        sock.sendall(_post(b"hi%d" % i, 3))
        reply = sock.recv(65536)  # head and body arrive together: one write of the whole reply
        assert reply.startswith(b"HTTP/1.1 200 ")
        assert reply.endswith(b"echo:hi%d" % i)
    sock.close()
    assert [r.body for r in recorder.requests] == [b"hi0", b"hi1", b"hi2"]
    assert recorder.requests[0].headers["host"] == "a"


def test_truncated_body_is_never_dispatched(server: HttpServer, recorder: Recorder,
                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="sls_envelope.httpd")
    sock = _connect(server)
    sock.sendall(_post(b"abc", 10))
    sock.shutdown(socket.SHUT_WR)
    read_until_closed(sock)
    sock.close()
    _wait_until(lambda: not server.open_connections)
    assert recorder.requests == []
    lines = [r for r in caplog.records if r.name == "sls_envelope.httpd"]
    assert len(lines) == 1 and "mid-body" in lines[0].getMessage()
    assert lines[0].exc_info is None


@pytest.mark.parametrize("raw, status", [
    (b"GET /\r\n", b"400"),  # HTTP/0.9: answered at once, not after a timeout
    (b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n", b"400"),
    (b"POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nab", b"400"),
    (b"POST / HTTP/1.1\r\nContent-Length: 99999\r\n\r\n", b"413"),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", b"501"),
    (b"GET / HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n", b"431"),
])
def test_malformed_requests_get_a_status_and_close(recorder: Recorder, raw: bytes,
                                                   status: bytes) -> None:
    srv = HttpServer(("127.0.0.1", 0), recorder, Limits(read_timeout=60, idle_timeout=60, max_body=1024)).start()
    try:
        sock = _connect(srv)  # 5 s client timeout: an answer only at the 60 s read deadline fails here
        sock.sendall(raw)
        reply = read_until_closed(sock)
    finally:
        srv.stop(grace=1)
    assert reply.startswith(b"HTTP/1.1 " + status), reply[:60]  # refused on sight
    assert recorder.requests == []


def test_slow_sender_is_cut_off_at_the_read_deadline(server: HttpServer) -> None:
    sock = _connect(server)
    sock.settimeout(0.1)
    sock.sendall(b"POST / HTTP/1.1\r\n")
    reply = b""
    for _ in range(100):  # one byte every ~0.2 s: each read is quick, the whole request is not
        try:
            sock.sendall(b"X")
        except OSError:
            pass
        try:
            reply += sock.recv(65536)
        except socket.timeout:
            continue
        except OSError:
            break
        if reply:
            break
    # Without a whole-request deadline no answer would come in these ~20 s (read_timeout is 0.5 s).
    assert reply.startswith(b"HTTP/1.1 408"), reply[:60]


def test_idle_connections_are_closed(server: HttpServer) -> None:
    socks = [_connect(server) for _ in range(3)]
    _wait_until(lambda: server.open_connections >= 3)
    for s in socks:
        assert read_until_closed(s) == b""  # closed by the server after idle_timeout
    _wait_until(lambda: not server.open_connections)
    assert server.open_connections == 0


def test_connections_beyond_the_bound_get_503(server: HttpServer) -> None:
    held = [_connect(server) for _ in range(LIMITS.max_connections)]
    _wait_until(lambda: server.open_connections >= LIMITS.max_connections)
    extra = _connect(server)
    assert read_until_closed(extra).startswith(b"HTTP/1.1 503")
    assert server.open_connections == LIMITS.max_connections
    for s in held:
        s.close()


def test_many_sequential_connects_are_accepted_at_once(server: HttpServer) -> None:
    for _ in range(100):
        sock = _connect(server)
        sock.sendall(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
        assert read_until_closed(sock).startswith(b"HTTP/1.1 200")
        sock.close()


def test_handler_failure_is_one_line_and_500(caplog: pytest.LogCaptureFixture) -> None:
    def broken(request: Request) -> Reply:
        raise RuntimeError("secret detail")

    srv = HttpServer(("127.0.0.1", 0), broken, LIMITS).start()
    try:
        caplog.set_level(logging.WARNING, logger="sls_envelope.httpd")
        sock = _connect(srv)
        sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
        assert read_until_closed(sock).startswith(b"HTTP/1.1 500")
    finally:
        srv.stop(grace=2)
    lines = [r.getMessage() for r in caplog.records if r.name == "sls_envelope.httpd"]
    assert lines == [lines[0]] and "RuntimeError" in lines[0] and "secret" not in lines[0]


def test_stop_finishes_the_request_in_flight(recorder: Recorder) -> None:
    srv = HttpServer(("127.0.0.1", 0), recorder, LIMITS).start()
    recorder.release.clear()
    sock = _connect(srv)
    sock.sendall(_post(b"late", 4))
    assert recorder.entered.wait(5)
    stopper = threading.Thread(target=srv.stop)
    stopper.start()
    time.sleep(0.2)
    with pytest.raises(OSError):  # no longer accepting
        socket.create_connection(("127.0.0.1", srv.port), timeout=1).recv(1)
    recorder.release.set()
    reply = read_until_closed(sock)
    stopper.join(5)
    assert reply.startswith(b"HTTP/1.1 200") and reply.endswith(b"echo:late")
    assert b"Connection: close" in reply
