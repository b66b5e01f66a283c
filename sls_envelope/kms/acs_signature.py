"""Alibaba Cloud request signatures: compute them (client side) and verify them (server side).

Two schemes, as the official Python SDK (``alibabacloud-tea-openapi``) sends them:

* **ACS3-HMAC-SHA256** (current SDKs, ``OpenApiClient.do_request``): the canonical request is
  ``METHOD \\n URI \\n sorted query \\n "name:value\\n" per signed header \\n signed header names
  \\n hex(sha256(body))``; the string to sign is ``"ACS3-HMAC-SHA256\\n" + hex(sha256(canonical))``
  and the signature is ``hex(HMAC-SHA256(secret, string_to_sign))``, sent as
  ``Authorization: ACS3-HMAC-SHA256 Credential=<AK>,SignedHeaders=a;b;c,Signature=<hex>``.
  Reference: https://www.alibabacloud.com/help/en/sdk/product-overview/v3-request-structure-and-signature
* **HMAC-SHA1 RPC, signature version 1.0** (older SDKs, or tea-openapi with
  ``signature_algorithm='v2'``): every parameter of the query and the form body except
  ``Signature``, percent-encoded and sorted, joined with ``&``; the string to sign is
  ``METHOD&%2F&percent(canonical)``, signed with ``HMAC-SHA1(secret + "&")`` and base64-encoded.
  Reference: https://www.alibabacloud.com/help/en/sdk/product-overview/rpc-mechanism

The verifier also refuses stale timestamps (more than 15 minutes off, as Alibaba Cloud does)
and replayed signature nonces within that window.  It never puts a secret or a signature in
an error message.
"""

from __future__ import annotations

import base64
import calendar
import collections
import dataclasses
import functools
import hashlib
import hmac
import re
import threading
import time
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

__all__ = [
    "ACS3_ALGORITHM",
    "SignatureError",
    "SignedRequest",
    "VerifiedCaller",
    "RequestVerifier",
    "NonceCache",
    "percent_encode",
    "percent_decode",
    "parse_query",
    "acs3_canonical_request",
    "acs3_signature",
    "acs3_authorization",
    "parse_acs3_authorization",
    "rpc_string_to_sign",
    "rpc_signature",
    "format_timestamp",
    "parse_timestamp",
]

ACS3_ALGORITHM = "ACS3-HMAC-SHA256"
RPC_SIGNATURE_METHOD = "HMAC-SHA1"
RPC_SIGNATURE_VERSION = "1.0"
#: Alibaba Cloud refuses requests whose timestamp is more than 15 minutes off.
DEFAULT_MAX_SKEW_SECONDS = 15 * 60
_TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
#: Headers an ACS3 request must sign: without them a signature could be replayed as another
#: action, with another body, or outside the time window.
_REQUIRED_SIGNED_HEADERS = ("host", "x-acs-action", "x-acs-content-sha256", "x-acs-date",
                            "x-acs-signature-nonce", "x-acs-version")


class SignatureError(Exception):
    """The request is not properly signed; code and HTTP status as Alibaba Cloud's gateway uses."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.message = message


@dataclasses.dataclass(frozen=True)
class SignedRequest:
    """An HTTP request as received: query pairs already URL-decoded, header names lower-case
    (one entry per name; repeated headers joined with ``,``)."""

    method: str
    path: str
    query: Sequence[Tuple[str, str]]
    headers: Mapping[str, str]
    body: bytes = b""
    form: Sequence[Tuple[str, str]] = ()


@dataclasses.dataclass(frozen=True)
class VerifiedCaller:
    """Who signed a request, and with which scheme."""

    access_key_id: str
    security_token: Optional[str]
    scheme: str  # "ACS3-HMAC-SHA256" or "HMAC-SHA1"
    params: Dict[str, str]  # query and form parameters, without the signature fields

    def __repr__(self) -> str:
        token = "<set>" if self.security_token else None
        return f"VerifiedCaller(access_key_id={self.access_key_id!r}, security_token={token}, scheme={self.scheme!r})"


#: Bytes outside RFC 3986's unreserved set (ALPHA / DIGIT / "-" / "." / "_" / "~"), and each one's escape.
_RESERVED = re.compile(rb"[^A-Za-z0-9._~-]")
_ESCAPES = {bytes([b]): b"%%%02X" % b for b in range(256)}


def _escape(match: "re.Match[bytes]") -> bytes:
    return _ESCAPES[match.group()]


def percent_encode(value: str) -> str:
    """RFC 3986 encoding as Alibaba Cloud signs it: unreserved characters kept, every other UTF-8
    byte as %XX (upper-case hex), so space is %20.  The same as ``urllib.parse.quote(value,
    safe="~")``, which loops over every byte in Python once one needs escaping (a base64 blob or a
    JSON encryption context always does): this escapes only the bytes that need it, and signing
    a KMS request percent-encodes every parameter (issue 15 item 9)."""
    return _RESERVED.sub(_escape, value.encode("utf-8")).decode("ascii")


_ESCAPED_BYTE = re.compile(rb"%([0-9A-Fa-f]{2})")
_HEX_DIGITS = "0123456789abcdefABCDEF"
_UNESCAPES = {(hi + lo).encode(): bytes([int(hi + lo, 16)]) for hi in _HEX_DIGITS for lo in _HEX_DIGITS}


def _unescape(match: "re.Match[bytes]") -> bytes:
    return _UNESCAPES[match.group(1)]


def percent_decode(value: str) -> str:
    """``urllib.parse.unquote(value, errors="strict")``: each %XX is the byte XX, the bytes are
    UTF-8 (UnicodeDecodeError if not); a % not followed by two hex digits stays as it is."""
    if "%" not in value:
        return value
    return _ESCAPED_BYTE.sub(_unescape, value.encode("utf-8")).decode("utf-8")


def parse_query(query: str) -> List[Tuple[str, str]]:
    """``urllib.parse.parse_qsl(query, keep_blank_values=True, errors="strict")``: the (name,
    value) pairs of a query string or form body in order, "+" read as a space, a pair without
    "=" given the value "".  parse_qsl decodes each escape in a Python loop; a signed KMS
    request carries a base64 blob or a JSON encryption context, escapes and all (issue 15
    item 9)."""
    pairs: List[Tuple[str, str]] = []
    for field in query.split("&"):
        if field:
            name, _, value = field.partition("=")
            pairs.append((percent_decode(name.replace("+", " ")), percent_decode(value.replace("+", " "))))
    return pairs


def format_timestamp(epoch: float) -> str:
    return time.strftime(_TIMESTAMP_FORMAT, time.gmtime(epoch))


@functools.lru_cache(maxsize=256)
def parse_timestamp(value: str) -> float:
    """ISO 8601 UTC (``2024-01-02T03:04:05Z``) to epoch seconds; ValueError if malformed.
    Cached: every signed request carries one, to the second, so requests arriving within the
    same second share it, and time.strptime costs more than the rest of the time check."""
    return float(calendar.timegm(time.strptime(value, _TIMESTAMP_FORMAT)))


# -- ACS3-HMAC-SHA256 --------------------------------------------------------------------------


def _canonical_query(query: Sequence[Tuple[str, str]]) -> str:
    return "&".join(f"{percent_encode(k)}={percent_encode(v)}" for k, v in sorted(query))


def acs3_canonical_request(
    method: str, path: str, query: Sequence[Tuple[str, str]], headers: Mapping[str, str],
    signed_headers: Sequence[str], hashed_payload: str,
) -> str:
    lines = "".join(f"{name}:{headers.get(name, '').strip()}\n" for name in signed_headers)
    return "\n".join([method.upper(), path or "/", _canonical_query(query), lines,
                      ";".join(signed_headers), hashed_payload])


def acs3_signature(secret: str, canonical_request: str) -> str:
    digest = hashlib.sha256(canonical_request.encode("utf-8")).hexdigest()
    string_to_sign = f"{ACS3_ALGORITHM}\n{digest}"
    # hmac.digest: OpenSSL's one-shot HMAC, without building an hmac.HMAC object per request.
    return hmac.digest(secret.encode("utf-8"), string_to_sign.encode("utf-8"), "sha256").hex()


def acs3_authorization(
    access_key_id: str, secret: str, method: str, path: str, query: Sequence[Tuple[str, str]],
    headers: Mapping[str, str], body: bytes = b"",
) -> str:
    """The Authorization value for a request that signs every header given (as the SDK does).
    headers must already hold x-acs-content-sha256 = hex(sha256(body))."""
    lowered = {k.lower(): v for k, v in headers.items()}
    signed = sorted(lowered)
    payload = lowered.get("x-acs-content-sha256") or hashlib.sha256(body).hexdigest()
    canonical = acs3_canonical_request(method, path, query, lowered, signed, payload)
    signature = acs3_signature(secret, canonical)
    return f"{ACS3_ALGORITHM} Credential={access_key_id},SignedHeaders={';'.join(signed)},Signature={signature}"


def parse_acs3_authorization(value: str) -> Tuple[str, List[str], str]:
    """(access_key_id, signed header names, signature) from an ACS3 Authorization header."""
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ACS3_ALGORITHM:
        raise SignatureError("IncompleteSignature", f"unsupported signature algorithm {algorithm[:40]!r}")
    fields: Dict[str, str] = {}
    for part in rest.split(","):
        name, sep, val = part.strip().partition("=")
        if not sep or name in fields:
            raise SignatureError("IncompleteSignature", "malformed Authorization header")
        fields[name] = val
    try:
        credential, signed, signature = fields["Credential"], fields["SignedHeaders"], fields["Signature"]
    except KeyError:
        raise SignatureError("IncompleteSignature", "Authorization needs Credential, SignedHeaders and Signature") from None
    names = signed.split(";") if signed else []
    # Every name lower-case and none empty, checked on the whole list at once.
    if not credential or not signature or signed != signed.lower() or "" in names:
        raise SignatureError("IncompleteSignature", "malformed Authorization header")
    return credential, names, signature


# -- HMAC-SHA1 RPC -------------------------------------------------------------------------------


def rpc_string_to_sign(method: str, params: Mapping[str, str]) -> str:
    canonical = "&".join(
        f"{percent_encode(k)}={percent_encode(v)}" for k, v in sorted(params.items()) if k != "Signature"
    )
    return f"{method.upper()}&%2F&{percent_encode(canonical)}"


def rpc_signature(secret: str, method: str, params: Mapping[str, str]) -> str:
    mac = hmac.digest((secret + "&").encode("utf-8"), rpc_string_to_sign(method, params).encode("utf-8"), "sha1")
    return base64.b64encode(mac).decode("ascii")


# -- verification ------------------------------------------------------------------------------


class NonceCache:
    """Signature nonces seen within the replay window, per access key, bounded per access key.

    An unexpired nonce is never forgotten: were it dropped, the request it signed could be replayed
    inside the window. When one access key's nonces fill its share, its next request is refused
    with ``Throttling`` until some expire; other keys are not affected, so one credential holder
    cannot flush another's nonces (issue 15 item 6)."""

    def __init__(self, window_seconds: float, max_per_key: int = 50_000, max_keys: int = 10_000) -> None:
        self._window = window_seconds
        self._max_per_key = max_per_key
        self._max_keys = max_keys
        # access key -> nonce -> expiry; insertion order is expiry order (expiry = arrival + 2 windows)
        self._seen: Dict[str, "collections.OrderedDict[str, float]"] = {}
        self._lock = threading.Lock()

    def check_and_add(self, access_key_id: str, nonce: str, now: float) -> bool:
        """True if (access_key_id, nonce) is new (and remember it); False if it is a replay.
        SignatureError("Throttling") when that key (or the cache) is full of unexpired nonces."""
        with self._lock:
            seen = self._seen.get(access_key_id)
            if seen is None:
                if len(self._seen) >= self._max_keys:
                    self._purge_keys(now)
                if len(self._seen) >= self._max_keys:
                    raise SignatureError("Throttling", "Request was denied due to request throttling.", 400)
                seen = self._seen[access_key_id] = collections.OrderedDict()
            while seen:
                oldest, expires = next(iter(seen.items()))
                if expires > now:
                    break
                del seen[oldest]
            if nonce in seen:
                return False
            if len(seen) >= self._max_per_key:
                raise SignatureError("Throttling", "Request was denied due to request throttling.", 400)
            seen[nonce] = now + 2 * self._window
            return True

    def _purge_keys(self, now: float) -> None:
        for key in [k for k, seen in self._seen.items() if all(e <= now for e in seen.values())]:
            del self._seen[key]


#: Looks up the secret of an access key given with its security token (None for a long-term
#: key); raises SignatureError (InvalidAccessKeyId.NotFound, InvalidSecurityToken.*) if the
#: pair is not valid.
SecretLookup = Callable[[str, Optional[str]], str]


class RequestVerifier:
    """Checks a request's ACS3 or RPC signature, timestamp and nonce."""

    def __init__(
        self, lookup_secret: SecretLookup, *, max_skew_seconds: float = DEFAULT_MAX_SKEW_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._lookup = lookup_secret
        self._max_skew = max_skew_seconds
        self._clock = clock
        self._nonces = NonceCache(max_skew_seconds)

    def verify(self, request: SignedRequest) -> VerifiedCaller:
        authorization = request.headers.get("authorization")
        if authorization:
            return self._verify_acs3(request, authorization)
        params = dict(request.query)
        params.update(request.form)
        if "Signature" in params:
            return self._verify_rpc(request, params)
        raise SignatureError("IncompleteSignature", "the request is not signed")

    def _check_time_and_nonce(self, access_key_id: str, timestamp: Optional[str], nonce: Optional[str]) -> None:
        if not timestamp:
            raise SignatureError("MissingTimestamp", "the request has no timestamp")
        if not nonce:
            raise SignatureError("MissingSignatureNonce", "the request has no signature nonce")
        try:
            when = parse_timestamp(timestamp)
        except ValueError:
            raise SignatureError("InvalidTimeStamp.Format", "the timestamp is not YYYY-MM-DDThh:mm:ssZ") from None
        now = self._clock()
        if abs(now - when) > self._max_skew:
            raise SignatureError("InvalidTimeStamp.Expired", "the timestamp is more than 15 minutes off the server time")
        if not self._nonces.check_and_add(access_key_id, nonce, now):
            raise SignatureError("SignatureNonceUsed", "the signature nonce was used already")

    def _verify_acs3(self, request: SignedRequest, authorization: str) -> VerifiedCaller:
        access_key_id, signed_headers, signature = parse_acs3_authorization(authorization)
        headers = request.headers
        missing = [h for h in _REQUIRED_SIGNED_HEADERS if h not in signed_headers]
        token = headers.get("x-acs-security-token")
        if token is not None and "x-acs-security-token" not in signed_headers:
            missing.append("x-acs-security-token")
        if missing:
            raise SignatureError("IncompleteSignature", f"these headers must be signed: {', '.join(missing)}")
        absent = [h for h in signed_headers if h not in headers]
        if absent:
            raise SignatureError("IncompleteSignature", f"signed headers are missing: {', '.join(absent)}")
        payload_hash = headers["x-acs-content-sha256"]
        # Compared as bytes: compare_digest raises TypeError on non-ASCII str (issue 15 item 7).
        if not hmac.compare_digest(payload_hash.lower().encode("utf-8", "replace"),
                                   hashlib.sha256(request.body).hexdigest().encode("ascii")):
            raise SignatureError("SignatureDoesNotMatch", "the body does not match x-acs-content-sha256")
        secret = self._lookup(access_key_id, token)
        canonical = acs3_canonical_request(request.method, request.path, request.query, headers,
                                           signed_headers, payload_hash.lower())
        expected = acs3_signature(secret, canonical)
        if not hmac.compare_digest(expected.encode("ascii"), signature.lower().encode("utf-8", "replace")):
            raise SignatureError("SignatureDoesNotMatch", "the request signature does not match our calculation")
        self._check_time_and_nonce(access_key_id, headers.get("x-acs-date"), headers.get("x-acs-signature-nonce"))
        params = dict(request.query)
        params.update(request.form)
        return VerifiedCaller(access_key_id, token, ACS3_ALGORITHM, params)

    def _verify_rpc(self, request: SignedRequest, params: Dict[str, str]) -> VerifiedCaller:
        if params.get("SignatureMethod") != RPC_SIGNATURE_METHOD or params.get("SignatureVersion") != RPC_SIGNATURE_VERSION:
            raise SignatureError("IncompleteSignature", "only SignatureMethod HMAC-SHA1, SignatureVersion 1.0 is supported")
        access_key_id = params.get("AccessKeyId")
        if not access_key_id:
            raise SignatureError("MissingAccessKeyId", "the request has no AccessKeyId")
        token = params.get("SecurityToken")
        secret = self._lookup(access_key_id, token)
        expected = rpc_signature(secret, request.method, params)
        if not hmac.compare_digest(expected.encode("ascii"), params["Signature"].encode("utf-8", "replace")):
            raise SignatureError("SignatureDoesNotMatch", "the request signature does not match our calculation")
        self._check_time_and_nonce(access_key_id, params.get("Timestamp"), params.get("SignatureNonce"))
        for name in ("Signature", "SignatureMethod", "SignatureVersion", "SignatureNonce", "AccessKeyId",
                     "SecurityToken", "Timestamp", "Format"):
            params.pop(name, None)
        return VerifiedCaller(access_key_id, token, RPC_SIGNATURE_METHOD, params)
