"""HTTP glue for SlsApi over the hardened server (sls_envelope/httpd.py): verify the SLS
signature, take the project from the Host header, answer every SlsEnvelopeError as SLS
does (JSON ``errorCode``/``errorMessage`` with its status; the SDK raises LogException).

The project: the SDK sends ``Host: <project>.<endpoint host>`` (aliyun/log/logclient.py
``_send``) and, for an IP endpoint, connects to the IP itself; it treats the endpoint as
an IP only without a port (util.py ``is_row_ip``), so point it at port 80 of an address.
"""

from __future__ import annotations

import ipaddress
import json
import urllib.parse
import uuid

from ..exceptions import SlsEnvelopeError
from ..httpd import HttpServer, Limits, Reply, Request
from . import auth, wire
from .api import SlsApi

__all__ = ["SlsServer", "project_of_host"]

#: SLS's PutLogs body limit plus room for the compression's worst case.
LIMITS = Limits(max_body=wire.MAX_BODY + wire.MAX_BODY // 16)


def project_of_host(host: str) -> str:
    """``proj.127.0.0.1`` or ``proj.example.com:80`` -> ``proj``; a bare endpoint -> ``""``."""
    name = host.strip().lower()
    if name.startswith("["):
        return ""
    name = name.rsplit(":", 1)[0] if name.count(":") == 1 else name
    first, _, rest = name.partition(".")
    if not rest:
        return ""
    try:
        ipaddress.ip_address(name)
        return ""  # the endpoint itself, no project
    except ValueError:
        pass
    return first


class SlsServer(HttpServer):
    """The endpoint on (host, port); port 0 picks one.  ``keys``: AccessKeyId -> secret."""

    def __init__(self, api: SlsApi, keys: dict[str, str], host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__((host, port), self._handle, LIMITS)
        self.api = api
        self._keys = dict(keys)

    @property
    def address(self) -> tuple[str, int]:
        return self.server_address

    def _handle(self, request: Request) -> Reply:
        request_id = uuid.uuid4().hex.upper()
        try:
            url = urllib.parse.urlsplit(request.target)
            query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
            path = urllib.parse.unquote(url.path)
            auth.verify(request.method, path, query, request.headers, request.body, self._keys)
            project = project_of_host(request.headers.get("host", ""))
            status, headers, body = self.api.handle(request.method, project, path, query, request.headers,
                                                    request.body)
        except SlsEnvelopeError as exc:
            status, headers = exc.http_status, {"Content-Type": "application/json"}
            body = json.dumps({"errorCode": exc.code, "errorMessage": str(exc), "requestId": request_id}).encode()
        return Reply(status, dict(headers, **{"x-log-requestid": request_id}), body)
