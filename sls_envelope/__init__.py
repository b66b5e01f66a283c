"""sls-envelope: the encryption core of a log service.

AEADs with pyca/cryptography's API over a C kernel with CPU dispatch::

    from sls_envelope import AESGCM, SM4GCM, InvalidTag
    aead = AESGCM(AESGCM.generate_key())
    blob = aead.encrypt(nonce, data, associated_data)
"""

from __future__ import annotations

from .aead import AESGCM, SM4GCM, available_implementations
from .exceptions import (
    ConfigError,
    FormatError,
    InvalidTag,
    KeyInvalidError,
    KmsUnavailableError,
    SlsEnvelopeError,
)

__version__ = "0.1.0"

__all__ = [
    "AESGCM",
    "SM4GCM",
    "available_implementations",
    "SlsEnvelopeError",
    "InvalidTag",
    "ConfigError",
    "FormatError",
    "KeyInvalidError",
    "KmsUnavailableError",
]
