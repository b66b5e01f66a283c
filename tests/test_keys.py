"""KeyManager and LogstoreCipher: service keys and BYOK on LocalKms, immutability,
fail-closed revalidation, restarts, stores, threads."""

from __future__ import annotations

import os
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

import pytest

import sls_envelope
from sls_envelope import (
    ConfigError,
    EncryptConf,
    FormatError,
    InvalidTag,
    KeyInvalidError,
    KeyManager,
    KmsUnavailableError,
    LogstoreCipher,
    SlsEnvelopeError,
)
from sls_envelope import format as fmt
from sls_envelope.keystore import KeyRecord, KeyStore, MemoryKeyStore, SqliteKeyStore
from sls_envelope.kms import LocalKms, RetryPolicy
from sls_envelope.kms.local import CRYPTO_USER_POLICY, READ_ONLY_POLICY, log_service_trust_policy

BOTH = [CRYPTO_USER_POLICY, READ_ONLY_POLICY]
AES = {"enable": True, "encrypt_type": "default"}
SM4 = {"enable": True, "encrypt_type": "sm4"}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class World:
    """A LocalKms with a customer CMK and roles, and a KeyManager over it."""

    def __init__(self, path: Optional[str] = None, revalidate_after: float = 60.0) -> None:
        self.path = path
        self.clock = Clock()
        self.kms = LocalKms(None if path is None else os.path.join(path, "kms"),
                            retry_policy=RetryPolicy(attempts=2, base_delay=0.001, max_delay=0.001))
        self.cmk = self.kms.create_key("customer key")
        self.arn = self.kms.create_role("sls-byok", trust_policy=log_service_trust_policy(), policies=BOTH)
        self.manager = self.new_manager(revalidate_after)

    def new_manager(self, revalidate_after: float = 60.0) -> KeyManager:
        store = None if self.path is None else os.path.join(self.path, "keys.sqlite")
        return KeyManager(self.kms, store, revalidate_after=revalidate_after, clock=self.clock)

    def byok(self, encrypt_type: str = "sm4", cmk: Optional[str] = None, arn: Optional[str] = None) -> Dict[str, Any]:
        return {"enable": True, "encrypt_type": encrypt_type,
                "user_cmk_info": {"cmk_key_id": cmk or self.cmk, "arn": arn or self.arn, "region_id": "cn-hangzhou"}}


@pytest.fixture
def world() -> World:
    return World()


def raises_key_invalid(call: Any) -> str:
    with pytest.raises(KeyInvalidError) as info:
        call()
    return str(info.value.code)


# ---- round trips ----------------------------------------------------------------------------------


def test_service_key_aes_round_trip(world: World) -> None:
    cipher = world.manager.create_logstore("proj", "store", AES)
    assert isinstance(cipher, LogstoreCipher)
    assert (cipher.suite, cipher.key_type) == ("aes-256-gcm", "service")
    blob = cipher.encrypt(b"batch")
    assert fmt.inspect(blob)["suite"] == "aes-256-gcm" and fmt.inspect(blob)["key_ref"] == cipher.key_ref
    assert cipher.decrypt(blob) == b"batch"
    batches = [os.urandom(n) for n in (0, 1, 1024, 5000)]
    assert cipher.decrypt_many(cipher.encrypt_many(batches)) == batches
    assert world.manager.open_logstore("proj", "store") is cipher


@pytest.mark.parametrize("encrypt_type", ["sm4", "m4"])
def test_byok_sm4_round_trip(world: World, encrypt_type: str) -> None:
    cipher = world.manager.create_logstore("proj", "store", world.byok(encrypt_type))
    assert cipher is not None and (cipher.suite, cipher.key_type) == ("sm4-gcm", "byok")
    blob = cipher.encrypt(b"secret logs")
    assert fmt.inspect(blob)["suite"] == "sm4-gcm"
    assert cipher.decrypt(blob) == b"secret logs"
    assert cipher.encrypt_conf.to_dict()["encrypt_type"] == encrypt_type  # echoed as sent
    assert cipher.encrypt_conf.algorithm == "sm4"


def test_service_keys_are_independent_per_logstore_and_share_one_cmk(world: World) -> None:
    a = world.manager.create_logstore("proj", "a", AES)
    b = world.manager.create_logstore("proj", "b", SM4)
    assert a is not None and b is not None and a.key_ref != b.key_ref
    assert a._codec is not None and b._codec is not None and a._codec._key != b._codec._key
    service_cmks = [k for k in world.kms.list_keys() if k["KeyId"] != world.cmk]
    assert len(service_cmks) == 1  # created on first use, then reused
    assert world.kms.describe_key(service_cmks[0]["KeyId"])["KeyState"] == "Enabled"


def test_explicit_service_key_id() -> None:
    kms = LocalKms()
    cmk = kms.create_key("given")
    manager = KeyManager(kms, service_key_id=cmk)
    manager.create_logstore("p", "l", AES)
    assert [k["KeyId"] for k in kms.list_keys()] == [cmk]
    kms.disable_key(cmk)
    with pytest.raises(KeyInvalidError):
        manager.create_logstore("p", "m", AES)


def test_unencrypted_logstore(world: World) -> None:
    assert world.manager.create_logstore("proj", "plain", {"enable": False}) is None
    assert world.manager.open_logstore("proj", "plain") is None
    assert world.manager.get_encrypt_conf("proj", "plain") == EncryptConf(enable=False)


def test_batches_moved_between_logstores_or_projects_are_refused(world: World) -> None:
    m = world.manager
    home = m.create_logstore("proj", "store", AES)
    others = [m.create_logstore("proj", "other", AES), m.create_logstore("proj2", "store", AES),
              m.create_logstore("proj2", "other", world.byok("default"))]
    assert home is not None
    blob = home.encrypt(b"batch")
    for other in others:
        assert other is not None
        with pytest.raises(InvalidTag):
            other.decrypt(blob)
        # Even with the header rewritten to name the other Logstore's key record.
        forged = blob[:7] + bytes.fromhex(other.key_ref) + blob[23:]
        with pytest.raises(InvalidTag):
            other.decrypt(forged)


def test_every_single_bit_flip_of_a_short_blob_is_refused(world: World) -> None:
    cipher = world.manager.create_logstore("p", "l", world.byok())
    assert cipher is not None
    blob = cipher.encrypt(b"hi")
    for bit in range(8 * len(blob)):
        flipped = bytearray(blob)
        flipped[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises((InvalidTag, FormatError)):
            cipher.decrypt(bytes(flipped))


def test_garbage_and_truncations(world: World) -> None:
    cipher = world.manager.create_logstore("p", "l", AES)
    assert cipher is not None
    blob = cipher.encrypt(b"some log batch")
    for junk in [b"", b"\0" * 200, os.urandom(500), b"SLSE", blob[:-1], blob[:99], blob[:114], "str", None]:
        with pytest.raises(SlsEnvelopeError):
            cipher.decrypt(junk)  # type: ignore[arg-type]
    for n in range(len(blob)):
        with pytest.raises((FormatError, InvalidTag)):
            cipher.decrypt(blob[:n])
    with pytest.raises(SlsEnvelopeError):
        cipher.decrypt_many([blob, b"junk"])


# ---- confs and immutability ---------------------------------------------------------------------------


@pytest.mark.parametrize("conf", [
    {"enable": True}, {"enable": True, "encrypt_type": "aes_cbc"}, {"encrypt_type": "default"},
    {"enable": "true", "encrypt_type": "default"}, {"enable": True, "encrypt_type": "default", "user_cmk_info": {}},
    {"enable": True, "encrypt_type": "sm4_ecb"}, "default", None,
])
def test_bad_confs(world: World, conf: Any) -> None:
    with pytest.raises(ConfigError):
        world.manager.create_logstore("p", "l", conf)
    with pytest.raises(ConfigError):
        world.manager.open_logstore("p", "l")  # nothing was recorded


@pytest.mark.parametrize("project, logstore", [("", "l"), ("p", ""), (None, "l"), ("p", 3), ("p", "a\0b")])
def test_bad_names(world: World, project: Any, logstore: Any) -> None:
    with pytest.raises(ConfigError):
        world.manager.create_logstore(project, logstore, AES)


def test_second_create_is_config_error(world: World) -> None:
    world.manager.create_logstore("p", "l", AES)
    for conf in (AES, SM4, {"enable": False}):
        with pytest.raises(ConfigError) as info:
            world.manager.create_logstore("p", "l", conf)
        assert info.value.code == "LogStoreAlreadyExist"


def test_immutability(world: World) -> None:
    m = world.manager
    m.create_logstore("p", "aes", AES)
    m.create_logstore("p", "byok", world.byok("sm4"))
    m.create_logstore("p", "plain", {"enable": False})
    other_cmk = world.kms.create_key()
    other_arn = world.kms.create_role("other", trust_policy=log_service_trust_policy(), policies=BOTH)
    # (Switching enable alone is allowed: tests/test_sls_semantics.py.)
    changes: List[Tuple[str, Any]] = [
        ("aes", SM4), ("aes", {"enable": False, "encrypt_type": "sm4"}), ("aes", world.byok("default")),
        ("byok", world.byok("default")), ("byok", SM4), ("byok", world.byok("sm4", cmk=other_cmk)),
        ("byok", world.byok("sm4", arn=other_arn)),
        ("plain", AES), ("plain", world.byok()),
    ]
    for logstore, conf in changes:
        with pytest.raises(ConfigError, match="cannot be changed"):
            m.update_logstore("p", logstore, conf)
    # The same conf (in any spelling) is a no-op.
    m.update_logstore("p", "aes", {"enable": True, "encrypt_type": "aes_gcm"})
    m.update_logstore("p", "byok", world.byok("m4"))
    m.update_logstore("p", "plain", {"enable": False})
    assert m.get_encrypt_conf("p", "aes").to_dict() == AES
    with pytest.raises(ConfigError):
        m.update_logstore("p", "missing", AES)
    with pytest.raises(ConfigError):
        m.update_logstore("p", "aes", {"enable": True, "encrypt_type": "aes_ecb"})


def test_open_unknown_logstore(world: World) -> None:
    with pytest.raises(ConfigError) as info:
        world.manager.open_logstore("p", "nope")
    assert info.value.code == "LogStoreNotExist"


# ---- BYOK failures at creation ------------------------------------------------------------------------------


def test_role_without_log_service_trust(world: World) -> None:
    arn = world.kms.create_role("ecs-only", policies=BOTH, trust_policy={"Statement": [
        {"Action": "sts:AssumeRole", "Effect": "Allow", "Principal": {"Service": ["ecs.aliyuncs.com"]}}]})
    assert raises_key_invalid(lambda: world.manager.create_logstore("p", "l", world.byok(arn=arn))) == "NoPermission"


def test_role_without_crypto_permission(world: World) -> None:
    arn = world.kms.create_role("ro", trust_policy=log_service_trust_policy(), policies=[READ_ONLY_POLICY])
    assert raises_key_invalid(
        lambda: world.manager.create_logstore("p", "l", world.byok(arn=arn))) == "Forbidden.NoPermission"


@pytest.mark.parametrize("cmk", ["no-such-key", "00000000-0000-0000-0000-000000000000"])
def test_unknown_cmk(world: World, cmk: str) -> None:
    assert raises_key_invalid(
        lambda: world.manager.create_logstore("p", "l", world.byok(cmk=cmk))) == "Forbidden.KeyNotFound"


def test_unknown_role(world: World) -> None:
    arn = world.arn.replace("sls-byok", "ghost")
    assert raises_key_invalid(lambda: world.manager.create_logstore("p", "l", world.byok(arn=arn))) \
        == "EntityNotExist.Role"


def test_disabled_cmk_at_creation(world: World) -> None:
    world.kms.disable_key(world.cmk)
    assert raises_key_invalid(lambda: world.manager.create_logstore("p", "l", world.byok())) == "Rejected.Disabled"
    # Nothing was recorded: once the key is back, the Logstore can be created.
    world.kms.enable_key(world.cmk)
    assert world.manager.create_logstore("p", "l", world.byok()) is not None


# ---- fail closed -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("revoke, restore, code", [
    ("disable", "enable", "Rejected.Disabled"),
    ("schedule_deletion", "cancel_deletion", "Rejected.PendingDeletion"),
    ("detach_policy", "attach_policy", "Forbidden.NoPermission"),
    ("break_trust", "fix_trust", "NoPermission"),
])
def test_revocation_stops_reads_and_writes_within_revalidate_after(revoke: str, restore: str, code: str) -> None:
    world = World(revalidate_after=30)
    actions = {
        "disable": lambda: world.kms.disable_key(world.cmk),
        "enable": lambda: world.kms.enable_key(world.cmk),
        "schedule_deletion": lambda: world.kms.schedule_key_deletion(world.cmk, 7),
        "cancel_deletion": lambda: world.kms.cancel_key_deletion(world.cmk),
        "detach_policy": lambda: world.kms.update_role("sls-byok", policies=[READ_ONLY_POLICY]),
        "attach_policy": lambda: world.kms.update_role("sls-byok", policies=BOTH),
        "break_trust": lambda: world.kms.update_role("sls-byok", trust_policy={"Statement": []}),
        "fix_trust": lambda: world.kms.update_role("sls-byok", trust_policy=log_service_trust_policy()),
    }
    cipher = world.manager.create_logstore("p", "l", world.byok("default"))
    service = world.manager.create_logstore("p", "svc", AES)
    assert cipher is not None and service is not None
    old = cipher.encrypt(b"before")
    actions[revoke]()
    # Within the window the cached key still works (no KMS call on the hot path)...
    world.clock.now += 29
    assert cipher.decrypt(cipher.encrypt(b"x")) == b"x"
    # ...and at the window's end every read and write fails, and the key is wiped.
    world.clock.now += 1
    assert raises_key_invalid(lambda: cipher.encrypt(b"x")) == code
    assert cipher._codec is None
    assert raises_key_invalid(lambda: cipher.decrypt(old)) == code
    assert raises_key_invalid(lambda: cipher.encrypt_many([b"x"])) == code
    assert raises_key_invalid(lambda: cipher.decrypt_many([old])) == code
    # Service-key Logstores do not depend on customer CMKs or roles.
    assert service.decrypt(service.encrypt(b"svc")) == b"svc"
    # A restored key is used again at the next check, at most revalidate_after later.
    actions[restore]()
    world.clock.now += 29
    assert raises_key_invalid(lambda: cipher.encrypt(b"x")) == code  # failure remembered
    world.clock.now += 1
    assert cipher.decrypt(old) == b"before"
    assert cipher.decrypt(cipher.encrypt(b"after")) == b"after"


def test_revalidate_after_zero_checks_every_call() -> None:
    world = World(revalidate_after=0)
    cipher = world.manager.create_logstore("p", "l", world.byok())
    assert cipher is not None
    blob = cipher.encrypt(b"x")
    world.kms.disable_key(world.cmk)
    assert raises_key_invalid(lambda: cipher.decrypt(blob)) == "Rejected.Disabled"
    world.kms.enable_key(world.cmk)
    assert cipher.decrypt(blob) == b"x"


def test_deleted_cmk_is_gone_for_good() -> None:
    world = World(revalidate_after=0)
    cipher = world.manager.create_logstore("p", "l", world.byok())
    assert cipher is not None
    world.kms.schedule_key_deletion(world.cmk, 7)
    world.kms._store.clock = lambda: time.time() + 8 * 86400  # the deletion window has passed
    assert raises_key_invalid(lambda: cipher.encrypt(b"x")) == "Forbidden.KeyNotFound"


def test_kms_outage_fails_closed_without_wiping() -> None:
    world = World(revalidate_after=10)
    # outage_grace=0: the behaviour before issue 17 (tests/test_multinode_outage.py covers the grace).
    world.manager = KeyManager(world.kms, revalidate_after=10, outage_grace=0, clock=world.clock)
    cipher = world.manager.create_logstore("p", "l", world.byok())
    assert cipher is not None
    blob = cipher.encrypt(b"x")
    world.clock.now += 10
    world.kms.inject_faults(2)
    with pytest.raises(KmsUnavailableError):
        cipher.decrypt(blob)
    assert cipher._codec is not None  # not known to be revoked: kept, but not used unchecked
    assert cipher.decrypt(blob) == b"x"  # the next call checks again and succeeds


def test_one_check_per_window(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    cipher = world.manager.create_logstore("p", "l", world.byok())
    assert cipher is not None
    calls: List[int] = []
    real = type(cipher._source).unwrap
    monkeypatch.setattr(type(cipher._source), "unwrap", lambda self: calls.append(1) or real(self))
    for _ in range(50):
        cipher.decrypt(cipher.encrypt(b"x"))
    assert calls == []
    world.clock.now += 60
    for _ in range(50):
        cipher.encrypt(b"x")
    assert calls == [1]


# ---- restarts and stores -----------------------------------------------------------------------------------------


def test_restart_reads_old_batches(tmp_path: Any) -> None:
    world = World(str(tmp_path))
    m = world.manager
    blobs = {
        "aes": m.create_logstore("p", "aes", AES).encrypt(b"aes batch"),  # type: ignore[union-attr]
        "sm4": m.create_logstore("p", "sm4", world.byok("m4")).encrypt(b"sm4 batch"),  # type: ignore[union-attr]
    }
    m.create_logstore("p", "plain", {"enable": False})
    m.close()

    kms = LocalKms(os.path.join(str(tmp_path), "kms"))
    again = KeyManager(kms, os.path.join(str(tmp_path), "keys.sqlite"))
    aes, sm4 = again.open_logstore("p", "aes"), again.open_logstore("p", "sm4")
    assert aes is not None and sm4 is not None
    assert aes.decrypt(blobs["aes"]) == b"aes batch"
    assert sm4.decrypt(blobs["sm4"]) == b"sm4 batch"
    assert fmt.inspect(aes.encrypt(b"new"))["session"] != fmt.inspect(blobs["aes"])["session"]
    assert again.open_logstore("p", "plain") is None
    with pytest.raises(ConfigError):
        again.create_logstore("p", "aes", AES)
    # The service CMK is reused from the store, not created again.
    again.create_logstore("p", "aes2", AES)
    assert len(kms.list_keys()) == 2
    # A BYOK Logstore opened while its CMK is disabled fails closed, then recovers.
    kms.disable_key(world.cmk)
    third = KeyManager(kms, os.path.join(str(tmp_path), "keys.sqlite"))
    sm4_again = third.open_logstore("p", "sm4")
    assert sm4_again is not None
    assert raises_key_invalid(lambda: sm4_again.decrypt(blobs["sm4"])) == "Rejected.Disabled"


def test_sqlite_store_is_private(tmp_path: Any) -> None:
    path = tmp_path / "keys.sqlite"
    KeyManager(LocalKms(), str(path)).create_logstore("p", "l", AES)
    assert os.stat(path).st_mode & 0o077 == 0


@pytest.mark.parametrize("make", [MemoryKeyStore, lambda tmp: SqliteKeyStore(str(tmp / "s.sqlite"))])
def test_store_contract(make: Any, tmp_path: Any) -> None:
    store: KeyStore = make(tmp_path) if make is not MemoryKeyStore else make()
    record = KeyRecord("p", "l", '{"enable": false}', created_at=1.0)
    assert store.get("p", "l") is None
    assert store.add(record) is True
    assert store.add(KeyRecord("p", "l", '{"enable": true}', created_at=2.0)) is False
    assert store.get("p", "l") == record
    full = KeyRecord("p", "m", "{}", key_ref=b"r" * 16, suite="sm4-gcm", key_type="byok", cmk_key_id="k",
                     ciphertext_blob=b"blob", created_at=3.5)
    assert store.add(full) and store.get("p", "m") == full
    assert store.set_setting_default("x", "1") == "1" and store.set_setting_default("x", "2") == "1"
    assert store.get_setting("x") == "1" and store.get_setting("y") is None
    assert store.remove("p", "l") is True and store.remove("p", "l") is False
    store.close()


def test_custom_store_object(world: World) -> None:
    store = MemoryKeyStore()
    manager = KeyManager(world.kms, store)
    manager.create_logstore("p", "l", AES)
    record = store.get("p", "l")
    assert record is not None and record.ciphertext_blob and record.key_type == "service"
    # Only the wrapped key is stored.
    assert manager.open_logstore("p", "l")._codec._key not in record.ciphertext_blob  # type: ignore[union-attr]


def test_delete_logstore(world: World) -> None:
    cipher = world.manager.create_logstore("p", "l", AES)
    assert cipher is not None
    world.manager.delete_logstore("p", "l")
    with pytest.raises(KeyInvalidError):
        cipher.encrypt(b"x")  # wiped and closed for good: the KMS check cannot revive it
    assert cipher._codec is None
    with pytest.raises(ConfigError):
        world.manager.delete_logstore("p", "l")
    assert world.manager.create_logstore("p", "l", SM4) is not None


def test_bad_manager_arguments(world: World) -> None:
    with pytest.raises(TypeError):
        KeyManager(object())  # type: ignore[arg-type]
    for bad in (-1, float("inf"), "60", True):
        with pytest.raises(ValueError):
            KeyManager(world.kms, revalidate_after=bad)  # type: ignore[arg-type]


# ---- threads, reprs, exports -----------------------------------------------------------------------------------


def test_threads_share_a_cipher(world: World) -> None:
    cipher = world.manager.create_logstore("p", "l", world.byok())
    assert cipher is not None
    out: List[bytes] = []
    errors: List[BaseException] = []
    lock = threading.Lock()

    def work(i: int) -> None:
        try:
            mine = [cipher.encrypt(bytes([i]) * 10) for _ in range(100)] + cipher.encrypt_many([b"m"] * 100)
            assert cipher.decrypt_many(mine)[:100] == [bytes([i]) * 10] * 100
            with lock:
                out.extend(mine)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len({fmt.inspect(b)["nonce"] + fmt.inspect(b)["session"] for b in out}) == len(out) == 1200


def test_reprs_hold_no_key(world: World) -> None:
    cipher = world.manager.create_logstore("p", "l", world.byok())
    assert cipher is not None and cipher._codec is not None
    key = bytes(cipher._codec._key)
    texts = [repr(cipher), repr(cipher._codec), repr(world.manager), repr(world.kms), str(cipher.encrypt_conf)]
    for text in texts:
        assert key.hex() not in text and repr(key)[2:-1] not in text
    import pickle

    with pytest.raises(TypeError):
        pickle.dumps(cipher)


def test_exports() -> None:
    for name in ("EncryptConf", "KeyManager", "LogstoreCipher", "SlsEnvelopeError", "InvalidTag", "ConfigError",
                 "KeyInvalidError", "KmsUnavailableError", "FormatError"):
        assert name in sls_envelope.__all__ and hasattr(sls_envelope, name)
    assert issubclass(ConfigError, ValueError) and issubclass(ConfigError, SlsEnvelopeError)
    assert sls_envelope.kms.LocalKms is LocalKms
