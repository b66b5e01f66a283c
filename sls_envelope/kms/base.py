"""The KMS client interface that every backend implements and KeyManager drives.

A backend knows nothing of Logstores: it makes data keys under a CMK, unwraps them,
describes keys and, where the KMS has them, assumes RAM roles.  Errors are mapped to
two kinds: :class:`~sls_envelope.exceptions.KeyInvalidError` when the key or role
cannot be used (disabled, pending deletion, not found, no permission, role not
assumable) and :class:`~sls_envelope.exceptions.KmsUnavailableError` when the KMS kept
failing transiently after bounded retries (:func:`call_with_retries`).
"""

from __future__ import annotations

import abc
import dataclasses
import logging
import random
import time
from typing import Any, Callable, Dict, Mapping, Optional, TypeVar

from ..exceptions import KmsUnavailableError

__all__ = [
    "DataKey",
    "KmsClient",
    "EncryptionContext",
    "RetryPolicy",
    "TransientKmsError",
    "call_with_retries",
    "KEY_STATES",
]

#: Key-value pairs bound to a data key (as AAD); the same context must be given to unwrap it.
EncryptionContext = Mapping[str, str]

#: The states a CMK can be in, as KMS DescribeKey reports them.
KEY_STATES = ("Enabled", "Disabled", "PendingDeletion")

log = logging.getLogger("sls_envelope.kms")

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class DataKey:
    """A data key made by the KMS: its plaintext and the blob the KMS can unwrap.

    The plaintext is never shown by ``repr``; callers that keep it should hold it only
    as long as needed (KeyManager copies it into a C key context, which wipes on free).
    """

    key_id: str
    plaintext: bytes = dataclasses.field(repr=False)
    ciphertext_blob: bytes

    def __repr__(self) -> str:
        return (
            f"DataKey(key_id={self.key_id!r}, plaintext=<{len(self.plaintext)} bytes hidden>, "
            f"ciphertext_blob=<{len(self.ciphertext_blob)} bytes>)"
        )


class KmsClient(abc.ABC):
    """A KMS as sls-envelope uses it.

    Implementations must be thread-safe, must never log or put in an exception message
    any key material or credential, and must raise only KeyInvalidError,
    KmsUnavailableError or ValueError (bad arguments) from these methods.
    """

    #: The Alibaba Cloud region this KMS serves (``"cn-hangzhou"``...), or None for a
    #: backend without such regions (OpenBao, PKCS#11; AWS regions are not Alibaba
    #: region ids).  KeyManager sends a BYOK Logstore's data-key calls to the KMS of its
    #: ``user_cmk_info.region_id`` and refuses a KMS whose region_id says another region.
    #: A plain attribute, so a backend may set it in ``__init__`` or make it a property.
    region_id: Optional[str] = None

    @abc.abstractmethod
    def generate_data_key(
        self, key_id: str, *, context: EncryptionContext, number_of_bytes: int = 32
    ) -> DataKey:
        """A fresh data key of number_of_bytes bytes wrapped under the CMK key_id, with
        the encryption context bound to the wrapped blob."""

    @abc.abstractmethod
    def decrypt(self, ciphertext_blob: bytes, *, context: EncryptionContext) -> bytes:
        """Unwrap a data key made by generate_data_key with the same context.  Fails with
        KeyInvalidError if its CMK is disabled, pending deletion, gone or not permitted."""

    @abc.abstractmethod
    def describe_key(self, key_id: str) -> Dict[str, Any]:
        """Metadata shaped like KMS DescribeKey's KeyMetadata: at least KeyId, KeyState
        (one of KEY_STATES), CreationDate (ISO 8601, UTC) and Description."""

    @abc.abstractmethod
    def assume_role(self, arn: str) -> "KmsClient":
        """This KMS acting as the RAM role arn (acs:ram::<account>:role/<name>), as the
        log service does for BYOK.  Backends without roles document what they do."""

    def create_key(self, description: str = "") -> str:
        """Create a symmetric CMK and return its KeyId.  Optional: KeyManager calls it
        once, to make the service master key, unless given ``service_key_id``."""
        raise NotImplementedError(f"{type(self).__name__} cannot create keys")

    def close(self) -> None:
        """Release connections.  Optional."""


class TransientKmsError(Exception):
    """Raised inside a backend for a failure worth retrying (throttling, 5xx, timeout)."""

    def __init__(self, message: str, *, code: str = "ServiceUnavailable") -> None:
        super().__init__(message)
        self.code = code


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries with jittered exponential backoff ("full jitter")."""

    attempts: int = 4
    base_delay: float = 0.05
    max_delay: float = 2.0

    def delay(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        return rng() * min(self.max_delay, self.base_delay * 2.0**attempt)


def call_with_retries(
    operation: Callable[[], T],
    *,
    policy: Optional[RetryPolicy] = None,
    what: str = "KMS call",
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run operation, retrying TransientKmsError up to policy.attempts times in all;
    then raise KmsUnavailableError.  KeyInvalidError and everything else pass through."""
    policy = policy or RetryPolicy()
    last: Optional[TransientKmsError] = None
    for attempt in range(max(1, policy.attempts)):
        try:
            return operation()
        except TransientKmsError as exc:
            last = exc
            log.warning("%s failed transiently (%s), attempt %d of %d", what, exc.code, attempt + 1, policy.attempts)
            if attempt + 1 < policy.attempts:
                sleep(policy.delay(attempt))
    assert last is not None
    raise KmsUnavailableError(f"{what} failed after {policy.attempts} attempts: {last}", code=last.code) from None

