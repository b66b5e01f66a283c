"""A small hardened HTTP/1.1 server for local services (``kms serve``, the SLS endpoint).

It knows nothing of what it serves: a callback gets one complete request (method, target, headers,
body) and returns (status, headers, body). What it adds over ``http.server`` (issue 15 items 9-11):

* ``TCP_NODELAY`` on every accepted socket and each response written with one ``sendall`` of
  head + body, so Nagle's algorithm never meets the client's delayed ACK (~40 ms a request).
* A deadline for reading each request (slow senders are cut off however they trickle bytes), an idle
  timeout between keep-alive requests, a real listen backlog and a bound on concurrent connections:
  beyond it a connection gets ``503`` and is closed at once, with no thread made for it.
* Content-Length is required for a body and checked; a request whose body is cut short is never given
  to the callback. Anything that is not HTTP/1.0 or 1.1 (e.g. an HTTP/0.9 line) gets 400 at once.
* A failed connection logs one line (no traceback); a callback that raises gives 500 and one line.
* ``stop()`` stops accepting, lets requests in flight finish (up to a grace period) and closes idle
  keep-alive connections; ``install_sigterm()`` makes SIGTERM do that.

Typical use, from a test (port 0 picks a free port)::

    server = HttpServer(("127.0.0.1", 0), callback)
    server.start()          # serves in a background thread
    ... server.endpoint ...
    server.stop()
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import socket
import socketserver
import threading
import time
from http import HTTPStatus
from types import FrameType
from typing import Any, Callable, Dict, List, Mapping, Optional, Set, Tuple

log = logging.getLogger(__name__)

__all__ = ["Callback", "HttpServer", "Limits", "Reply", "Request"]


@dataclasses.dataclass(frozen=True)
class Request:
    method: str
    target: str
    headers: Mapping[str, str]  # names lower-cased; repeated headers joined with ","
    body: bytes
    client: str  # the peer's address, for logs

    def __repr__(self) -> str:  # headers and body may hold credentials: never print them
        return f"Request({self.method} from {self.client}, {len(self.body)} body bytes)"


@dataclasses.dataclass(frozen=True)
class Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes


Callback = Callable[[Request], Reply]


@dataclasses.dataclass(frozen=True)
class Limits:
    read_timeout: float = 10.0  # whole request (head and body) must arrive within this
    idle_timeout: float = 30.0  # a keep-alive connection with no new request is closed after this
    max_connections: int = 128  # open connections at once; beyond, 503 and close
    backlog: int = 128  # listen(2) queue
    max_head: int = 16 * 1024  # request line + headers
    max_body: int = 1024 * 1024
    shutdown_grace: float = 10.0  # stop() waits this long for requests in flight


class _Refused(Exception):
    """The request cannot be read: answer ``status`` (if any) and close the connection."""

    def __init__(self, status: Optional[int], reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _reply_bytes(status: int, headers: Mapping[str, str], body: bytes, close: bool) -> bytes:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Status"
    lines = [f"HTTP/1.1 {status} {phrase}"]
    for name, value in headers.items():
        if name.lower() not in ("content-length", "connection"):
            lines.append(f"{name}: {value}")
    lines.append(f"Content-Length: {len(body)}")
    lines.append("Connection: close" if close else "Connection: keep-alive")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _error_reply(status: int, close: bool = True) -> bytes:
    return _reply_bytes(status, {"Content-Type": "text/plain"}, f"{status}\n".encode(), close)


class _Connection:
    """One accepted socket, served by its own thread until closed."""

    def __init__(self, server: "HttpServer", sock: socket.socket, peer: str) -> None:
        self.server = server
        self.sock = sock
        self.peer = peer
        self.buffer = bytearray()
        self.busy = False  # between the first byte of a request and its reply being sent
        self.keep_alive = False

    def _recv_into_buffer(self, deadline: float) -> bool:
        """Append what arrives before ``deadline``; False when the peer closed."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout()
        self.sock.settimeout(remaining)
        chunk = self.sock.recv(65536)
        if not chunk:
            return False
        self.buffer += chunk
        return True

    def _read_request(self) -> Optional[Request]:
        limits = self.server.limits
        # Wait for the first byte of a request under the idle timeout...
        if not self.buffer:
            try:
                if not self._recv_into_buffer(time.monotonic() + limits.idle_timeout):
                    return None  # clean close between requests
            except socket.timeout:
                return None
            except OSError:
                return None
        self.busy = True
        # ... then the whole request under the read deadline.
        deadline = time.monotonic() + limits.read_timeout
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end >= 0:
                break
            if len(self.buffer) > limits.max_head:
                raise _Refused(431, "request head too large")
            if b"\n" in self.buffer and not self.buffer.split(b"\n", 1)[0].rstrip(b"\r").endswith(
                    (b"HTTP/1.0", b"HTTP/1.1")):
                raise _Refused(400, "not an HTTP/1.x request line")
            if not self._recv_into_buffer(deadline):
                raise _Refused(None, "peer closed mid-head" if self.buffer else "peer closed")
        if end > limits.max_head:
            raise _Refused(431, "request head too large")
        head = self.buffer[:end].decode("latin-1")
        del self.buffer[:end + 4]
        request_line, _, header_lines = head.partition("\r\n")
        parts = request_line.split(" ")
        if len(parts) != 3 or parts[2] not in ("HTTP/1.0", "HTTP/1.1") or not parts[0].isalpha():
            raise _Refused(400, "malformed request line")
        method, target, version = parts
        # Built as the final mapping at once (a repeated header joined with ","), with the
        # Content-Length values kept apart: this loop runs for every header of every request.
        joined: Dict[str, str] = {}
        lengths: List[str] = []
        for line in header_lines.split("\r\n") if header_lines else ():
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip() or " " in name:
                raise _Refused(400, "malformed header line")
            name = name.lower()
            value = value.strip()
            if name in joined:
                joined[name] += "," + value
            else:
                joined[name] = value
            if name == "content-length":
                lengths.append(value)
        if "transfer-encoding" in joined:
            raise _Refused(501, "Transfer-Encoding is not supported")
        if len(set(lengths)) > 1 or (lengths and not lengths[0].isdigit()):
            raise _Refused(400, "bad Content-Length")
        length = int(lengths[0]) if lengths else 0
        if length > limits.max_body:
            raise _Refused(413, "body too large")
        if joined.get("expect", "").lower() == "100-continue" and len(self.buffer) < length:
            self.sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        while len(self.buffer) < length:
            if not self._recv_into_buffer(deadline):
                raise _Refused(None, f"peer closed mid-body ({len(self.buffer)} of {length} bytes)")
        body = bytes(self.buffer[:length])
        del self.buffer[:length]
        connection = joined.get("connection", "").lower()
        self.keep_alive = ("close" not in connection) if version == "HTTP/1.1" else ("keep-alive" in connection)
        return Request(method, target, joined, body, self.peer)

    def run(self) -> None:
        try:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            while not self.server.stopping:
                try:
                    request = self._read_request()
                except _Refused as refused:
                    log.warning("connection from %s: %s", self.peer, refused.reason)
                    if refused.status is not None:
                        self._refuse(refused.status)
                    return
                except socket.timeout:
                    log.warning("connection from %s: request not complete within %.0f s", self.peer,
                                self.server.limits.read_timeout)
                    self._refuse(408)
                    return
                except OSError as exc:
                    log.warning("connection from %s: %s", self.peer, exc.strerror or type(exc).__name__)
                    return
                if request is None:
                    return
                try:
                    reply = self.server.callback(request)
                    close = not self.keep_alive or self.server.stopping  # after: stop() may come meanwhile
                    data = _reply_bytes(reply.status, reply.headers, reply.body, close)
                except Exception as exc:  # a bug in the callback: one line, no traceback, no details out
                    log.error("connection from %s: handler failed: %s", self.peer, type(exc).__name__)
                    data, close = _error_reply(500), True
                if not self._send(data) or close:
                    return
                self.busy = False
        finally:
            self.busy = False
            self.server._forget(self)
            try:
                self.sock.close()
            except OSError:
                pass

    def _send(self, data: bytes) -> bool:
        try:
            self.sock.settimeout(self.server.limits.read_timeout)
            self.sock.sendall(data)  # head and body in one write
            return True
        except OSError as exc:
            log.warning("connection from %s: reply not sent: %s", self.peer,
                        exc.strerror or type(exc).__name__)
            return False

    def _refuse(self, status: int) -> None:
        """Send an error reply, then read (and drop) what the peer still sends for up to a second
        before closing: closing with unread input sends a TCP RST that can destroy the reply
        before the peer reads it."""
        if not self._send(_error_reply(status)):
            return
        try:
            self.sock.shutdown(socket.SHUT_WR)
            self.sock.settimeout(0.2)
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline and self.sock.recv(65536):
                pass
        except OSError:
            pass

    def wake_if_idle(self) -> None:
        """Stop waiting for a next request (used by stop())."""
        if not self.busy:
            try:
                self.sock.shutdown(socket.SHUT_RD)
            except OSError:
                pass


class _Listener(socketserver.TCPServer):
    allow_reuse_address = True

    def __init__(self, address: Tuple[str, int], owner: "HttpServer", backlog: int, family: int) -> None:
        self.address_family = family
        self.request_queue_size = backlog
        self.owner = owner
        super().__init__(address, socketserver.BaseRequestHandler)

    def process_request(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        self.owner._accept(request, client_address)

    def shutdown_request(self, request: object) -> None:  # the connection thread closes it
        pass


class HttpServer:
    """Serve ``callback`` on ``address`` ((host, port); port 0 picks a free one)."""

    def __init__(self, address: Tuple[str, int], callback: Callback, limits: Optional[Limits] = None) -> None:
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        limits = limits or Limits()
        self.limits = limits
        self.callback = callback
        self.stopping = False
        self._lock = threading.Lock()
        self._connections: Set[_Connection] = set()
        self._idle = threading.Condition(self._lock)
        self._listener = _Listener(address, self, limits.backlog, family)
        self._thread: Optional[threading.Thread] = None
        self._serving = False

    # -- addresses -------------------------------------------------------------------------------

    @property
    def server_address(self) -> Tuple[str, int]:
        host, port = self._listener.server_address[:2]
        name = host.decode("ascii") if isinstance(host, bytes) else str(host)
        return name, int(port)

    @property
    def port(self) -> int:
        return self.server_address[1]

    @property
    def endpoint(self) -> str:
        """``host:port``."""
        host, port = self.server_address
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(endpoint={self.endpoint!r})"

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._connections)

    # -- connections -----------------------------------------------------------------------------

    def _accept(self, sock: socket.socket, client_address: object) -> None:
        peer = client_address[0] if isinstance(client_address, tuple) else str(client_address)
        with self._lock:
            full = len(self._connections) >= self.limits.max_connections or self.stopping
            if not full:
                connection = _Connection(self, sock, str(peer))
                self._connections.add(connection)
        if full:
            log.warning("connection from %s: refused, %d connections open", peer, self.limits.max_connections)
            try:  # never block the accept loop on this peer: the short reply fits the send buffer
                sock.setblocking(False)
                sock.send(_error_reply(503))
            except OSError:
                pass
            finally:
                sock.close()
            return
        threading.Thread(target=connection.run, name=f"httpd-{peer}", daemon=True).start()

    def _forget(self, connection: _Connection) -> None:
        with self._lock:
            self._connections.discard(connection)
            self._idle.notify_all()

    # -- running ---------------------------------------------------------------------------------

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """Accept connections until stop() (or shutdown()) is called from another thread."""
        self._serving = True
        self._listener.serve_forever(poll_interval)

    def serve_until_stopped(self, ready: Optional[Callable[[Any], None]] = None) -> None:
        """What a server command does: SIGTERM handled (installed before ``ready`` announces the
        server, so a SIGTERM right after the announcement drains too), serve until Ctrl-C or
        SIGTERM, then stop accepting and finish the requests in flight."""
        self.install_sigterm()
        if ready is not None:
            ready(self)
        try:
            self.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            self.server_close()
            self.drain()

    def start(self) -> "HttpServer":
        """serve_forever() in a daemon thread; returns self."""
        self._thread = threading.Thread(target=self.serve_forever, name="httpd-accept", daemon=True)
        self._thread.start()
        return self

    def shutdown(self) -> None:
        """Stop accepting (from another thread than serve_forever's); connections are left as they are."""
        if self._serving:
            self._listener.shutdown()
            self._serving = False

    def drain(self, grace: Optional[float] = None) -> bool:
        """Close idle connections and wait for requests in flight; True when all closed in time."""
        grace = self.limits.shutdown_grace if grace is None else grace
        deadline = time.monotonic() + grace
        with self._lock:
            self.stopping = True
            for connection in list(self._connections):
                connection.wake_if_idle()
            while self._connections:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    log.warning("shutdown: %d connections still busy after %.0f s", len(self._connections), grace)
                    return False
                self._idle.wait(min(remaining, 0.2))
                for connection in list(self._connections):
                    connection.wake_if_idle()
        return True

    def server_close(self) -> None:
        self._listener.server_close()

    def stop(self, grace: Optional[float] = None) -> bool:
        """Graceful stop: no new connections, requests in flight finish, then the socket closes."""
        self.shutdown()
        self.stopping = True
        self.server_close()  # new connects are refused by the kernel from here on
        done = self.drain(grace)
        if self._thread is not None:
            self._thread.join(5)
        return done

    def install_sigterm(self) -> None:
        """Make SIGTERM stop serve_forever() (running in the main thread) so the caller can drain()."""

        def on_term(signum: int, frame: Optional[FrameType]) -> None:
            # shutdown() waits for serve_forever to return: never call it from that thread itself.
            threading.Thread(target=self.shutdown, daemon=True).start()

        signal.signal(signal.SIGTERM, on_term)
