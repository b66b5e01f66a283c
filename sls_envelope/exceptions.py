"""Every exception sls-envelope raises on purpose.

All derive from :class:`SlsEnvelopeError`, so one ``except`` clause catches them;
the ones that describe bad input also derive from :class:`ValueError`.  Messages
never contain key material, plaintext or credentials.
"""

from __future__ import annotations

from typing import Optional

import cryptography.exceptions

__all__ = [
    "SlsEnvelopeError",
    "InvalidTag",
    "ConfigError",
    "FormatError",
    "KeyInvalidError",
    "KmsUnavailableError",
]


class SlsEnvelopeError(Exception):
    """Base class of every sls-envelope error."""


class InvalidTag(SlsEnvelopeError, cryptography.exceptions.InvalidTag):
    """Authentication failed: wrong key, nonce or associated data, or tampered data.

    It is also a :class:`cryptography.exceptions.InvalidTag`, so code written for
    pyca/cryptography's AEADs catches it unchanged.  For batch calls, :attr:`index`
    names the first message that failed (``None`` for single calls).
    """

    def __init__(self, message: str = "", *, index: Optional[int] = None) -> None:
        super().__init__(message)
        self.index = index


class ConfigError(ValueError, SlsEnvelopeError):
    """An ``encrypt_conf`` or a Logstore request is invalid or not allowed.

    :attr:`code` is a log-service style error code such as ``ParameterInvalid``.
    """

    def __init__(self, message: str, *, code: str = "ParameterInvalid") -> None:
        super().__init__(message)
        self.code = code


class FormatError(ValueError, SlsEnvelopeError):
    """A sealed batch or stream is malformed (bad magic, version, length, suite...)."""


class KeyInvalidError(SlsEnvelopeError):
    """The key (or the role to reach it) cannot be used: disabled, pending deletion,
    not found, not permitted, or the role cannot be assumed.

    :attr:`code` carries the KMS-style code, e.g. ``Rejected.Disabled``.
    """

    def __init__(self, message: str, *, code: str = "Forbidden.KeyNotFound") -> None:
        super().__init__(message)
        self.code = code


class KmsUnavailableError(SlsEnvelopeError):
    """The KMS could not be reached or kept failing transiently after bounded retries."""

    def __init__(self, message: str, *, code: str = "ServiceUnavailable") -> None:
        super().__init__(message)
        self.code = code
