"""KeyStore.records and KeyManager.list_logstores/describe_logstore (used by `sls-envelope logstore`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sls_envelope import ConfigError, KeyManager
from sls_envelope.keystore import KeyRecord, KeyStore, MemoryKeyStore, SqliteKeyStore
from sls_envelope.kms import LocalKms


@pytest.fixture(params=["memory", "sqlite"])
def store(request: Any, tmp_path: Path) -> KeyStore:
    return MemoryKeyStore() if request.param == "memory" else SqliteKeyStore(tmp_path / "keys.sqlite")


def test_records_sorted_and_filtered(store: KeyStore) -> None:
    for project, logstore in [("b", "x"), ("a", "z"), ("a", "y"), ("c", "a")]:
        assert store.add(KeyRecord(project, logstore, '{"enable": false}', created_at=1.0))
    assert [(r.project, r.logstore) for r in store.records()] == [("a", "y"), ("a", "z"), ("b", "x"), ("c", "a")]
    assert [(r.project, r.logstore) for r in store.records("a")] == [("a", "y"), ("a", "z")]
    assert store.records("nope") == []


def test_records_round_trip_every_field(store: KeyStore) -> None:
    record = KeyRecord("p", "l", '{"enable": true, "encrypt_type": "sm4"}', key_ref=bytes(range(16)),
                       suite="sm4-gcm", key_type="service", cmk_key_id="cmk", ciphertext_blob=b"\x01wrapped",
                       created_at=12.5)
    store.add(record)
    assert store.records() == [record]


def test_keystore_without_listing_says_so() -> None:
    class Minimal(MemoryKeyStore):
        records = KeyStore.records  # the base class default

    with pytest.raises(NotImplementedError):
        Minimal().records()


def test_manager_list_and_describe(tmp_path: Path) -> None:
    manager = KeyManager(LocalKms(), tmp_path / "keys.sqlite")
    manager.create_logstore("p", "aes", {"enable": True, "encrypt_type": "default"})
    manager.create_logstore("p", "plain", {"enable": False})
    manager.create_logstore("q", "sm4", {"enable": True, "encrypt_type": "sm4"})
    listed = manager.list_logstores()
    assert [(r.project, r.logstore, r.suite) for r in listed] == [
        ("p", "aes", "aes-256-gcm"), ("p", "plain", None), ("q", "sm4", "sm4-gcm")]
    assert [r.logstore for r in manager.list_logstores("q")] == ["sm4"]
    record = manager.describe_logstore("p", "aes")
    assert record.key_type == "service" and record.key_ref is not None
    assert record.key_ref.hex() == manager.open_logstore("p", "aes").key_ref  # type: ignore[union-attr]
    with pytest.raises(ConfigError):
        manager.describe_logstore("p", "missing")
