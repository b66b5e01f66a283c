"""LocalKms: CMK states, data keys bound to their context, RAM roles and permissions,
persistence, transient faults."""

from __future__ import annotations

import os
import stat
import threading
from typing import Any, List

import pytest

from sls_envelope import KeyInvalidError, KmsUnavailableError
from sls_envelope.kms import KmsClient, LocalKms, RetryPolicy
from sls_envelope.kms.local import (
    CRYPTO_USER_POLICY,
    DEFAULT_ACCOUNT_ID,
    READ_ONLY_POLICY,
    log_service_trust_policy,
)

CTX = {"project": "p", "logstore": "l"}
BOTH = [CRYPTO_USER_POLICY, READ_ONLY_POLICY]


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def fast_kms(**kw: Any) -> LocalKms:
    return LocalKms(retry_policy=RetryPolicy(attempts=3, base_delay=0.001, max_delay=0.002), **kw)


def code_of(call: Any) -> str:
    with pytest.raises(KeyInvalidError) as info:
        call()
    return str(info.value.code)


# ---- keys --------------------------------------------------------------------------------------


def test_key_lifecycle() -> None:
    clock = Clock()
    kms = LocalKms(clock=clock)
    key = kms.create_key("my key")
    meta = kms.describe_key(key)
    assert meta["KeyId"] == key and meta["KeyState"] == "Enabled" and meta["Description"] == "my key"
    assert meta["CreationDate"].endswith("Z") and meta["Arn"].endswith(f":key/{key}")
    assert not any(k.startswith("_") for k in meta)
    assert {"KeyId": key, "KeyArn": meta["Arn"]} in kms.list_keys()

    kms.disable_key(key)
    assert kms.describe_key(key)["KeyState"] == "Disabled"
    kms.enable_key(key)
    assert kms.describe_key(key)["KeyState"] == "Enabled"

    kms.schedule_key_deletion(key, pending_window_days=7)
    meta = kms.describe_key(key)
    assert meta["KeyState"] == "PendingDeletion" and "DeleteDate" in meta
    assert code_of(lambda: kms.enable_key(key)) == "Rejected.PendingDeletion"
    kms.cancel_key_deletion(key)
    assert kms.describe_key(key)["KeyState"] == "Enabled"  # as Alibaba Cloud KMS documents
    with pytest.raises(ValueError):
        kms.cancel_key_deletion(key)

    kms.schedule_key_deletion(key, pending_window_days=7)
    clock.now += 7 * 86400 - 1
    assert kms.describe_key(key)["KeyState"] == "PendingDeletion"
    clock.now += 1
    assert code_of(lambda: kms.describe_key(key)) == "Forbidden.KeyNotFound"
    assert kms.list_keys() == []


@pytest.mark.parametrize("days", [6, 367, 7.5, "7"])
def test_deletion_window_is_checked(days: Any) -> None:
    kms = LocalKms()
    with pytest.raises(ValueError):
        kms.schedule_key_deletion(kms.create_key(), pending_window_days=days)


def test_data_keys() -> None:
    kms = LocalKms()
    key = kms.create_key()
    data_key = kms.generate_data_key(key, context=CTX)
    assert len(data_key.plaintext) == 32 and data_key.key_id == key
    assert kms.decrypt(data_key.ciphertext_blob, context=dict(CTX)) == data_key.plaintext
    assert data_key.plaintext.hex() not in repr(data_key) and repr(data_key.plaintext) not in repr(data_key)
    assert len(kms.generate_data_key(key, context={}, number_of_bytes=16).plaintext) == 16
    assert kms.generate_data_key(key, context=CTX).plaintext != data_key.plaintext
    for bad in (0, 1025, "32"):
        with pytest.raises(ValueError):
            kms.generate_data_key(key, context=CTX, number_of_bytes=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("context", [{}, {"project": "p"}, {"project": "p", "logstore": "m"},
                                     {"project": "p", "logstore": "l", "x": "y"}, {"projectl": "ogstore"}])
def test_another_context_is_refused(context: Any) -> None:
    kms = LocalKms()
    blob = kms.generate_data_key(kms.create_key(), context=CTX).ciphertext_blob
    assert code_of(lambda: kms.decrypt(blob, context=context)) == "InvalidCiphertext"


def test_corrupt_blobs_are_refused() -> None:
    kms = LocalKms()
    blob = kms.generate_data_key(kms.create_key(), context=CTX).ciphertext_blob
    for i in range(len(blob)):
        corrupt = bytearray(blob)
        corrupt[i] ^= 0x01
        assert code_of(lambda: kms.decrypt(bytes(corrupt), context=CTX)) in (
            "InvalidCiphertext", "Forbidden.KeyNotFound")
    for n in range(len(blob)):
        assert code_of(lambda: kms.decrypt(blob[:n], context=CTX)) in ("InvalidCiphertext", "Forbidden.KeyNotFound")


def test_key_states_stop_data_key_calls() -> None:
    kms = LocalKms()
    key = kms.create_key()
    blob = kms.generate_data_key(key, context=CTX).ciphertext_blob
    kms.disable_key(key)
    assert code_of(lambda: kms.generate_data_key(key, context=CTX)) == "Rejected.Disabled"
    assert code_of(lambda: kms.decrypt(blob, context=CTX)) == "Rejected.Disabled"
    kms.enable_key(key)
    kms.schedule_key_deletion(key)
    assert code_of(lambda: kms.decrypt(blob, context=CTX)) == "Rejected.PendingDeletion"
    assert code_of(lambda: kms.generate_data_key("no-such-key", context=CTX)) == "Forbidden.KeyNotFound"
    assert code_of(lambda: kms.describe_key("no-such-key")) == "Forbidden.KeyNotFound"


# ---- RAM ----------------------------------------------------------------------------------------------


def test_role_arn_and_assume() -> None:
    kms = LocalKms()
    arn = kms.create_role("SlsRole", trust_policy=log_service_trust_policy(), policies=BOTH)
    assert arn == f"acs:ram::{DEFAULT_ACCOUNT_ID}:role/SlsRole"
    role = kms.assume_role(arn)
    assert isinstance(role, KmsClient)
    key = kms.create_key()
    data_key = role.generate_data_key(key, context=CTX)
    assert role.decrypt(data_key.ciphertext_blob, context=CTX) == data_key.plaintext
    assert kms.decrypt(data_key.ciphertext_blob, context=CTX) == data_key.plaintext
    assert role.describe_key(key)["KeyState"] == "Enabled"
    assert kms.assume_role(arn.replace("SlsRole", "slsrole"))  # RAM role names are case-insensitive
    with pytest.raises(ValueError):
        kms.create_role("slsrole", trust_policy=log_service_trust_policy())


@pytest.mark.parametrize("trust", [
    {"Statement": [{"Action": "sts:AssumeRole", "Effect": "Allow", "Principal": {"Service": ["ecs.aliyuncs.com"]}}]},
    {"Statement": [{"Action": "sts:AssumeRole", "Effect": "Allow", "Principal": {"RAM": ["acs:ram::1:root"]}}]},
    {"Statement": [{"Action": "kms:Decrypt", "Effect": "Allow", "Principal": {"Service": ["log.aliyuncs.com"]}}]},
    {"Statement": [
        {"Action": "sts:AssumeRole", "Effect": "Allow", "Principal": {"Service": ["log.aliyuncs.com"]}},
        {"Action": "sts:AssumeRole", "Effect": "Deny", "Principal": {"Service": "log.aliyuncs.com"}}]},
    {"Statement": []},
])
def test_roles_without_the_log_service_trust_cannot_be_assumed(trust: Any) -> None:
    kms = LocalKms()
    arn = kms.create_role("r", trust_policy=trust, policies=BOTH)
    assert code_of(lambda: kms.assume_role(arn)) == "NoPermission"


def test_trust_policy_forms() -> None:
    kms = LocalKms()
    as_json = '{"Statement":[{"Action":["sts:AssumeRole"],"Effect":"Allow",' \
              '"Principal":{"Service":"1000000000000000@log.aliyuncs.com"}}],"Version":"1"}'
    kms.assume_role(kms.create_role("r", trust_policy=as_json, policies=BOTH))
    for bad in ("not json", {"Statement": "x"}, {"Statement": [{"Effect": "Maybe"}]}, []):
        with pytest.raises(ValueError):
            kms.create_role("bad", trust_policy=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("arn, code", [
    ("acs:ram::1000000000000000:role/nobody", "EntityNotExist.Role"),
    ("acs:ram::2000000000000000:role/r", "EntityNotExist.Role"),
    ("arn:aws:iam::1:role/r", "InvalidParameter.RoleArn"),
    ("", "InvalidParameter.RoleArn"),
])
def test_unknown_roles(arn: str, code: str) -> None:
    kms = LocalKms()
    kms.create_role("r", trust_policy=log_service_trust_policy(), policies=BOTH)
    assert code_of(lambda: kms.assume_role(arn)) == code


def test_role_permissions() -> None:
    kms = LocalKms()
    key = kms.create_key()
    blob = kms.generate_data_key(key, context=CTX).ciphertext_blob
    read_only = kms.assume_role(kms.create_role("ro", trust_policy=log_service_trust_policy(),
                                                policies=[READ_ONLY_POLICY]))
    assert code_of(lambda: read_only.generate_data_key(key, context=CTX)) == "Forbidden.NoPermission"
    assert code_of(lambda: read_only.decrypt(blob, context=CTX)) == "Forbidden.NoPermission"
    assert read_only.describe_key(key)["KeyId"] == key
    crypto = kms.assume_role(kms.create_role("cu", trust_policy=log_service_trust_policy(),
                                             policies=[CRYPTO_USER_POLICY]))
    assert crypto.decrypt(blob, context=CTX)
    assert code_of(lambda: crypto.describe_key(key)) == "Forbidden.NoPermission"
    full = kms.assume_role(kms.create_role("fa", trust_policy=log_service_trust_policy(),
                                           policies=["AliyunKMSFullAccess"]))
    assert full.decrypt(blob, context=CTX) and full.describe_key(key)
    nothing = kms.assume_role(kms.create_role("no", trust_policy=log_service_trust_policy(), policies=[]))
    assert code_of(lambda: nothing.decrypt(blob, context=CTX)) == "Forbidden.NoPermission"


def test_role_changes_take_effect_at_once() -> None:
    kms = LocalKms()
    key = kms.create_key()
    arn = kms.create_role("r", trust_policy=log_service_trust_policy(), policies=BOTH)
    role = kms.assume_role(arn)
    blob = role.generate_data_key(key, context=CTX).ciphertext_blob
    kms.update_role("r", policies=[READ_ONLY_POLICY])
    assert code_of(lambda: role.decrypt(blob, context=CTX)) == "Forbidden.NoPermission"
    kms.update_role("r", policies=BOTH)
    assert role.decrypt(blob, context=CTX)
    kms.update_role("r", trust_policy={"Statement": []})
    assert code_of(lambda: kms.assume_role(arn)) == "NoPermission"
    kms.delete_role("r")
    assert code_of(lambda: role.decrypt(blob, context=CTX)) == "EntityNotExist.Role"
    assert code_of(lambda: kms.assume_role(arn)) == "EntityNotExist.Role"


# ---- persistence -------------------------------------------------------------------------------------------


def test_persistence(tmp_path: Any) -> None:
    path = tmp_path / "kms"
    kms = LocalKms(path, account_id="1234567890123456")
    key = kms.create_key("persisted")
    arn = kms.create_role("r", trust_policy=log_service_trust_policy(), policies=BOTH)
    data_key = kms.generate_data_key(key, context=CTX)
    kms.disable_key(key)

    assert stat.S_IMODE(os.stat(path).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(path / "localkms.json").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path / "localkms.lock").st_mode) == 0o600
    assert sorted(os.listdir(path)) == ["localkms.json", "localkms.lock"]  # no temp files left behind

    again = LocalKms(path)
    assert again.account_id == "1234567890123456"
    assert again.describe_key(key)["KeyState"] == "Disabled"
    again.enable_key(key)
    assert again.assume_role(arn).decrypt(data_key.ciphertext_blob, context=CTX) == data_key.plaintext
    with pytest.raises(ValueError):
        LocalKms(path, account_id="999")


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    kms = LocalKms(tmp_path)
    key = kms.create_key()

    def broken(*args: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError):
        kms.create_key()
    monkeypatch.undo()
    assert [k["KeyId"] for k in LocalKms(tmp_path).list_keys()] == [key]
    # The failed change is rolled back in memory too, not only on disk.
    assert [k["KeyId"] for k in kms.list_keys()] == [key]
    assert sorted(os.listdir(tmp_path)) == ["localkms.json", "localkms.lock"]


def test_memory_kms_writes_nothing(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    kms = LocalKms()
    kms.create_key()
    assert os.listdir(tmp_path) == [] and kms.path is None


# ---- faults and threads ---------------------------------------------------------------------------------------


def test_transient_faults_are_retried_then_reported() -> None:
    kms = fast_kms()
    key = kms.create_key()
    kms.inject_faults(2)
    assert kms.generate_data_key(key, context=CTX)  # third attempt succeeds
    kms.inject_faults(3)
    with pytest.raises(KmsUnavailableError) as info:
        kms.generate_data_key(key, context=CTX)
    assert info.value.code == "ServiceUnavailableTemporary"


def test_concurrent_use() -> None:
    kms = LocalKms()
    key = kms.create_key()
    errors: List[BaseException] = []

    def work() -> None:
        try:
            for _ in range(30):
                data_key = kms.generate_data_key(key, context=CTX)
                assert kms.decrypt(data_key.ciphertext_blob, context=CTX) == data_key.plaintext
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_repr_holds_no_material(tmp_path: Any) -> None:
    kms = LocalKms()
    kms.create_key()
    material = next(iter(kms._store.keys.values()))["_material"]
    assert material not in repr(kms)


def test_processes_sharing_a_directory_see_each_others_changes(tmp_path: Any) -> None:
    """Two LocalKms over one directory (as `kms serve` and admin commands are): each
    operation reloads what the other wrote, and concurrent writers lose no update."""
    import multiprocessing

    first = LocalKms(tmp_path)
    second = LocalKms(tmp_path)
    key_id = first.create_key("made by the first")
    assert second.describe_key(key_id)["Description"] == "made by the first"
    second.disable_key(key_id)
    assert first.describe_key(key_id)["KeyState"] == "Disabled"
    arn = second.create_role("shared", trust_policy=log_service_trust_policy(),
                             policies=[CRYPTO_USER_POLICY])
    first.enable_key(key_id)
    assert first.assume_role(arn).generate_data_key(key_id, context={"a": "b"}).key_id == key_id

    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=_make_keys, args=(str(tmp_path), 20)) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    assert len(first.list_keys()) == 1 + 3 * 20


def _make_keys(path: str, count: int) -> None:
    kms = LocalKms(path)
    for _ in range(count):
        kms.create_key()
