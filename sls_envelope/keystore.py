"""Where KeyManager keeps its Logstore key records: the KeyStore interface, a memory
store and an embedded SQLite store.

A record holds only what is safe at rest: the Logstore's conf, the random key_ref,
and the data key *wrapped* by the KMS (never its plaintext).  Stores must make
:meth:`KeyStore.add` atomic (a second add of the same Logstore returns False), so two
managers sharing a store cannot give one Logstore two keys.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import errno
import os
import sqlite3
import threading
import urllib.parse
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

from .exceptions import KeyStoreError, SlsEnvelopeError  # noqa: F401  (KeyStoreError: its home was here)

__all__ = ["KeyRecord", "KeyStore", "KeyStoreError", "MemoryKeyStore", "SqliteKeyStore"]


@dataclasses.dataclass(frozen=True)
class KeyRecord:
    """One Logstore's key record.  For an unencrypted Logstore only project, logstore
    and conf are set."""

    project: str
    logstore: str
    conf: str  #: the encrypt_conf as sent (EncryptConf.to_dict), as JSON
    key_ref: Optional[bytes] = None  #: 16 random bytes, written into every batch header
    suite: Optional[str] = None  #: "aes-256-gcm" or "sm4-gcm"
    key_type: Optional[str] = None  #: "service" or "byok"
    cmk_key_id: Optional[str] = None  #: the CMK that wraps the data key
    ciphertext_blob: Optional[bytes] = None  #: the data key wrapped by the KMS
    created_at: float = 0.0
    #: HMAC-SHA256 of a label under the data key (a key check value, not the key): every
    #: unwrap, also the first after a restart, must give a key with this check value.
    key_check: Optional[bytes] = None

    @property
    def encrypted(self) -> bool:
        return self.key_ref is not None


class KeyStore(abc.ABC):
    """What KeyManager needs from a record store.  Implementations must be thread-safe."""

    @abc.abstractmethod
    def get(self, project: str, logstore: str) -> Optional[KeyRecord]:
        """The record of a Logstore, or None."""

    @abc.abstractmethod
    def add(self, record: KeyRecord) -> bool:
        """Insert a record atomically; False (and no change) if the Logstore exists."""

    @abc.abstractmethod
    def remove(self, project: str, logstore: str) -> bool:
        """Delete a record; False if there was none."""

    @abc.abstractmethod
    def get_setting(self, name: str) -> Optional[str]:
        """A manager-wide setting (e.g. the service CMK id), or None."""

    @abc.abstractmethod
    def set_setting_default(self, name: str, value: str) -> str:
        """Store value under name unless one is there already; return what is stored."""

    def setting_or_create(self, name: str, make: Callable[[], str]) -> str:
        """The setting ``name``; if there is none, ``make()`` is stored and returned.

        Stores shared between processes override this so that ``make`` runs in one of
        them only (a fresh home opened by several processes at once must create ONE
        service CMK, not one per process).  This default is atomic within a process only.
        """
        stored = self.get_setting(name)
        if stored is not None:
            return stored
        return self.set_setting_default(name, make())

    def close(self) -> None:
        """Release resources.  Optional."""

    def replace_conf(self, project: str, logstore: str, old: str, new: str) -> bool:
        """Set a record's conf to new if it is still old (compare-and-set: two managers
        sharing a store cannot lose each other's update); False if it is not.  Optional:
        KeyManager.update_logstore needs it to switch ``enable``."""
        raise NotImplementedError(f"{type(self).__name__} cannot update a record's conf")

    def records(self, project: Optional[str] = None) -> List[KeyRecord]:
        """Every record (of one project, if given), sorted by project and Logstore.
        Optional: stores that cannot enumerate raise NotImplementedError."""
        raise NotImplementedError(f"{type(self).__name__} cannot list its records")


class MemoryKeyStore(KeyStore):
    """Records in a dict: gone when the process ends."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: Dict[Tuple[str, str], KeyRecord] = {}
        self._settings: Dict[str, str] = {}

    def get(self, project: str, logstore: str) -> Optional[KeyRecord]:
        with self._lock:
            return self._records.get((project, logstore))

    def add(self, record: KeyRecord) -> bool:
        with self._lock:
            return self._records.setdefault((record.project, record.logstore), record) is record

    def remove(self, project: str, logstore: str) -> bool:
        with self._lock:
            return self._records.pop((project, logstore), None) is not None

    def replace_conf(self, project: str, logstore: str, old: str, new: str) -> bool:
        with self._lock:
            record = self._records.get((project, logstore))
            if record is None or record.conf != old:
                return False
            self._records[(project, logstore)] = dataclasses.replace(record, conf=new)
            return True

    def get_setting(self, name: str) -> Optional[str]:
        with self._lock:
            return self._settings.get(name)

    def set_setting_default(self, name: str, value: str) -> str:
        with self._lock:
            return self._settings.setdefault(name, value)

    def records(self, project: Optional[str] = None) -> List[KeyRecord]:
        with self._lock:
            found = [r for r in self._records.values() if project is None or r.project == project]
        return sorted(found, key=lambda r: (r.project, r.logstore))


_SCHEMA = """
CREATE TABLE IF NOT EXISTS logstore_keys (
    project TEXT NOT NULL,
    logstore TEXT NOT NULL,
    conf TEXT NOT NULL,
    key_ref BLOB,
    suite TEXT,
    key_type TEXT,
    cmk_key_id TEXT,
    ciphertext_blob BLOB,
    created_at REAL NOT NULL,
    key_check BLOB,
    PRIMARY KEY (project, logstore)
);
CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
#: The key-record columns in the order record_from_row reads them (both stores use it).
RECORD_COLUMNS = "project, logstore, conf, key_ref, suite, key_type, cmk_key_id, ciphertext_blob, created_at, key_check"


def record_from_row(row: Tuple[Any, ...]) -> KeyRecord:
    """A KeyRecord from a row of ``SELECT {RECORD_COLUMNS}`` (SQLite or PostgreSQL: BLOB and BYTEA
    columns come back as bytes or memoryview)."""
    return KeyRecord(
        project=row[0], logstore=row[1], conf=row[2],
        key_ref=None if row[3] is None else bytes(row[3]),
        suite=row[4], key_type=row[5], cmk_key_id=row[6],
        ciphertext_blob=None if row[7] is None else bytes(row[7]),
        created_at=float(row[8]),
        key_check=None if row[9] is None else bytes(row[9]),
    )


class SqliteKeyStore(KeyStore):
    """Records in an SQLite file (mode 0600, set on an existing file too).  Safe to share between
    processes: SQLite serialises the writers and ``add`` relies on the primary key."""

    #: How long a writer waits for another process's write lock before giving up.
    BUSY_TIMEOUT = 30.0

    def __init__(self, path: Union[str, "os.PathLike[str]"]) -> None:
        self._path = os.fspath(path)
        self._lock = threading.Lock()
        #: True when the file (or its directory) cannot be written: reads work, writes are
        #: refused with one line (a read-only home still lists and shows its Logstores).
        self.read_only = False
        try:
            # Create the file ourselves so that it is never readable by others; SQLite gives
            # its journal files the database file's permissions.
            # An existing file (made by hand, a copy, an older version) is narrowed too, as LocalKms does.
            fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                os.fchmod(fd, 0o600)
            finally:
                os.close(fd)
        except OSError as exc:
            if exc.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
                raise
            if not os.path.exists(self._path):
                raise KeyStoreError(f"{self._path}: cannot create the key-record store: "
                                    f"{exc.strerror or 'not writable'}") from None
            self.read_only = True
        with self._sql("open"):
            if self.read_only:
                uri = "file:" + urllib.parse.quote(os.path.abspath(self._path)) + "?mode=ro"
                self._db = sqlite3.connect(uri, uri=True, timeout=self.BUSY_TIMEOUT, check_same_thread=False,
                                           isolation_level=None)
                self._db.execute("SELECT name FROM settings LIMIT 1").fetchall()
            else:
                self._db = sqlite3.connect(self._path, timeout=self.BUSY_TIMEOUT, check_same_thread=False,
                                           isolation_level=None)
                with self._lock:
                    self._db.executescript(_SCHEMA)
                    # Stores made before key_check existed gain the column (NULL: the check value
                    # is then learnt at the first unwrap, as it was before).
                    columns = {row[1] for row in self._db.execute("PRAGMA table_info(logstore_keys)")}
                    if "key_check" not in columns:
                        self._db.execute("ALTER TABLE logstore_keys ADD COLUMN key_check BLOB")

    @contextlib.contextmanager
    def _sql(self, doing: str) -> Iterator[None]:
        """SQLite's errors as one line naming the file and what is wrong (a corrupt file,
        one locked by another process for longer than BUSY_TIMEOUT, a read-only home)."""
        try:
            yield
        except sqlite3.OperationalError as exc:
            text = str(exc)
            if "locked" in text or "busy" in text:
                raise KeyStoreError(
                    f"{self._path}: the key-record store is locked by another process (waited "
                    f"{self.BUSY_TIMEOUT:g} s to {doing})") from None
            if "readonly" in text or "read-only" in text or "unable to open" in text:
                raise KeyStoreError(f"{self._path}: cannot {doing}: the key-record store is read-only") from None
            raise KeyStoreError(f"{self._path}: cannot {doing} in the key-record store: {text}") from None
        except sqlite3.DatabaseError as exc:
            raise KeyStoreError(f"{self._path}: not a usable key-record store ({exc}); the file is left as it is"
                                ) from None

    def __repr__(self) -> str:
        return f"<SqliteKeyStore {self._path!r}>"

    def get(self, project: str, logstore: str) -> Optional[KeyRecord]:
        with self._sql("read a record"), self._lock:
            row = self._db.execute(
                f"SELECT {RECORD_COLUMNS} FROM logstore_keys WHERE project = ? AND logstore = ?", (project, logstore)
            ).fetchone()
        return None if row is None else record_from_row(row)

    def records(self, project: Optional[str] = None) -> List[KeyRecord]:
        where, args = ("", ()) if project is None else (" WHERE project = ?", (project,))
        with self._sql("list the records"), self._lock:
            rows = self._db.execute(
                f"SELECT {RECORD_COLUMNS} FROM logstore_keys{where} ORDER BY project, logstore", args
            ).fetchall()
        return [record_from_row(row) for row in rows]


    def add(self, record: KeyRecord) -> bool:
        values = (
            record.project, record.logstore, record.conf, record.key_ref, record.suite, record.key_type,
            record.cmk_key_id, record.ciphertext_blob, record.created_at, record.key_check,
        )
        with self._sql("add a record"), self._lock:
            cursor = self._db.execute(
                f"INSERT OR IGNORE INTO logstore_keys ({RECORD_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", values
            )
            return cursor.rowcount == 1

    def remove(self, project: str, logstore: str) -> bool:
        with self._sql("delete a record"), self._lock:
            cursor = self._db.execute(
                "DELETE FROM logstore_keys WHERE project = ? AND logstore = ?", (project, logstore)
            )
            return cursor.rowcount == 1

    def replace_conf(self, project: str, logstore: str, old: str, new: str) -> bool:
        with self._sql("update a record"), self._lock:
            cursor = self._db.execute(
                "UPDATE logstore_keys SET conf = ? WHERE project = ? AND logstore = ? AND conf = ?",
                (new, project, logstore, old),
            )
            return cursor.rowcount == 1

    def get_setting(self, name: str) -> Optional[str]:
        with self._sql("read a setting"), self._lock:
            row = self._db.execute("SELECT value FROM settings WHERE name = ?", (name,)).fetchone()
        return None if row is None else str(row[0])

    def set_setting_default(self, name: str, value: str) -> str:
        with self._sql("store a setting"), self._lock:
            self._db.execute("INSERT OR IGNORE INTO settings (name, value) VALUES (?, ?)", (name, value))
            row = self._db.execute("SELECT value FROM settings WHERE name = ?", (name,)).fetchone()
        return str(row[0])

    def setting_or_create(self, name: str, make: Callable[[], str]) -> str:
        # BEGIN IMMEDIATE takes SQLite's write lock before reading, so of several processes
        # finding no setting, one runs make() and the others wait, then read its value
        # (https://www.sqlite.org/lang_transaction.html).
        stored = self.get_setting(name)  # the common case; and a read-only store can answer it
        if stored is not None:
            return stored
        with self._sql("store a setting"), self._lock:
            self._db.execute("BEGIN IMMEDIATE")  # outside the try: nothing to roll back if it fails
            try:
                row = self._db.execute("SELECT value FROM settings WHERE name = ?", (name,)).fetchone()
                if row is None:
                    value = make()
                    self._db.execute("INSERT INTO settings (name, value) VALUES (?, ?)", (name, value))
                    row = (value,)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return str(row[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
