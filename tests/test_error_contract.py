"""The error contract: every SlsEnvelopeError has a code, an HTTP status and the SLS
error body (sls_envelope/exceptions.py, docs/ERRORS.md)."""

from __future__ import annotations

import pickle

import cryptography.exceptions
import pytest

from sls_envelope.exceptions import (
    REDUNDANT_KEY_MESSAGE,
    ConfigError,
    EncryptionDisabledError,
    FormatError,
    InvalidTag,
    KeyInvalidError,
    KmsUnavailableError,
    SlsEnvelopeError,
)


@pytest.mark.parametrize(
    "exc, code, status",
    [
        (ConfigError("bad name"), "ParameterInvalid", 400),
        (ConfigError("x", code="LogStoreInfoInvalid"), "LogStoreInfoInvalid", 400),
        (ConfigError("x", code="LogStoreAlreadyExist"), "LogStoreAlreadyExist", 400),
        (ConfigError("x", code="LogStoreNotExist"), "LogStoreNotExist", 404),
        (KeyInvalidError("x", code="Rejected.Disabled"), "Rejected.Disabled", 409),
        (KeyInvalidError("x", code="Rejected.PendingDeletion"), "Rejected.PendingDeletion", 409),
        (KeyInvalidError("x", code="Forbidden.KeyNotFound"), "Forbidden.KeyNotFound", 404),
        (KeyInvalidError("x", code="Forbidden.NoPermission"), "Forbidden.NoPermission", 403),
        (KeyInvalidError("x", code="NoPermission"), "NoPermission", 403),
        (KeyInvalidError("x", code="EntityNotExist.Role"), "EntityNotExist.Role", 404),
        (KeyInvalidError("x", code="InvalidCiphertext"), "InvalidCiphertext", 400),
        (KeyInvalidError("x", code="Forbidden.KeyConfig"), "Forbidden.KeyConfig", 403),
        (KmsUnavailableError("x"), "ServiceUnavailable", 503),
        (KmsUnavailableError("x", code="InternalFailure"), "InternalFailure", 500),
        (KmsUnavailableError("x", code="InvalidKmsResponse"), "InvalidKmsResponse", 502),
        (InvalidTag("x"), "InvalidTag", 500),
        (FormatError("x"), "InvalidFormat", 500),
        (EncryptionDisabledError("x"), "EncryptionDisabled", 409),
    ],
)
def test_code_status_and_body(exc: SlsEnvelopeError, code: str, status: int) -> None:
    assert exc.code == code
    assert exc.http_status == status
    assert exc.error_body() == {"errorCode": code, "errorMessage": "x" if str(exc) == "x" else str(exc)}
    # The contract survives pickling (e.g. across a process pool).
    again = pickle.loads(pickle.dumps(exc))
    assert (again.code, again.http_status, again.error_body()) == (code, status, exc.error_body())


def test_explicit_status_wins() -> None:
    exc = KeyInvalidError("role may not be passed", code="Unauthorized", http_status=403)
    assert (exc.code, exc.http_status) == ("Unauthorized", 403)


def test_invalid_encrypt_conf_and_redundant_key_shapes() -> None:
    exc = ConfigError.invalid_encrypt_conf("encrypt_type 'aes_cbc' is not supported")
    assert exc.error_body() == {
        "errorCode": "LogStoreInfoInvalid",
        "errorMessage": "The encrypt_conf is invalid, encrypt_type 'aes_cbc' is not supported",
    }
    assert exc.http_status == 400
    # The exact pair the official Python SDK compares before retrying with basic parameters.
    assert ConfigError.redundant_key().error_body() == {
        "errorCode": "LogStoreInfoInvalid", "errorMessage": REDUNDANT_KEY_MESSAGE,
    }
    assert REDUNDANT_KEY_MESSAGE == "redundant key exist in json"


def test_old_catch_clauses_still_work() -> None:
    assert isinstance(ConfigError("x"), ValueError)
    assert isinstance(FormatError("x"), ValueError)
    assert isinstance(InvalidTag("x"), cryptography.exceptions.InvalidTag)
    assert InvalidTag("x", index=2).index == 2
