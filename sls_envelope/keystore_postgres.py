"""Logstore key records in PostgreSQL, shared by every node of a fleet.

Needs the ``postgres`` extra (psycopg 3 and psycopg_pool).  The primary key
(project, logstore) is what makes "exactly one key per Logstore" hold across nodes:
``add`` is one ``INSERT ... ON CONFLICT DO NOTHING`` and the node whose row went in
is the one that created the Logstore.  Every write is one transaction, so a Logstore is
never half-made.  A lost connection is retried a bounded number of times, then
:class:`KeyStoreUnavailableError` naming libpq's reason ("Connection refused").  An
attempt the pool cannot serve with a live connection in time goes over a connection of
its own, so a server that went down fails within the connect timeout (milliseconds when
refused; at most one wait on the pool per outage) and one that came back serves before
the pool has reconnected.

The schema is versioned (table ``sls_envelope_schema``) and created or migrated by
the library under an advisory lock, so nodes starting together do not race.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, List, Optional, TypeVar

from .exceptions import KeyStoreUnavailableError, SlsEnvelopeError  # noqa: F401  (its home was here)
from .keystore import RECORD_COLUMNS, KeyRecord, KeyStore, record_from_row

__all__ = ["PostgresKeyStore", "KeyStoreUnavailableError", "SCHEMA_VERSION"]

T = TypeVar("T")

SCHEMA_VERSION = 1
# Any constant unique to this library: the advisory lock that serialises migrations.
_MIGRATION_LOCK = 0x534C5345  # "SLSE"
# The first key of the two-key advisory locks that serialise creating a setting (the
# second is the name's hash); two-key locks are a key space apart from one-key ones.
_SETTINGS_LOCK = 0x534C5353  # "SLSS"

# Version n's statements take the schema from n-1 to n.
_MIGRATIONS = {
    1: [
        """CREATE TABLE IF NOT EXISTS sls_envelope_logstore_keys (
            project TEXT NOT NULL,
            logstore TEXT NOT NULL,
            conf TEXT NOT NULL,
            key_ref BYTEA,
            suite TEXT,
            key_type TEXT,
            cmk_key_id TEXT,
            ciphertext_blob BYTEA,
            created_at DOUBLE PRECISION NOT NULL,
            key_check BYTEA,
            PRIMARY KEY (project, logstore))""",
        "CREATE TABLE IF NOT EXISTS sls_envelope_settings (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    ],
}


def _redact(url: str) -> str:
    """The URL without its password (it must never reach a repr, log or error)."""
    try:
        from psycopg.conninfo import conninfo_to_dict

        params = conninfo_to_dict(url)
    except Exception:  # noqa: BLE001 - an unparsable URL is shown as nothing at all
        return "<postgresql>"
    shown = {k: v for k, v in params.items() if k in ("host", "port", "dbname", "user")}
    return "postgresql://" + " ".join(f"{k}={v}" for k, v in sorted(shown.items()))


class PostgresKeyStore(KeyStore):
    """Records in PostgreSQL at ``url`` (a libpq URL or conninfo string).

    ``attempts``: tries of each operation when the connection fails (bounded; the sleeps
    between them grow from ``backoff`` seconds); ``connect_timeout``: seconds per
    connection attempt, and the longest a call waits for one of the pool's connections
    before making its own; ``pool_size``: connections kept by this node."""

    def __init__(
        self, url: str, *, attempts: int = 5, backoff: float = 0.2, connect_timeout: float = 3.0,
        pool_size: int = 4,
    ) -> None:
        try:
            import psycopg
            import psycopg_pool
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ImportError("PostgresKeyStore needs the 'postgres' extra: pip install 'sls-envelope[postgres]'") from exc
        if attempts < 1:
            raise ValueError("attempts must be >= 1")
        self._psycopg = psycopg
        self._pool_timeout = psycopg_pool.PoolTimeout
        self._shown = _redact(url)
        self._url = url
        self._attempts = attempts
        self._backoff = backoff
        connect_kwargs: Dict[str, Any] = {"connect_timeout": max(1, int(connect_timeout)), "autocommit": False}
        self._connect_kwargs = connect_kwargs
        # The last attempt found the server unreachable or lost its connection: the next
        # one asks the server directly rather than waiting on the pool (see _connection).
        # Read and written by every thread without a lock: a stale value costs one wait
        # on the pool or one unpooled connection, nothing else.
        self._down = False
        # The schema is made over a connection of its own, not the pool's: a store that
        # is down then fails in milliseconds with libpq's reason ("Connection refused"),
        # where the pool would wait out its timeout and say only that it timed out.
        self._retried(lambda: self._migrate_once(url, connect_kwargs))
        # No check= callback: _connection checks a pooled connection itself, because the
        # pool's own check loop sleeps 1 s, 2 s, ... between the dead connections a
        # restart leaves.  timeout: how long a call waits for a pooled connection before
        # making its own.  reconnect_timeout: how long the pool's background reconnection
        # (whose errors nobody waiting sees) goes on after a failure; past it the pool
        # starts afresh on the next demand, so a server back after a long outage is not
        # left waiting on a reconnection scheduled minutes ahead.
        self._pool = psycopg_pool.ConnectionPool(
            url, min_size=0, max_size=pool_size, open=True, timeout=connect_timeout,
            reconnect_timeout=connect_timeout, kwargs=connect_kwargs,
        )

    def __repr__(self) -> str:
        return f"<PostgresKeyStore {self._shown}>"

    # ---- plumbing ---------------------------------------------------------------------

    def _run(self, work: Callable[[Any], T]) -> T:
        """work(connection) in one transaction, retried on connection loss."""

        def once() -> T:
            with self._connection() as conn:
                with conn.transaction():
                    return work(conn)

        return self._retried(once)

    @contextmanager
    def _connection(self) -> Iterator[Any]:
        """A live connection: the pool's if it has one in time, else one of our own.

        The pool reports a server it cannot reach only as PoolTimeout, after its whole
        timeout; a connection of our own fails within the connect timeout (milliseconds
        when refused) with libpq's reason, which is what _retried reports."""
        pool = self._pool
        if not self._down:
            try:
                conn = pool.getconn()
            except self._pool_timeout:
                pass  # all in use, or the pool cannot connect: find out below
            else:
                try:
                    pool.check_connection(conn)
                except self._psycopg.OperationalError:
                    pool.putconn(conn)  # dead (a restart, an outage): the pool drops it
                else:
                    try:
                        yield conn
                    finally:
                        # Lost mid-call: the server may be gone; the retry asks it directly.
                        if conn.broken:
                            self._down = True
                        pool.putconn(conn)
                    return
        try:
            own = self._psycopg.connect(self._url, **self._connect_kwargs)
        except self._psycopg.OperationalError:
            self._down = True
            raise
        self._down = False
        with own:  # closed on exit
            yield own

    def _migrate_once(self, url: str, connect_kwargs: Dict[str, Any]) -> None:
        with self._psycopg.connect(url, **connect_kwargs) as conn:
            with conn.transaction():
                self._migrate(conn)

    def _retried(self, once: Callable[[], T]) -> T:
        """once(), tried up to `attempts` times while the connection fails."""
        last: Optional[BaseException] = None
        for attempt in range(self._attempts):
            if attempt:
                time.sleep(self._backoff * (2 ** (attempt - 1)))
            try:
                return once()
            except self._psycopg.OperationalError as exc:
                # Connection refused or lost (server restart, failover): the transaction
                # did not commit, or committed and its retry finds the row (add is
                # idempotent by its primary key; see add).
                last = exc
                continue
        raise KeyStoreUnavailableError(
            f"the key store {self._shown} could not be reached after {self._attempts} "
            f"attempt{'' if self._attempts == 1 else 's'}: "
            f"{type(last).__name__}: {str(last).splitlines()[0] if last and str(last) else ''}"
        ) from None

    @staticmethod
    def _migrate(conn: Any) -> None:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        conn.execute("CREATE TABLE IF NOT EXISTS sls_envelope_schema (version INTEGER NOT NULL)")
        row = conn.execute("SELECT max(version) FROM sls_envelope_schema").fetchone()
        current = row[0] or 0
        if current > SCHEMA_VERSION:
            raise RuntimeError(
                f"the key store's schema is version {current}, newer than this library's {SCHEMA_VERSION}"
            )
        for version in range(current + 1, SCHEMA_VERSION + 1):
            for statement in _MIGRATIONS[version]:
                conn.execute(statement)
            conn.execute("INSERT INTO sls_envelope_schema (version) VALUES (%s)", (version,))


    # ---- KeyStore -----------------------------------------------------------------------

    def get(self, project: str, logstore: str) -> Optional[KeyRecord]:
        row = self._run(lambda c: c.execute(
            f"SELECT {RECORD_COLUMNS} FROM sls_envelope_logstore_keys WHERE project = %s AND logstore = %s",
            (project, logstore)).fetchone())
        return None if row is None else record_from_row(row)

    def records(self, project: Optional[str] = None) -> List[KeyRecord]:
        where, args = ("", ()) if project is None else (" WHERE project = %s", (project,))
        rows = self._run(lambda c: c.execute(
            f"SELECT {RECORD_COLUMNS} FROM sls_envelope_logstore_keys{where} ORDER BY project, logstore",
            args).fetchall())
        return [record_from_row(row) for row in rows]

    def add(self, record: KeyRecord) -> bool:
        values = (
            record.project, record.logstore, record.conf, record.key_ref, record.suite, record.key_type,
            record.cmk_key_id, record.ciphertext_blob, record.created_at, record.key_check,
        )

        def insert(conn: Any) -> bool:
            cur = conn.execute(
                f"INSERT INTO sls_envelope_logstore_keys ({RECORD_COLUMNS}) VALUES "
                "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (project, logstore) DO NOTHING", values)
            if cur.rowcount == 1:
                return True
            # A retry after a commit whose answer was lost finds our own row: the same
            # random key_ref means it is ours, so the add did happen.
            row = conn.execute(
                "SELECT key_ref, created_at, conf FROM sls_envelope_logstore_keys WHERE project = %s AND logstore = %s",
                (record.project, record.logstore)).fetchone()
            return row is not None and record.key_ref is not None and row[0] is not None \
                and bytes(row[0]) == record.key_ref

        return self._run(insert)

    def remove(self, project: str, logstore: str) -> bool:
        return bool(self._run(lambda c: c.execute(
            "DELETE FROM sls_envelope_logstore_keys WHERE project = %s AND logstore = %s",
            (project, logstore)).rowcount == 1))

    def replace_conf(self, project: str, logstore: str, old: str, new: str) -> bool:
        return bool(self._run(lambda c: c.execute(
            "UPDATE sls_envelope_logstore_keys SET conf = %s WHERE project = %s AND logstore = %s AND conf = %s",
            (new, project, logstore, old)).rowcount == 1))

    def get_setting(self, name: str) -> Optional[str]:
        row = self._run(lambda c: c.execute(
            "SELECT value FROM sls_envelope_settings WHERE name = %s", (name,)).fetchone())
        return None if row is None else str(row[0])

    def set_setting_default(self, name: str, value: str) -> str:
        def put(conn: Any) -> str:
            conn.execute("INSERT INTO sls_envelope_settings (name, value) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                         (name, value))
            return str(conn.execute("SELECT value FROM sls_envelope_settings WHERE name = %s", (name,)).fetchone()[0])

        return self._run(put)

    def setting_or_create(self, name: str, make: Callable[[], str]) -> str:
        # As SqliteKeyStore's BEGIN IMMEDIATE: a transaction-scoped advisory lock on the
        # name, taken before reading, so of several nodes finding no setting one runs
        # make() and the others wait, then read its value (one service CMK per fleet).
        # (A connection lost between make() and the commit retries and may make again.)
        stored = self.get_setting(name)  # the common case, without the lock
        if stored is not None:
            return stored

        def create(conn: Any) -> str:
            conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_SETTINGS_LOCK, name))
            row = conn.execute("SELECT value FROM sls_envelope_settings WHERE name = %s", (name,)).fetchone()
            if row is not None:
                return str(row[0])
            value = make()
            conn.execute("INSERT INTO sls_envelope_settings (name, value) VALUES (%s, %s)", (name, value))
            return value

        return self._run(create)

    def close(self) -> None:
        self._pool.close()
