"""Many nodes sharing one PostgreSQL key store (tests/cluster.py starts the server once
per session): exactly one key per Logstore across nodes, and a store that goes away."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import threading
import time
from typing import Any, Dict, List, Tuple

import pytest

from sls_envelope import KeyManager
from sls_envelope.exceptions import ConfigError
from sls_envelope.kms import LocalKms
from tests.cluster import PostgresServer  # the servers: session fixtures of conftest.py

NODES = 4
CONF = {"enable": True, "encrypt_type": "default"}


def _node_create(args: Tuple[str, str, str, str, Any]) -> Tuple[str, List[bytes]]:
    """One node: its own KeyManager; races the others to create the Logstore, then seals."""
    url, kms_dir, project, name, barrier = args
    manager = KeyManager(LocalKms(kms_dir), url)
    barrier.wait(timeout=30)
    try:
        cipher = manager.create_logstore(project, name, CONF)
        outcome = "created"
    except ConfigError as exc:
        outcome = exc.code
        cipher = manager.open_logstore(project, name)
    assert cipher is not None
    blobs = [cipher.encrypt(f"{os.getpid()}-{i}".encode()) for i in range(5)]
    manager.close()
    return outcome, blobs


def _node_read(args: Tuple[str, str, str, str, List[bytes]]) -> List[bytes]:
    url, kms_dir, project, name, blobs = args
    manager = KeyManager(LocalKms(kms_dir), url)
    cipher = manager.open_logstore(project, name)
    assert cipher is not None
    out = [cipher.decrypt(b) for b in blobs]
    manager.close()
    return out


def test_four_nodes_race_to_create_one_logstore(postgres: PostgresServer, tmp_path: Any) -> None:
    kms_dir = str(tmp_path / "kms")
    LocalKms(kms_dir)  # made once, shared by every node through its directory
    ctx = multiprocessing.get_context("fork")
    with ctx.Manager() as shared, ctx.Pool(NODES) as pool:
        barrier = shared.Barrier(NODES)
        results = pool.map(_node_create, [(postgres.url, kms_dir, "race", "shared", barrier)] * NODES)
        outcomes = sorted(o for o, _ in results)
        assert outcomes == ["LogStoreAlreadyExist"] * (NODES - 1) + ["created"]
        every_blob = [b for _, blobs in results for b in blobs]
        assert len(set(every_blob)) == len(every_blob)
        read = pool.map(_node_read, [(postgres.url, kms_dir, "race", "shared", every_blob)] * NODES)
    for plain in read:  # every node opens every other node's batches
        assert plain == read[0]
        assert len(plain) == NODES * 5
    manager = KeyManager(LocalKms(kms_dir), postgres.url)
    records = [r for r in manager._store.records("race")]  # noqa: SLF001 - the store is what is checked
    assert [(r.project, r.logstore) for r in records] == [("race", "shared")]
    manager.close()


def test_postgres_restart_mid_run(postgres: PostgresServer, tmp_path: Any) -> None:
    from sls_envelope.keystore_postgres import KeyStoreUnavailableError, PostgresKeyStore

    store = PostgresKeyStore(postgres.url, attempts=8, backoff=0.2)
    kms = LocalKms()
    # The store's settings are shared by the session: name this KMS's own service CMK.
    manager = KeyManager(kms, store, service_key_id=kms.create_key())
    made: List[str] = []
    failed: List[str] = []
    stop = threading.Event()

    def writer() -> None:
        i = 0
        while not stop.is_set():
            name = f"ls{i}"
            i += 1
            try:
                manager.create_logstore("restart", name, CONF)
                made.append(name)
            except KeyStoreUnavailableError:
                failed.append(name)
            except BaseException as exc:  # noqa: BLE001 - reported by the test, not lost in a thread
                failed.append(f"{name}: {exc!r}")
                return

    t = threading.Thread(target=writer)
    t.start()
    try:
        deadline = time.monotonic() + 20
        while len(made) < 5 and time.monotonic() < deadline:
            threading.Event().wait(0.02)
        postgres.restart(down_for=0.3)
        before = len(made)
        while len(made) < before + 5 and t.is_alive() and time.monotonic() < deadline + 20:
            threading.Event().wait(0.02)
    finally:
        stop.set()
        t.join(30)
    assert not failed, f"bounded retries should ride out a short restart: {failed}"
    assert len(made) >= 10
    # Nothing half-made: every record is whole and opens.
    records = {r.logstore: r for r in store.records("restart")}
    assert set(records) == set(made)
    for r in records.values():
        assert r.key_ref and r.ciphertext_blob and r.key_check
        assert manager.open_logstore("restart", r.logstore) is not None
    manager.close()


def test_store_down_is_a_clear_error_at_api_and_cli(postgres: PostgresServer, tmp_path: Any) -> None:
    from sls_envelope.keystore_postgres import KeyStoreUnavailableError, PostgresKeyStore

    url = f"postgresql://sls:secret-pw@127.0.0.1:{postgres.port + 1 if postgres.port < 65535 else 1}/postgres"
    with pytest.raises(KeyStoreUnavailableError) as info:
        PostgresKeyStore(url, attempts=2, backoff=0.05, connect_timeout=1)
    assert info.value.code == "KeyStoreUnavailable" and "secret-pw" not in str(info.value)
    assert "2 attempts" in str(info.value)
    env: Dict[str, str] = dict(os.environ, SLS_ENVELOPE_STORE=url, SLS_ENVELOPE_STORE_ATTEMPTS="1")
    done = subprocess.run(
        [sys.executable, "-m", "sls_envelope", "logstore", "create", "prj/log", "--home", str(tmp_path / "h")],
        check=False, capture_output=True, text=True, env=env, timeout=60,
    )
    assert done.returncode != 0
    assert "could not be reached" in done.stderr and "secret-pw" not in done.stderr + done.stdout
    assert "Traceback" not in done.stderr
    # One line, with libpq's reason: the store is refusing, not slow.
    assert len(done.stderr.strip().splitlines()) == 1 and "Connection refused" in done.stderr, done.stderr


@pytest.mark.parametrize("pooled", [True, False], ids=["idle-connection", "empty-pool"])
def test_store_down_after_open_fails_fast_with_libpq_reason(postgres: PostgresServer, pooled: bool) -> None:
    # The server stops under an open store: with a connection idle in the pool (it dies
    # with the server), and with none (min_size 0: nothing used yet, or idle ones expired).
    from sls_envelope.keystore_postgres import KeyStoreUnavailableError, PostgresKeyStore

    attempts, connect_timeout = 3, 2.0
    store = PostgresKeyStore(postgres.url, attempts=attempts, backoff=0.05, connect_timeout=connect_timeout)
    if pooled:
        store.get("down", "x")
    postgres.stop()
    try:
        t0 = time.monotonic()
        with pytest.raises(KeyStoreUnavailableError) as info:
            store.get("down", "x")
        took = time.monotonic() - t0
    finally:
        postgres.start()
    message = str(info.value)
    # libpq's reason on the one line, not the pool's "couldn't get a connection".
    assert "\n" not in message and "PoolTimeout" not in message, message
    assert f"{attempts} attempts" in message and "Connection refused" in message, message
    # The pool's timeout was twice the connect timeout per attempt (12 s here): an attempt
    # now waits on the pool at most once per outage, the others fail in milliseconds.
    assert took < attempts * connect_timeout, took
    # Back up, the same store serves again (the pool's dead connections are not reused).
    assert store.get("down", "x") is None
    store.close()


def _node_setting(args: Tuple[str, str, str, Any]) -> str:
    """One node asking the shared store for a setting none has yet; make() leaves a mark
    in `marks` each time it runs (a KMS call, for the service CMK)."""
    url, name, marks, barrier = args
    from sls_envelope.keystore_postgres import PostgresKeyStore

    store = PostgresKeyStore(url)

    def make() -> str:
        value = f"made-by-{os.getpid()}"
        with open(marks, "a") as f:
            f.write(value + "\n")
        time.sleep(0.2)  # widen the window in which the others find no setting
        return value

    barrier.wait(timeout=30)
    try:
        return store.setting_or_create(name, make)
    finally:
        store.close()


def test_nodes_on_a_fresh_store_make_one_setting(postgres: PostgresServer, tmp_path: Any) -> None:
    # A fleet's first start: every node finds no service CMK; exactly one may create it.
    marks = str(tmp_path / "marks")
    name = f"race-{os.getpid()}-{time.time_ns()}"
    ctx = multiprocessing.get_context("fork")
    with ctx.Manager() as shared, ctx.Pool(NODES) as pool:
        barrier = shared.Barrier(NODES)
        values = pool.map(_node_setting, [(postgres.url, name, marks, barrier)] * NODES)
    with open(marks) as f:
        made = f.read().split()
    assert len(made) == 1 and values == made * NODES


def test_cli_with_a_shared_store(postgres: PostgresServer, tmp_path: Any) -> None:
    # Every logstore command goes to the store --store names, delete included.  A database
    # of its own: the session's has a service CMK setting made under another test's KMS.
    import psycopg

    with psycopg.connect(postgres.url, autocommit=True) as conn:
        conn.execute("CREATE DATABASE cli_store")
    url = postgres.url.rsplit("/", 1)[0] + "/cli_store"
    env: Dict[str, str] = dict(os.environ)
    home = str(tmp_path / "h")

    def cli(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "sls_envelope", "--store", url, "--home", home,
                               "logstore", *argv], check=False, capture_output=True, text=True, env=env, timeout=60)

    assert cli("create", "cliprj/shared").returncode == 0
    assert "cliprj/shared" in cli("list").stdout
    done = cli("delete", "cliprj/shared", "--yes")
    assert done.returncode == 0, done.stderr
    manager = KeyManager(LocalKms(str(tmp_path / "kms")), url)
    assert manager._store.get("cliprj", "shared") is None  # noqa: SLF001 - the shared store is what is checked
    manager.close()
    assert cli("delete", "cliprj/shared", "--yes").returncode != 0
