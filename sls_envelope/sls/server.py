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
import os
import urllib.parse
import uuid
from collections.abc import Callable, Mapping

from ..exceptions import SlsEnvelopeError
from ..httpd import HttpServer, Limits, Reply, Request
from ..kms.ram import Caller
from . import auth, wire
from .api import SlsApi

__all__ = ["SlsServer", "caller_of", "keys_of", "project_of_host"]

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


def keys_of(account: Mapping[str, str], kms: object) -> Callable[[str], str | None]:
    """The account's AccessKeys, then those the embedded KMS knows (RAM users', the log
    service's): one set of identities for ``kms serve`` and ``serve``."""
    lookup = getattr(kms, "access_key", None)

    def secret_of(access_key_id: str) -> str | None:
        if access_key_id in account:
            return account[access_key_id]
        found = lookup(access_key_id) if lookup is not None else None
        return None if found is None else str(found[1])

    return secret_of


def caller_of(kms: object) -> Callable[[str], Caller | None]:
    """The embedded KMS's RAM user behind an AccessKeyId (None: the account or unknown)."""
    lookup = getattr(kms, "access_key", None)
    user = getattr(kms, "user", None)

    def find(access_key_id: str) -> Caller | None:
        found = lookup(access_key_id) if lookup is not None else None
        if found is None or user is None or getattr(found[0], "kind", None) != "user":
            return None
        caller: Caller = user(found[0].name)
        return caller

    return find


class SlsServer(HttpServer):
    """The endpoint on (host, port); port 0 picks one.  ``keys``: AccessKeyId -> secret, or
    a function giving the secret of an AccessKeyId (None if unknown), e.g. the embedded
    KMS's RAM users' keys next to the account's (see :func:`keys_of`).  ``caller_of``: the
    RAM user (KeyManager's ``caller``) behind an AccessKeyId, None for the account's; a
    BYOK conf then needs that user's ram:PassRole on the role (see :func:`caller_of`)."""

    def __init__(self, api: SlsApi, keys: Mapping[str, str] | Callable[[str], str | None],
                 host: str = "127.0.0.1", port: int = 0, *,
                 caller_of: Callable[[str], Caller | None] | None = None) -> None:
        super().__init__((host, port), self._handle, LIMITS)
        self.api = api
        self._secret_of = dict(keys).get if isinstance(keys, Mapping) else keys
        self._caller_of: Callable[[str], Caller | None] = caller_of or (lambda _key_id: None)

    def _handle(self, request: Request) -> Reply:
        request_id = uuid.uuid4().hex.upper()
        try:
            url = urllib.parse.urlsplit(request.target)
            query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
            path = urllib.parse.unquote(url.path)
            key_id = auth.verify(request.method, path, query, request.headers, request.body, self._secret_of)
            project = project_of_host(request.headers.get("host", ""))
            status, headers, body = self.api.handle(request.method, project, path, query, request.headers,
                                                    request.body, self._caller_of(key_id))
        except SlsEnvelopeError as exc:
            status, headers = exc.http_status, {"Content-Type": "application/json"}
            body = json.dumps({"errorCode": exc.code, "errorMessage": str(exc), "requestId": request_id}).encode()
        return Reply(status, dict(headers, **{"x-log-requestid": request_id}), body)


def serve(home_dir: str | None, host: str, port: int, access_key_id: str, access_key_secret: str,
          *, kms_url: str | None = None, kms_credential: tuple[str, str] | None = None,
          region_id: str = "cn-hangzhou", ready: Callable[[SlsServer], None] | None = None) -> None:
    """``sls-envelope serve``: the home's key records, shard files under ``<home>/sls``,
    and the home's embedded KMS, or the KMS at ``kms_url`` (e.g. ``sls-envelope kms
    serve``, through AliyunKms and its STS) signing as ``kms_credential``, the log
    service's AccessKey there.  Until Ctrl-C or SIGTERM, then requests in flight finish."""
    from ..home import Home
    from ..kms.base import KmsClient

    home = Home(home_dir)
    kms: KmsClient
    if kms_url is not None:
        from ..kms.aliyun import AliyunKms

        url = urllib.parse.urlsplit(kms_url)
        if url.scheme not in ("http", "https") or not url.netloc or kms_credential is None:
            raise ValueError("--kms needs an http(s)://host:port URL and the log service's AccessKey there")
        kms = AliyunKms(region_id, access_key_id=kms_credential[0], access_key_secret=kms_credential[1],
                        endpoint=url.netloc, sts_endpoint=url.netloc, protocol=url.scheme)
    else:
        kms = home.open_kms()
    manager = home.open_manager(kms)
    api = SlsApi(os.path.join(home.ensure(), "sls"), manager)
    server = SlsServer(api, keys_of({access_key_id: access_key_secret}, kms), host, port, caller_of=caller_of(kms))
    try:
        server.serve_until_stopped(ready)
    finally:
        api.close()
        manager.close()
