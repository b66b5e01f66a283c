"""LocalKms: CMK states, data keys bound to their context, RAM roles and permissions,
persistence, transient faults."""

from __future__ import annotations

import os
import stat
import threading
from typing import Any, Dict, List

import pytest

from sls_envelope import KeyInvalidError, KmsUnavailableError
from sls_envelope.kms import KmsClient, LocalKms, RetryPolicy
from sls_envelope.kms.local import (
    CRYPTO_USER_POLICY,
    DEFAULT_ACCOUNT_ID,
    KEY_STATE_RULES,
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
    assert code_of(lambda: kms.enable_key(key)) == "Rejected.StateModifiedFailed"
    kms.cancel_key_deletion(key)
    assert kms.describe_key(key)["KeyState"] == "Enabled"  # as Alibaba Cloud KMS documents
    assert code_of(lambda: kms.cancel_key_deletion(key)) == "Rejected.StateModifiedFailed"

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

    def broken(*args: Any, **kwargs: Any) -> None:
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


# ---- the key-state table (Alibaba Cloud KMS, "Impact of CMK status on API operations") ------------------


def _in_state(kms: LocalKms, state: str) -> str:
    key = kms.create_key()
    if state == "Disabled":
        kms.disable_key(key)
    elif state == "PendingDeletion":
        kms.schedule_key_deletion(key, pending_window_days=30)
    return key


def _run_action(kms: LocalKms, action: str, key: str, blob: bytes) -> None:
    calls = {
        "GenerateDataKey": lambda: kms.generate_data_key(key, context=CTX),
        "Encrypt": lambda: kms.encrypt(key, b"caller data", context=CTX),
        "Decrypt": lambda: kms.decrypt(blob, context=CTX),
        "DescribeKey": lambda: kms.describe_key(key),
        "ListKeys": lambda: kms.list_keys(),
        "EnableKey": lambda: kms.enable_key(key),
        "DisableKey": lambda: kms.disable_key(key),
        "ScheduleKeyDeletion": lambda: kms.schedule_key_deletion(key, pending_window_days=7),
        "CancelKeyDeletion": lambda: kms.cancel_key_deletion(key),
    }
    calls[action]()


#: After a successful action, the state the key is in (None: unchanged).
_AFTER = {"EnableKey": "Enabled", "DisableKey": "Disabled", "ScheduleKeyDeletion": "PendingDeletion",
          "CancelKeyDeletion": "Enabled"}

_TABLE = [(action, state, code) for action, row in KEY_STATE_RULES.items() for state, code in row.items()]


def test_the_table_is_the_documented_one() -> None:
    """Spelled out once more from the documentation page, so an edit of KEY_STATE_RULES that
    departs from it fails here."""
    ok, sm = None, "Rejected.StateModifiedFailed"
    documented = {
        "GenerateDataKey": (ok, "Rejected.Disabled", "Rejected.PendingDeletion"),
        "Encrypt": (ok, "Rejected.Disabled", "Rejected.PendingDeletion"),
        "Decrypt": (ok, "Rejected.Disabled", "Rejected.PendingDeletion"),
        "ListKeys": (ok, ok, ok), "DescribeKey": (ok, ok, ok),
        "EnableKey": (ok, ok, sm), "DisableKey": (ok, ok, sm),
        "ScheduleKeyDeletion": (ok, ok, sm), "CancelKeyDeletion": (sm, sm, ok),
    }
    assert {a: tuple(row[s] for s in ("Enabled", "Disabled", "PendingDeletion"))
            for a, row in KEY_STATE_RULES.items()} == documented


@pytest.mark.parametrize("action,state,code", _TABLE, ids=[f"{a}-{s}" for a, s, _ in _TABLE])
def test_every_action_in_every_state(action: str, state: str, code: Any) -> None:
    clock = Clock()
    kms = LocalKms(clock=clock)
    key = kms.create_key()
    blob = kms.generate_data_key(key, context=CTX).ciphertext_blob
    if state == "Disabled":
        kms.disable_key(key)
    elif state == "PendingDeletion":
        kms.schedule_key_deletion(key, pending_window_days=30)
    before = kms.describe_key(key)
    clock.now += 60  # a reset deletion window would show as a later DeleteDate
    if code is None:
        _run_action(kms, action, key, blob)
        expected = _AFTER.get(action) or state
        assert kms.describe_key(key)["KeyState"] == expected
    else:
        assert code_of(lambda: _run_action(kms, action, key, blob)) == code
        assert kms.describe_key(key) == before  # a refusal changes nothing, the window included


# ---- the state file: validated when read, never rewritten, no temporaries left ----------------------------


def _state_file(tmp_path: Any) -> Any:
    kms = LocalKms(tmp_path / "kms")
    kms.create_key("k")
    kms.create_role("r", trust_policy=log_service_trust_policy(), policies=BOTH)
    kms.create_user("alice")
    return tmp_path / "kms" / "localkms.json"


def _mutations() -> List[Any]:
    def key(state: Dict[str, Any]) -> Dict[str, Any]:
        return next(iter(state["keys"].values()))

    return [
        ("account_id an object", lambda s: s.update(account_id={"id": "1"}), "account_id must be a string"),
        ("account_id not digits", lambda s: s.update(account_id="abc"), "account_id must be the account's digits"),
        ("keys a list", lambda s: s.update(keys=[]), "keys must be an object, not a list"),
        ("roles null", lambda s: s.update(roles=None), "roles must be an object, not null"),
        ("format missing", lambda s: s.pop("format"), "not a LocalKms state file"),
        ("a key's state a number", lambda s: key(s).update(KeyState=1), "KeyState must be a string"),
        ("a key's state unknown", lambda s: key(s).update(KeyState="Gone"), "KeyState must be one of"),
        ("material too short", lambda s: key(s).update(_material="AAAA"), "_material must be 32 bytes"),
        ("pending without a date", lambda s: key(s).update(KeyState="PendingDeletion"), "lacks DeleteDate"),
        ("a key record a string", lambda s: s["keys"].update(x="y"), "keys['x'] must be an object"),
        ("unknown top-level field", lambda s: s.update(extra=1), "unknown field 'extra'"),
        ("policies of a role a string", lambda s: s["roles"]["r"].update(Policies="x"),
         "Policies must be a list of strings"),
        ("trust policy a list", lambda s: s["roles"]["r"].update(TrustPolicy=[]), "TrustPolicy must be an object"),
        ("access keys an object", lambda s: s["users"]["alice"].update(AccessKeys={}), "AccessKeys must be a list"),
        ("not JSON", None, "not a JSON document"),
    ]


@pytest.mark.parametrize("name,mutate,message", _mutations(), ids=[m[0] for m in _mutations()])
def test_wrong_shapes_are_refused_and_left_alone(tmp_path: Any, name: str, mutate: Any, message: str) -> None:
    import json

    path = _state_file(tmp_path)
    if mutate is None:
        path.write_bytes(b"{not json")
    else:
        state = json.loads(path.read_text())
        mutate(state)
        path.write_text(json.dumps(state))
    before = path.read_bytes()
    with pytest.raises(ValueError) as info:
        LocalKms(path.parent)
    text = str(info.value)
    assert "\n" not in text and str(path) in text and message in text, text
    assert path.read_bytes() == before  # never rewritten


def test_a_file_changed_under_a_running_kms_is_refused_too(tmp_path: Any) -> None:
    import json

    path = _state_file(tmp_path)
    kms = LocalKms(path.parent)
    state = json.loads(path.read_text())
    state["keys"] = []
    path.write_text(json.dumps(state) + " ")
    with pytest.raises(ValueError, match="keys must be an object"):
        kms.create_key()


def test_data_key_calls_and_reads_never_write_the_state(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """GenerateDataKey, Encrypt, Decrypt, DescribeKey and ListKeys leave localkms.json as it
    is: no rewrite, no fsync (what `kms serve` answers hundreds of times a second, issue 15
    item 9); a change of state still writes."""
    from sls_envelope.kms._store import JsonFileStore

    kms = LocalKms(tmp_path)
    key_id = kms.create_key()
    path = tmp_path / "localkms.json"
    before = os.stat(path)
    saves: List[str] = []
    real_save = JsonFileStore.save

    def counting_save(store: JsonFileStore) -> None:
        saves.append("save")
        real_save(store)

    monkeypatch.setattr(JsonFileStore, "save", counting_save)
    monkeypatch.setattr(os, "fsync", lambda fd: pytest.fail("fsync on a call that changes nothing"))
    for _ in range(3):
        data_key = kms.generate_data_key(key_id, context=CTX)
        assert kms.decrypt(data_key.ciphertext_blob, context=CTX) == data_key.plaintext
        assert kms.decrypt(kms.encrypt(key_id, b"x", context=CTX), context=CTX) == b"x"
        kms.describe_key(key_id)
        kms.list_keys()
    after = os.stat(path)
    assert saves == [] and (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    monkeypatch.undo()
    kms.disable_key(key_id)
    assert os.stat(path).st_ino != before.st_ino  # a change is written (atomically: a new inode)


def test_a_cmk_is_used_with_the_material_stored_now(tmp_path: Any) -> None:
    """LocalKms keeps each CMK's AES-GCM context between calls (issue 15 item 9); when the
    state file gives the same key id other material (another process restored a backup, say),
    the next call seals and opens with that material, not with the kept context."""
    import base64
    import json

    kms = LocalKms(tmp_path)
    key_id = kms.create_key()
    old_blob = kms.generate_data_key(key_id, context=CTX).ciphertext_blob  # context kept from here
    assert kms.decrypt(old_blob, context=CTX)
    path = tmp_path / "localkms.json"
    state = json.loads(path.read_text())
    state["keys"][key_id]["_material"] = base64.b64encode(b"\x07" * 32).decode()
    path.write_text(json.dumps(state) + " ")  # another size: seen as written by another process
    with pytest.raises(KeyInvalidError) as refused:
        kms.decrypt(old_blob, context=CTX)
    assert refused.value.code == "InvalidCiphertext"
    new_blob = kms.generate_data_key(key_id, context=CTX).ciphertext_blob
    assert LocalKms(tmp_path).decrypt(new_blob, context=CTX)  # sealed under the material now stored
    kms._store.keys[key_id]["_material"] = base64.b64encode(b"\x08" * 32).decode()  # in memory only
    with pytest.raises(KeyInvalidError):
        kms.decrypt(new_blob, context=CTX)


def test_a_state_written_before_users_existed_still_opens(tmp_path: Any) -> None:
    """A state file and blob made by the previous release (no users, policies or service
    credential; the length-prefixed context encoding): it loads and the blob opens."""
    import json

    (tmp_path / "kms").mkdir()
    (tmp_path / "kms" / "localkms.json").write_text(json.dumps(_OLD_STATE))
    kms = LocalKms(tmp_path / "kms")
    blob = bytes.fromhex(_OLD_BLOB)
    assert kms.decrypt(blob, context={"project": "p", "logstore": "l", "é": "ü"}).hex() == _OLD_PLAINTEXT
    assert code_of(lambda: kms.decrypt(blob, context={"project": "p", "logstore": "l"})) == "InvalidCiphertext"


_OLD_STATE = {
    "account_id": "1234567890123456", "format": "sls-envelope-localkms/1", "roles": {},
    "keys": {"7e7db378-cbf2-4066-b7dc-5c9f495b0b8f": {
        "Arn": "acs:kms:cn-hangzhou:1234567890123456:key/7e7db378-cbf2-4066-b7dc-5c9f495b0b8f",
        "CreationDate": "2026-12-06T07:27:47Z", "Description": "vector",
        "KeyId": "7e7db378-cbf2-4066-b7dc-5c9f495b0b8f", "KeyState": "Enabled",
        "_material": "5QjJBw+TVCze2/Q3ffPd+I/5lGt2Tzg0hqCb3P+Xhxg="}},
}
_OLD_BLOB = ("012437653764623337382d636266322d343036362d623764632d356339663439356230623866cdae606fb7ddf62e9e74e7"
             "e2962b1d2132db6c9a2e88d521fe53df3e49654a5b13322ad2af611edf73e70b188d89b27e88fd70d857b2d7134fe04e7e")
_OLD_PLAINTEXT = "0e983abaf32fa143011746b69835516682ba9f8605c65af831f91644eead5c19"


def test_stale_temporaries_of_dead_writers_are_removed(tmp_path: Any) -> None:
    """A temporary left by a writer killed between linkat and rename (or on a platform
    without O_TMPFILE) holds the whole state: the next process to open the store removes it,
    whatever pid it names (writers hold the lock, so none is live; this one names a live
    process, as a reused pid would), and so is one named as releases before atomic_output did."""
    kms = LocalKms(tmp_path)
    kms.create_key()
    for leftover in (f".localkms.json.sls-envelope-{os.getpid()}-0123456789abcdef.part", ".localkms-99999-abcdef.tmp"):
        (tmp_path / leftover).write_bytes((tmp_path / "localkms.json").read_bytes())
    LocalKms(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["localkms.json", "localkms.lock"]


def test_without_o_tmpfile_a_named_temporary_is_used_and_removed(tmp_path: Any,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(os, "O_TMPFILE", raising=False)
    kms = LocalKms(tmp_path)
    key = kms.create_key()
    assert sorted(os.listdir(tmp_path)) == ["localkms.json", "localkms.lock"]
    assert [k["KeyId"] for k in LocalKms(tmp_path).list_keys()] == [key]


def _churn(path: str, ready: Any) -> None:  # pragma: no cover - runs in a child killed by SIGKILL
    kms = LocalKms(path)
    ready.set()
    while True:
        kms.disable_key(kms.create_key())


@pytest.mark.parametrize("unnamed", [True, False], ids=["O_TMPFILE", "named-temporary"])
def test_sigkill_during_changes_leaves_no_key_material(tmp_path: Any, unnamed: bool,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Children changing the state are killed with SIGKILL at random points; afterwards (and
    after the next open, for the named-temporary path) no temporary file holds key material
    and the state file is whole."""
    import multiprocessing
    import random
    import signal
    import time as _time

    if not unnamed:
        monkeypatch.delattr(os, "O_TMPFILE", raising=False)
    LocalKms(tmp_path).create_key("before")
    ctx = multiprocessing.get_context("fork")
    rng = random.Random(1)
    for _ in range(8):
        ready = ctx.Event()
        child = ctx.Process(target=_churn, args=(str(tmp_path), ready))
        child.start()
        assert ready.wait(30)
        _time.sleep(rng.uniform(0.005, 0.05))
        os.kill(child.pid, signal.SIGKILL)
        child.join(30)
        assert child.exitcode == -signal.SIGKILL
        if unnamed:
            leftovers = [n for n in os.listdir(tmp_path) if n.endswith(".part")]
            # Only the microseconds between linkat and rename can leave one; it is removed below.
            assert len(leftovers) <= 1
    kms = LocalKms(tmp_path)  # opens the whole file, removing any temporary
    assert sorted(os.listdir(tmp_path)) == ["localkms.json", "localkms.lock"]
    assert len(kms.list_keys()) >= 1


def test_command_line_names_the_bad_state_file_in_one_line(tmp_path: Any) -> None:
    import json
    import subprocess
    import sys

    home = tmp_path / "home"
    LocalKms(home / "kms").create_key()
    path = home / "kms" / "localkms.json"
    state = json.loads(path.read_text())
    state["account_id"] = {"nested": True}
    path.write_text(json.dumps(state))
    before = path.read_bytes()
    done = subprocess.run([sys.executable, "-m", "sls_envelope", "--home", str(home), "kms", "list-keys"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1 and done.stderr.count("\n") == 1
    assert str(path) in done.stderr and "account_id must be a string" in done.stderr
    assert "internal error" not in done.stderr and path.read_bytes() == before


def test_kms_contract() -> None:
    """The shared KMS contract (tests/kms_contract.py), as the other backends run it."""
    from sls_envelope.kms import LocalKms as _LocalKms

    from .kms_contract import assert_context_bound, assert_tamper_rejected, round_trip

    local = _LocalKms()
    key_id = local.create_key("contract")
    data_key = round_trip(local, key_id)
    assert data_key.key_id == key_id
    assert_context_bound(local, data_key)
    assert_tamper_rejected(local, data_key)
