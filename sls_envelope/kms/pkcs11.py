"""A PKCS#11 token (SoftHSM2, a network or USB HSM) as a KmsClient, over ``python-pkcs11``.

The CMK is an AES-256 secret key in the token, found by its CKA_LABEL (the key id),
that must be non-extractable and sensitive: a key that could leave the token is not
accepted as a CMK.  A data key is made by the token's RNG (C_GenerateRandom) and
wrapped inside the token with CKM_AES_GCM under the CMK (C_Encrypt); the AAD is the
blob's header followed by the canonical encryption context
(:func:`~sls_envelope.kms._context.canonical_context`).  Unwrapping is C_Decrypt
with the same AAD, so a wrong context or a tampered blob fails in the token.

Blob layout (all of it authenticated)::

    b"P11\\x01" | u8 label length | label (UTF-8) | 12-byte IV | ciphertext | 16-byte tag

Key states: a CMK whose CKA_ENCRYPT or CKA_DECRYPT is cleared is the PKCS#11 form
of a disabled key (Rejected.Disabled for the operation it forbids; describe_key
says Disabled); a destroyed key is Forbidden.KeyNotFound.  PKCS#11 has no pending
deletion.  Device, session and token-presence failures are retried a bounded
number of times, reopening the session, then raise KmsUnavailableError.

The PIN is kept only to log in again after a session is lost; it is never
logged, never in a repr or an error message.  PKCS#11 login is per process
(per application): a second client on the same token in one process uses the
existing login.
"""

from __future__ import annotations

import datetime
import struct
import threading
from typing import Any, Callable, Dict, Optional, TypeVar

import pkcs11
import pkcs11.exceptions as p11err
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.mechanisms import GCMParams

from ..exceptions import KeyInvalidError, KmsUnavailableError
from ._context import canonical_context
from .base import DataKey, EncryptionContext, KmsClient, RetryPolicy, TransientKmsError, call_with_retries

__all__ = ["Pkcs11Kms"]

T = TypeVar("T")

_MAGIC = b"P11\x01"
_IV_BYTES = 12
_TAG_BYTES = 16
_CMK_BYTES = 32
# CKR_KEY_FUNCTION_NOT_PERMITTED, which python-pkcs11 does not map to a class.
_KEY_FUNCTION_NOT_PERMITTED = "0x68"

_TRANSIENT = (
    p11err.DeviceError,
    p11err.DeviceMemory,
    p11err.DeviceRemoved,
    p11err.SessionClosed,
    p11err.SessionHandleInvalid,
    p11err.SessionCount,
    p11err.TokenNotPresent,
    p11err.FunctionFailed,
    p11err.FunctionCancelled,
    p11err.HostMemory,
    p11err.OperationActive,
)
_NO_PERMISSION = (
    p11err.PinIncorrect,
    p11err.PinInvalid,
    p11err.PinLenRange,
    p11err.PinLocked,
    p11err.PinExpired,
    p11err.UserNotLoggedIn,
    p11err.UserPinNotInitialized,
)
_KEY_GONE = (p11err.NoSuchKey, p11err.ObjectHandleInvalid, p11err.KeyHandleInvalid)
_KEY_CONFIG = (p11err.KeyTypeInconsistent, p11err.KeySizeRange, p11err.MechanismInvalid, p11err.MechanismParamInvalid)
_BAD_CIPHERTEXT = (p11err.EncryptedDataInvalid, p11err.EncryptedDataLenRange)

_MESSAGES = {
    "Forbidden.KeyNotFound": "no such key in the token",
    "Forbidden.TokenNotFound": "no token with this label",
    "Forbidden.KeyNotUnique": "more than one secret key has this label",
    "Forbidden.KeyConfig": "key is not a non-extractable, sensitive AES-256 key usable with AES-GCM",
    "Forbidden.NoPermission": "login to the token failed",
    "Rejected.Disabled": "key's CKA_ENCRYPT/CKA_DECRYPT does not allow this operation",
    "InvalidCiphertext": "wrapped data key does not authenticate under this key and context",
}


class Pkcs11Kms(KmsClient):
    """A KmsClient over one PKCS#11 token.

    :param module: path of the PKCS#11 module (e.g. /usr/lib/softhsm/libsofthsm2.so).
    :param token_label: CKA_LABEL of the token.
    :param pin: the user PIN (CKU_USER).  Never logged or shown.
    :param retry_policy: bounds on retries of device and session failures.
    """

    def __init__(
        self, module: str, *, token_label: str, pin: str, retry_policy: Optional[RetryPolicy] = None
    ) -> None:
        if not isinstance(token_label, str) or not token_label:
            raise ValueError("token_label must be a non-empty str")
        if not isinstance(pin, str) or not pin:
            raise ValueError("pin must be a non-empty str")
        try:
            self._lib = pkcs11.lib(module)
        except Exception:  # python-pkcs11 raises RuntimeError/OSError variants for a bad module
            raise ValueError("cannot load the PKCS#11 module at the given path") from None
        self._module = module
        self._token_label = token_label
        self._pin = pin
        self._retry_policy = retry_policy or RetryPolicy()
        self._lock = threading.Lock()
        self._session: Any = None

    def __repr__(self) -> str:
        return f"Pkcs11Kms(module={self._module!r}, token_label={self._token_label!r})"

    # -- KmsClient -------------------------------------------------------------------

    def generate_data_key(
        self, key_id: str, *, context: EncryptionContext, number_of_bytes: int = 32
    ) -> DataKey:
        label = _checked_label(key_id)
        if not isinstance(number_of_bytes, int) or not 1 <= number_of_bytes <= 1024:
            raise ValueError("data keys are 1 to 1024 bytes")
        context_bytes = canonical_context(context)

        def wrap(session: Any) -> DataKey:
            cmk = _cmk(session, label, need=Attribute.ENCRYPT)
            plaintext = bytes(session.generate_random(number_of_bytes * 8))
            iv = bytes(session.generate_random(_IV_BYTES * 8))
            header = _header(label, iv)
            sealed = cmk.encrypt(
                plaintext, mechanism=Mechanism.AES_GCM, mechanism_param=GCMParams(iv, header + context_bytes)
            )
            if len(plaintext) != number_of_bytes or len(sealed) != number_of_bytes + _TAG_BYTES:
                raise KmsUnavailableError("the token returned data of an unexpected length", code="InvalidResponse")
            return DataKey(key_id=label, plaintext=plaintext, ciphertext_blob=header + bytes(sealed))

        return self._call("PKCS#11 wrap", wrap, label=label)

    def decrypt(self, ciphertext_blob: bytes, *, context: EncryptionContext) -> bytes:
        label, iv, header, sealed = _parse_blob(ciphertext_blob)
        context_bytes = canonical_context(context)

        def unwrap(session: Any) -> bytes:
            cmk = _cmk(session, label, need=Attribute.DECRYPT)
            try:
                return bytes(
                    cmk.decrypt(sealed, mechanism=Mechanism.AES_GCM, mechanism_param=GCMParams(iv, header + context_bytes))
                )
            except (p11err.GeneralError, p11err.DataInvalid, p11err.DataLenRange):
                # SoftHSM2 reports a failed GCM tag check as CKR_GENERAL_ERROR.
                raise _key_invalid("InvalidCiphertext", label) from None

        return self._call("PKCS#11 unwrap", unwrap, label=label)

    def describe_key(self, key_id: str) -> Dict[str, Any]:
        """KeyState Enabled when the key is a usable CMK (AES-256, non-extractable,
        sensitive, CKA_ENCRYPT and CKA_DECRYPT set), else Disabled.  CreationDate is
        CKA_START_DATE when the token set it, else None."""
        label = _checked_label(key_id)

        def describe(session: Any) -> Dict[str, Any]:
            key = _find_key(session, label)
            encrypt, decrypt = bool(key[Attribute.ENCRYPT]), bool(key[Attribute.DECRYPT])
            usable = encrypt and decrypt and _is_cmk_shaped(key)
            return {
                "KeyId": label,
                "KeyState": "Enabled" if usable else "Disabled",
                "CreationDate": _start_date(key),
                "Description": "",
                "KeySpec": "AES_256" if _is_cmk_shaped(key) else "UNSUPPORTED",
                "Origin": "PKCS11",
                "Encrypt": encrypt,
                "Decrypt": decrypt,
            }

        return self._call("PKCS#11 describe", describe, label=label)

    def assume_role(self, arn: str) -> "Pkcs11Kms":
        """A token has no RAM roles: access is whoever holds the PIN.  Returns this
        client unchanged (docs/KMS.md)."""
        if not isinstance(arn, str):
            raise ValueError("arn must be a str")
        return self

    def close(self) -> None:
        with self._lock:
            self._drop_session()

    # -- plumbing --------------------------------------------------------------------

    def _open_session(self) -> Any:
        token = self._lib.get_token(token_label=self._token_label)
        try:
            return token.open(user_pin=self._pin)
        except p11err.UserAlreadyLoggedIn:
            # Login is per application: another session in this process logged in.
            return token.open()

    def _drop_session(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            try:
                session.close()
            except p11err.PKCS11Error:
                pass  # already gone with the device or the session handle

    def _call(self, what: str, operation: Callable[[Any], T], *, label: str) -> T:
        def attempt() -> T:
            with self._lock:
                try:
                    if self._session is None:
                        self._session = self._open_session()
                    return operation(self._session)
                except (KeyInvalidError, KmsUnavailableError):
                    raise
                except _TRANSIENT as exc:
                    self._drop_session()
                    raise TransientKmsError(f"{what}: {type(exc).__name__}", code="ServiceUnavailable") from None
                except _NO_PERMISSION:
                    self._drop_session()
                    raise _key_invalid("Forbidden.NoPermission", label) from None
                except (p11err.NoSuchToken, p11err.TokenNotRecognised):
                    raise _key_invalid("Forbidden.TokenNotFound", label) from None
                except _KEY_GONE:
                    raise _key_invalid("Forbidden.KeyNotFound", label) from None
                except p11err.MultipleObjectsReturned:
                    raise _key_invalid("Forbidden.KeyNotUnique", label) from None
                except _KEY_CONFIG:
                    raise _key_invalid("Forbidden.KeyConfig", label) from None
                except _BAD_CIPHERTEXT:
                    raise _key_invalid("InvalidCiphertext", label) from None
                except p11err.PKCS11Error as exc:
                    if _KEY_FUNCTION_NOT_PERMITTED in str(exc):
                        raise _key_invalid("Rejected.Disabled", label) from None
                    raise KmsUnavailableError(f"{what}: token error {type(exc).__name__}", code="Pkcs11Error") from None

        return call_with_retries(attempt, policy=self._retry_policy, what=what)


def _key_invalid(code: str, label: str) -> KeyInvalidError:
    return KeyInvalidError(f"PKCS#11 key {label!r}: {_MESSAGES[code]}", code=code)


def _find_key(session: Any, label: str) -> Any:
    return session.get_key(object_class=ObjectClass.SECRET_KEY, label=label)


def _is_cmk_shaped(key: Any) -> bool:
    try:
        return (
            key[Attribute.KEY_TYPE] == KeyType.AES
            and int(key[Attribute.VALUE_LEN]) == _CMK_BYTES
            and not key[Attribute.EXTRACTABLE]
            and bool(key[Attribute.SENSITIVE])
        )
    except (p11err.AttributeTypeInvalid, p11err.AttributeSensitive):
        return False


def _cmk(session: Any, label: str, *, need: Attribute) -> Any:
    """The CMK labelled label, checked to be a CMK that allows the `need` operation."""
    key = _find_key(session, label)
    if not _is_cmk_shaped(key):
        raise _key_invalid("Forbidden.KeyConfig", label)
    if not key[need]:
        raise _key_invalid("Rejected.Disabled", label)
    return key


def _start_date(key: Any) -> Optional[str]:
    try:
        value = key[Attribute.START_DATE]
    except (p11err.PKCS11Error, ValueError, TypeError):
        return None
    if isinstance(value, datetime.date):
        return value.strftime("%Y-%m-%dT00:00:00Z")
    return None


def _checked_label(key_id: str) -> str:
    if not isinstance(key_id, str) or not key_id or len(key_id.encode("utf-8")) > 255:
        raise ValueError("key_id (the CMK's CKA_LABEL) must be a non-empty str of at most 255 UTF-8 bytes")
    return key_id


def _header(label: str, iv: bytes) -> bytes:
    encoded = label.encode("utf-8")
    return _MAGIC + struct.pack("B", len(encoded)) + encoded + iv


def _parse_blob(blob: bytes) -> "tuple[str, bytes, bytes, bytes]":
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise ValueError("ciphertext_blob must be bytes")
    raw = bytes(blob)
    malformed = KeyInvalidError("not a PKCS#11 wrapped data key", code="InvalidCiphertext")
    if len(raw) < len(_MAGIC) + 1 or not raw.startswith(_MAGIC):
        raise malformed
    label_len = raw[len(_MAGIC)]
    label_end = len(_MAGIC) + 1 + label_len
    header_end = label_end + _IV_BYTES
    if label_len == 0 or len(raw) < header_end + _TAG_BYTES + 1:
        raise malformed
    try:
        label = raw[len(_MAGIC) + 1 : label_end].decode("utf-8")
    except UnicodeDecodeError:
        raise malformed from None
    return label, raw[label_end:header_end], raw[:header_end], raw[header_end:]
