"""`kms serve` as Alibaba Cloud KMS and STS answer, driven by the unmodified official SDKs
(alibabacloud-kms20160120, alibabacloud-sts20150401): every action in every key state, the
three identities and AssumeRole, Decrypt's KeyId/KeyVersionId, the real services' messages."""

from __future__ import annotations

import threading
from typing import Any, Callable, Iterator, Optional, Tuple

import pytest

from .backends import require_module

require_module("alibabacloud_kms20160120", extra="aliyun")

from alibabacloud_kms20160120 import models as kms_models  # noqa: E402
from alibabacloud_kms20160120.client import Client as KmsSdk  # noqa: E402
from alibabacloud_sts20150401 import models as sts_models  # noqa: E402
from alibabacloud_sts20150401.client import Client as StsSdk  # noqa: E402
from alibabacloud_tea_openapi.exceptions import ClientException  # noqa: E402
from alibabacloud_tea_openapi.utils_models import Config  # noqa: E402

from sls_envelope.kms.local import (  # noqa: E402
    ASSUME_ROLE_POLICY,
    KEY_STATE_RULES,
    LocalKms,
    create_log_service_role,
)
from sls_envelope.kms.server import KmsHttpServer, make_server  # noqa: E402

AK, SECRET = "LTAI5tFidelityRoot", "fidelity-root-secret-789"
CTX = {"project": "p", "logstore": "l"}


@pytest.fixture
def kms() -> LocalKms:
    return LocalKms()


@pytest.fixture
def server(kms: LocalKms) -> Iterator[KmsHttpServer]:
    srv = make_server(kms, "127.0.0.1", 0, AK, SECRET)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(5)


def _config(server: KmsHttpServer, ak: str = AK, secret: str = SECRET, token: Optional[str] = None) -> Config:
    return Config(access_key_id=ak, access_key_secret=secret, security_token=token, endpoint=server.endpoint,
                  protocol="http", region_id="cn-hangzhou")


def _refusal(call: Callable[[], Any]) -> Tuple[str, int, str]:
    with pytest.raises(ClientException) as info:
        call()
    return info.value.code, info.value.status_code, info.value.data["Message"]


# ---- every action in every state -------------------------------------------------------------------------


def _sdk_call(sdk: KmsSdk, action: str, key: str, blob: str) -> Callable[[], Any]:
    M = kms_models
    return {
        "GenerateDataKey": lambda: sdk.generate_data_key(M.GenerateDataKeyRequest(key_id=key, encryption_context=CTX)),
        "Encrypt": lambda: sdk.encrypt(M.EncryptRequest(key_id=key, plaintext="c2VjcmV0", encryption_context=CTX)),
        "Decrypt": lambda: sdk.decrypt(M.DecryptRequest(ciphertext_blob=blob, encryption_context=CTX)),
        "DescribeKey": lambda: sdk.describe_key(M.DescribeKeyRequest(key_id=key)),
        "ListKeys": lambda: sdk.list_keys(M.ListKeysRequest()),
        "EnableKey": lambda: sdk.enable_key(M.EnableKeyRequest(key_id=key)),
        "DisableKey": lambda: sdk.disable_key(M.DisableKeyRequest(key_id=key)),
        "ScheduleKeyDeletion": lambda: sdk.schedule_key_deletion(
            M.ScheduleKeyDeletionRequest(key_id=key, pending_window_in_days=7)),
        "CancelKeyDeletion": lambda: sdk.cancel_key_deletion(M.CancelKeyDeletionRequest(key_id=key)),
    }[action]


_AFTER = {"EnableKey": "Enabled", "DisableKey": "Disabled", "ScheduleKeyDeletion": "PendingDeletion",
          "CancelKeyDeletion": "Enabled"}
_TABLE = [(action, state, code) for action, row in KEY_STATE_RULES.items() for state, code in row.items()]


@pytest.mark.parametrize("action,state,code", _TABLE, ids=[f"{a}-{s}" for a, s, _ in _TABLE])
def test_every_action_in_every_state(server: KmsHttpServer, action: str, state: str, code: Optional[str]) -> None:
    sdk = KmsSdk(_config(server))
    key = sdk.create_key(kms_models.CreateKeyRequest()).body.key_metadata.key_id
    blob = sdk.generate_data_key(kms_models.GenerateDataKeyRequest(key_id=key, encryption_context=CTX)).body
    if state == "Disabled":
        sdk.disable_key(kms_models.DisableKeyRequest(key_id=key))
    elif state == "PendingDeletion":
        sdk.schedule_key_deletion(kms_models.ScheduleKeyDeletionRequest(key_id=key, pending_window_in_days=30))

    def describe() -> Any:
        return sdk.describe_key(kms_models.DescribeKeyRequest(key_id=key)).body.key_metadata

    before = describe().to_map()
    call = _sdk_call(sdk, action, key, blob.ciphertext_blob)
    if code is None:
        call()
        assert describe().key_state == (_AFTER.get(action) or state)
    else:
        refused_code, status, message = _refusal(call)
        assert (refused_code, status) == (code, 409)
        assert message.startswith("The request was rejected because the key state")
        assert describe().to_map() == before  # nothing changed: a deletion window is not reset


# ---- responses -----------------------------------------------------------------------------------------------


def test_decrypt_names_the_key_and_its_version(server: KmsHttpServer) -> None:
    sdk = KmsSdk(_config(server))
    key = sdk.create_key(kms_models.CreateKeyRequest()).body.key_metadata.key_id
    made = sdk.generate_data_key(kms_models.GenerateDataKeyRequest(key_id=key, encryption_context=CTX)).body
    opened = sdk.decrypt(kms_models.DecryptRequest(ciphertext_blob=made.ciphertext_blob, encryption_context=CTX)).body
    assert (opened.key_id, opened.key_version_id, opened.plaintext) == (key, made.key_version_id, made.plaintext)
    meta = sdk.describe_key(kms_models.DescribeKeyRequest(key_id=key)).body.key_metadata
    assert meta.primary_key_version == made.key_version_id


def test_messages_are_the_services_own(server: KmsHttpServer, kms: LocalKms) -> None:
    sdk = KmsSdk(_config(server))
    assert _refusal(lambda: sdk.describe_key(kms_models.DescribeKeyRequest(key_id="no-such-key"))) == (
        "Forbidden.KeyNotFound", 404, "The specified Key is not found.")
    key = kms.create_key()
    kms.disable_key(key)
    assert _refusal(lambda: sdk.generate_data_key(kms_models.GenerateDataKeyRequest(key_id=key))) == (
        "Rejected.Disabled", 409, "The request was rejected because the key state is Disabled.")
    sts = StsSdk(_config(server))
    arn = create_log_service_role(kms, "byok")
    assert _refusal(lambda: sts.assume_role(sts_models.AssumeRoleRequest(role_arn=arn, role_session_name="s1"))) == (
        "NoPermission", 403, "Roles may not be assumed by root accounts.")


@pytest.mark.parametrize("seconds", [899, 3601, 0])
def test_duration_seconds_out_of_range(server: KmsHttpServer, kms: LocalKms, seconds: int) -> None:
    arn = create_log_service_role(kms, "byok")
    service_id, service_secret = kms.service_credential()
    sts = StsSdk(_config(server, service_id, service_secret))
    code, status, _ = _refusal(lambda: sts.assume_role(sts_models.AssumeRoleRequest(
        role_arn=arn, role_session_name="s1", duration_seconds=seconds)))
    assert (code, status) == ("InvalidParameter.DurationSeconds", 400)


# ---- identities -------------------------------------------------------------------------------------------------


def _assume(server: KmsHttpServer, ak: str, secret: str, arn: str) -> KmsSdk:
    creds = StsSdk(_config(server, ak, secret)).assume_role(
        sts_models.AssumeRoleRequest(role_arn=arn, role_session_name="s1")).body.credentials
    return KmsSdk(_config(server, creds.access_key_id, creds.access_key_secret, creds.security_token))


def test_who_may_assume_which_role(server: KmsHttpServer, kms: LocalKms) -> None:
    key = kms.create_key()
    byok = create_log_service_role(kms, "byok")
    by_account = kms.create_role("by-account", policies=["AliyunKMSCryptoUserAccess"], trust_policy={
        "Version": "1", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                       "Principal": {"RAM": [f"acs:ram::{kms.account_id}:root"]}}]})
    service_id, service_secret = kms.service_credential()
    kms.create_user("alice")
    alice_id, alice_secret = kms.create_access_key("alice")

    # The log service assumes the role that trusts it, and only that one.
    as_byok = _assume(server, service_id, service_secret, byok)
    made = as_byok.generate_data_key(kms_models.GenerateDataKeyRequest(key_id=key, encryption_context=CTX)).body
    assert made.key_id == key
    assert _refusal(lambda: _assume(server, service_id, service_secret, by_account))[:2] == ("NoPermission", 403)

    # A RAM user: not without sts:AssumeRole, then the role trusting its account, never the service's.
    sts_alice = StsSdk(_config(server, alice_id, alice_secret))
    assert _refusal(lambda: sts_alice.assume_role(sts_models.AssumeRoleRequest(
        role_arn=by_account, role_session_name="s1")))[:2] == ("NoPermission", 403)
    kms.attach_user_policy("alice", ASSUME_ROLE_POLICY)
    as_account_role = _assume(server, alice_id, alice_secret, by_account)
    opened = as_account_role.decrypt(kms_models.DecryptRequest(ciphertext_blob=made.ciphertext_blob,
                                                              encryption_context=CTX)).body
    assert opened.plaintext == made.plaintext
    assert _refusal(lambda: _assume(server, alice_id, alice_secret, byok))[:2] == ("NoPermission", 403)

    # The user's own KMS calls follow its policies.
    as_alice = KmsSdk(_config(server, alice_id, alice_secret))
    assert _refusal(lambda: as_alice.describe_key(kms_models.DescribeKeyRequest(key_id=key)))[:2] == (
        "Forbidden.NoPermission", 403)
    kms.attach_user_policy("alice", "AliyunKMSFullAccess")
    as_alice.disable_key(kms_models.DisableKeyRequest(key_id=key))
    assert kms.describe_key(key)["KeyState"] == "Disabled"

    # The service may use keys, not administer them; a role session may not chain.
    as_service = KmsSdk(_config(server, service_id, service_secret))
    assert _refusal(lambda: as_service.enable_key(kms_models.EnableKeyRequest(key_id=key)))[:2] == (
        "Forbidden.NoPermission", 403)
    assert _refusal(lambda: StsSdk(_config(server, *_session(server, service_id, service_secret, byok))).assume_role(
        sts_models.AssumeRoleRequest(role_arn=byok, role_session_name="s2")))[:2] == ("NoPermission", 403)


def _session(server: KmsHttpServer, ak: str, secret: str, arn: str) -> Tuple[str, str, str]:
    creds = StsSdk(_config(server, ak, secret)).assume_role(
        sts_models.AssumeRoleRequest(role_arn=arn, role_session_name="s1")).body.credentials
    return creds.access_key_id, creds.access_key_secret, creds.security_token


def test_unknown_and_deleted_users_are_unknown_access_keys(server: KmsHttpServer, kms: LocalKms) -> None:
    kms.create_user("gone")
    ident, secret = kms.create_access_key("gone")
    kms.attach_user_policy("gone", "AliyunKMSReadOnlyAccess")
    sdk = KmsSdk(_config(server, ident, secret))
    assert sdk.list_keys(kms_models.ListKeysRequest()).body.total_count == 0
    kms.delete_user("gone")
    assert _refusal(lambda: sdk.list_keys(kms_models.ListKeysRequest()))[:2] == ("InvalidAccessKeyId.NotFound", 404)


def test_docs_byok_setup_works_as_written(server: KmsHttpServer, kms: LocalKms, tmp_path: Any) -> None:
    """docs/KMS.md "Setting it up for real (BYOK)", steps 1-4, against kms serve's STS, which
    refuses what real STS refuses: AliyunKms as the RAM user `sls-envelope`, the role trusting
    that user, a BYOK Logstore over it; the root AccessKey and a role trusting only the log
    service are refused to that user."""
    from sls_envelope import KeyInvalidError, KeyManager
    from sls_envelope.kms import RetryPolicy
    from sls_envelope.kms.aliyun import AliyunKms

    root = KmsSdk(_config(server))
    key = root.create_key(kms_models.CreateKeyRequest()).body.key_metadata.key_id  # step 1
    kms.create_user("sls-envelope")  # step 2
    ak, secret = kms.create_access_key("sls-envelope")
    kms.attach_user_policy("sls-envelope", "AliyunSTSAssumeRoleAccess")
    arn = kms.create_role("sls-byok", policies=["AliyunKMSReadOnlyAccess", "AliyunKMSCryptoUserAccess"],
                          trust_policy={"Version": "1", "Statement": [{  # step 3
                              "Action": "sts:AssumeRole", "Effect": "Allow",
                              "Principal": {"RAM": [f"acs:ram::{kms.account_id}:user/sls-envelope"]}}]})
    service_only = create_log_service_role(kms, "log-only")
    fast = RetryPolicy(attempts=2, base_delay=0.001, max_delay=0.002)

    def aliyun(access_key_id: str, access_key_secret: str) -> AliyunKms:
        return AliyunKms("cn-hangzhou", access_key_id=access_key_id, access_key_secret=access_key_secret,
                         endpoint=server.endpoint, sts_endpoint=server.endpoint, protocol="http", retry_policy=fast)

    manager = KeyManager(aliyun(ak, secret), tmp_path / "keys.db")
    conf = {"enable": True, "encrypt_type": "default",
            "user_cmk_info": {"cmk_key_id": key, "arn": arn, "region_id": "cn-hangzhou"}}
    cipher = manager.create_logstore("p", "byok", conf, caller=kms.account())  # step 4: the account passes it
    assert cipher is not None and cipher.decrypt(cipher.encrypt(b"batch")) == b"batch"
    with pytest.raises(KeyInvalidError) as refused:
        manager.create_logstore("p", "other", dict(conf, user_cmk_info=dict(conf["user_cmk_info"], arn=service_only)))
    assert refused.value.code == "NoPermission"
    with pytest.raises(KeyInvalidError) as root_refused:
        aliyun(AK, SECRET).assume_role(arn).describe_key(key)
    assert root_refused.value.code == "NoPermission"
    manager.close()
