"""OpenBao (and HashiCorp Vault) transit secrets engine as a KMS, over ``hvac``.

A transit key (type ``aes256-gcm96`` or another symmetric AEAD type) is the CMK.
Data keys are made by OpenBao with ``datakey/plaintext/<name>`` and unwrapped with
``decrypt/<name>``; the encryption context is bound as ``associated_data``, the
transit parameter for AEAD additional data on non-derived keys (``context`` is
for key derivation, a different thing).  The context is encoded canonically
(:func:`~sls_envelope.kms._context.canonical_context`) so it round-trips.

The wrapped blob names its transit key, since ``decrypt`` is given no key id:
``b"openbao:" + name + b":" + <transit ciphertext "vault:vN:...">``.

Errors (see docs/KMS.md): a missing or hard-deleted key, a soft-deleted key, a
token without the policy, a key whose config forbids the operation (too old a
version for ``min_decryption_version``, a signing or derived key) and a blob that
does not authenticate map to :class:`KeyInvalidError`; throttling (429), 5xx,
a sealed server, connection failures and timeouts are retried a bounded number
of times and then raise :class:`KmsUnavailableError`.  The token is never logged,
never put in a repr or an error message.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import re
import threading
from typing import Any, Callable, Dict, List, Optional, Sequence, TypeVar, Union

import hvac
import hvac.exceptions
import requests

from ..exceptions import KeyInvalidError, KmsUnavailableError
from ._context import canonical_context
from .base import DataKey, EncryptionContext, KmsClient, RetryPolicy, TransientKmsError, call_with_retries

__all__ = ["OpenBaoKms", "transit_policy"]

T = TypeVar("T")

_BLOB_PREFIX = b"openbao:"
# Transit key names as OpenBao's router accepts them: \w(([\w-.]+)?\w)?
_KEY_NAME = re.compile(r"\A\w(?:[\w\-.]*\w)?\Z", re.ASCII)
_MOUNT = re.compile(r"\A[\w\-.]+(?:/[\w\-.]+)*\Z", re.ASCII)
# datakey accepts these sizes only (bits 128, 256, 512).
_DATAKEY_BYTES = (16, 32, 64)

# Substrings of transit's 400 error texts, and the code each maps to.  Checked in order.
_INVALID_REQUEST_CODES = (
    ("soft-deleted", "Rejected.PendingDeletion"),
    ("key not found", "Forbidden.KeyNotFound"),
    ("disallowed by policy", "Forbidden.KeyConfig"),
    ("requested version", "Forbidden.KeyConfig"),
    ("key derivation", "Forbidden.KeyConfig"),
    ("context", "Forbidden.KeyConfig"),
    ("does not support", "Forbidden.KeyConfig"),
    ("message authentication failed", "InvalidCiphertext"),
    ("invalid ciphertext", "InvalidCiphertext"),
    ("ciphertext", "InvalidCiphertext"),
)

_MESSAGES = {
    "Forbidden.KeyNotFound": "transit key not found",
    "Rejected.PendingDeletion": "transit key is soft-deleted",
    "Forbidden.KeyConfig": "transit key config does not allow this operation",
    "InvalidCiphertext": "wrapped data key does not authenticate under this key and context",
    "Forbidden.NoPermission": "token lacks the transit policy for this operation",
}


class OpenBaoKms(KmsClient):
    """A KmsClient over an OpenBao (or Vault) transit mount.

    :param url: the server, e.g. ``https://bao.example:8200``, or the nodes of a raft
        cluster (a sequence of URLs): a node that cannot be reached, is sealed or
        answers 5xx is skipped and the next is tried, within the retry policy's bounded
        attempts (then :class:`KmsUnavailableError`); the node that answered is kept
        for later calls (docs/SCALE.md).
    :param token: a token whose policy grants ``update`` on
        ``<mount>/datakey/plaintext/<key>`` and ``<mount>/decrypt/<key>`` and
        ``read`` on ``<mount>/keys/<key>`` (docs/KMS.md).  Kept only inside the
        hvac client; never logged or shown.
    :param mount: where the transit engine is mounted.
    :param timeout: seconds per HTTP request (connect and read).
    :param retry_policy: bounds on retries of transient failures.
    :param session: a ``requests.Session`` to send through (TLS settings, proxies,
        connection pooling, or adapters that inject failures in tests).
    :param verify: TLS verification, as requests takes it (bool or CA bundle path).
    """

    def __init__(
        self,
        url: Union[str, Sequence[str]],
        *,
        token: str,
        mount: str = "transit",
        timeout: float = 10.0,
        retry_policy: Optional[RetryPolicy] = None,
        session: Optional[requests.Session] = None,
        verify: Union[bool, str] = True,
    ) -> None:
        if not isinstance(token, str) or not token:
            raise ValueError("token must be a non-empty str")
        if not _MOUNT.match(mount):
            raise ValueError("mount must be a path of [A-Za-z0-9_.-] segments")
        urls: List[str] = [url] if isinstance(url, str) else list(url)
        if not urls or not all(isinstance(u, str) and u for u in urls):
            raise ValueError("url must be a non-empty str or a non-empty sequence of them")
        self._url = urls[0] if len(urls) == 1 else ",".join(urls)
        self._mount = mount
        self._retry_policy = retry_policy or RetryPolicy()
        self._clients = [
            hvac.Client(url=u, token=token, timeout=timeout, session=session, verify=verify) for u in urls
        ]
        self._current = 0  # the node that answered last
        self._lock = threading.Lock()

    @property
    def _client(self) -> hvac.Client:
        return self._clients[self._current]

    def _fail_over(self, failed: hvac.Client) -> None:
        """The node ``failed`` did not answer: the next call goes to the next node."""
        with self._lock:
            if len(self._clients) > 1 and self._clients[self._current] is failed:
                self._current = (self._current + 1) % len(self._clients)

    def __repr__(self) -> str:
        return f"OpenBaoKms(url={self._url!r}, mount={self._mount!r})"

    # -- KmsClient -------------------------------------------------------------------

    def generate_data_key(
        self, key_id: str, *, context: EncryptionContext, number_of_bytes: int = 32
    ) -> DataKey:
        name = _checked_key_name(key_id)
        if number_of_bytes not in _DATAKEY_BYTES:
            raise ValueError(f"OpenBao transit makes data keys of {_DATAKEY_BYTES} bytes only")
        body = {"bits": number_of_bytes * 8, "associated_data": _b64(canonical_context(context))}
        response = self._call(
            "OpenBao datakey", lambda: self._post(f"datakey/plaintext/{name}", body), key_name=name
        )
        data = _response_data(response)
        try:
            plaintext = base64.b64decode(data["plaintext"], validate=True)
            ciphertext = str(data["ciphertext"]).encode("ascii")
        except (KeyError, TypeError, ValueError, binascii.Error):
            raise KmsUnavailableError("OpenBao datakey returned a malformed response", code="InvalidResponse") from None
        if len(plaintext) != number_of_bytes or not ciphertext.startswith(b"vault:v"):
            raise KmsUnavailableError("OpenBao datakey returned a malformed response", code="InvalidResponse")
        return DataKey(key_id=name, plaintext=plaintext, ciphertext_blob=_BLOB_PREFIX + name.encode() + b":" + ciphertext)

    def decrypt(self, ciphertext_blob: bytes, *, context: EncryptionContext) -> bytes:
        name, ciphertext = _parse_blob(ciphertext_blob)
        body = {"ciphertext": ciphertext, "associated_data": _b64(canonical_context(context))}
        response = self._call("OpenBao decrypt", lambda: self._post(f"decrypt/{name}", body), key_name=name)
        data = _response_data(response)
        try:
            return base64.b64decode(data["plaintext"], validate=True)
        except (KeyError, TypeError, ValueError, binascii.Error):
            raise KmsUnavailableError("OpenBao decrypt returned a malformed response", code="InvalidResponse") from None

    def describe_key(self, key_id: str) -> Dict[str, Any]:
        """KeyState is PendingDeletion for a soft-deleted key, Disabled for a key this
        backend cannot use as a CMK (no encryption/decryption, or derived), else Enabled."""
        name = _checked_key_name(key_id)
        response = self._call(
            "OpenBao read key", lambda: self._client.adapter.get(f"/v1/{self._mount}/keys/{name}"), key_name=name
        )
        data = _response_data(response)
        if data.get("soft_deleted"):
            state = "PendingDeletion"
        elif data.get("supports_encryption") and data.get("supports_decryption") and not data.get("derived"):
            state = "Enabled"
        else:
            state = "Disabled"
        return {
            "KeyId": name,
            "KeyState": state,
            "CreationDate": _creation_date(data.get("keys")),
            "Description": "",
            "KeySpec": str(data.get("type", "")),
            "LatestVersion": data.get("latest_version"),
            "MinDecryptionVersion": data.get("min_decryption_version"),
            "Origin": "OpenBao",
        }

    def assume_role(self, arn: str) -> "OpenBaoKms":
        """OpenBao has no RAM roles: what the service may do is what the token's
        policies allow.  Returns this client unchanged (docs/KMS.md)."""
        if not isinstance(arn, str):
            raise ValueError("arn must be a str")
        return self

    def close(self) -> None:
        with self._lock:
            for client in self._clients:
                client.adapter.close()

    # -- plumbing --------------------------------------------------------------------

    def _post(self, path: str, body: Dict[str, Any]) -> Any:
        return self._client.adapter.post(f"/v1/{self._mount}/{path}", json=body)

    def _call(self, what: str, operation: Callable[[], T], *, key_name: str) -> T:
        def attempt() -> T:
            client = self._client
            try:
                return operation()
            except TransientKmsError:
                raise
            except KeyInvalidError:
                raise
            except hvac.exceptions.RateLimitExceeded:
                # Throttling is the cluster's answer, not a dead node: stay on it.
                raise TransientKmsError(f"{what}: throttled", code="Throttling") from None
            except (
                hvac.exceptions.InternalServerError,
                hvac.exceptions.BadGateway,
                hvac.exceptions.VaultDown,
                hvac.exceptions.VaultNotInitialized,
                hvac.exceptions.PreconditionFailed,
            ):
                self._fail_over(client)  # sealed, standby without an active node, 5xx
                raise TransientKmsError(f"{what}: server unavailable", code="ServiceUnavailable") from None
            except requests.exceptions.Timeout:
                self._fail_over(client)
                raise TransientKmsError(f"{what}: timed out", code="Timeout") from None
            except requests.exceptions.ConnectionError:
                self._fail_over(client)
                raise TransientKmsError(f"{what}: connection failed", code="ServiceUnavailable") from None
            except (hvac.exceptions.Forbidden, hvac.exceptions.Unauthorized):
                raise _key_invalid("Forbidden.NoPermission", key_name) from None
            except hvac.exceptions.InvalidPath:
                raise _key_invalid("Forbidden.KeyNotFound", key_name) from None
            except hvac.exceptions.InvalidRequest as exc:
                raise _key_invalid(_invalid_request_code(exc), key_name) from None
            except hvac.exceptions.VaultError:
                raise KmsUnavailableError(f"{what}: unexpected server response", code="UnexpectedError") from None
            except requests.exceptions.RequestException:
                raise KmsUnavailableError(f"{what}: request failed", code="RequestFailed") from None

        return call_with_retries(attempt, policy=self._retry_policy, what=what)


def transit_policy(key_name: str, mount: str = "transit") -> str:
    """The least OpenBao policy (HCL) a token needs for OpenBaoKms on key_name:
    make and unwrap data keys, and read the key's config for describe_key."""
    name = _checked_key_name(key_name)
    if not _MOUNT.match(mount):
        raise ValueError("mount must be a path of [A-Za-z0-9_.-] segments")
    return (
        f'path "{mount}/datakey/plaintext/{name}" {{\n  capabilities = ["update"]\n}}\n'
        f'path "{mount}/decrypt/{name}" {{\n  capabilities = ["update"]\n}}\n'
        f'path "{mount}/keys/{name}" {{\n  capabilities = ["read"]\n}}\n'
    )


def _key_invalid(code: str, key_name: str) -> KeyInvalidError:
    message = _MESSAGES.get(code, "transit rejected the request")
    return KeyInvalidError(f"OpenBao key {key_name!r}: {message}", code=code)


def _invalid_request_code(exc: hvac.exceptions.VaultError) -> str:
    text = " ".join(str(e) for e in (exc.errors or [])).lower()
    for needle, code in _INVALID_REQUEST_CODES:
        if needle in text:
            return code
    return "Forbidden.KeyConfig"


def _checked_key_name(key_id: str) -> str:
    if not isinstance(key_id, str) or not _KEY_NAME.match(key_id):
        raise ValueError("OpenBao transit key name must match \\w([\\w.-]*\\w)?")
    return key_id


def _parse_blob(blob: bytes) -> "tuple[str, str]":
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise ValueError("ciphertext_blob must be bytes")
    raw = bytes(blob)
    if not raw.startswith(_BLOB_PREFIX):
        raise KeyInvalidError("not an OpenBao wrapped data key", code="InvalidCiphertext")
    name, sep, ciphertext = raw[len(_BLOB_PREFIX) :].partition(b":")
    try:
        name_text = name.decode("ascii")
        ciphertext_text = ciphertext.decode("ascii")
    except UnicodeDecodeError:
        raise KeyInvalidError("not an OpenBao wrapped data key", code="InvalidCiphertext") from None
    if not sep or not _KEY_NAME.match(name_text) or not ciphertext_text.startswith("vault:v"):
        raise KeyInvalidError("not an OpenBao wrapped data key", code="InvalidCiphertext")
    return name_text, ciphertext_text


def _response_data(response: Any) -> Dict[str, Any]:
    data = response.get("data") if isinstance(response, dict) else None
    if not isinstance(data, dict):
        raise KmsUnavailableError("OpenBao returned a malformed response", code="InvalidResponse")
    return data


def _creation_date(versions: Any) -> Optional[str]:
    """The creation time of the key's first version (transit reports each version's
    creation as Unix seconds for symmetric keys), ISO 8601 UTC."""
    if not isinstance(versions, dict) or not versions:
        return None
    try:
        first = versions[min(versions, key=int)]
        seconds = int(first if not isinstance(first, dict) else first["creation_time"])
    except (KeyError, TypeError, ValueError):
        return None
    return datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
