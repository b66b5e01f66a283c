"""The SLS request signature as the SDKs make it (aliyun-log-python-sdk auth.py):
v1 ``LOG <AccessKeyId>:base64(HMAC-SHA1(secret, method, Content-MD5, Content-Type, Date,
x-log-/x-acs- headers, resource?sorted query))``, and v4
``SLS4-HMAC-SHA256 Credential=<id>/<date>/<region>/sls/aliyun_v4_request,Signature=<hex>``
(a canonical request over content-type, host and the x-log-/x-acs- headers, the sorted
query with RFC 3986-encoded values and the body's SHA-256, under a key derived from the
secret, the date, the region and "sls").  The SDK adds ``x-log-date`` after
signing (a copy of Date for proxies that drop Date), so it is not signed.  Verified in
constant time."""

from __future__ import annotations

import base64
import hashlib
import hmac
import urllib.parse
from collections.abc import Callable, Mapping

from ..exceptions import SlsEnvelopeError

__all__ = ["AuthError", "verify"]


class AuthError(SlsEnvelopeError):
    def __init__(self, message: str, code: str = "SignatureNotMatch", http_status: int = 401) -> None:
        super().__init__(message, code=code, http_status=http_status)


def _string_to_sign(method: str, path: str, query: Mapping[str, str], lower: Mapping[str, str]) -> str:
    """SLS's v1 string to sign; `lower`: the headers with lower-case names (verify's)."""
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
    if auth.startswith("SLS4-HMAC-SHA256 "):
        return _verify_v4(method, path, query, lower, body, auth, secret_of)
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
    want = base64.b64encode(hmac.new(secret.encode(), _string_to_sign(method, path, query, lower).encode(),
                                     hashlib.sha1).digest()).decode()
    if not hmac.compare_digest(want.encode(), sig.encode()):
        raise AuthError("the request signature does not match")
    return key_id


_V4_EMPTY = hashlib.sha256(b"").hexdigest()


def _v4_key(secret: str, date: str, region: str) -> bytes:
    key = hmac.new(("aliyun_v4" + secret).encode(), date.encode(), hashlib.sha256).digest()
    for part in (region, "sls", "aliyun_v4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def _verify_v4(method: str, path: str, query: Mapping[str, str], lower: Mapping[str, str], body: bytes,
               auth: str, secret_of: Callable[[str], str | None]) -> str:
    fields = dict(part.strip().partition("=")[::2] for part in auth[len("SLS4-HMAC-SHA256 "):].split(","))
    credential, sig = fields.get("Credential", ""), fields.get("Signature", "")
    key_id, date, region, service, terminator = (credential.split("/") + [""] * 5)[:5]
    if not key_id or not sig or service != "sls" or terminator != "aliyun_v4_request":
        raise AuthError("the Authorization header is not a valid SLS4-HMAC-SHA256 one", code="Unauthorized")
    secret = secret_of(key_id)
    if secret is None:
        raise AuthError(f"AccessKeyId {key_id!r} is not known", code="Unauthorized")
    content_sha256 = lower.get("x-log-content-sha256", "")
    actual = hashlib.sha256(body).hexdigest() if body else _V4_EMPTY
    if not hmac.compare_digest(content_sha256.encode(), actual.encode()):
        raise AuthError("x-log-content-sha256 does not match the body", code="InvalidContentSha256",
                        http_status=400)
    when = lower.get("x-log-date", "")
    signed = sorted((k, v.strip()) for k, v in lower.items()
                    if k in ("content-type", "host") or k.startswith("x-acs-")
                    or (k.startswith("x-log-") and not k.startswith("x-log-meta-")))
    canonical_query = "&".join(k + ("=" + urllib.parse.quote(v, safe="~") if v else "")
                               for k, v in sorted(query.items()))
    canonical = "\n".join([
        method, path, canonical_query, "".join(f"{k}:{v}\n" for k, v in signed),
        ";".join(k for k, _ in signed), content_sha256,
    ])
    scope = f"{date}/{region}/sls/aliyun_v4_request"
    to_sign = f"SLS4-HMAC-SHA256\n{when}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    want = hmac.new(_v4_key(secret, date, region), to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(want.encode(), sig.encode()):
        raise AuthError("the request signature does not match")
    return key_id
