"""Checks every KmsClient backend must pass, the way KeyManager uses a backend:
make a data key under a CMK, seal with it, unwrap the blob with the same context,
and fail closed (KeyInvalidError) when the context or blob is wrong."""

from __future__ import annotations

import base64
import logging
import os
from typing import Iterable, Mapping

import pytest

from sls_envelope.aead import AESGCM
from sls_envelope.exceptions import KeyInvalidError
from sls_envelope.kms.base import DataKey, KmsClient

CONTEXT = {"logstore": "access-log", "project": "web", "region": "cn-hangzhou"}


def round_trip(kms: KmsClient, key_id: str, context: Mapping[str, str] = CONTEXT) -> DataKey:
    """A data key made, used as an AES-256-GCM key, and unwrapped again with the same
    context given in another order (the context is a mapping, not a sequence)."""
    data_key = kms.generate_data_key(key_id, context=context)
    assert len(data_key.plaintext) == 32
    assert data_key.plaintext not in data_key.ciphertext_blob
    nonce = os.urandom(12)
    sealed = AESGCM(data_key.plaintext).encrypt(nonce, b"log batch", b"header")
    reordered = dict(reversed(list(context.items())))
    unwrapped = kms.decrypt(data_key.ciphertext_blob, context=reordered)
    assert unwrapped == data_key.plaintext
    assert AESGCM(unwrapped).decrypt(nonce, sealed, b"header") == b"log batch"
    return data_key


def assert_context_bound(kms: KmsClient, data_key: DataKey, context: Mapping[str, str] = CONTEXT) -> None:
    for wrong in ({}, {**context, "logstore": "other"}, {**context, "extra": "1"}):
        with pytest.raises(KeyInvalidError) as info:
            kms.decrypt(data_key.ciphertext_blob, context=wrong)
        assert info.value.code == "InvalidCiphertext"


def assert_tamper_rejected(kms: KmsClient, data_key: DataKey, context: Mapping[str, str] = CONTEXT) -> None:
    """A changed blob and an empty one are malformed ciphertexts (KeyInvalidError,
    InvalidCiphertext); a blob that is not bytes is a bad argument (ValueError), as
    kms/base.py's error contract says, whatever the backend."""
    blob = bytearray(data_key.ciphertext_blob)
    blob[-3] ^= 0x01
    with pytest.raises(KeyInvalidError) as info:
        kms.decrypt(bytes(blob), context=context)
    assert info.value.code == "InvalidCiphertext"
    with pytest.raises(KeyInvalidError) as info:
        kms.decrypt(b"", context=context)
    assert info.value.code == "InvalidCiphertext"
    with pytest.raises(ValueError):
        kms.decrypt(data_key.ciphertext_blob.hex(), context=context)  # type: ignore[arg-type]


def assert_hidden(secrets: Iterable[bytes], *texts: str) -> None:
    """None of the secrets (raw, hex or as text) appears in any of texts."""
    for secret in secrets:
        forms = {secret.hex()}
        try:
            forms.add(secret.decode("ascii"))
        except UnicodeDecodeError:
            pass
        forms.add(base64.b64encode(secret).decode("ascii"))
        for text in texts:
            for form in forms:
                assert form not in text


def capture_all_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("", "sls_envelope", "urllib3", "botocore", "boto3", "hvac"):
        logging.getLogger(name).setLevel(logging.DEBUG)
