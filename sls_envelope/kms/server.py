"""``LocalKms`` served over HTTP as Alibaba Cloud KMS 2016-01-20 and STS 2015-04-01.

The unmodified official SDKs (and :class:`~sls_envelope.kms.aliyun.AliyunKms`) talk to it
when pointed at its ``host:port`` with ``protocol="http"``.  It speaks the subset that
sls-envelope uses:

* KMS: CreateKey, DescribeKey, ListKeys, EnableKey, DisableKey, ScheduleKeyDeletion,
  CancelKeyDeletion, GenerateDataKey, Encrypt, Decrypt;
* STS: AssumeRole.

Every request must be signed, either ACS3-HMAC-SHA256 (current SDKs) or HMAC-SHA1 RPC
(older ones), by one of the identities Alibaba Cloud has (``sls_envelope.kms.ram``):

* the account's root AccessKey given at start-up: every KMS action, but no AssumeRole
  (``NoPermission``, "Roles may not be assumed by root accounts.", as STS answers);
* a RAM user's AccessKey (``LocalKms.create_access_key``): what its policies allow; it may
  assume a role whose trust policy names its account or it, with ``sts:AssumeRole``;
* the log service's own AccessKey (``LocalKms.service_credential``, which ``kms serve``
  makes and shows): the only caller that may assume roles trusting ``log.aliyuncs.com``;
* temporary credentials that AssumeRole handed out, acting as the role: what the role's
  attached policies allow, checked at every call.

Answers are JSON shaped as the SDKs parse them; errors are ``{RequestId, HostId, Code,
Message, Recommend}`` with the HTTP status Alibaba Cloud documents for the code (table
``ERROR_STATUS``) and the message the real service gives for it (``_ERROR_MESSAGES``); key
states answer each action as KMS's state table says (``LocalKms``'s ``KEY_STATE_RULES``).

Nothing secret is logged: a request is logged as its action, caller (masked) and status.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
import json
import logging
import os
import secrets
import threading
import time
import uuid
from typing import Any, Callable, Dict, List, Mapping, Optional, Protocol, Tuple
from urllib.parse import urlsplit

from ..exceptions import KMS_ERROR_STATUS, KeyInvalidError, KmsUnavailableError
from ..httpd import HttpServer, Limits, Reply, Request
from .acs_signature import (ACS3_ALGORITHM, RequestVerifier, SignatureError, SignedRequest, VerifiedCaller,
                            format_timestamp, parse_query)
from .local import create_log_service_role
from .ram import Principal

__all__ = [
    "KMS_VERSION",
    "STS_VERSION",
    "ERROR_STATUS",
    "Fault",
    "KmsApi",
    "KmsHttpServer",
    "LocalKmsLike",
    "make_server",
    "serve",
    "create_log_service_role",
]

log = logging.getLogger("sls_envelope.kms.server")

KMS_VERSION = "2016-01-20"
STS_VERSION = "2015-04-01"
_MAX_BODY = 1 << 20

#: HTTP status for each error code: the library's one table, from Alibaba Cloud's KMS
#: "Common errors" and its API gateway / STS codes (exceptions.KMS_ERROR_STATUS); an
#: unlisted code answers 400.
ERROR_STATUS: Mapping[str, int] = KMS_ERROR_STATUS

#: The message each code carries, as Alibaba Cloud's KMS and STS write them (KMS's common
#: error table and its API pages; the STS texts from STS's own answers, e.g. "Roles may not be
#: assumed by root accounts.").  A KeyInvalidError raised by LocalKms is answered with its
#: code's text here, never with our own wording, so a client matching on messages sees
#: what the real service says.  Codes whose text no public page gives are marked "ours".
_ERROR_MESSAGES: Dict[str, str] = {
    "Forbidden.KeyNotFound": "The specified Key is not found.",
    "Forbidden.NoPermission": "This operation is forbidden by permission system.",
    "Rejected.Disabled": "The request was rejected because the key state is Disabled.",
    "Rejected.PendingDeletion": "The request was rejected because the key state is PendingDeletion.",
    "Rejected.StateModifiedFailed": "The request was rejected because the key state cannot be modified.",  # ours
    "InvalidCiphertext": "The specified Ciphertext is invalid.",  # ours
    "InvalidAccessKeyId.NotFound": "Specified access key is not found.",
    "InvalidParameter": "The specified parameter is not valid.",
    "InvalidParameter.RoleArn": "The parameter RoleArn is wrongly formed.",
    "InvalidParameter.DurationSeconds": "The Min/Max value of DurationSeconds is 15min/1hr.",
    "NoPermission": "You are not authorized to do this action. You should be authorized by RAM.",
    "EntityNotExist.Role": "The specified Role not exists.",
    "EntityNotExist.User": "The user does not exist.",
    "ServiceUnavailableTemporary": "Service Unavailable Temporary.",
}

#: KeyInvalidError messages that are the service's own words and so go to the client as they
#: are (STS answers root accounts with this exact sentence).
_VERBATIM = {"Roles may not be assumed by root accounts."}


class LocalKmsLike(Protocol):
    """What the server needs of the KMS it serves (``sls_envelope.kms.local.LocalKms``)."""

    @property
    def account_id(self) -> str: ...

    def access_key(self, access_key_id: str) -> Optional[Tuple[Principal, str]]: ...
    def client_for(self, principal: Principal) -> Any: ...
    def assume_role_as(self, principal: Principal, arn: str) -> Any: ...


@dataclasses.dataclass(frozen=True)
class Fault:
    """An injected failure (tests): answer ``status``/``code`` (with ``retry_after`` seconds in
    x-acs-retry-after if set) or, with ``delay``, stall that long first then answer normally
    (a client with a shorter read timeout sees a timeout)."""

    status: int = 503
    code: str = "ServiceUnavailableTemporary"
    delay: float = 0.0
    retry_after: Optional[int] = None


#: Called with the action name for every signed request; returns a Fault to inject or None.
FaultInjector = Callable[[str], Optional[Fault]]


class ApiError(Exception):
    def __init__(self, code: str, message: str = "", status: Optional[int] = None) -> None:
        super().__init__(message or _ERROR_MESSAGES.get(code, code))
        self.code = code
        self.message = message or _ERROR_MESSAGES.get(code, code)
        self.status = status or ERROR_STATUS.get(code, 400)


@dataclasses.dataclass
class _StsSession:
    secret: str = dataclasses.field(repr=False)
    token: str = dataclasses.field(repr=False)
    arn: str
    expires_at: float
    client: Any


@dataclasses.dataclass(frozen=True)
class Response:
    status: int
    headers: Dict[str, str]
    body: bytes


#: json.dumps with separators builds a JSONEncoder per call; one, made once, answers every request.
_JSON = json.JSONEncoder(separators=(",", ":"))


def _request_id() -> str:
    """A random (version 4) UUID in upper case, as Alibaba Cloud's RequestIds are: what
    ``str(uuid.uuid4()).upper()`` gives, without a UUID object per request."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = raw.hex().upper()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _mask(access_key_id: str) -> str:
    return access_key_id[:6] + "****" if len(access_key_id) > 6 else "****"


class KmsApi:
    """The HTTP-independent request handler: ``handle(method, target, headers, body)``."""

    def __init__(
        self,
        kms: LocalKmsLike,
        access_key_id: str,
        access_key_secret: str,
        *,
        region_id: str = "cn-hangzhou",
        fault_injector: Optional[FaultInjector] = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not access_key_id or not access_key_secret:
            raise ValueError("the server needs an access key id and secret")
        self.kms = kms
        self.region_id = region_id
        self._root_id = access_key_id
        self._root_secret = access_key_secret
        self._sessions: Dict[str, _StsSession] = {}
        self._lock = threading.Lock()
        self._clock = clock
        self._sleep = sleep
        self.fault_injector = fault_injector
        self._verifier = RequestVerifier(self._lookup_secret, clock=clock)

    def __repr__(self) -> str:
        return f"KmsApi(kms={self.kms!r}, access_key_id={_mask(self._root_id)!r}, sessions={len(self._sessions)})"

    # -- credentials and identities --------------------------------------------------------------

    def _lookup_secret(self, access_key_id: str, token: Optional[str]) -> str:
        """The secret that signs for access_key_id: the account's root AccessKey, a RAM
        user's or the log service's (kept by the KMS), or an STS session's."""
        if token is None:
            if secrets.compare_digest(access_key_id.encode(), self._root_id.encode()):
                return self._root_secret
            found = self.kms.access_key(access_key_id)
            if found is not None:
                return found[1]
            raise SignatureError("InvalidAccessKeyId.NotFound", "Specified access key is not found.", 404)
        with self._lock:
            session = self._sessions.get(access_key_id)
            if session is not None and session.expires_at <= self._clock():
                del self._sessions[access_key_id]
                raise SignatureError("InvalidSecurityToken.Expired", "Specified SecurityToken is expired.")
        if session is None:
            raise SignatureError("InvalidAccessKeyId.NotFound", "Specified access key is not found.", 404)
        if not secrets.compare_digest(token.encode(), session.token.encode()):
            raise SignatureError("InvalidSecurityToken.MismatchWithAccessKey",
                                 "Specified SecurityToken mismatch with the AccessKey.")
        return session.secret

    def _principal(self, caller: VerifiedCaller) -> Principal:
        """Who signed: the account (root AccessKey), a RAM user, or the log service."""
        if secrets.compare_digest(caller.access_key_id.encode(), self._root_id.encode()):
            return Principal("account", self.kms.account_id)
        found = self.kms.access_key(caller.access_key_id)
        if found is None:  # deleted between verification and here
            raise ApiError("InvalidAccessKeyId.NotFound", "Specified access key is not found.")
        return found[0]

    def _client_for(self, caller: VerifiedCaller) -> Any:
        """The KMS acting for the caller: its policies are checked at every call."""
        if caller.security_token is None:
            return self.kms.client_for(self._principal(caller))
        with self._lock:
            session = self._sessions.get(caller.access_key_id)
        if session is None:  # expired between verification and here
            raise ApiError("InvalidSecurityToken.Expired", "Specified SecurityToken is expired.")
        return session.client

    # -- HTTP ----------------------------------------------------------------------------------

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Response:
        request_id = _request_id()
        action = "?"
        caller_id = "-"
        try:
            request = self._parse(method, target, headers, body)
            try:
                caller = self._verifier.verify(request)
            except SignatureError as exc:
                raise ApiError(exc.code, exc.message, exc.status) from None
            caller_id = _mask(caller.access_key_id)
            params = caller.params
            action, version = _action_and_version(caller, request.headers, params)
            params.pop("Action", None)
            params.pop("Version", None)
            if self.fault_injector is not None:
                fault = self.fault_injector(action)
                if fault is not None:
                    if fault.delay > 0:
                        self._sleep(fault.delay)
                    else:
                        raise _InjectedFault(fault)
            result = self._dispatch(version, action, params, caller)
            result["RequestId"] = request_id
            status, payload, extra = 200, result, {}
        except _InjectedFault as injected:
            fault = injected.fault
            status, payload = fault.status, self._error_body(request_id, fault.code, "Injected fault.")
            extra = {"x-acs-retry-after": str(fault.retry_after)} if fault.retry_after else {}
        except ApiError as exc:
            status, payload, extra = exc.status, self._error_body(request_id, exc.code, exc.message), {}
        except Exception as exc:  # never leak details of a bug to the caller or the log
            log.error("internal error handling %s: %s", action, type(exc).__name__)
            status, payload, extra = 500, self._error_body(request_id, "InternalFailure", "Internal Failure."), {}
        known = action if action in _KMS_ACTIONS or action in _STS_ACTIONS else "unknown-action"
        log.info("%s %s by %s -> %d%s", version_label(headers), known, caller_id, status,
                 "" if status == 200 else f" {payload.get('Code')}")
        data = _JSON.encode(payload).encode("utf-8")
        out = {"Content-Type": "application/json;charset=utf-8", "x-acs-request-id": request_id}
        out.update(extra)
        return Response(status, out, data)

    @staticmethod
    def _error_body(request_id: str, code: str, message: str) -> Dict[str, Any]:
        return {"RequestId": request_id, "HostId": "sls-envelope-localkms", "Code": code, "Message": message,
                "Recommend": ""}

    @staticmethod
    def _parse(method: str, target: str, headers: Mapping[str, str], body: bytes) -> SignedRequest:
        if method not in ("GET", "POST"):
            raise ApiError("UnsupportedHTTPMethod", "This http method is not supported.", 403)
        parts = urlsplit(target)
        try:
            query = parse_query(parts.query)
            form: List[Tuple[str, str]] = []
            if body and headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
                form = parse_query(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise ApiError("InvalidParameter", "The request parameters are not valid UTF-8.") from None
        names = [k for k, _ in query] + [k for k, _ in form]
        if len(names) != len(set(names)):
            raise ApiError("InvalidParameter", "A parameter is given more than once.")
        return SignedRequest(method, parts.path or "/", query, headers, body, form)

    # -- actions -------------------------------------------------------------------------------

    def _dispatch(self, version: str, action: str, params: Dict[str, str], caller: VerifiedCaller) -> Dict[str, Any]:
        if version == KMS_VERSION:
            handler = _KMS_ACTIONS.get(action)
        elif version == STS_VERSION:
            handler = _STS_ACTIONS.get(action)
        else:
            handler = None
        if handler is None:
            raise ApiError("InvalidAction.NotFound", "Specified api is not found, please check your url and method.")
        try:
            return handler(self, params, caller)
        except ApiError:
            raise
        except KeyInvalidError as exc:
            # The real services' text for the code, not LocalKms's own wording.
            text = str(exc) if str(exc) in _VERBATIM else ""
            raise ApiError(exc.code, text) from None
        except KmsUnavailableError:
            raise ApiError("ServiceUnavailableTemporary", "Service Unavailable Temporary.", 503) from None
        except (ValueError, TypeError):
            raise ApiError("InvalidParameter") from None

    def _metadata(self, client: Any, key_id: str) -> Dict[str, Any]:
        meta = dict(client.describe_key(key_id))
        meta.setdefault("Arn", f"acs:kms:{self.region_id}:{self.kms.account_id}:key/{key_id}")
        meta.setdefault("KeySpec", "Aliyun_AES_256")
        meta.setdefault("KeyUsage", "ENCRYPT/DECRYPT")
        meta.setdefault("PrimaryKeyVersion", _key_version(meta["KeyId"]))
        return meta

    def create_key(self, params: Dict[str, str], caller: VerifiedCaller) -> Dict[str, Any]:
        client = self._client_for(caller)
        if params.get("KeySpec", "Aliyun_AES_256") != "Aliyun_AES_256":
            raise ApiError("InvalidParameter", "Only KeySpec Aliyun_AES_256 is emulated.")
        if params.get("KeyUsage", "ENCRYPT/DECRYPT") != "ENCRYPT/DECRYPT":
            raise ApiError("InvalidParameter", "Only KeyUsage ENCRYPT/DECRYPT is emulated.")
        key_id = client.create_key(params.get("Description", ""))
        return {"KeyMetadata": self._metadata(self.kms.client_for(Principal("account", self.kms.account_id)),
                                              key_id)}

    def describe_key(self, params: Dict[str, str], caller: VerifiedCaller) -> Dict[str, Any]:
        return {"KeyMetadata": self._metadata(self._client_for(caller), _required(params, "KeyId"))}

    def list_keys(self, params: Dict[str, str], caller: VerifiedCaller) -> Dict[str, Any]:
        client = self._client_for(caller)
        page = _int_param(params, "PageNumber", 1, 1, 1 << 30)
        size = _int_param(params, "PageSize", 10, 1, 100)
        keys = client.list_keys()
        chunk = keys[(page - 1) * size: page * size]
        return {"Keys": {"Key": chunk}, "TotalCount": len(keys), "PageNumber": page, "PageSize": size}

    def enable_key(self, params: Dict[str, str], caller: VerifiedCaller) -> Dict[str, Any]:
        self._client_for(caller).enable_key(_required(params, "KeyId"))
        return {}

    def disable_key(self, params: Dict[str, str], caller: VerifiedCaller) -> Dict[str, Any]:
        self._client_for(caller).disable_key(_required(params, "KeyId"))
        return {}

    def schedule_key_deletion(self, params: Dict[str, str], caller: VerifiedCaller) -> Dict[str, Any]:
        client = self._client_for(caller)
        days = _int_param(params, "PendingWindowInDays", None, 7, 366)
        client.schedule_key_deletion(_required(params, "KeyId"), days)
        return {}

    def cancel_key_deletion(self, params: Dict[str, str], caller: VerifiedCaller) -> Dict[str, Any]:
        self._client_for(caller).cancel_key_deletion(_required(params, "KeyId"))
        return {}

    def generate_data_key(self, params: Dict[str, str], caller: VerifiedCaller) -> Dict[str, Any]:
        client = self._client_for(caller)
        key_id = _required(params, "KeyId")
        spec_bytes = {"AES_256": 32, "AES_128": 16}
        spec = params.get("KeySpec")
        if spec is not None and spec not in spec_bytes:
            raise ApiError("InvalidParameter", "KeySpec must be AES_256 or AES_128.")
        number = _int_param(params, "NumberOfBytes", spec_bytes.get(spec or "AES_256", 32), 1, 1024)
        data_key = client.generate_data_key(key_id, context=_context(params), number_of_bytes=number)
        return {"KeyId": data_key.key_id, "KeyVersionId": _key_version(data_key.key_id),
                "Plaintext": _b64(data_key.plaintext), "CiphertextBlob": _b64(data_key.ciphertext_blob)}

    def encrypt(self, params: Dict[str, str], caller: VerifiedCaller) -> Dict[str, Any]:
        client = self._client_for(caller)
        key_id = _required(params, "KeyId")
        plaintext = _unb64(_required(params, "Plaintext"), "Plaintext")
        blob = client.encrypt(key_id, plaintext, context=_context(params))
        return {"KeyId": key_id, "KeyVersionId": _key_version(key_id), "CiphertextBlob": _b64(blob)}

    def decrypt(self, params: Dict[str, str], caller: VerifiedCaller) -> Dict[str, Any]:
        client = self._client_for(caller)
        blob = _unb64(_required(params, "CiphertextBlob"), "CiphertextBlob")
        key_id, plaintext = client.decrypt_with_key_id(blob, context=_context(params))
        return {"KeyId": key_id, "KeyVersionId": _key_version(key_id), "Plaintext": _b64(plaintext)}

    def assume_role(self, params: Dict[str, str], caller: VerifiedCaller) -> Dict[str, Any]:
        """STS AssumeRole: by a RAM user (trust names its account or it, and its policies
        allow sts:AssumeRole) or the log service (trust names log.aliyuncs.com); the root
        AccessKey and role sessions are refused with ``NoPermission``."""
        if caller.security_token is not None:
            principal = Principal("role", self.kms.account_id, "session")
        else:
            principal = self._principal(caller)
        arn = _required(params, "RoleArn")
        session_name = _required(params, "RoleSessionName")
        if not 2 <= len(session_name) <= 64 or not all(c.isalnum() or c in "._@-" for c in session_name):
            raise ApiError("InvalidParameter.RoleSessionName", "The parameter RoleSessionName is wrongly formed.")
        duration = _int_param(params, "DurationSeconds", 3600, 900, 3600, code="InvalidParameter.DurationSeconds")
        client = self.kms.assume_role_as(principal, arn)
        access_key_id = "STS." + secrets.token_hex(12)
        secret = base64.b64encode(secrets.token_bytes(30)).decode("ascii")
        token = "CAIS" + base64.urlsafe_b64encode(secrets.token_bytes(48)).decode("ascii").rstrip("=")
        expires_at = self._clock() + duration
        with self._lock:
            now = self._clock()
            for stale in [k for k, s in self._sessions.items() if s.expires_at <= now]:
                del self._sessions[stale]
            self._sessions[access_key_id] = _StsSession(secret, token, arn, expires_at, client)
        role_name = arn.rsplit("/", 1)[-1]
        account = arn.split(":")[3] if arn.count(":") >= 4 else ""
        return {
            "AssumedRoleUser": {"Arn": f"acs:ram::{account}:assumed-role/{role_name}/{session_name}",
                                "AssumedRoleId": f"{abs(hash(arn)) % 10**18}:{session_name}"},
            "Credentials": {"AccessKeyId": access_key_id, "AccessKeySecret": secret, "SecurityToken": token,
                            "Expiration": format_timestamp(expires_at)},
        }


class _InjectedFault(Exception):
    def __init__(self, fault: Fault) -> None:
        super().__init__(fault.code)
        self.fault = fault


_Handler = Callable[[KmsApi, Dict[str, str], VerifiedCaller], Dict[str, Any]]
_KMS_ACTIONS: Dict[str, _Handler] = {
    "CreateKey": KmsApi.create_key,
    "DescribeKey": KmsApi.describe_key,
    "ListKeys": KmsApi.list_keys,
    "EnableKey": KmsApi.enable_key,
    "DisableKey": KmsApi.disable_key,
    "ScheduleKeyDeletion": KmsApi.schedule_key_deletion,
    "CancelKeyDeletion": KmsApi.cancel_key_deletion,
    "GenerateDataKey": KmsApi.generate_data_key,
    "Encrypt": KmsApi.encrypt,
    "Decrypt": KmsApi.decrypt,
}
_STS_ACTIONS: Dict[str, _Handler] = {"AssumeRole": KmsApi.assume_role}


def _action_and_version(caller: VerifiedCaller, headers: Mapping[str, str],
                        params: Mapping[str, str]) -> Tuple[str, str]:
    """Action and Version from what the signature covers (issue 15 item 5): the x-acs-* headers
    under ACS3 (they must be signed), the Action/Version parameters under RPC HMAC-SHA1, whose
    signature does not cover headers. A header that disagrees with a parameter is refused, so an
    unsigned header can never turn a signed DescribeKey into a DisableKey."""
    chosen = []
    for header, param in (("x-acs-action", "Action"), ("x-acs-version", "Version")):
        from_header, from_param = headers.get(header), params.get(param)
        if from_header is not None and from_param is not None and from_header != from_param:
            raise ApiError("InvalidParameter", f"The header {header} disagrees with the parameter {param}.")
        signed = from_header if caller.scheme == ACS3_ALGORITHM else from_param
        if signed is None and caller.scheme != ACS3_ALGORITHM and from_header is not None:
            raise ApiError("MissingParameter", f"The input parameter \"{param}\" that is mandatory for processing "
                           "this request is not supplied.")
        chosen.append(signed or "")
    return chosen[0], chosen[1]


def version_label(headers: Mapping[str, str]) -> str:
    version = headers.get("x-acs-version", "")
    return {"2016-01-20": "KMS", "2015-04-01": "STS"}.get(version, "RPC" if not version else version[:12])


def _required(params: Mapping[str, str], name: str) -> str:
    value = params.get(name)
    if not value:
        raise ApiError("MissingParameter", f'The parameter "{name}" is needed but not provided.')
    return value


def _int_param(params: Mapping[str, str], name: str, default: Optional[int], low: int, high: int, *,
               code: str = "InvalidParameter") -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        if default is None:
            raise ApiError("MissingParameter", f'The parameter "{name}" is needed but not provided.')
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise ApiError(code, "" if code in _ERROR_MESSAGES and code != "InvalidParameter"
                       else f'The specified parameter "{name}" is not valid ({low}..{high}).')
    return value


def _context(params: Mapping[str, str]) -> Dict[str, str]:
    raw = params.get("EncryptionContext")
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        value = None
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ApiError("InvalidParameter", 'The specified parameter "EncryptionContext" is not valid: '
                                           "a JSON object of strings is needed.")
    return value


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(value: str, name: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError("InvalidParameter", f'The specified parameter "{name}" is not valid base64.') from None


@functools.lru_cache(maxsize=1024)
def _key_version(key_id: str) -> str:
    """LocalKms keys have one version; its id is derived from the KeyId so it stays stable
    (cached: every GenerateDataKey, Encrypt and Decrypt answer carries it)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "sls-envelope-localkms:" + key_id))


# -- HTTP server -------------------------------------------------------------------------------


class KmsHttpServer(HttpServer):
    """The hardened HTTP server (``..httpd``) answering with a KmsApi."""

    def __init__(self, address: Tuple[str, int], api: KmsApi, limits: Optional[Limits] = None) -> None:
        super().__init__(address, self._answer, limits or Limits(max_body=_MAX_BODY))
        self.api = api

    def _answer(self, request: Request) -> Reply:
        response = self.api.handle(request.method, request.target, request.headers, request.body)
        return Reply(response.status, response.headers, response.body)


def make_server(
    kms: LocalKmsLike,
    host: str,
    port: int,
    access_key_id: str,
    access_key_secret: str,
    *,
    region_id: str = "cn-hangzhou",
    fault_injector: Optional[FaultInjector] = None,
    clock: Callable[[], float] = time.time,
) -> KmsHttpServer:
    """A server bound to (host, port) (port 0 picks a free one), not yet serving: run
    ``serve_forever()`` (e.g. in a thread), then ``shutdown()`` and ``server_close()``."""
    if host not in ("127.0.0.1", "::1", "localhost"):
        log.warning("serving KMS over plain HTTP on %s: anyone on that network can see the traffic", host)
    api = KmsApi(kms, access_key_id, access_key_secret, region_id=region_id,
                 fault_injector=fault_injector, clock=clock)
    return KmsHttpServer((host, port), api)


def serve(
    kms: LocalKmsLike,
    host: str,
    port: int,
    access_key_id: str,
    access_key_secret: str,
    *,
    region_id: str = "cn-hangzhou",
    ready: Optional[Callable[[KmsHttpServer], None]] = None,
) -> None:
    """Serve until Ctrl-C or SIGTERM; then finish the requests in flight (up to the grace period)."""
    server = make_server(kms, host, port, access_key_id, access_key_secret, region_id=region_id)
    server.serve_until_stopped(ready)
