"""AWS KMS as a KmsClient, over ``boto3``.

GenerateDataKey, Decrypt and DescribeKey, with the encryption context passed as
AWS KMS's own ``EncryptionContext`` (AWS binds it as AAD and logs it in CloudTrail;
keys and values are not secret).  The CiphertextBlob that AWS returns names its
key, so it is stored as is.

Errors (docs/KMS.md): DisabledException, KMSInvalidStateException,
NotFoundException, AccessDeniedException (and bad or expired credentials) map to
:class:`KeyInvalidError`; InvalidCiphertextException (wrong context, tampered blob)
to KeyInvalidError with code ``InvalidCiphertext``; throttling, 5xx, connection
failures and timeouts are retried a bounded number of times (botocore's own
retries are switched off on clients we build, so the bound is ours alone) and
then raise :class:`KmsUnavailableError`.

Roles: :meth:`AwsKms.assume_role` takes an IAM role ARN (``arn:aws:iam::...:role/...``,
any partition) and returns a client that acts as that role via STS AssumeRole,
refreshing its temporary credentials before they expire.  Alibaba Cloud RAM role
ARNs (``acs:ram::...``) and anything else are refused with KeyInvalidError code
``Forbidden.RoleNotAssumable``.

Secrets: credentials stay inside botocore; reprs show region and endpoint only.
botocore logs response bodies and signed requests at DEBUG, which would include
data-key plaintexts and session tokens; importing this module adds a filter to
those botocore loggers that redacts such records (see :class:`_RedactKmsSecrets`).
"""

from __future__ import annotations

import datetime
import logging
import re
import threading
from typing import Any, Callable, Dict, Optional, TypeVar

import boto3
import botocore.config
import botocore.exceptions

from ..exceptions import KeyInvalidError, KmsUnavailableError
from ._context import checked_context
from .base import DataKey, EncryptionContext, KmsClient, RetryPolicy, TransientKmsError, call_with_retries

__all__ = ["AwsKms"]

T = TypeVar("T")

_IAM_ROLE_ARN = re.compile(r"\Aarn:aws(?:-[a-z]+)*:iam::\d{12}:role/[\w+=,.@/-]{1,512}\Z", re.ASCII)
_ROLE_SESSION_NAME = "sls-envelope"
_ROLE_SESSION_SECONDS = 3600
# Refresh assumed-role credentials this long before they expire.
_REFRESH_MARGIN = datetime.timedelta(minutes=5)

_TRANSIENT_CODES = {
    "ThrottlingException": "Throttling",
    "Throttling": "Throttling",
    "ThrottledException": "Throttling",
    "TooManyRequestsException": "Throttling",
    "RequestLimitExceeded": "Throttling",
    "LimitExceededException": "Throttling",
    "KMSInternalException": "ServiceUnavailable",
    "DependencyTimeoutException": "Timeout",
    "KeyUnavailableException": "ServiceUnavailable",
    "ServiceUnavailable": "ServiceUnavailable",
    "ServiceUnavailableException": "ServiceUnavailable",
    "InternalFailure": "ServiceUnavailable",
    "InternalError": "ServiceUnavailable",
    "RequestTimeout": "Timeout",
    "RequestTimeoutException": "Timeout",
    "IDPCommunicationError": "ServiceUnavailable",
}

_KEY_INVALID_CODES = {
    "DisabledException": "Rejected.Disabled",
    "NotFoundException": "Forbidden.KeyNotFound",
    "AccessDeniedException": "Forbidden.NoPermission",
    "AccessDenied": "Forbidden.NoPermission",
    "InvalidGrantTokenException": "Forbidden.NoPermission",
    "UnrecognizedClientException": "Forbidden.NoPermission",
    "InvalidClientTokenId": "Forbidden.NoPermission",
    "ExpiredTokenException": "Forbidden.NoPermission",
    "ExpiredToken": "Forbidden.NoPermission",
    "InvalidSignatureException": "Forbidden.NoPermission",
    "SignatureDoesNotMatch": "Forbidden.NoPermission",
    "IncompleteSignature": "Forbidden.NoPermission",
    "InvalidCiphertextException": "InvalidCiphertext",
    "IncorrectKeyException": "InvalidCiphertext",
    "InvalidKeyUsageException": "Forbidden.KeyConfig",
    "KMSInvalidStateException": "Rejected.InvalidState",
}

_AWS_TO_KEY_STATE = {"Enabled": "Enabled", "PendingDeletion": "PendingDeletion", "PendingReplicaDeletion": "PendingDeletion"}


class AwsKms(KmsClient):
    """A KmsClient over AWS KMS (or anything speaking its API, such as moto_server).

    :param region_name: the AWS region of the keys.
    :param endpoint_url: a KMS endpoint other than AWS's (VPC endpoint, moto_server).
    :param client: a ready ``boto3.client("kms")`` to use instead of building one
        (its retry and timeout config is then the caller's).
    :param retry_policy: bounds on retries of transient failures.
    :param connect_timeout, read_timeout: seconds, for clients this class builds.
    :param session: the ``boto3.Session`` whose credentials build clients (default:
        the standard credential chain) and call STS for :meth:`assume_role`.
    :param sts_endpoint_url: an STS endpoint other than AWS's regional one.
    """

    def __init__(
        self,
        *,
        region_name: str,
        endpoint_url: Optional[str] = None,
        client: Any = None,
        retry_policy: Optional[RetryPolicy] = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 10.0,
        session: Optional[boto3.session.Session] = None,
        sts_endpoint_url: Optional[str] = None,
    ) -> None:
        if not isinstance(region_name, str) or not region_name:
            raise ValueError("region_name must be a non-empty str")
        self._region_name = region_name
        self._endpoint_url = endpoint_url
        self._sts_endpoint_url = sts_endpoint_url
        self._retry_policy = retry_policy or RetryPolicy()
        self._config = botocore.config.Config(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            # One HTTP attempt per call: call_with_retries alone bounds the retries.
            retries={"total_max_attempts": 1, "mode": "standard"},
        )
        self._session = session
        self._lock = threading.Lock()
        self._client = client if client is not None else self._new_client("kms", endpoint_url)
        # Set on clients returned by assume_role: re-assumes the role before expiry.
        self._refresh: Optional[Callable[[], "tuple[Any, datetime.datetime]"]] = None
        self._expires: Optional[datetime.datetime] = None
        self._role_arn: Optional[str] = None
        self._parent: Optional[AwsKms] = None

    def __repr__(self) -> str:
        role = f", role_arn={self._role_arn!r}" if self._role_arn else ""
        return f"AwsKms(region_name={self._region_name!r}, endpoint_url={self._endpoint_url!r}{role})"

    # -- KmsClient -------------------------------------------------------------------

    def generate_data_key(
        self, key_id: str, *, context: EncryptionContext, number_of_bytes: int = 32
    ) -> DataKey:
        _check_key_id(key_id)
        if not isinstance(number_of_bytes, int) or not 1 <= number_of_bytes <= 1024:
            raise ValueError("AWS KMS makes data keys of 1 to 1024 bytes")
        params: Dict[str, Any] = {"KeyId": key_id, "NumberOfBytes": number_of_bytes}
        params.update(_context_param(context))
        response = self._call("AWS KMS GenerateDataKey", lambda client: client.generate_data_key(**params))
        try:
            plaintext = bytes(response["Plaintext"])
            blob = bytes(response["CiphertextBlob"])
        except (KeyError, TypeError):
            raise KmsUnavailableError("AWS KMS GenerateDataKey returned a malformed response", code="InvalidResponse") from None
        if len(plaintext) != number_of_bytes:
            raise KmsUnavailableError("AWS KMS GenerateDataKey returned a malformed response", code="InvalidResponse")
        return DataKey(key_id=key_id, plaintext=plaintext, ciphertext_blob=blob)

    def decrypt(self, ciphertext_blob: bytes, *, context: EncryptionContext) -> bytes:
        if not isinstance(ciphertext_blob, (bytes, bytearray, memoryview)):
            raise ValueError("ciphertext_blob must be bytes")
        blob = bytes(ciphertext_blob)
        if not blob:
            # AWS rejects an empty blob before KMS sees it (parameter validation).
            raise KeyInvalidError("AWS KMS: empty wrapped data key", code="InvalidCiphertext")
        params: Dict[str, Any] = {"CiphertextBlob": blob}
        params.update(_context_param(context))
        response = self._call("AWS KMS Decrypt", lambda client: client.decrypt(**params))
        try:
            return bytes(response["Plaintext"])
        except (KeyError, TypeError):
            raise KmsUnavailableError("AWS KMS Decrypt returned a malformed response", code="InvalidResponse") from None

    def describe_key(self, key_id: str) -> Dict[str, Any]:
        """AWS KeyState Enabled -> Enabled; PendingDeletion and PendingReplicaDeletion ->
        PendingDeletion; every other state (Disabled, PendingImport, Unavailable,
        Creating, Updating) -> Disabled, since none of them can make or open data keys."""
        _check_key_id(key_id)
        response = self._call("AWS KMS DescribeKey", lambda client: client.describe_key(KeyId=key_id))
        metadata = response.get("KeyMetadata") if isinstance(response, dict) else None
        if not isinstance(metadata, dict):
            raise KmsUnavailableError("AWS KMS DescribeKey returned a malformed response", code="InvalidResponse")
        aws_state = str(metadata.get("KeyState", ""))
        return {
            "KeyId": metadata.get("KeyId"),
            "Arn": metadata.get("Arn"),
            "KeyState": _AWS_TO_KEY_STATE.get(aws_state, "Disabled"),
            "AwsKeyState": aws_state,
            "CreationDate": _iso_utc(metadata.get("CreationDate")),
            "Description": metadata.get("Description", ""),
            "KeySpec": metadata.get("KeySpec"),
            "KeyUsage": metadata.get("KeyUsage"),
            "Origin": metadata.get("Origin"),
            "DeletionDate": _iso_utc(metadata.get("DeletionDate")),
        }

    def assume_role(self, arn: str) -> "AwsKms":
        """A client acting as the IAM role arn (STS AssumeRole); see the module doc."""
        if self._role_arn is not None and self._parent is not None:
            return self._parent.assume_role(arn)
        if not isinstance(arn, str) or not _IAM_ROLE_ARN.match(arn):
            kind = "an Alibaba Cloud RAM role" if isinstance(arn, str) and arn.startswith("acs:ram:") else "not an IAM role ARN"
            raise KeyInvalidError(f"AWS KMS cannot assume {kind}", code="Forbidden.RoleNotAssumable")
        child = AwsKms.__new__(AwsKms)
        child.__dict__.update(self.__dict__)
        child._lock = threading.Lock()
        child._role_arn = arn
        child._parent = self
        child._refresh = lambda: self._assumed_client(arn)
        child._client, child._expires = child._refresh()
        return child

    def close(self) -> None:
        with self._lock:
            close = getattr(self._client, "close", None)
            if callable(close):
                close()

    # -- plumbing --------------------------------------------------------------------

    def _new_client(self, service: str, endpoint_url: Optional[str], **credentials: Any) -> Any:
        session = self._session or boto3.session.Session()
        return session.client(
            service, region_name=self._region_name, endpoint_url=endpoint_url, config=self._config, **credentials
        )

    def _assumed_client(self, arn: str) -> "tuple[Any, datetime.datetime]":
        def assume(sts: Any) -> Any:
            return sts.assume_role(
                RoleArn=arn, RoleSessionName=_ROLE_SESSION_NAME, DurationSeconds=_ROLE_SESSION_SECONDS
            )

        sts = self._new_client("sts", self._sts_endpoint_url)
        try:
            response = _with_retries(self._retry_policy, "AWS STS AssumeRole", lambda: assume(sts), role=True)
        finally:
            sts.close()
        try:
            credentials = response["Credentials"]
            client = self._new_client(
                "kms",
                self._endpoint_url,
                aws_access_key_id=credentials["AccessKeyId"],
                aws_secret_access_key=credentials["SecretAccessKey"],
                aws_session_token=credentials["SessionToken"],
            )
            expires = _as_utc(credentials["Expiration"])
        except (KeyError, TypeError, ValueError):
            raise KmsUnavailableError("AWS STS AssumeRole returned a malformed response", code="InvalidResponse") from None
        return client, expires

    def _current_client(self) -> Any:
        if self._refresh is None:
            return self._client
        with self._lock:
            assert self._expires is not None
            if datetime.datetime.now(datetime.timezone.utc) >= self._expires - _REFRESH_MARGIN:
                old = self._client
                self._client, self._expires = self._refresh()
                old.close()
            return self._client

    def _call(self, what: str, operation: Callable[[Any], T]) -> T:
        return _with_retries(self._retry_policy, what, lambda: operation(self._current_client()))


def _with_retries(policy: RetryPolicy, what: str, operation: Callable[[], T], *, role: bool = False) -> T:
    def attempt() -> T:
        try:
            return operation()
        except botocore.exceptions.ClientError as exc:
            raise _map_client_error(exc, what, role=role) from None
        except (botocore.exceptions.ConnectTimeoutError, botocore.exceptions.ReadTimeoutError):
            raise TransientKmsError(f"{what}: timed out", code="Timeout") from None
        except (
            botocore.exceptions.EndpointConnectionError,
            botocore.exceptions.ConnectionClosedError,
            botocore.exceptions.ConnectionError,
            botocore.exceptions.HTTPClientError,
        ):
            raise TransientKmsError(f"{what}: connection failed", code="ServiceUnavailable") from None
        except (
            botocore.exceptions.NoCredentialsError,
            botocore.exceptions.PartialCredentialsError,
            botocore.exceptions.CredentialRetrievalError,
        ):
            raise KeyInvalidError(f"{what}: no usable AWS credentials", code="Forbidden.NoPermission") from None
        except botocore.exceptions.ParamValidationError:
            raise ValueError(f"{what}: parameters rejected by botocore validation") from None
        except botocore.exceptions.BotoCoreError:
            raise KmsUnavailableError(f"{what}: request failed", code="RequestFailed") from None

    return call_with_retries(attempt, policy=policy, what=what)


def _map_client_error(exc: botocore.exceptions.ClientError, what: str, *, role: bool) -> Exception:
    error = exc.response.get("Error", {}) if isinstance(exc.response, dict) else {}
    aws_code = str(error.get("Code", "Unknown"))
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) if isinstance(exc.response, dict) else 0
    if aws_code in _TRANSIENT_CODES:
        return TransientKmsError(f"{what}: {aws_code}", code=_TRANSIENT_CODES[aws_code])
    if isinstance(status, int) and status >= 500:
        return TransientKmsError(f"{what}: HTTP {status} {aws_code}", code="ServiceUnavailable")
    if role and aws_code in ("AccessDenied", "AccessDeniedException", "RegionDisabledException"):
        return KeyInvalidError(f"{what}: role cannot be assumed ({aws_code})", code="Forbidden.RoleNotAssumable")
    code = _KEY_INVALID_CODES.get(aws_code)
    if code == "Rejected.InvalidState":
        message = str(error.get("Message", "")).lower().replace(" ", "")
        if "pendingdeletion" in message:
            code = "Rejected.PendingDeletion"
    return KeyInvalidError(f"{what}: {aws_code}", code=code or aws_code)


def _check_key_id(key_id: str) -> None:
    if not isinstance(key_id, str) or not key_id:
        raise ValueError("key_id must be a non-empty str (key id, key ARN, alias name or alias ARN)")


def _context_param(context: EncryptionContext) -> Dict[str, Any]:
    checked = checked_context(context)
    # AWS treats an absent and an empty EncryptionContext alike; send none when empty.
    return {"EncryptionContext": checked} if checked else {}


def _as_utc(value: Any) -> datetime.datetime:
    if isinstance(value, datetime.datetime):
        return value.astimezone(datetime.timezone.utc) if value.tzinfo else value.replace(tzinfo=datetime.timezone.utc)
    if isinstance(value, (int, float)):
        return datetime.datetime.fromtimestamp(value, tz=datetime.timezone.utc)
    raise ValueError("not a timestamp")


def _iso_utc(value: Any) -> Optional[str]:
    if value is None:
        return None
    try:
        return _as_utc(value).strftime("%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        return None


class _RedactKmsSecrets(logging.Filter):
    """Replaces botocore DEBUG records that would carry secrets with a placeholder.

    botocore logs every response body (botocore.parsers: GenerateDataKey and Decrypt
    bodies hold the base64 plaintext; STS AssumeRole bodies hold the secret key and
    session token) and the signed request (botocore.endpoint, botocore.auth: the
    X-Amz-Security-Token header of a session).  Records are kept, their text is not.
    """

    _MARKERS = ("Plaintext", "SecretAccessKey", "SessionToken", "ecurity-token", "ecurity-Token")

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # a record that cannot format is left to the handler to report
            return True
        if any(marker in text for marker in self._MARKERS):
            record.msg = "[redacted by sls_envelope: record held KMS plaintext or AWS credentials]"
            record.args = None
        return True


_REDACT_LOGGERS = ("botocore.parsers", "botocore.endpoint", "botocore.auth", "botocore.hooks", "botocore.retryhandler")


def _install_log_redaction() -> None:
    for name in _REDACT_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _RedactKmsSecrets) for f in logger.filters):
            logger.addFilter(_RedactKmsSecrets())


_install_log_redaction()
