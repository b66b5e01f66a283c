"""KMS clients: the interface, the embedded LocalKms, and optional real backends.

Backends with third-party dependencies (aliyun, openbao, pkcs11, aws) are imported
from their own modules, e.g. ``from sls_envelope.kms.aws import AwsKms``, so that
``import sls_envelope`` never needs their extras.
"""

from __future__ import annotations

from .base import DataKey, EncryptionContext, KmsClient, RetryPolicy, TransientKmsError, call_with_retries
from .local import LocalKms

__all__ = [
    "DataKey",
    "EncryptionContext",
    "KmsClient",
    "LocalKms",
    "RetryPolicy",
    "TransientKmsError",
    "call_with_retries",
]
