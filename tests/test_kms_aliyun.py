"""AliyunKms and the unmodified official Alibaba Cloud SDK against ``sls-envelope kms serve``
(the server in a thread on 127.0.0.1)."""

from __future__ import annotations

import logging
import pickle
import threading
import time
from typing import Callable, Iterator, List, Optional

import pytest

from .backends import require_module

require_module("alibabacloud_kms20160120", extra="aliyun")
require_module("alibabacloud_sts20150401", extra="aliyun")

from alibabacloud_kms20160120 import models as kms_models  # noqa: E402
from alibabacloud_kms20160120.client import Client as KmsSdk  # noqa: E402
from alibabacloud_sts20150401 import models as sts_models  # noqa: E402
from alibabacloud_sts20150401.client import Client as StsSdk  # noqa: E402
from alibabacloud_tea_openapi.exceptions import ClientException  # noqa: E402
from alibabacloud_tea_openapi.utils_models import Config  # noqa: E402

from sls_envelope.exceptions import KeyInvalidError, KmsUnavailableError  # noqa: E402
from sls_envelope.kms.aliyun import AliyunKms  # noqa: E402
from sls_envelope.kms.base import RetryPolicy  # noqa: E402
from sls_envelope.kms.local import LocalKms  # noqa: E402
from sls_envelope.kms.local import create_log_service_role  # noqa: E402
from sls_envelope.kms.server import Fault, KmsHttpServer, make_server  # noqa: E402

AK, SECRET = "LTAI5tRootKey", "root-secret-value-123"
CTX = {"project": "p1", "logstore": "s1"}


class Faults:
    """Server hook: counts actions and injects the faults queued for them."""

    def __init__(self) -> None:
        self.seen: List[str] = []
        self.plan: List[Fault] = []
        self.only: Optional[str] = None

    def __call__(self, action: str) -> Optional[Fault]:
        self.seen.append(action)
        if self.plan and (self.only is None or action == self.only):
            return self.plan.pop(0)
        return None


@pytest.fixture
def kms() -> LocalKms:
    return LocalKms()


@pytest.fixture
def faults() -> Faults:
    return Faults()


@pytest.fixture
def server(kms: LocalKms, faults: Faults) -> Iterator[KmsHttpServer]:
    srv = make_server(kms, "127.0.0.1", 0, AK, SECRET, fault_injector=faults)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(5)


def sdk_config(server: KmsHttpServer, secret: str = SECRET, algorithm: Optional[str] = None, **extra: str) -> Config:
    config = Config(access_key_id=extra.pop("ak", AK), access_key_secret=secret, endpoint=server.endpoint,
                    protocol="http", region_id="cn-hangzhou", **extra)
    if algorithm:
        config.signature_algorithm = algorithm
    return config


def client(server: KmsHttpServer, **kw: object) -> AliyunKms:
    """AliyunKms as KeyManager uses it: signing as the log service (its own AccessKey)."""
    service_id, service_secret = server.api.kms.service_credential()
    options = dict(access_key_id=service_id, access_key_secret=service_secret, endpoint=server.endpoint,
                   sts_endpoint=server.endpoint,
                   protocol="http", retry_policy=RetryPolicy(attempts=3, base_delay=0.001, max_delay=0.002))
    options.update(kw)
    return AliyunKms("cn-hangzhou", **options)  # type: ignore[arg-type]


# -- the unmodified official SDK --------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", [None, "v2"], ids=["ACS3-HMAC-SHA256", "HMAC-SHA1-RPC"])
def test_official_sdk_scenario(server: KmsHttpServer, algorithm: Optional[str]) -> None:
    sdk = KmsSdk(sdk_config(server, algorithm=algorithm))
    key_id = sdk.create_key(kms_models.CreateKeyRequest(description="byok cmk")).body.key_metadata.key_id
    made = sdk.generate_data_key(kms_models.GenerateDataKeyRequest(key_id=key_id, encryption_context=CTX)).body
    assert made.key_id == key_id
    opened = sdk.decrypt(kms_models.DecryptRequest(ciphertext_blob=made.ciphertext_blob, encryption_context=CTX)).body
    assert opened.plaintext == made.plaintext
    with pytest.raises(ClientException) as wrong_context:
        sdk.decrypt(kms_models.DecryptRequest(ciphertext_blob=made.ciphertext_blob,
                                              encryption_context=dict(CTX, logstore="s2")))
    assert wrong_context.value.code == "InvalidCiphertext"
    with pytest.raises(ClientException) as wrong_secret:
        KmsSdk(sdk_config(server, secret="wrong", algorithm=algorithm)).describe_key(
            kms_models.DescribeKeyRequest(key_id=key_id))
    assert wrong_secret.value.code == "SignatureDoesNotMatch"
    sdk.disable_key(kms_models.DisableKeyRequest(key_id=key_id))
    assert sdk.describe_key(kms_models.DescribeKeyRequest(key_id=key_id)).body.key_metadata.key_state == "Disabled"
    with pytest.raises(ClientException) as disabled:
        sdk.generate_data_key(kms_models.GenerateDataKeyRequest(key_id=key_id, encryption_context=CTX))
    assert (disabled.value.code, disabled.value.status_code) == ("Rejected.Disabled", 409)
    sdk.enable_key(kms_models.EnableKeyRequest(key_id=key_id))
    again = sdk.decrypt(kms_models.DecryptRequest(ciphertext_blob=made.ciphertext_blob, encryption_context=CTX)).body
    assert again.plaintext == made.plaintext
    listed = sdk.list_keys(kms_models.ListKeysRequest()).body
    assert [k.key_id for k in listed.keys.key] == [key_id]


def test_official_sdk_schedule_cancel_and_sts(server: KmsHttpServer, kms: LocalKms) -> None:
    sdk = KmsSdk(sdk_config(server))
    key_id = kms.create_key("k")
    sdk.schedule_key_deletion(kms_models.ScheduleKeyDeletionRequest(key_id=key_id, pending_window_in_days=7))
    assert kms.describe_key(key_id)["KeyState"] == "PendingDeletion"
    sdk.cancel_key_deletion(kms_models.CancelKeyDeletionRequest(key_id=key_id))
    arn = create_log_service_role(kms, "byok")
    service_id, service_secret = kms.service_credential()
    creds = StsSdk(sdk_config(server, ak=service_id, secret=service_secret)).assume_role(
        sts_models.AssumeRoleRequest(role_arn=arn, role_session_name="s1")).body.credentials
    as_role = KmsSdk(sdk_config(server, ak=creds.access_key_id, secret=creds.access_key_secret,
                                security_token=creds.security_token))
    made = as_role.generate_data_key(kms_models.GenerateDataKeyRequest(key_id=key_id, encryption_context=CTX)).body
    assert made.ciphertext_blob
    with pytest.raises(ClientException) as refused:
        as_role.disable_key(kms_models.DisableKeyRequest(key_id=key_id))
    assert refused.value.code == "Forbidden.NoPermission"


# -- AliyunKms: the interface and error mapping ---------------------------------------------------


def test_aliyun_kms_round_trip_and_role(server: KmsHttpServer, kms: LocalKms) -> None:
    key_id = kms.create_key("k")
    for algorithm in (None, "v2"):
        aliyun = client(server, signature_algorithm=algorithm)
        data_key = aliyun.generate_data_key(key_id, context=CTX, number_of_bytes=16)
        assert len(data_key.plaintext) == 16 and data_key.key_id == key_id
        assert aliyun.decrypt(data_key.ciphertext_blob, context=CTX) == data_key.plaintext
        # blobs are LocalKms's own: the server is a faithful front end
        assert kms.decrypt(data_key.ciphertext_blob, context=CTX) == data_key.plaintext
        meta = aliyun.describe_key(key_id)
        assert meta["KeyId"] == key_id and meta["KeyState"] == "Enabled" and meta["CreationDate"]
        role = aliyun.assume_role(create_log_service_role(kms, f"byok{algorithm}"))
        assert role is aliyun.assume_role(role.role_arn or "")
        assert role.decrypt(data_key.ciphertext_blob, context=CTX) == data_key.plaintext


@pytest.mark.parametrize("state, code", [("Disabled", "Rejected.Disabled"),
                                         ("PendingDeletion", "Rejected.PendingDeletion")])
def test_unusable_key_is_key_invalid(server: KmsHttpServer, kms: LocalKms, state: str, code: str) -> None:
    key_id = kms.create_key("k")
    role = client(server).assume_role(create_log_service_role(kms, "byok"))
    data_key = role.generate_data_key(key_id, context=CTX)
    if state == "Disabled":
        kms.disable_key(key_id)
    else:
        kms.schedule_key_deletion(key_id, 7)
    for attempt in (lambda: role.generate_data_key(key_id, context=CTX),
                    lambda: role.decrypt(data_key.ciphertext_blob, context=CTX)):
        with pytest.raises(KeyInvalidError) as info:
            attempt()
        assert info.value.code == code


def test_error_mapping(server: KmsHttpServer, kms: LocalKms, faults: Faults) -> None:
    key_id = kms.create_key("k")
    aliyun = client(server)
    data_key = aliyun.generate_data_key(key_id, context=CTX)
    cases: List[tuple[Callable[[], object], str]] = [
        (lambda: aliyun.describe_key("no-such-key"), "Forbidden.KeyNotFound"),
        (lambda: aliyun.decrypt(data_key.ciphertext_blob, context={"other": "ctx"}), "InvalidCiphertext"),
        (lambda: client(server, access_key_secret="wrong").describe_key(key_id), "SignatureDoesNotMatch"),
        (lambda: client(server, access_key_id="LTAIother").describe_key(key_id), "InvalidAccessKeyId.NotFound"),
        (lambda: aliyun.assume_role(f"acs:ram::{kms.account_id}:role/nobody").describe_key(key_id), None),
    ]
    weak = kms.create_role("weak", trust_policy=_trust(), policies=["AliyunKMSReadOnlyAccess"])
    cases.append((lambda: aliyun.assume_role(weak).generate_data_key(key_id, context=CTX), "Forbidden.NoPermission"))
    for operation, code in cases:
        before = len(faults.seen)
        with pytest.raises(KeyInvalidError) as info:
            operation()
        if code is not None:
            assert info.value.code == code
        else:
            assert info.value.code in ("EntityNotExist.Role", "NoPermission")
        requests = faults.seen[before:]
        assert len(requests) == len(set(requests)), "key errors must not be retried"
    with pytest.raises(ValueError):
        aliyun.assume_role("not-an-arn")
    with pytest.raises(ValueError):
        aliyun.generate_data_key(key_id, context=CTX, number_of_bytes=0)


def _trust() -> dict:
    from sls_envelope.kms.local import log_service_trust_policy

    return log_service_trust_policy()


# -- retries ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", [Fault(400, "Throttling"), Fault(503, "ServiceUnavailableTemporary"),
                                   Fault(500, "InternalFailure"), Fault(400, "Throttling.User", retry_after=1)])
def test_transient_errors_are_retried_then_succeed(server: KmsHttpServer, kms: LocalKms, faults: Faults,
                                                   fault: Fault) -> None:
    key_id = kms.create_key("k")
    sleeps: List[float] = []
    aliyun = client(server, sleep=sleeps.append)
    faults.plan = [fault, fault]
    assert aliyun.describe_key(key_id)["KeyId"] == key_id
    assert faults.seen == ["DescribeKey"] * 3
    assert len(sleeps) == 2 and all(0 <= s <= 0.002 for s in sleeps)


def test_retries_are_bounded(server: KmsHttpServer, kms: LocalKms, faults: Faults) -> None:
    key_id = kms.create_key("k")
    sleeps: List[float] = []
    aliyun = client(server, sleep=sleeps.append, retry_policy=RetryPolicy(attempts=4, base_delay=0.5, max_delay=1.0))
    faults.plan = [Fault(503, "ServiceUnavailableTemporary")] * 10
    with pytest.raises(KmsUnavailableError) as info:
        aliyun.generate_data_key(key_id, context=CTX)
    assert info.value.code == "ServiceUnavailableTemporary"
    assert faults.seen == ["GenerateDataKey"] * 4
    # full jitter under an exponential cap: attempt n sleeps within [0, min(max, base * 2**n)]
    assert len(sleeps) == 3 and all(0 <= s <= cap for s, cap in zip(sleeps, (0.5, 1.0, 1.0)))


def test_timeouts_are_retried_then_unavailable(server: KmsHttpServer, kms: LocalKms, faults: Faults) -> None:
    key_id = kms.create_key("k")
    aliyun = client(server, read_timeout=0.2, sleep=lambda s: None)
    faults.plan = [Fault(delay=0.6)] * 3
    with pytest.raises(KmsUnavailableError) as info:
        aliyun.describe_key(key_id)
    assert info.value.code == "RequestTimeout"
    assert faults.seen == ["DescribeKey"] * 3
    faults.plan = [Fault(delay=0.6)]
    assert aliyun.describe_key(key_id)["KeyId"] == key_id  # one timeout, then an answer


def test_unreachable_server_is_unavailable(kms: LocalKms) -> None:
    closed = make_server(kms, "127.0.0.1", 0, AK, SECRET)
    endpoint = closed.endpoint
    closed.server_close()
    aliyun = AliyunKms("cn-hangzhou", access_key_id=AK, access_key_secret=SECRET, endpoint=endpoint, protocol="http",
                       retry_policy=RetryPolicy(attempts=2, base_delay=0.001), sleep=lambda s: None)
    with pytest.raises(KmsUnavailableError):
        aliyun.describe_key("k")


# -- role credentials: cached, refreshed before expiry, re-assumed when refused -------------------


def test_role_credentials_cached_and_refreshed(server: KmsHttpServer, kms: LocalKms, faults: Faults) -> None:
    key_id = kms.create_key("k")
    now = [time.time()]
    role = client(server, clock=lambda: now[0]).assume_role(create_log_service_role(kms, "byok"))
    for _ in range(3):
        role.describe_key(key_id)
    assert faults.seen.count("AssumeRole") == 1
    now[0] += 3600 - 250  # within 5 minutes of expiry: refresh first
    role.describe_key(key_id)
    assert faults.seen.count("AssumeRole") == 2
    server.api._sessions.clear()  # the server forgot them (e.g. restarted): assume again once
    role.describe_key(key_id)
    assert faults.seen.count("AssumeRole") == 3
    assert faults.seen[-3:] == ["DescribeKey", "AssumeRole", "DescribeKey"]


def test_assume_role_is_retried_when_throttled(server: KmsHttpServer, kms: LocalKms, faults: Faults) -> None:
    key_id = kms.create_key("k")
    role = client(server).assume_role(create_log_service_role(kms, "byok"))
    faults.only = "AssumeRole"
    faults.plan = [Fault(400, "Throttling")]
    assert role.describe_key(key_id)["KeyId"] == key_id
    assert faults.seen.count("AssumeRole") == 2


# -- no secret in reprs, messages or logs ---------------------------------------------------------


def test_no_secret_in_repr_messages_or_logs(server: KmsHttpServer, kms: LocalKms, faults: Faults,
                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    key_id = kms.create_key("k")
    token = "CAISroot-security-token-xyz"
    aliyun = client(server, sleep=lambda s: None)
    role = aliyun.assume_role(create_log_service_role(kms, "byok"))
    data_key = role.generate_data_key(key_id, context=CTX)
    errors: List[BaseException] = []
    faults.plan = [Fault(503, "ServiceUnavailableTemporary")] * 3
    for operation in (lambda: role.decrypt(data_key.ciphertext_blob, context=CTX),
                      lambda: client(server, access_key_secret="wrong-secret-1").describe_key(key_id),
                      lambda: client(server, security_token=token, signature_algorithm="v2").describe_key(key_id),
                      lambda: client(server, security_token=token, read_timeout=0.1).describe_key(key_id)):
        try:
            operation()
        except Exception as exc:
            errors.append(exc)
    assert len(errors) == 4
    (session,) = server.api._sessions.values()
    secrets = [SECRET, "wrong-secret-1", token, session.secret, session.token,
               data_key.plaintext.hex(), __import__("base64").b64encode(data_key.plaintext).decode()]
    texts = [repr(aliyun), repr(role), str(aliyun), repr(data_key), caplog.text]
    texts += [str(e) for e in errors] + [repr(e) for e in errors]
    for text in texts:
        for secret in secrets:
            assert secret not in text
    assert all(e.__cause__ is None for e in errors)
    with pytest.raises(TypeError):
        pickle.dumps(aliyun)


# -- KeyManager over AliyunKms: a BYOK SM4 Logstore fails closed and recovers ---------------------


def test_key_manager_byok_sm4_logstore_over_aliyun_kms(server: KmsHttpServer, kms: LocalKms) -> None:
    from sls_envelope.keys import KeyManager

    cmk = KmsSdk(sdk_config(server)).create_key(kms_models.CreateKeyRequest(description="customer")).body \
        .key_metadata.key_id
    arn = create_log_service_role(kms, "sls-byok")
    manager = KeyManager(client(server), revalidate_after=0)
    conf = {"enable": True, "encrypt_type": "sm4",
            "user_cmk_info": {"cmk_key_id": cmk, "arn": arn, "region_id": "cn-hangzhou"}}
    cipher = manager.create_logstore("proj", "store", conf)
    assert cipher is not None and cipher.suite.lower().startswith("sm4")
    sealed = cipher.encrypt(b"log batch 1")
    assert cipher.decrypt(sealed) == b"log batch 1"
    admin = KmsSdk(sdk_config(server))
    admin.disable_key(kms_models.DisableKeyRequest(key_id=cmk))
    for operation in (lambda: cipher.decrypt(sealed), lambda: cipher.encrypt(b"log batch 2")):
        with pytest.raises(KeyInvalidError) as info:
            operation()
        assert info.value.code == "Rejected.Disabled"
    admin.enable_key(kms_models.EnableKeyRequest(key_id=cmk))
    assert cipher.decrypt(sealed) == b"log batch 1"
    assert cipher.decrypt(cipher.encrypt(b"log batch 3")) == b"log batch 3"


def test_byok_stops_within_revalidate_after_when_the_trust_is_removed(server: KmsHttpServer, kms: LocalKms,
                                                                      faults: Faults) -> None:
    """Issue 15 item 4: each revalidation re-assumes the role, so emptying its trust stops BYOK at
    the next check, not when the cached STS session (3600 s) runs out."""
    from sls_envelope.keys import KeyManager

    cmk = KmsSdk(sdk_config(server)).create_key(kms_models.CreateKeyRequest(description="customer")).body \
        .key_metadata.key_id
    arn = create_log_service_role(kms, "sls-byok-trust")
    now = [1000.0]
    manager = KeyManager(client(server), revalidate_after=60, clock=lambda: now[0])
    conf = {"enable": True, "encrypt_type": "aes_gcm",
            "user_cmk_info": {"cmk_key_id": cmk, "arn": arn, "region_id": "cn-hangzhou"}}
    cipher = manager.create_logstore("proj", "trusting", conf)
    assert cipher is not None
    sealed = cipher.encrypt(b"batch")
    now[0] += 61
    assert cipher.decrypt(sealed) == b"batch"  # a revalidation with the trust in place
    assumed = faults.seen.count("AssumeRole")
    kms.update_role("sls-byok-trust", trust_policy={
        "Statement": [{"Action": "sts:AssumeRole", "Effect": "Allow", "Principal": {"Service": ["ecs.aliyuncs.com"]}}],
        "Version": "1"})
    assert cipher.encrypt(b"still within the window") is not None  # until revalidate_after, as documented
    now[0] += 61
    for operation in (lambda: cipher.encrypt(b"after"), lambda: cipher.decrypt(sealed)):
        with pytest.raises(KeyInvalidError) as info:
            operation()
        assert info.value.code in ("NoPermission", "EntityNotExist.Role", "NoPermission.AssumeRole")
    assert faults.seen.count("AssumeRole") > assumed


def test_kms_contract_through_kms_serve(server: KmsHttpServer, kms: LocalKms) -> None:
    """The shared KMS contract (tests/kms_contract.py), as LocalKms, AWS, OpenBao and
    PKCS#11 run it: an empty blob is KeyInvalidError (InvalidCiphertext) here too."""
    from .kms_contract import assert_context_bound, assert_tamper_rejected, round_trip

    key_id = kms.create_key("contract")
    aliyun = client(server)
    data_key = round_trip(aliyun, key_id)
    assert data_key.key_id == key_id
    assert_context_bound(aliyun, data_key)
    assert_tamper_rejected(aliyun, data_key)
