"""The SLS request signature as the SDKs make it (aliyun-log-python-sdk auth.py):
v1 ``LOG <AccessKeyId>:base64(HMAC-SHA1(secret, method, Content-MD5, Content-Type, Date,
x-log-/x-acs- headers, resource?sorted query))``.  The SDK adds ``x-log-date`` after
signing (a copy of Date for proxies that drop Date), so it is not signed.  Verified in
constant time."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Mapping

from ..exceptions import SlsEnvelopeError

__all__ = ["AuthError", "verify"]


class AuthError(SlsEnvelopeError):
    def __init__(self, message: str, code: str = "SignatureNotMatch", http_status: int = 401) -> None:
        super().__init__(message, code=code, http_status=http_status)


def _string_to_sign(method: str, path: str, query: Mapping[str, str], headers: Mapping[str, str]) -> str:
    lower = {k.lower(): v for k, v in headers.items()}
    signed = "".join(f"{k}:{lower[k]}\n" for k in sorted(lower)
                     if k != "x-log-date" and (k.startswith("x-acs-")
                                               or (k.startswith("x-log-") and not k.startswith("x-log-meta-"))))
    resource = path
    if query:
        resource += "?" + "&".join(f"{k}={v}" for k, v in sorted(query.items()))
    return (f"{method}\n{lower.get('content-md5', '')}\n{lower.get('content-type', '')}\n"
            f"{lower.get('date', '')}\n{signed}{resource}")


def verify(method: str, path: str, query: Mapping[str, str], headers: Mapping[str, str], body: bytes,
           secret_of: Callable[[str], str | None]) -> str:
    """The AccessKeyId that signed the request; AuthError if none did."""
    lower = {k.lower(): v for k, v in headers.items()}
    auth = lower.get("authorization", "")
    if not auth.startswith("LOG ") or ":" not in auth:
        raise AuthError("the Authorization header is missing or not 'LOG <AccessKeyId>:<signature>'",
                        code="Unauthorized")
    key_id, _, sig = auth[4:].partition(":")
    secret = secret_of(key_id)
    if secret is None:
        raise AuthError(f"AccessKeyId {key_id!r} is not known", code="Unauthorized")
    md5 = lower.get("content-md5")
    if body and (md5 is None or not hmac.compare_digest(md5.upper(), hashlib.md5(body).hexdigest().upper())):
        raise AuthError("Content-MD5 does not match the body", code="InvalidContentMD5", http_status=400)
    want = base64.b64encode(hmac.new(secret.encode(), _string_to_sign(method, path, query, headers).encode(),
                                     hashlib.sha1).digest()).decode()
    if not hmac.compare_digest(want.encode(), sig.encode()):
        raise AuthError("the request signature does not match")
    return key_id
