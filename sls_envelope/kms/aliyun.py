"""Alibaba Cloud KMS backend on the official SDKs (extra ``aliyun``).

``AliyunKms`` calls KMS 2016-01-20 (GenerateDataKey, Decrypt, DescribeKey) with
``alibabacloud-kms20160120`` and STS 2015-04-01 (AssumeRole) with
``alibabacloud-sts20150401``, both configured through tea-openapi's ``Config``.  Each call
is made once by the SDK (its own retries stay off) and retried here, bounded, with jittered
exponential backoff (:func:`~sls_envelope.kms.base.call_with_retries`).

Error mapping (see docs/KMS.md): a key or role that cannot be used (``Rejected.Disabled``,
``Rejected.PendingDeletion``, ``Forbidden.KeyNotFound``, ``Forbidden.NoPermission``,
``InvalidAccessKeyId.NotFound``, ``SignatureDoesNotMatch``, ``EntityNotExist.Role``,
``InvalidCiphertext``, any other 4xx...) raises :class:`KeyInvalidError` with the KMS code;
throttling, 5xx, timeouts and connection failures are retried, then raise
:class:`KmsUnavailableError`.

Credentials are held only in the SDK's credential objects: never logged, never in a repr,
never in an exception message (SDK messages are scrubbed of them and SDK exceptions are not
chained, because a transport error's text can carry the request URL).
"""

from __future__ import annotations

import base64
import binascii
import calendar
import logging
import os
import re
import threading
import time
from typing import Any, Callable, Dict, Optional, Tuple, TypeVar

from ..exceptions import KeyInvalidError, KmsUnavailableError
from .base import DataKey, EncryptionContext, KmsClient, RetryPolicy, TransientKmsError, call_with_retries

try:
    from alibabacloud_credentials.client import Client as _CredentialClient
    from alibabacloud_credentials_api import ICredentials, ICredentialsProvider
    from alibabacloud_kms20160120 import models as _kms_models
    from alibabacloud_kms20160120.client import Client as _KmsSdkClient
    from alibabacloud_sts20150401 import models as _sts_models
    from alibabacloud_sts20150401.client import Client as _StsSdkClient
    from alibabacloud_tea_openapi.utils_models import Config as _SdkConfig
    from darabonba.exceptions import ResponseException as _SdkResponseError
    from darabonba.runtime import RuntimeOptions as _RuntimeOptions
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "sls_envelope.kms.aliyun needs the 'aliyun' extra: pip install 'sls-envelope[aliyun]' "
        f"(missing: {exc.name})"
    ) from exc

__all__ = ["AliyunKms", "classify_sdk_error", "ROLE_ARN_PATTERN"]

log = logging.getLogger("sls_envelope.kms.aliyun")
T = TypeVar("T")

#: acs:ram::<account id>:role/<role name>
ROLE_ARN_PATTERN = re.compile(r"^acs:ram::[0-9]{1,32}:role/[A-Za-z0-9.@+=_\-]{1,64}$")

#: Codes meaning "try again later" whatever the HTTP status.
_TRANSIENT_CODES = frozenset({
    "Throttling", "ServiceUnavailable", "ServiceUnavailableTemporary", "InternalFailure", "InternalError",
    "ServiceTimeout", "RequestTimeout", "SignatureNonceUsed", "LastResponseInvalid",
})
_ROLE_SESSION_NAME = "sls-envelope"
#: STS allows 900..3600 s by default (up to the role's maximum session duration).
_DEFAULT_SESSION_SECONDS = 3600
#: Refresh temporary credentials this long before they expire, so that no request is signed
#: with credentials that expire in flight.
_REFRESH_BEFORE_SECONDS = 300


class _RedactCredentialsInUrls(logging.Filter):
    """urllib3 logs each request line at DEBUG; with the HMAC-SHA1 RPC signature the query
    carries SecurityToken and Signature.  This filter, put on urllib3's connection-pool
    logger when an AliyunKms is made, blanks them before any handler sees the record."""

    _PATTERN = re.compile(r"(SecurityToken|Signature|AccessKeyId)=[^&\s\"]*")

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is not ours to fix
            return True
        if "SecurityToken=" in message or "Signature=" in message:
            record.msg = self._PATTERN.sub(r"\1=<redacted>", message)
            record.args = ()
        return True


_URL_FILTER = _RedactCredentialsInUrls()


def _install_url_filter() -> None:
    for name in ("urllib3.connectionpool", "urllib3.connection"):
        logger = logging.getLogger(name)
        if _URL_FILTER not in logger.filters:
            logger.addFilter(_URL_FILTER)


def _mask(access_key_id: str) -> str:
    return access_key_id[:4] + "****" if len(access_key_id) > 4 else "****"


class _Scrubber:
    """Removes known secrets from text that came from outside (SDK or server messages)."""

    def __init__(self) -> None:
        self._secrets: set[str] = set()
        self._lock = threading.Lock()

    def add(self, *secrets: Optional[str]) -> None:
        with self._lock:
            self._secrets.update(s for s in secrets if s and len(s) >= 4)

    def __call__(self, text: str) -> str:
        with self._lock:
            secrets = sorted(self._secrets, key=len, reverse=True)
        for secret in secrets:
            text = text.replace(secret, "<redacted>")
        return text[:300]


def classify_sdk_error(exc: BaseException, what: str, scrub: Callable[[str], str] = lambda s: s[:300]) -> Exception:
    """The sls-envelope exception for an exception the Alibaba SDK raised.

    Transient ones come back as TransientKmsError (for call_with_retries to retry), the rest
    as KeyInvalidError.  Only the code, HTTP status, request id and the scrubbed server
    message are kept: the SDK's own text for transport errors can include the request URL.
    """
    if isinstance(exc, _SdkResponseError):
        code = str(getattr(exc, "code", "") or "Unknown")
        status = int(getattr(exc, "status_code", 0) or 0)
        data = getattr(exc, "data", None)
        message = ""
        request_id = ""
        if isinstance(data, dict):
            message = scrub(str(data.get("Message") or data.get("message") or ""))
            request_id = scrub(str(data.get("RequestId") or data.get("requestId") or ""))[:64]
        text = f"{what}: {code} (HTTP {status}){': ' + message if message else ''}"
        if request_id:
            text += f" [request id {request_id}]"
        if (code in _TRANSIENT_CODES or code.startswith("Throttling") or status >= 500
                or getattr(exc, "name", "") == "ThrottlingException"):
            return TransientKmsError(text, code=code)
        return KeyInvalidError(text, code=code)
    # Transport failures come wrapped in darabonba's UnretryableException / RetryError; their
    # text may carry the URL (with a security token for RPC-signed requests): keep only a kind.
    detail = str(exc).lower()
    if "timed out" in detail or "timeout" in detail:
        return TransientKmsError(f"{what}: request timed out", code="RequestTimeout")
    return TransientKmsError(f"{what}: cannot reach the service ({type(exc).__name__})", code="ServiceUnavailable")


class _StaticCredentials(ICredentials):  # type: ignore[misc]
    def __init__(self, access_key_id: str, access_key_secret: str, security_token: str) -> None:
        self._id, self._secret, self._token = access_key_id, access_key_secret, security_token

    def get_access_key_id(self) -> str:
        return self._id

    def get_access_key_secret(self) -> str:
        return self._secret

    def get_security_token(self) -> str:
        return self._token

    def get_provider_name(self) -> str:
        return "sls_envelope_assume_role"

    def __repr__(self) -> str:
        return f"_StaticCredentials(access_key_id={_mask(self._id)!r})"


class _AssumedRoleSession(ICredentialsProvider):  # type: ignore[misc]
    """Temporary credentials of one RAM role, from STS AssumeRole, cached and refreshed
    _REFRESH_BEFORE_SECONDS before they expire.  Thread-safe: one thread refreshes."""

    def __init__(self, fetch: Callable[[], Tuple[_StaticCredentials, float]], clock: Callable[[], float]) -> None:
        self._fetch = fetch
        self._clock = clock
        self._lock = threading.Lock()
        self._credentials: Optional[_StaticCredentials] = None
        self._expires_at = 0.0

    def ensure_fresh(self) -> bool:
        """Fetch new credentials if none or about to expire; True if it fetched."""
        with self._lock:
            if self._credentials is not None and self._clock() < self._expires_at - _REFRESH_BEFORE_SECONDS:
                return False
            self._credentials, self._expires_at = self._fetch()
            return True

    def invalidate(self) -> None:
        with self._lock:
            self._credentials = None

    def get_credentials(self) -> _StaticCredentials:
        self.ensure_fresh()
        assert self._credentials is not None
        return self._credentials

    async def get_credentials_async(self) -> _StaticCredentials:  # pragma: no cover - sync use only
        return self.get_credentials()

    def get_provider_name(self) -> str:
        return "sls_envelope_assume_role"

    def __repr__(self) -> str:
        return "_AssumedRoleSession(<credentials hidden>)"


def _b64decode(value: Optional[str], field: str) -> bytes:
    try:
        return base64.b64decode(value or "", validate=True)
    except (binascii.Error, ValueError):
        raise KmsUnavailableError(f"KMS answered with a {field} that is not base64", code="LastResponseInvalid") from None


class AliyunKms(KmsClient):
    """Alibaba Cloud KMS through the official SDK.

    ``endpoint`` defaults to ``kms.<region_id>.aliyuncs.com`` and ``sts_endpoint`` to the STS
    endpoint of the region; point both at ``sls-envelope kms serve`` (with ``protocol="http"``)
    to test without the cloud.  ``assume_role(arn)`` returns a client acting as that RAM role
    (its temporary credentials cached and refreshed), as the log service does for BYOK.
    ``retry_policy``, timeouts (seconds), ``signature_algorithm`` (``"v2"`` selects the older
    HMAC-SHA1 RPC signature) and ``sleep``/``clock`` (for tests) are optional.
    """

    def __init__(
        self,
        region_id: str,
        *,
        access_key_id: str,
        access_key_secret: str,
        security_token: Optional[str] = None,
        endpoint: Optional[str] = None,
        protocol: str = "https",
        sts_endpoint: Optional[str] = None,
        retry_policy: Optional[RetryPolicy] = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 10.0,
        signature_algorithm: Optional[str] = None,
        session_seconds: int = _DEFAULT_SESSION_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not region_id or not access_key_id or not access_key_secret:
            raise ValueError("AliyunKms needs region_id, access_key_id and access_key_secret")
        if protocol.lower() not in ("http", "https"):
            raise ValueError("protocol must be 'http' or 'https'")
        if not 900 <= session_seconds <= 43200:
            raise ValueError("session_seconds must be within 900..43200 (STS limits)")
        self.region_id = region_id
        self.endpoint = endpoint
        self.sts_endpoint = sts_endpoint
        self.protocol = protocol.lower()
        self.role_arn: Optional[str] = None
        self._access_key_id = access_key_id
        self._retry_policy = retry_policy or RetryPolicy()
        self._timeouts_ms = (int(connect_timeout * 1000), int(read_timeout * 1000))
        self._signature_algorithm = signature_algorithm
        self._session_seconds = session_seconds
        self._sleep = sleep
        self._clock = clock
        self._scrub = _Scrubber()
        self._scrub.add(access_key_secret, security_token)
        self._session: Optional[_AssumedRoleSession] = None
        self._roles: Dict[str, AliyunKms] = {}
        self._roles_lock = threading.Lock()
        _install_url_filter()
        if os.environ.get("DEBUG", "").lower() == "sdk":
            log.warning("DEBUG=sdk makes the Alibaba Cloud SDK print request headers, credentials included")
        self._kms = _KmsSdkClient(self._config(
            access_key_id=access_key_id, access_key_secret=access_key_secret,
            security_token=security_token or None, endpoint=endpoint))
        self._sts_config = self._config(
            access_key_id=access_key_id, access_key_secret=access_key_secret,
            security_token=security_token or None, endpoint=sts_endpoint)
        self._sts: Optional[Any] = None

    def _config(self, **fields: Any) -> Any:
        config = _SdkConfig(region_id=self.region_id, protocol=self.protocol,
                            connect_timeout=self._timeouts_ms[0], read_timeout=self._timeouts_ms[1], **fields)
        if self._signature_algorithm:
            config.signature_algorithm = self._signature_algorithm
        return config

    # -- reprs never show a secret, and the object is not picklable (it holds credentials) ----

    def __repr__(self) -> str:
        role = f", role_arn={self.role_arn!r}" if self.role_arn else ""
        return (f"AliyunKms(region_id={self.region_id!r}, endpoint={self.endpoint!r}, "
                f"access_key_id={_mask(self._access_key_id)!r}{role})")

    def __reduce__(self) -> Any:
        raise TypeError("AliyunKms holds credentials and cannot be pickled")

    # -- calls ---------------------------------------------------------------------------------

    def _call(self, what: str, operation: Callable[[], T]) -> T:
        """One SDK call, retried when transient; for a role client, re-assumes the role once if
        the server no longer accepts its temporary credentials (e.g. they were revoked)."""

        def attempt() -> T:
            try:
                return operation()
            except (KeyInvalidError, KmsUnavailableError, TransientKmsError):
                raise
            except Exception as exc:  # the SDK raises many kinds; classify and drop the chain
                raise classify_sdk_error(exc, what, self._scrub) from None

        def with_fresh_credentials() -> T:
            if self._session is None:
                return attempt()
            fetched = self._session.ensure_fresh()
            try:
                return attempt()
            except KeyInvalidError as exc:
                stale = exc.code.startswith("InvalidSecurityToken") or exc.code == "InvalidAccessKeyId.NotFound"
                if fetched or not stale:
                    raise
                log.info("%s: temporary credentials of %s refused (%s); assuming the role again", what, self.role_arn, exc.code)
                self._session.invalidate()
                self._session.ensure_fresh()
                return attempt()

        return call_with_retries(with_fresh_credentials, policy=self._retry_policy, what=what, sleep=self._sleep)

    def _runtime(self) -> Any:
        return _RuntimeOptions()

    def generate_data_key(self, key_id: str, *, context: EncryptionContext, number_of_bytes: int = 32) -> DataKey:
        if not key_id:
            raise ValueError("key_id is empty")
        if not 1 <= number_of_bytes <= 1024:
            raise ValueError("number_of_bytes must be within 1..1024 (KMS limit)")
        request = _kms_models.GenerateDataKeyRequest(
            key_id=key_id, number_of_bytes=number_of_bytes, encryption_context=dict(context) if context else None)
        response = self._call("KMS GenerateDataKey",
                              lambda: self._kms.generate_data_key_with_options(request, self._runtime()))
        body = response.body
        plaintext = _b64decode(body.plaintext, "Plaintext")
        if len(plaintext) != number_of_bytes:
            raise KmsUnavailableError("KMS answered with a data key of the wrong length", code="LastResponseInvalid")
        return DataKey(key_id=body.key_id or key_id, plaintext=plaintext,
                       ciphertext_blob=_b64decode(body.ciphertext_blob, "CiphertextBlob"))

    def decrypt(self, ciphertext_blob: bytes, *, context: EncryptionContext) -> bytes:
        # As every backend does (kms/base.py's contract, tests/kms_contract.py): a blob
        # that is not bytes is a bad argument, an empty one a malformed ciphertext.
        if not isinstance(ciphertext_blob, (bytes, bytearray, memoryview)):
            raise ValueError("ciphertext_blob must be bytes")
        if not len(ciphertext_blob):
            raise KeyInvalidError("KMS: empty wrapped data key", code="InvalidCiphertext")
        request = _kms_models.DecryptRequest(
            ciphertext_blob=base64.b64encode(ciphertext_blob).decode("ascii"),
            encryption_context=dict(context) if context else None)
        response = self._call("KMS Decrypt", lambda: self._kms.decrypt_with_options(request, self._runtime()))
        return _b64decode(response.body.plaintext, "Plaintext")

    def describe_key(self, key_id: str) -> Dict[str, Any]:
        if not key_id:
            raise ValueError("key_id is empty")
        request = _kms_models.DescribeKeyRequest(key_id=key_id)
        response = self._call("KMS DescribeKey", lambda: self._kms.describe_key_with_options(request, self._runtime()))
        metadata = response.body.key_metadata
        result: Dict[str, Any] = metadata.to_map() if metadata is not None else {}
        if "KeyId" not in result or "KeyState" not in result:
            raise KmsUnavailableError("KMS DescribeKey answered without KeyId/KeyState", code="LastResponseInvalid")
        result.setdefault("Description", "")
        return result

    # -- roles ---------------------------------------------------------------------------------

    def _sts_client(self) -> Any:
        with self._roles_lock:
            if self._sts is None:
                self._sts = _StsSdkClient(self._sts_config)
            return self._sts

    def _assume(self, arn: str) -> Tuple[_StaticCredentials, float]:
        request = _sts_models.AssumeRoleRequest(
            role_arn=arn, role_session_name=_ROLE_SESSION_NAME, duration_seconds=self._session_seconds)
        sts = self._sts_client()
        what = "STS AssumeRole"

        def call() -> Any:
            try:
                return sts.assume_role_with_options(request, self._runtime())
            except Exception as exc:
                raise classify_sdk_error(exc, what, self._scrub) from None

        response = call_with_retries(call, policy=self._retry_policy, what=what, sleep=self._sleep)
        creds = response.body.credentials if response.body is not None else None
        if creds is None or not creds.access_key_id or not creds.access_key_secret or not creds.security_token:
            raise KmsUnavailableError("STS AssumeRole answered without credentials", code="LastResponseInvalid")
        self._scrub.add(creds.access_key_secret, creds.security_token)
        now = self._clock()
        lifetime = float(self._session_seconds)
        if creds.expiration:
            # Trust a shorter Expiration (the role's maximum session may be shorter), but not
            # one that our clock already sees as (nearly) past: that is clock skew, and
            # believing it would make every call assume the role again.
            try:
                by_server = calendar.timegm(time.strptime(creds.expiration, "%Y-%m-%dT%H:%M:%SZ")) - now
            except ValueError:
                by_server = lifetime
            if by_server <= _REFRESH_BEFORE_SECONDS:
                log.warning("STS Expiration %s is (nearly) past by our clock: clock skew? assuming %d s",
                            creds.expiration, self._session_seconds)
            else:
                lifetime = min(lifetime, by_server)
        expires_at = now + lifetime
        log.info("assumed role %s (credentials valid until %s)", arn, creds.expiration or "unknown")
        return _StaticCredentials(creds.access_key_id, creds.access_key_secret, creds.security_token), expires_at

    def assume_role(self, arn: str) -> "AliyunKms":
        """This KMS acting as RAM role arn, through STS AssumeRole signed by this client's
        credentials.  The role client is cached per ARN, but every call of assume_role drops its
        temporary credentials, so the next call assumes the role again: KeyManager calls it at
        each revalidation of a BYOK key, and a role whose trust policy no longer admits the log
        service stops that key within ``revalidate_after`` rather than when a cached STS session
        (up to 3600 s) runs out (issue 15 item 4).  Between revalidations the credentials are
        reused and refreshed before they expire.  Role errors (EntityNotExist.Role,
        NoPermission...) surface as KeyInvalidError on the first call that needs them."""
        if self.role_arn is not None:
            raise ValueError("assume_role on a role client: assume roles from the account's client")
        if not ROLE_ARN_PATTERN.match(arn or ""):
            raise ValueError("role ARN must look like acs:ram::<account id>:role/<role name>")
        with self._roles_lock:
            existing = self._roles.get(arn)
            if existing is not None:
                assert existing._session is not None
                existing._session.invalidate()  # re-check the trust: assume again on next use
                return existing
            role = object.__new__(AliyunKms)
            role.__dict__.update(self.__dict__)  # same region, endpoints, policy, scrubber, STS client
            role.role_arn = arn
            role._roles = {}
            role._roles_lock = threading.Lock()
            role._session = _AssumedRoleSession(lambda: self._assume(arn), self._clock)
            role._kms = _KmsSdkClient(self._config(
                credential=_CredentialClient(provider=role._session), endpoint=self.endpoint))
            self._roles[arn] = role
            return role

    def close(self) -> None:
        """Nothing to release: the SDK keeps pooled HTTP sessions process-wide."""
