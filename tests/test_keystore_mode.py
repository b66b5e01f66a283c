"""SqliteKeyStore's file is owner-only however it was created (issue 15 item 8)."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

from sls_envelope.keystore import SqliteKeyStore


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_new_store_is_0600(tmp_path: Path) -> None:
    path = tmp_path / "keys.db"
    SqliteKeyStore(path)
    assert _mode(path) == 0o600


def test_existing_0644_store_is_narrowed(tmp_path: Path) -> None:
    path = tmp_path / "keys.db"
    sqlite3.connect(path).close()
    os.chmod(path, 0o644)
    SqliteKeyStore(path)
    assert _mode(path) == 0o600
