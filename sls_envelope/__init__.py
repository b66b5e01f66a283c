"""sls-envelope: the encryption core of a log service.

AEADs with pyca/cryptography's API over a C kernel with CPU dispatch::

    from sls_envelope import AESGCM, SM4GCM, InvalidTag
    aead = AESGCM(AESGCM.generate_key())
    blob = aead.encrypt(nonce, data, associated_data)

Logstore encryption (a key per Logstore from its encrypt_conf, through a KMS)::

    from sls_envelope import KeyManager
    from sls_envelope.kms import LocalKms
    manager = KeyManager(LocalKms("/var/lib/kms"), "/var/lib/keys.sqlite")
    cipher = manager.create_logstore("project", "logstore", {"enable": True, "encrypt_type": "default"})
    blob = cipher.encrypt(batch)            # the v1 batch format: docs/FORMAT.md
"""

from __future__ import annotations

from . import format, kms
from .aead import AESGCM, SM4GCM, available_implementations
from .conf import EncryptConf
from .exceptions import (
    ConfigError,
    EncryptionDisabledError,
    FormatError,
    InvalidTag,
    KeyInvalidError,
    KeyStoreError,
    KeyStoreUnavailableError,
    KmsUnavailableError,
    SlsEnvelopeError,
)
from .keys import KeyManager, LogstoreCipher
from .keystore import KeyStore

__version__ = "0.1.0"

__all__ = [
    "AESGCM",
    "SM4GCM",
    "available_implementations",
    "EncryptConf",
    "KeyManager",
    "LogstoreCipher",
    "KeyStore",
    "format",
    "kms",
    "SlsEnvelopeError",
    "InvalidTag",
    "ConfigError",
    "FormatError",
    "KeyInvalidError",
    "KmsUnavailableError",
    "EncryptionDisabledError",
    "KeyStoreError",
    "KeyStoreUnavailableError",
]
