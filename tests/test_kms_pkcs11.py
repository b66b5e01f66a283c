"""Pkcs11Kms against SoftHSM2 with a token in a temporary directory."""

from __future__ import annotations

import gc
import tracemalloc  # noqa: F401  (imported up front: pytest imports it while reporting unraisables)
import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator, List

import pytest

from .backends import require_module

pkcs11 = require_module("pkcs11")

from pkcs11 import Attribute, KeyType, ObjectClass  # noqa: E402
from pkcs11 import exceptions as p11err  # noqa: E402

from .kms_contract import (  # noqa: E402
    CONTEXT,
    assert_context_bound,
    assert_hidden,
    assert_tamper_rejected,
    capture_all_logs,
    round_trip,
)
from .servers import SoftHsmToken  # noqa: E402
from sls_envelope.exceptions import KeyInvalidError, KmsUnavailableError  # noqa: E402
from sls_envelope.kms.base import RetryPolicy  # noqa: E402
from sls_envelope.kms.pkcs11 import Pkcs11Kms  # noqa: E402

FAST_RETRIES = RetryPolicy(attempts=3, base_delay=0.001, max_delay=0.005)
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def admin(softhsm_token: SoftHsmToken) -> Iterator[Any]:
    """A read-write session that makes and changes keys, as an operator would."""
    token = pkcs11.lib(softhsm_token.module).get_token(token_label=softhsm_token.label)
    session = token.open(rw=True, user_pin=softhsm_token.pin)
    yield session
    session.close()


def make_cmk(admin: Any, template: Any = None) -> str:
    label = "cmk-" + secrets.token_hex(6)
    attrs = {Attribute.EXTRACTABLE: False, Attribute.SENSITIVE: True}
    attrs.update(template or {})
    admin.generate_key(KeyType.AES, 256, label=label, store=True, template=attrs)
    return label


def cmk_object(admin: Any, label: str) -> Any:
    return admin.get_key(object_class=ObjectClass.SECRET_KEY, label=label)


@pytest.fixture
def label(admin: Any) -> str:
    return make_cmk(admin)


@pytest.fixture
def kms(softhsm_token: SoftHsmToken, admin: Any) -> Iterator[Pkcs11Kms]:
    client = Pkcs11Kms(softhsm_token.module, token_label=softhsm_token.label, pin=softhsm_token.pin, retry_policy=FAST_RETRIES)
    yield client
    client.close()


# -- the KeyManager path -------------------------------------------------------------


def test_round_trip_binds_context_and_rejects_tampering(kms: Pkcs11Kms, label: str) -> None:
    data_key = round_trip(kms, label)
    assert data_key.key_id == label
    assert data_key.ciphertext_blob.startswith(b"P11\x01" + bytes([len(label)]) + label.encode())
    assert len(data_key.ciphertext_blob) == 4 + 1 + len(label) + 12 + 32 + 16
    assert_context_bound(kms, data_key)
    assert_tamper_rejected(kms, data_key)


def test_every_blob_byte_is_authenticated(kms: Pkcs11Kms, label: str, admin: Any) -> None:
    data_key = kms.generate_data_key(label, context=CONTEXT, number_of_bytes=16)
    blob = data_key.ciphertext_blob
    other = make_cmk(admin)
    for index in range(len(blob)):
        tampered = bytearray(blob)
        tampered[index] ^= 0x80
        with pytest.raises(KeyInvalidError) as info:
            kms.decrypt(bytes(tampered), context=CONTEXT)
        assert info.value.code in ("InvalidCiphertext", "Forbidden.KeyNotFound")
    # Relabelled to another CMK of the same label length: still fails, in the token.
    moved = blob.replace(label.encode(), other.encode(), 1)
    with pytest.raises(KeyInvalidError) as info:
        kms.decrypt(moved, context=CONTEXT)
    assert info.value.code == "InvalidCiphertext"


def test_data_keys_are_fresh(kms: Pkcs11Kms, label: str) -> None:
    keys = {kms.generate_data_key(label, context=CONTEXT).plaintext for _ in range(8)}
    assert len(keys) == 8


def test_bad_arguments_are_value_errors(kms: Pkcs11Kms, label: str, softhsm_token: SoftHsmToken) -> None:
    for size in (0, 1025):
        with pytest.raises(ValueError):
            kms.generate_data_key(label, context=CONTEXT, number_of_bytes=size)
    for key in ("", "x" * 256):
        with pytest.raises(ValueError):
            kms.generate_data_key(key, context=CONTEXT)
    with pytest.raises(ValueError):
        Pkcs11Kms("/nonexistent/libnothing.so", token_label="t", pin="1")
    with pytest.raises(ValueError):
        Pkcs11Kms(softhsm_token.module, token_label=softhsm_token.label, pin="")


def test_describe(kms: Pkcs11Kms, label: str) -> None:
    described = kms.describe_key(label)
    assert described["KeyId"] == label
    assert described["KeyState"] == "Enabled"
    assert described["KeySpec"] == "AES_256"
    assert described["CreationDate"] is None  # SoftHSM2 leaves CKA_START_DATE empty


# -- failing closed --------------------------------------------------------------------


def test_cleared_encrypt_stops_new_keys_only(kms: Pkcs11Kms, label: str, admin: Any) -> None:
    data_key = round_trip(kms, label)
    cmk_object(admin, label)[Attribute.ENCRYPT] = False
    with pytest.raises(KeyInvalidError) as info:
        kms.generate_data_key(label, context=CONTEXT)
    assert info.value.code == "Rejected.Disabled"
    assert kms.decrypt(data_key.ciphertext_blob, context=CONTEXT) == data_key.plaintext
    assert kms.describe_key(label)["KeyState"] == "Disabled"


def test_cleared_decrypt_fails_closed(kms: Pkcs11Kms, label: str, admin: Any) -> None:
    data_key = round_trip(kms, label)
    cmk_object(admin, label)[Attribute.DECRYPT] = False
    with pytest.raises(KeyInvalidError) as info:
        kms.decrypt(data_key.ciphertext_blob, context=CONTEXT)
    assert info.value.code == "Rejected.Disabled"
    assert kms.describe_key(label)["KeyState"] == "Disabled"
    cmk_object(admin, label)[Attribute.DECRYPT] = True
    assert kms.decrypt(data_key.ciphertext_blob, context=CONTEXT) == data_key.plaintext


def test_destroyed_key_fails_closed(kms: Pkcs11Kms, label: str, admin: Any) -> None:
    data_key = round_trip(kms, label)
    cmk_object(admin, label).destroy()
    for call in (
        lambda: kms.decrypt(data_key.ciphertext_blob, context=CONTEXT),
        lambda: kms.generate_data_key(label, context=CONTEXT),
        lambda: kms.describe_key(label),
    ):
        with pytest.raises(KeyInvalidError) as info:
            call()
        assert info.value.code == "Forbidden.KeyNotFound"


def test_token_refusal_maps_like_the_client_check(
    kms: Pkcs11Kms, label: str, admin: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CKA_ENCRYPT cleared between the client's check and C_Encrypt: the token itself
    refuses (CKR_KEY_FUNCTION_NOT_PERMITTED) and that maps to Rejected.Disabled too."""
    import sls_envelope.kms.pkcs11 as module

    real_cmk = module._cmk

    def check_then_clear(session: Any, lbl: str, *, need: Any) -> Any:
        key = real_cmk(session, lbl, need=need)
        cmk_object(admin, lbl)[Attribute.ENCRYPT] = False
        return key

    monkeypatch.setattr(module, "_cmk", check_then_clear)
    with pytest.raises(KeyInvalidError) as info:
        kms.generate_data_key(label, context=CONTEXT)
    assert info.value.code == "Rejected.Disabled"


@pytest.mark.parametrize(
    "template",
    [{Attribute.EXTRACTABLE: True, Attribute.SENSITIVE: False}, {Attribute.EXTRACTABLE: True}],
)
def test_extractable_key_is_not_a_cmk(kms: Pkcs11Kms, admin: Any, template: Any) -> None:
    label = make_cmk(admin, template)
    assert kms.describe_key(label)["KeyState"] == "Disabled"
    with pytest.raises(KeyInvalidError) as info:
        kms.generate_data_key(label, context=CONTEXT)
    assert info.value.code == "Forbidden.KeyConfig"


def test_aes128_key_is_not_a_cmk(kms: Pkcs11Kms, admin: Any) -> None:
    label = "small-" + secrets.token_hex(4)
    admin.generate_key(KeyType.AES, 128, label=label, store=True, template={Attribute.EXTRACTABLE: False})
    with pytest.raises(KeyInvalidError) as info:
        kms.generate_data_key(label, context=CONTEXT)
    assert info.value.code == "Forbidden.KeyConfig"


def test_missing_and_ambiguous_keys(kms: Pkcs11Kms, admin: Any) -> None:
    with pytest.raises(KeyInvalidError) as info:
        kms.generate_data_key("never-made", context=CONTEXT)
    assert info.value.code == "Forbidden.KeyNotFound"
    label = make_cmk(admin)
    admin.generate_key(KeyType.AES, 256, label=label, store=True, template={Attribute.EXTRACTABLE: False})
    with pytest.raises(KeyInvalidError) as info:
        kms.generate_data_key(label, context=CONTEXT)
    assert info.value.code == "Forbidden.KeyNotUnique"


def test_unknown_token(softhsm_token: SoftHsmToken) -> None:
    kms = Pkcs11Kms(softhsm_token.module, token_label="no-such-token", pin="1234", retry_policy=FAST_RETRIES)
    with pytest.raises(KeyInvalidError) as info:
        kms.describe_key("k")
    assert info.value.code == "Forbidden.TokenNotFound"


def test_wrong_pin_is_refused(softhsm_token: SoftHsmToken) -> None:
    """In a fresh process: PKCS#11 login is per process, and this one is logged in."""
    script = (
        "import json, sys\n"
        "from sls_envelope.kms.pkcs11 import Pkcs11Kms\n"
        "from sls_envelope.exceptions import KeyInvalidError\n"
        "kms = Pkcs11Kms(sys.argv[1], token_label=sys.argv[2], pin=sys.argv[3])\n"
        "try:\n"
        "    kms.describe_key('anything')\n"
        "except KeyInvalidError as exc:\n"
        "    print(json.dumps({'code': exc.code, 'text': str(exc) + repr(exc) + repr(kms)}))\n"
    )
    wrong_pin = "wrong-" + secrets.token_hex(4)
    result = subprocess.run(
        [sys.executable, "-c", script, softhsm_token.module, softhsm_token.label, wrong_pin],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=True,
    )
    outcome = json.loads(result.stdout)
    assert outcome["code"] == "Forbidden.NoPermission"
    assert wrong_pin not in outcome["text"] + result.stderr


# -- bounded retries ---------------------------------------------------------------------


# python-pkcs11's search iterator, finalised after its session is gone, reports
# SessionHandleInvalid from __del__ as an unraisable exception: noise, not a failure.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_lost_session_is_reopened(kms: Pkcs11Kms, label: str) -> None:
    data_key = round_trip(kms, label)
    kms._session.close()  # the token forgets the session, as after a device reset
    assert kms.decrypt(data_key.ciphertext_blob, context=CONTEXT) == data_key.plaintext
    gc.collect()  # finalise that iterator here, not inside some later import


def failing_opens(kms: Pkcs11Kms, failures: int, error: type) -> List[int]:
    real_open = kms._open_session
    calls: List[int] = []

    def open_session() -> Any:
        calls.append(1)
        if len(calls) <= failures:
            raise error()
        return real_open()

    kms._open_session = open_session  # type: ignore[method-assign]
    return calls


@pytest.mark.parametrize("error", [p11err.TokenNotPresent, p11err.DeviceRemoved, p11err.DeviceError])
def test_device_failures_are_retried_then_succeed(kms: Pkcs11Kms, label: str, error: type) -> None:
    kms.close()
    calls = failing_opens(kms, 2, error)
    round_trip(kms, label)
    assert len(calls) == 3


def test_device_failures_are_bounded(kms: Pkcs11Kms, label: str) -> None:
    kms.close()
    calls = failing_opens(kms, 100, p11err.DeviceRemoved)
    with pytest.raises(KmsUnavailableError) as info:
        kms.generate_data_key(label, context=CONTEXT)
    assert info.value.code == "ServiceUnavailable"
    assert len(calls) == 3


# -- secrets stay hidden -------------------------------------------------------------------


def test_no_secret_in_logs_reprs_or_errors(
    kms: Pkcs11Kms, label: str, softhsm_token: SoftHsmToken, caplog: pytest.LogCaptureFixture
) -> None:
    capture_all_logs(caplog)
    kms.close()
    failing_opens(kms, 1, p11err.DeviceError)
    data_key = round_trip(kms, label)
    with pytest.raises(KeyInvalidError) as info:
        kms.decrypt(data_key.ciphertext_blob, context={})
    assert caplog.records  # the retry warning
    assert_hidden(
        [softhsm_token.pin.encode(), softhsm_token.so_pin.encode(), data_key.plaintext],
        caplog.text,
        repr(kms),
        repr(data_key),
        f"{info.value!s} {info.value!r}",
    )
    assert re.search(r"Pkcs11Kms\(module='.*', token_label='sls-test'\)", repr(kms))


def test_assume_role_returns_same_client(kms: Pkcs11Kms) -> None:
    assert kms.assume_role("acs:ram::1234567890:role/log-byok") is kms
