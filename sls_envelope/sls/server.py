"""HTTP glue for SlsApi: a threaded http.server that verifies the SLS signature, takes
the project from the Host header (the SDK sends ``<project>.<endpoint host>``), and
answers every SlsEnvelopeError as SLS does (JSON errorCode/errorMessage, its status).
Thin on purpose: the hardened server module (sls_envelope/httpd.py, branch kms-server)
is to replace ThreadingHTTPServer here."""

from __future__ import annotations

import json
import threading
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ..exceptions import SlsEnvelopeError
from . import auth, wire
from .api import SlsApi

__all__ = ["SlsServer"]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Http

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _serve(self) -> None:
        status, headers, body = 500, dict[str, str](), b""
        try:
            length = int(self.headers.get("Content-Length", "0") or 0)
            if length < 0 or length > wire.MAX_BODY:
                raise wire.WireError("the body is larger than SLS allows", code="PostBodyTooLarge", http_status=413)
            data = self.rfile.read(length) if length else b""
            if len(data) != length:
                raise wire.WireError("the body is shorter than Content-Length")
            url = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
            hdrs = {k: v for k, v in self.headers.items()}
            auth.verify(self.command, url.path, query, hdrs, data, self.server.keys)
            host = self.headers.get("Host", "").rsplit(":", 1)[0] if self.headers.get("Host", "").count(":") == 1 \
                else self.headers.get("Host", "")
            project = host.split(".", 1)[0] if host.count(".") > 3 or not host[:1].isdigit() and "." in host else ""
            status, headers, body = self.server.api.handle(self.command, project, url.path, query, hdrs, data)
        except SlsEnvelopeError as exc:
            status = exc.http_status
            body = json.dumps({"errorCode": exc.code, "errorMessage": str(exc)}).encode()
            headers = {"Content-Type": "application/json"}
        except Exception:  # noqa: BLE001 - a bug of ours: 500 and no details to the client
            status, body = 500, json.dumps({"errorCode": "InternalServerError",
                                            "errorMessage": "internal error"}).encode()
            headers = {"Content-Type": "application/json"}
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("x-log-requestid", uuid.uuid4().hex.upper())
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = _serve


class _Http(ThreadingHTTPServer):
    daemon_threads = True
    api: SlsApi
    keys: dict[str, str]


class SlsServer:
    """The endpoint on (host, port); port 0 picks one.  ``keys``: AccessKeyId -> secret."""

    def __init__(self, api: SlsApi, keys: dict[str, str], host: str = "127.0.0.1", port: int = 0) -> None:
        self._http = _Http((host, port), _Handler)
        self._http.api = api
        self._http.keys = dict(keys)
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._http.server_address[:2]
        return str(host), int(port)

    def start(self) -> SlsServer:
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._http.serve_forever()

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()
