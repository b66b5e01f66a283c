"""AwsKms against moto_server on 127.0.0.1, and botocore's Stubber for what moto does not
enforce (disabled and pending-deletion keys, access denied, throttling)."""

from __future__ import annotations

import base64
import datetime
import re
import secrets
from typing import Any, Iterator

import pytest

from .backends import require_module

boto3 = require_module("boto3")
stub = require_module("botocore.stub")

from .kms_contract import (  # noqa: E402
    CONTEXT,
    assert_context_bound,
    assert_hidden,
    assert_tamper_rejected,
    capture_all_logs,
    round_trip,
)
from .servers import MotoServer, SilentServer  # noqa: E402
from sls_envelope.exceptions import KeyInvalidError, KmsUnavailableError  # noqa: E402
from sls_envelope.kms.aws import AwsKms  # noqa: E402
from sls_envelope.kms.base import RetryPolicy  # noqa: E402

REGION = "us-east-1"
SECRET_KEY = "moto-secret-" + secrets.token_hex(12)
FAST_RETRIES = RetryPolicy(attempts=3, base_delay=0.001, max_delay=0.005)
ROLE_ARN = "arn:aws:iam::123456789012:role/log-byok"


def aws_session() -> Any:
    return boto3.session.Session(
        aws_access_key_id="AKIDTESTING", aws_secret_access_key=SECRET_KEY, region_name=REGION
    )


@pytest.fixture
def kms(moto_server: MotoServer) -> Iterator[AwsKms]:
    client = AwsKms(
        region_name=REGION,
        endpoint_url=moto_server.url,
        sts_endpoint_url=moto_server.url,
        session=aws_session(),
        retry_policy=FAST_RETRIES,
    )
    yield client
    client.close()


@pytest.fixture(scope="module")
def admin(moto_server: MotoServer) -> Any:
    return aws_session().client("kms", endpoint_url=moto_server.url)


@pytest.fixture
def key_id(admin: Any) -> str:
    return str(admin.create_key(Description="log-cmk " + secrets.token_hex(4))["KeyMetadata"]["KeyId"])


def stubbed() -> "tuple[AwsKms, Any]":
    client = aws_session().client("kms")
    stubber = stub.Stubber(client)
    stubber.activate()
    return AwsKms(region_name=REGION, client=client, retry_policy=FAST_RETRIES), stubber


# -- on moto_server ------------------------------------------------------------------


def test_round_trip_binds_context_and_rejects_tampering(kms: AwsKms, key_id: str) -> None:
    data_key = round_trip(kms, key_id)
    assert data_key.key_id == key_id
    assert_context_bound(kms, data_key)
    assert_tamper_rejected(kms, data_key)


def test_alias_and_sizes(kms: AwsKms, key_id: str, admin: Any) -> None:
    alias = "alias/sls-" + secrets.token_hex(4)
    admin.create_alias(AliasName=alias, TargetKeyId=key_id)
    for size in (16, 32, 64):
        data_key = kms.generate_data_key(alias, context=CONTEXT, number_of_bytes=size)
        assert len(data_key.plaintext) == size
        assert kms.decrypt(data_key.ciphertext_blob, context=CONTEXT) == data_key.plaintext
    for bad in (0, 1025):
        with pytest.raises(ValueError):
            kms.generate_data_key(key_id, context=CONTEXT, number_of_bytes=bad)
    with pytest.raises(ValueError):
        kms.generate_data_key("", context=CONTEXT)
    with pytest.raises(ValueError):
        kms.generate_data_key(key_id, context={"n": 1})  # type: ignore[dict-item]


def test_missing_key(kms: AwsKms) -> None:
    for key in ("alias/never-made", "11111111-2222-3333-4444-555555555555"):
        with pytest.raises(KeyInvalidError) as info:
            kms.generate_data_key(key, context=CONTEXT)
        assert info.value.code == "Forbidden.KeyNotFound"
        with pytest.raises(KeyInvalidError) as info:
            kms.describe_key(key)
        assert info.value.code == "Forbidden.KeyNotFound"


def test_describe_maps_key_states(kms: AwsKms, key_id: str, admin: Any) -> None:
    described = kms.describe_key(key_id)
    assert described["KeyId"] == key_id
    assert described["KeyState"] == "Enabled"
    assert described["Description"].startswith("log-cmk ")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", described["CreationDate"])
    created = datetime.datetime.strptime(described["CreationDate"], "%Y-%m-%dT%H:%M:%SZ")
    assert abs(created.replace(tzinfo=datetime.timezone.utc) - datetime.datetime.now(datetime.timezone.utc)) < (
        datetime.timedelta(hours=1)
    )
    admin.disable_key(KeyId=key_id)
    assert kms.describe_key(key_id)["KeyState"] == "Disabled"
    admin.enable_key(KeyId=key_id)
    admin.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
    described = kms.describe_key(key_id)
    assert described["KeyState"] == "PendingDeletion"
    assert described["DeletionDate"] is not None


def test_assume_role_acts_as_the_role(kms: AwsKms, key_id: str) -> None:
    role_kms = kms.assume_role(ROLE_ARN)
    assert role_kms is not kms
    assert ROLE_ARN in repr(role_kms)
    data_key = round_trip(role_kms, key_id)
    assert kms.decrypt(data_key.ciphertext_blob, context=CONTEXT) == data_key.plaintext
    # The role's credentials are not the caller's.
    role_credentials = role_kms._client._request_signer._credentials
    assert role_credentials.token and role_credentials.secret_key != SECRET_KEY
    # Credentials near expiry are replaced by a fresh AssumeRole before the next call.
    old_client = role_kms._client
    role_kms._expires = datetime.datetime.now(datetime.timezone.utc)
    round_trip(role_kms, key_id)
    assert role_kms._client is not old_client
    assert role_kms._expires > datetime.datetime.now(datetime.timezone.utc)
    # A role client assumes other roles from the original credentials, not by chaining.
    other = role_kms.assume_role("arn:aws:iam::123456789012:role/other")
    assert other._parent is kms


@pytest.mark.parametrize(
    "arn", ["acs:ram::1234567890123456:role/aliyunlogdefaultrole", "arn:aws:iam::123:role/short", "role/x", ""]
)
def test_assume_role_refuses_non_iam_arns(kms: AwsKms, arn: str) -> None:
    with pytest.raises(KeyInvalidError) as info:
        kms.assume_role(arn)
    assert info.value.code == "Forbidden.RoleNotAssumable"


def test_timeouts_are_retried_and_bounded(silent_server: SilentServer) -> None:
    kms = AwsKms(
        region_name=REGION,
        endpoint_url=silent_server.url,
        session=aws_session(),
        connect_timeout=0.2,
        read_timeout=0.2,
        retry_policy=FAST_RETRIES,
    )
    with pytest.raises(KmsUnavailableError) as info:
        kms.generate_data_key("alias/x", context=CONTEXT)
    assert info.value.code == "Timeout"
    # One HTTP attempt per retry: botocore's own retries are off.
    assert silent_server.connections == 3


def test_no_secret_in_logs_reprs_or_errors(kms: AwsKms, key_id: str, caplog: pytest.LogCaptureFixture) -> None:
    capture_all_logs(caplog)
    data_key = round_trip(kms, key_id)
    role_kms = kms.assume_role(ROLE_ARN)
    role_key = round_trip(role_kms, key_id)
    session_token = role_kms._client._request_signer._credentials.token
    role_secret = role_kms._client._request_signer._credentials.secret_key
    errors = []
    with pytest.raises(KeyInvalidError) as info:
        kms.decrypt(data_key.ciphertext_blob, context={})
    errors.append(f"{info.value!s} {info.value!r}")
    assert "[redacted by sls_envelope" in caplog.text  # botocore did try to log the bodies
    assert_hidden(
        [data_key.plaintext, role_key.plaintext, SECRET_KEY.encode(), session_token.encode(), role_secret.encode()],
        caplog.text,
        repr(kms),
        repr(role_kms),
        repr(data_key),
        *errors,
    )
    assert base64.b64encode(data_key.plaintext).decode() not in caplog.text


# -- with botocore's Stubber (what moto does not enforce) ------------------------------


@pytest.mark.parametrize(
    "aws_code,message,code",
    [
        ("DisabledException", "arn:aws:kms:us-east-1:123456789012:key/k is disabled.", "Rejected.Disabled"),
        ("KMSInvalidStateException", "arn:aws:kms:...:key/k is pending deletion.", "Rejected.PendingDeletion"),
        ("KMSInvalidStateException", "arn:aws:kms:...:key/k is pending import.", "Rejected.InvalidState"),
        ("NotFoundException", "Key 'k' does not exist", "Forbidden.KeyNotFound"),
        ("AccessDeniedException", "User is not authorized to perform kms:Decrypt", "Forbidden.NoPermission"),
        ("ExpiredTokenException", "The security token included in the request is expired", "Forbidden.NoPermission"),
        ("InvalidKeyUsageException", "key usage is SIGN_VERIFY", "Forbidden.KeyConfig"),
    ],
)
def test_unusable_keys_fail_closed(aws_code: str, message: str, code: str) -> None:
    kms, stubber = stubbed()
    stubber.add_client_error("generate_data_key", service_error_code=aws_code, service_message=message, http_status_code=400)
    stubber.add_client_error("decrypt", service_error_code=aws_code, service_message=message, http_status_code=400)
    stubber.add_client_error("describe_key", service_error_code=aws_code, service_message=message, http_status_code=400)
    for call in (
        lambda: kms.generate_data_key("alias/k", context=CONTEXT),
        lambda: kms.decrypt(b"blob", context=CONTEXT),
        lambda: kms.describe_key("alias/k"),
    ):
        with pytest.raises(KeyInvalidError) as info:
            call()
        assert info.value.code == code
    stubber.assert_no_pending_responses()


def test_stubbed_request_carries_the_context() -> None:
    kms, stubber = stubbed()
    plaintext = bytes(range(32))
    stubber.add_response(
        "generate_data_key",
        {"KeyId": "arn:k", "Plaintext": plaintext, "CiphertextBlob": b"wrapped"},
        {"KeyId": "alias/k", "NumberOfBytes": 32, "EncryptionContext": dict(CONTEXT)},
    )
    stubber.add_response("decrypt", {"Plaintext": plaintext}, {"CiphertextBlob": b"wrapped", "EncryptionContext": dict(CONTEXT)})
    data_key = kms.generate_data_key("alias/k", context=CONTEXT)
    assert (data_key.plaintext, data_key.ciphertext_blob) == (plaintext, b"wrapped")
    assert kms.decrypt(b"wrapped", context=CONTEXT) == plaintext
    stubber.assert_no_pending_responses()


@pytest.mark.parametrize(
    "aws_code,status,code",
    [
        ("ThrottlingException", 400, "Throttling"),
        ("LimitExceededException", 400, "Throttling"),
        ("KMSInternalException", 500, "ServiceUnavailable"),
        ("DependencyTimeoutException", 503, "Timeout"),
        ("SomethingNew", 502, "ServiceUnavailable"),
    ],
)
def test_transient_errors_are_retried_then_bounded(aws_code: str, status: int, code: str) -> None:
    kms, stubber = stubbed()
    plaintext = bytes(32)
    for _ in range(2):
        stubber.add_client_error("decrypt", service_error_code=aws_code, http_status_code=status)
    stubber.add_response("decrypt", {"Plaintext": plaintext})
    assert kms.decrypt(b"blob", context=CONTEXT) == plaintext
    stubber.assert_no_pending_responses()
    for _ in range(3):
        stubber.add_client_error("decrypt", service_error_code=aws_code, http_status_code=status)
    stubber.add_response("decrypt", {"Plaintext": plaintext})  # never reached: 3 attempts in all
    with pytest.raises(KmsUnavailableError) as info:
        kms.decrypt(b"blob", context=CONTEXT)
    assert info.value.code == code
    assert kms.decrypt(b"blob", context=CONTEXT) == plaintext  # the 4th response was still queued
    stubber.assert_no_pending_responses()


def test_malformed_response_is_unavailable() -> None:
    kms, stubber = stubbed()
    stubber.add_response("generate_data_key", {"KeyId": "k", "Plaintext": b"short", "CiphertextBlob": b"w"})
    with pytest.raises(KmsUnavailableError) as info:
        kms.generate_data_key("k", context={}, number_of_bytes=32)
    assert info.value.code == "InvalidResponse"


def test_no_credentials_is_no_permission(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    kms = AwsKms(region_name=REGION, endpoint_url="http://127.0.0.1:9", retry_policy=FAST_RETRIES)
    with pytest.raises(KeyInvalidError) as info:
        kms.describe_key("alias/k")
    assert info.value.code == "Forbidden.NoPermission"
