"""Every exception sls-envelope raises on purpose, and the error contract it answers with.

All derive from :class:`SlsEnvelopeError`, so one ``except`` clause catches them;
the ones that describe bad input also derive from :class:`ValueError`.  Messages
never contain key material, plaintext or credentials.

The error contract (docs/LOGSTORE.md has the table with its sources): every
:class:`SlsEnvelopeError` carries

* :attr:`~SlsEnvelopeError.code`: the Simple Log Service error code for what SLS itself
  checks (``LogStoreInfoInvalid``, ``LogStoreAlreadyExist``, ``LogStoreNotExist``,
  ``ParameterInvalid``), the KMS error code, unchanged, for what the KMS refused
  (``Rejected.Disabled``, ``Forbidden.KeyNotFound``...), or one of ours for what has no
  SLS counterpart (``InvalidTag``, ``InvalidFormat``, ``EncryptionDisabled``);
* :attr:`~SlsEnvelopeError.http_status`: the status the SLS (or, for KMS codes, the
  KMS) documentation gives that code;
* :meth:`~SlsEnvelopeError.error_body`: the SLS error body
  ``{"errorCode": ..., "errorMessage": ...}``, so that a server built on the library
  answers any of them with ``(exc.http_status, exc.error_body())``.
"""

from __future__ import annotations

from typing import ClassVar, Dict, Mapping, Optional

import cryptography.exceptions

__all__ = [
    "SlsEnvelopeError",
    "InvalidTag",
    "ConfigError",
    "FormatError",
    "KeyInvalidError",
    "KmsUnavailableError",
    "EncryptionDisabledError",
    "KeyStoreError",
    "KeyStoreUnavailableError",
    "SLS_ERROR_STATUS",
    "KMS_ERROR_STATUS",
    "LOGSTORE_INFO_INVALID",
    "REDUNDANT_KEY_MESSAGE",
    "INVALID_ENCRYPT_CONF",
]

#: The SLS code of an invalid Logstore body, among them an invalid ``encrypt_conf``.
LOGSTORE_INFO_INVALID = "LogStoreInfoInvalid"

#: The message (with code LogStoreInfoInvalid) SLS answers for a key in the CreateLogstore /
#: UpdateLogstore body it does not know.  The official Python SDK compares this exact
#: pair and then retries with basic parameters only, dropping encrypt_conf
#: (aliyun/log/logclient.py, create_logstore and update_logstore): never answer it for
#: a problem inside encrypt_conf, or that retry makes the Logstore unencrypted.
REDUNDANT_KEY_MESSAGE = "redundant key exist in json"

#: How every message about an invalid encrypt_conf begins, as on the real service.
INVALID_ENCRYPT_CONF = "The encrypt_conf is invalid"

#: HTTP status of each SLS error code we use, from the SLS API reference: "Error codes"
#: (https://www.alibabacloud.com/help/en/sls/developer-reference/error-codes) and the
#: CreateLogStore / GetLogStore / UpdateLogStore pages.
SLS_ERROR_STATUS: Mapping[str, int] = {
    "ParameterInvalid": 400,
    "LogStoreInfoInvalid": 400,
    "LogStoreAlreadyExist": 400,
    "LogStoreNotExist": 404,
    "ProjectNotExist": 404,
    "Unauthorized": 401,
    "InternalServerError": 500,
}

#: HTTP status of each KMS / STS / RAM error code a backend may carry, from Alibaba
#: Cloud KMS "Common errors" and the API pages of GenerateDataKey, Decrypt, DescribeKey
#: and STS AssumeRole.  Codes not listed fall back by family (see :func:`_kms_status`).
KMS_ERROR_STATUS: Mapping[str, int] = {
    "InternalFailure": 500,
    "ServiceUnavailableTemporary": 503,
    "ServiceUnavailable": 503,
    "Throttling": 503,
    "InvalidAccessKeyId.NotFound": 404,
    "Forbidden.KeyNotFound": 404,
    "Forbidden.AliasNotFound": 404,
    "EntityNotExist.Role": 404,
    "Forbidden.NoPermission": 403,
    "Forbidden.AccessKey": 403,
    "NoPermission": 403,
    "Rejected.Disabled": 409,
    "Rejected.PendingDeletion": 409,
    "Rejected.StateModifiedFailed": 409,
    "InvalidAction.NotFound": 404,
    "EntityNotExist.User": 404,
    "InvalidParameter": 400,
    "InvalidParameter.DurationSeconds": 400,
    "InvalidParameter.RoleArn": 400,
    "InvalidParameter.RoleSessionName": 400,
    "MissingParameter": 400,
    "InvalidCiphertext": 400,
    # The API gateway's answers to a request's signature and credentials (KMS and STS alike).
    "IncompleteSignature": 400,
    "SignatureDoesNotMatch": 400,
    "SignatureNonceUsed": 400,
    "InvalidTimeStamp.Expired": 400,
    "InvalidSecurityToken.Expired": 400,
    "InvalidSecurityToken.MismatchWithAccessKey": 400,
}


def _kms_status(code: str, default: int) -> int:
    """The KMS status of code; unlisted codes by family: ``Rejected.*`` (the key's state
    forbids it) 409 like the listed ones, ``*NotFound``/``EntityNotExist.*`` 404,
    ``Forbidden.*`` 403, else default."""
    status = KMS_ERROR_STATUS.get(code)
    if status is not None:
        return status
    if code.startswith("Rejected."):
        return 409
    if code.endswith("NotFound") or code.startswith("EntityNotExist."):
        return 404
    if code.startswith("Forbidden."):
        return 403
    return default


class SlsEnvelopeError(Exception):
    """Base class of every sls-envelope error: a message, a :attr:`code` and an
    :attr:`http_status` (see the module docstring)."""

    #: The code and status of this class when none is given.
    default_code: ClassVar[str] = "InternalServerError"
    default_status: ClassVar[int] = 500

    code: str
    http_status: int

    def __init__(self, message: str = "", *, code: Optional[str] = None, http_status: Optional[int] = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.http_status = http_status if http_status is not None else self._status_of(self.code)

    @classmethod
    def _status_of(cls, code: str) -> int:
        return SLS_ERROR_STATUS.get(code, cls.default_status)

    def error_body(self) -> Dict[str, str]:
        """The SLS error body: ``{"errorCode": code, "errorMessage": message}``."""
        return {"errorCode": self.code, "errorMessage": self.message or type(self).__name__}


class InvalidTag(SlsEnvelopeError, cryptography.exceptions.InvalidTag):
    """Authentication failed: wrong key, nonce or associated data, or tampered data.

    It is also a :class:`cryptography.exceptions.InvalidTag`, so code written for
    pyca/cryptography's AEADs catches it unchanged.  For batch calls, :attr:`index`
    names the first message that failed (``None`` for single calls).

    Code ``InvalidTag``, status 500: on a server the data that fails is data it stored,
    so to its client this is a server fault (SLS has no code of its own for it).
    """

    default_code = "InvalidTag"
    default_status = 500

    def __init__(self, message: str = "", *, index: Optional[int] = None) -> None:
        super().__init__(message)
        self.index = index


class ConfigError(ValueError, SlsEnvelopeError):
    """An ``encrypt_conf`` or a Logstore request is invalid or not allowed.

    :attr:`code` is the SLS error code: ``LogStoreInfoInvalid`` for an invalid or
    not-allowed ``encrypt_conf`` (message beginning "The encrypt_conf is invalid"),
    ``LogStoreAlreadyExist``, ``LogStoreNotExist``, or ``ParameterInvalid`` (the default:
    bad names and arguments).
    """

    default_code = "ParameterInvalid"
    default_status = 400

    def __init__(self, message: str, *, code: str = "ParameterInvalid", http_status: Optional[int] = None) -> None:
        # Explicitly: super() would reach ValueError.__init__, which takes no keywords.
        SlsEnvelopeError.__init__(self, message, code=code, http_status=http_status)

    @classmethod
    def invalid_encrypt_conf(cls, detail: str) -> "ConfigError":
        """LogStoreInfoInvalid/400, "The encrypt_conf is invalid, <detail>" (the real
        service's form: the Java SDK's function test expects "The encrypt_conf is invalid,
        [encrypt_type] key is missing or not supported")."""
        return cls(f"{INVALID_ENCRYPT_CONF}, {detail}", code=LOGSTORE_INFO_INVALID)

    @classmethod
    def redundant_key(cls) -> "ConfigError":
        """LogStoreInfoInvalid/400 "redundant key exist in json": an unknown key at the
        top of a CreateLogstore/UpdateLogstore body (see REDUNDANT_KEY_MESSAGE)."""
        return cls(REDUNDANT_KEY_MESSAGE, code=LOGSTORE_INFO_INVALID)


class FormatError(ValueError, SlsEnvelopeError):
    """A sealed batch or stream is malformed (bad magic, version, length, suite...).

    Code ``InvalidFormat``, status 500, for the reason given at :class:`InvalidTag`.
    """

    default_code = "InvalidFormat"
    default_status = 500

    def __init__(self, message: str = "", *, code: Optional[str] = None, http_status: Optional[int] = None) -> None:
        SlsEnvelopeError.__init__(self, message, code=code, http_status=http_status)


class KeyInvalidError(SlsEnvelopeError):
    """The key (or the role to reach it) cannot be used: disabled, pending deletion,
    not found, not permitted, or the role cannot be assumed.

    :attr:`code` carries the KMS-style code, e.g. ``Rejected.Disabled``, and
    :attr:`http_status` the status KMS documents for it (``Rejected.*`` 409,
    ``Forbidden.KeyNotFound`` 404, ``Forbidden.NoPermission`` 403...).
    """

    default_code = "Forbidden.KeyNotFound"
    default_status = 403

    def __init__(self, message: str, *, code: str = "Forbidden.KeyNotFound", http_status: Optional[int] = None) -> None:
        super().__init__(message, code=code, http_status=http_status)

    @classmethod
    def _status_of(cls, code: str) -> int:
        # A cipher of a deleted Logstore answers with the SLS code LogStoreNotExist.
        return SLS_ERROR_STATUS.get(code) or _kms_status(code, cls.default_status)


class KmsUnavailableError(SlsEnvelopeError):
    """The KMS could not be reached or kept failing transiently after bounded retries.

    Status 503 (``ServiceUnavailable``, ``Throttling``...) or 500 (``InternalFailure``) as
    KMS documents them; an answer that made no sense (``InvalidKmsResponse``...) is 502.
    """

    default_code = "ServiceUnavailable"
    default_status = 503

    def __init__(self, message: str, *, code: str = "ServiceUnavailable", http_status: Optional[int] = None) -> None:
        super().__init__(message, code=code, http_status=http_status)

    @classmethod
    def _status_of(cls, code: str) -> int:
        if code in ("InvalidKmsResponse", "LastResponseInvalid", "InvalidResponse"):
            return 502
        return _kms_status(code, cls.default_status)


class EncryptionDisabledError(SlsEnvelopeError):
    """The Logstore's encryption is switched off (``enable`` false on a Logstore created
    encrypted): its cipher still decrypts what was written before but refuses to
    encrypt.  Code ``EncryptionDisabled``, status 409 (the Logstore's state, not the
    request, forbids it); a server should store the batch unencrypted instead."""

    default_code = "EncryptionDisabled"
    default_status = 409


class KeyStoreError(SlsEnvelopeError):
    """The key-record store cannot be used: a corrupt file, one locked too long, a
    read-only home asked to write.  One line naming the file; code InternalServerError."""


class KeyStoreUnavailableError(SlsEnvelopeError):
    """The key-record store could not be reached after bounded retries (503)."""

    default_code = "KeyStoreUnavailable"
    default_status = 503

    def __init__(self, message: str, *, code: str = "KeyStoreUnavailable", http_status: Optional[int] = None) -> None:
        super().__init__(message, code=code, http_status=http_status)

    @classmethod
    def _status_of(cls, code: str) -> int:
        return cls.default_status
