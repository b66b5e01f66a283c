"""sls-envelope serve through the official aliyun-log-python-sdk only: the seed end to end
(service-key AES and BYOK m4 Logstores, CMK disabled and enabled again), restart between
write and read, a torn tail dropped, eight clients at once, bad requests answered 4xx.

The SDK sends the project in the Host header and only talks to an IP endpoint as such
when the endpoint has no port (aliyun/log/util.py is_row_ip): the endpoint listens on
port 80 of a random 127.x.y.z address (the tests run as root)."""

from __future__ import annotations

import os
import random
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aliyun.log import LogClient, LogException, LogItem, PutLogsRequest

from sls_envelope.home import Home
from sls_envelope.kms.local import create_log_service_role
from sls_envelope.sls.api import SlsApi
from sls_envelope.sls.server import SlsServer, caller_of, keys_of

AK, SK = "test-ak", "test-secret-not-real"
PROJECT = "seed-project"
MARKER = "PLAINTEXT-MARKER-7c1f"


class Endpoint:
    def __init__(self, home_dir: Path) -> None:
        self.home_dir = home_dir
        self.host = f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(2, 254)}"
        self.home = Home(home_dir)
        self.kms = self.home.open_kms()
        self.start()

    def start(self) -> None:
        self.manager = self.home.open_manager(self.kms, revalidate_after=0)
        self.api = SlsApi(str(self.home_dir / "sls"), self.manager)
        self.server = SlsServer(self.api, keys_of({AK: SK}, self.kms), host=self.host, port=80,
                                caller_of=caller_of(self.kms)).start()

    def stop(self) -> None:
        self.server.stop()
        self.api.close()
        self.manager.close()

    def client(self) -> LogClient:
        return LogClient(self.host, AK, SK)


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    if os.geteuid() != 0:
        pytest.skip("the SDK needs port 80 of a 127.x address (see the module docstring)")
    ep = Endpoint(tmp_path_factory.mktemp("sls-serve"))
    ep.client().create_project(PROJECT, "seed")
    yield ep
    ep.stop()


def _groups(tag: str, groups: int, per_group: int) -> list[list[tuple[str, str]]]:
    return [[(f"k{j}", f"{MARKER} {tag} g{g} l{i} " + "x" * (i % 7)) for j in range(3)]
            for g in range(groups) for i in range(per_group)]


def _put(client: LogClient, logstore: str, logs: list[list[tuple[str, str]]], per_group: int) -> None:
    for start in range(0, len(logs), per_group):
        items = [LogItem(timestamp=1700000000 + k, contents=c) for k, c in enumerate(logs[start:start + per_group])]
        client.put_logs(PutLogsRequest(PROJECT, logstore, "topic", "src", items))


def _pull_all(client: LogClient, logstore: str) -> list[list[tuple[str, str]]]:
    out: list[list[tuple[str, str]]] = []
    for shard in client.list_shards(PROJECT, logstore).get_shards_info():
        sid = shard["shardID"]
        cursor = client.get_cursor(PROJECT, logstore, sid, "begin").get_cursor()
        end = client.get_cursor(PROJECT, logstore, sid, "end").get_cursor()
        while cursor != end:
            res = client.pull_logs(PROJECT, logstore, sid, cursor, 100)
            for group in res.get_loggroup_list().LogGroups:
                assert group.Topic == "topic" and group.Source == "src"
                out.extend([(c.Key, c.Value) for c in log.Contents] for log in group.Logs)
            cursor = res.get_next_cursor()
    return out


def _shard_bytes(ep: Endpoint, logstore: str) -> bytes:
    d = ep.home_dir / "sls" / PROJECT / logstore
    return b"".join(p.read_bytes() for p in sorted(d.glob("shard-*.log")))


def test_seed_end_to_end(endpoint: Endpoint) -> None:
    client = endpoint.client()
    cmk = endpoint.kms.create_key("seed BYOK CMK")
    arn = create_log_service_role(endpoint.kms, "seed-byok")
    confs: dict[str, dict[str, Any]] = {
        "aes": {"enable": True, "encrypt_type": "default"},
        "byok": {"enable": True, "encrypt_type": "m4",
                 "user_cmk_info": {"cmk_key_id": cmk, "arn": arn, "region_id": "cn-hangzhou"}},
        "plain": {"enable": False},
    }
    sent = {}
    for name, conf in confs.items():
        client.create_logstore(PROJECT, name, shard_count=2, encrypt_conf=conf)
        assert client.get_logstore(PROJECT, name).encrypt_conf == conf
        sent[name] = _groups(name, 100, 100) if name != "plain" else _groups(name, 2, 10)
        _put(client, name, sent[name], 100)
    for name in confs:
        assert sorted(_pull_all(client, name)) == sorted(sent[name])  # 10,000 logs field for field
    assert MARKER.encode() not in _shard_bytes(endpoint, "aes")
    assert MARKER.encode() not in _shard_bytes(endpoint, "byok")
    assert MARKER.encode() in _shard_bytes(endpoint, "plain")  # the negative control

    endpoint.kms.disable_key(cmk)
    for call in (lambda: _put(client, "byok", sent["byok"][:5], 5), lambda: _pull_all(client, "byok")):
        with pytest.raises(LogException) as info:
            call()
        assert info.value.get_error_code() == "Rejected.Disabled"
        assert 400 <= info.value.resp_status < 500
    _put(client, "aes", sent["aes"][:5], 5)  # the service-key Logstore keeps working
    endpoint.kms.enable_key(cmk)
    _put(client, "byok", sent["byok"][:5], 5)
    for name in ("aes", "byok"):
        assert sorted(_pull_all(client, name)) == sorted(sent[name] + sent[name][:5])

    # restart between write and read: a new server, manager and shard index from disk
    endpoint.stop()
    endpoint.start()
    client = endpoint.client()
    for name in ("aes", "byok"):
        assert sorted(_pull_all(client, name)) == sorted(sent[name] + sent[name][:5])


def test_torn_tail_is_dropped(endpoint: Endpoint) -> None:
    client = endpoint.client()
    client.create_logstore(PROJECT, "torn", shard_count=1, encrypt_conf={"enable": True, "encrypt_type": "default"})
    logs = _groups("torn", 3, 10)
    _put(client, "torn", logs, 10)
    endpoint.stop()
    shard = endpoint.home_dir / "sls" / PROJECT / "torn" / "shard-0.log"
    whole = shard.read_bytes()
    # What a kill during a write leaves: a record head and part of its sealed batch.
    with open(shard, "ab") as f:
        f.write(b"SLSE" + (1000).to_bytes(4, "little") + zlib.crc32(b"y" * 1000).to_bytes(4, "little")
                + bytes(8) + b"y" * 300)
    endpoint.start()
    client = endpoint.client()
    assert sorted(_pull_all(client, "torn")) == sorted(logs)
    assert shard.read_bytes() == whole  # truncated back to the last whole record
    _put(client, "torn", logs[:10], 10)
    assert sorted(_pull_all(client, "torn")) == sorted(logs + logs[:10])


def test_eight_clients_at_once(endpoint: Endpoint) -> None:
    endpoint.client().create_logstore(PROJECT, "many", shard_count=4,
                                      encrypt_conf={"enable": True, "encrypt_type": "sm4"})
    errors: list[BaseException] = []
    sent: list[list[tuple[str, str]]] = []

    def writer(n: int) -> None:
        try:
            logs = _groups(f"c{n}", 10, 20)
            _put(endpoint.client(), "many", logs, 20)
            sent.extend(logs)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(_pull_all(endpoint.client(), "many")) == sorted(sent)


BAD_BODIES = [
    ("not protobuf", b"\xff\xff\xff\xff garbage", "", None, "PostBodyInvalid"),
    ("wrong compression", b"not lz4 at all", "lz4", 1000, "PostBodyUncompressError"),
    ("lying bodyrawsize", zlib.compress(b"\n\x00"), "deflate", 999, "PostBodyUncompressError"),
    ("unknown compression", b"x", "snappy", 1, "InvalidCompressType"),
]


@pytest.mark.parametrize("what,body,ctype,raw,code", BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
def test_bad_bodies_are_4xx(endpoint: Endpoint, what: str, body: bytes, ctype: str, raw: Any, code: str) -> None:
    client = endpoint.client()
    if "bad" not in client.list_logstore(PROJECT).get_logstores():
        client.create_logstore(PROJECT, "bad", shard_count=1)
    headers = {"Content-Type": "application/x-protobuf", "x-log-bodyrawsize": str(raw if raw is not None else len(body))}
    if ctype:
        headers["x-log-compresstype"] = ctype
    with pytest.raises(LogException) as info:
        client._send("POST", PROJECT, body, "/logstores/bad/shards/lb", {}, headers)  # the SDK signs it
    assert info.value.get_error_code() == code
    assert 400 <= info.value.resp_status < 500


def test_bad_requests_are_4xx(endpoint: Endpoint) -> None:
    wrong = LogClient(endpoint.host, AK, "wrong-secret")
    cases = [
        (lambda: wrong.list_logstore(PROJECT), "SignatureNotMatch"),
        (lambda: LogClient(endpoint.host, "nobody", SK).list_logstore(PROJECT), "Unauthorized"),
        (lambda: endpoint.client().get_logstore(PROJECT, "no-such-store"), "LogStoreNotExist"),
        (lambda: endpoint.client().list_logstore("no-such-project"), "ProjectNotExist"),
        (lambda: endpoint.client().create_logstore(PROJECT, "badconf", encrypt_conf={"enable": True}),
         "LogStoreInfoInvalid"),
        (lambda: endpoint.client().pull_logs(PROJECT, "torn", 0, "bm90LWEtbnVtYmVy", 10), "InvalidCursor"),
        # SLS's naming rules (names.py): 3 to 63 characters, no upper case.
        (lambda: endpoint.client().create_logstore(PROJECT, "ab"), "LogStoreInfoInvalid"),
        (lambda: endpoint.client().create_logstore(PROJECT, "x" * 64), "LogStoreInfoInvalid"),
        (lambda: endpoint.client().create_logstore(PROJECT, "Upper"), "LogStoreInfoInvalid"),
    ]
    for call, code in cases:
        with pytest.raises(LogException) as info:
            call()
        assert info.value.get_error_code() == code
        assert 400 <= info.value.resp_status < 500


def test_cli_serve_killed_during_writes(tmp_path: Path) -> None:
    """`sls-envelope serve` as a process: killed (SIGKILL) while eight writers put logs,
    started again: every acknowledged PutLogs is served whole, nothing torn is."""
    import signal
    import subprocess
    import sys
    import time

    if os.geteuid() != 0:
        pytest.skip("port 80 needs root")
    host = f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(2, 254)}"
    env = dict(os.environ, SLS_ENVELOPE_ACCESS_KEY_SECRET=SK,
               PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    argv = [sys.executable, "-m", "sls_envelope", "--home", str(tmp_path), "serve", "--host", host,
            "--access-key-id", AK]

    def start() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert proc.stdout is not None
        assert b"serving SLS" in proc.stdout.readline()
        return proc

    proc = start()
    client = LogClient(host, AK, SK)
    client.create_project(PROJECT, "cli")
    client.create_logstore(PROJECT, "killed", shard_count=2, encrypt_conf={"enable": True, "encrypt_type": "sm4"})
    acked: list[list[tuple[str, str]]] = []
    stop = threading.Event()

    def writer(n: int) -> None:
        c = LogClient(host, AK, SK)
        g = 0
        while not stop.is_set():
            logs = _groups(f"w{n}", 1, 50)
            for i in range(len(logs)):
                logs[i] = [*logs[i], ("seq", f"{n}-{g}")]
            try:
                items = [LogItem(timestamp=1700000000, contents=c_) for c_ in logs]
                c.put_logs(PutLogsRequest(PROJECT, "killed", "topic", "src", items))
            except LogException:
                return
            acked.extend(logs)
            g += 1

    threads = [threading.Thread(target=writer, args=(n,), daemon=True) for n in range(8)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stop.set()
    for t in threads:
        t.join(30)
    proc = start()
    try:
        got = _pull_all(client, "killed")
        groups = {}
        for log in got:
            groups.setdefault(dict(log)["seq"], []).append(log)
        assert all(len(g) == 50 for g in groups.values())  # whole LogGroups only
        assert not {tuple(x) for x in acked} - {tuple(x) for x in got}  # nothing acknowledged is lost
        assert len(acked) > 0
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0


def test_v4_signature(endpoint: Endpoint) -> None:
    from aliyun.log.auth import AUTH_VERSION_4

    client = LogClient(endpoint.host, AK, SK, auth_version=AUTH_VERSION_4, region="cn-hangzhou")
    client.create_logstore(PROJECT, "v4store", shard_count=1, encrypt_conf={"enable": True, "encrypt_type": "sm4"})
    logs = [[("q", "a b/c~d&e=f"), ("marker", MARKER)]]
    _put(client, "v4store", logs, 1)
    assert _pull_all(client, "v4store") == logs
    wrong = LogClient(endpoint.host, AK, "wrong-secret", auth_version=AUTH_VERSION_4, region="cn-hangzhou")
    with pytest.raises(LogException) as info:
        wrong.list_logstore(PROJECT)
    assert info.value.get_error_code() == "SignatureNotMatch" and info.value.resp_status == 401


def test_update_encryption_switches_new_data(endpoint: Endpoint) -> None:
    """UpdateLogstore enable false: new data is stored in the clear (as SLS does), what was
    sealed stays sealed and readable; UpdateLogStoreEncryption enable true: sealed again."""
    import json

    client = endpoint.client()
    conf = {"enable": True, "encrypt_type": "default"}
    client.create_logstore(PROJECT, "toggle", shard_count=1, encrypt_conf=conf)
    a, b, c = ([[("k", f"{tag}-{i}")] for i in range(5)] for tag in ("SEALED-A", "CLEAR-B", "SEALED-C"))
    _put(client, "toggle", a, 5)
    client.update_logstore(PROJECT, "toggle", encrypt_conf={"enable": False, "encrypt_type": "default"})
    assert client.get_logstore(PROJECT, "toggle").encrypt_conf["enable"] is False
    _put(client, "toggle", b, 5)
    client._send("PUT", PROJECT, json.dumps({"enable": True}).encode(), "/logstores/toggle/encryption", {},
                 {"Content-Type": "application/json", "x-log-bodyrawsize": "0"})
    _put(client, "toggle", c, 5)
    assert _pull_all(client, "toggle") == a + b + c
    stored = _shard_bytes(endpoint, "toggle")
    assert b"CLEAR-B" in stored and b"SEALED-A" not in stored and b"SEALED-C" not in stored
    with pytest.raises(LogException) as info:
        client.update_logstore(PROJECT, "toggle", encrypt_conf={"enable": True, "encrypt_type": "sm4"})
    assert info.value.get_error_code() == "LogStoreInfoInvalid" and 400 <= info.value.resp_status < 500


def test_cmk_pending_deletion_refuses_then_cancel_restores(endpoint: Endpoint) -> None:
    client = endpoint.client()
    cmk = endpoint.kms.create_key("pending deletion")
    arn = create_log_service_role(endpoint.kms, "pending-byok")
    client.create_logstore(PROJECT, "pending", shard_count=1, encrypt_conf={
        "enable": True, "encrypt_type": "aes_gcm",
        "user_cmk_info": {"cmk_key_id": cmk, "arn": arn, "region_id": "cn-hangzhou"}})
    logs = [[("k", f"v{i}")] for i in range(10)]
    _put(client, "pending", logs, 10)
    endpoint.kms.schedule_key_deletion(cmk, 7)
    for call in (lambda: _put(client, "pending", logs, 10), lambda: _pull_all(client, "pending")):
        with pytest.raises(LogException) as info:
            call()
        assert info.value.get_error_code() == "Rejected.PendingDeletion"
        assert 400 <= info.value.resp_status < 500
    endpoint.kms.cancel_key_deletion(cmk)  # back to Disabled, as KMS does
    endpoint.kms.enable_key(cmk)
    assert _pull_all(client, "pending") == logs


def test_limits_and_pull_compressions(endpoint: Endpoint) -> None:
    from aliyun.log.log_logs_pb2 import LogGroup as SdkLogGroup

    client = endpoint.client()
    client.create_logstore(PROJECT, "limits", shard_count=1)
    group = SdkLogGroup()
    for _ in range(40961):
        group.Logs.add().Time = 1700000000
    body = group.SerializeToString()
    with pytest.raises(LogException) as info:
        client._send("POST", PROJECT, body, "/logstores/limits/shards/lb", {},
                     {"Content-Type": "application/x-protobuf", "x-log-bodyrawsize": str(len(body))})
    assert info.value.get_error_code() == "InvalidLogSize" and info.value.resp_status == 400
    logs = [[("k", f"v{i}")] for i in range(20)]
    _put(client, "limits", logs, 10)
    cursor = client.get_cursor(PROJECT, "limits", 0, "begin").get_cursor()
    for accept in ("deflate", "lz4"):
        res = client.pull_logs(PROJECT, "limits", 0, cursor, 10, accept_compress_type=accept)
        assert res.get_log_count() == 20 and res.headers.get("x-log-compresstype") == accept
    res = client.pull_logs(PROJECT, "limits", 0, cursor, 10, compress=False)
    assert res.get_log_count() == 20 and "x-log-compresstype" not in res.headers


def test_cli_serve_with_remote_kms(tmp_path: Path) -> None:
    """`serve --kms URL`: the keys come from another KMS (here `kms serve`'s server, in
    process), through AliyunKms and STS as the log service's own identity."""
    import subprocess
    import sys

    from sls_envelope.kms.local import LocalKms
    from sls_envelope.kms.server import make_server

    if os.geteuid() != 0:
        pytest.skip("port 80 needs root")
    kms = LocalKms(str(tmp_path / "remote-kms"))
    kms_server = make_server(kms, "127.0.0.1", 0, "root-ak", "root-secret-xyz")
    kms_server.start()
    service_id, service_secret = kms.service_credential()
    cmk = kms.create_key("remote BYOK")
    arn = create_log_service_role(kms, "remote-byok")
    host = f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(2, 254)}"
    env = dict(os.environ, SLS_ENVELOPE_ACCESS_KEY_SECRET=SK, SLS_ENVELOPE_KMS_ACCESS_KEY_ID=service_id,
               SLS_ENVELOPE_KMS_ACCESS_KEY_SECRET=service_secret,
               PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    proc = subprocess.Popen([sys.executable, "-m", "sls_envelope", "--home", str(tmp_path / "home"), "serve",
                             "--host", host, "--access-key-id", AK, "--kms", f"http://{kms_server.endpoint}"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert proc.stdout is not None and b"serving SLS" in proc.stdout.readline()
        client = LogClient(host, AK, SK)
        client.create_project(PROJECT, "remote")
        client.create_logstore(PROJECT, "remote", shard_count=1, encrypt_conf={
            "enable": True, "encrypt_type": "sm4",
            "user_cmk_info": {"cmk_key_id": cmk, "arn": arn, "region_id": "cn-hangzhou"}})
        logs = [[("k", f"{MARKER}-{i}")] for i in range(10)]
        _put(client, "remote", logs, 10)
        assert _pull_all(client, "remote") == logs
        stored = b"".join(p.read_bytes() for p in (tmp_path / "home" / "sls" / PROJECT / "remote").glob("shard-*"))
        assert MARKER.encode() not in stored
    finally:
        proc.terminate()
        proc.wait(30)
        kms_server.stop()


def test_ram_user_needs_pass_role_for_byok(endpoint: Endpoint) -> None:
    """A RAM user's AccessKey (the embedded KMS's) signs; a BYOK Logstore then needs the
    user's ram:PassRole on the role, as the log service requires (403 Unauthorized)."""
    endpoint.kms.create_user("sls-writer")
    key_id, secret = endpoint.kms.create_access_key("sls-writer")
    user = LogClient(endpoint.host, key_id, secret)
    cmk = endpoint.kms.create_key("ram user BYOK")
    arn = create_log_service_role(endpoint.kms, "ram-user-byok")
    byok = {"enable": True, "encrypt_type": "default",
            "user_cmk_info": {"cmk_key_id": cmk, "arn": arn, "region_id": "cn-hangzhou"}}
    with pytest.raises(LogException) as info:
        user.create_logstore(PROJECT, "ram-byok", shard_count=1, encrypt_conf=byok)
    assert info.value.get_error_code() == "Unauthorized" and info.value.resp_status == 403
    user.create_logstore(PROJECT, "ram-service", shard_count=1, encrypt_conf={"enable": True, "encrypt_type": "default"})
    logs = [[("k", "v")]]
    _put(user, "ram-service", logs, 1)
    assert _pull_all(user, "ram-service") == logs


@pytest.mark.parametrize("resource", ["/logstores/..", "/logstores/../shards", "/logstores/a%2F..%2F..",
                                      "/logstores/.%2E"])
def test_names_never_reach_the_disk_unchecked(endpoint: Endpoint, resource: str) -> None:
    before = sorted(p.name for p in (endpoint.home_dir / "sls").iterdir())
    for method in ("GET", "DELETE"):
        with pytest.raises(LogException) as info:
            endpoint.client()._send(method, PROJECT, None, resource, {}, {})
        assert 400 <= info.value.resp_status < 500
    assert sorted(p.name for p in (endpoint.home_dir / "sls").iterdir()) == before


def test_cursor_by_time_and_body_size_limit(endpoint: Endpoint) -> None:
    import time

    client = endpoint.client()
    client.create_logstore(PROJECT, "bytime", shard_count=1)
    _put(client, "bytime", [[("k", "v")]], 1)
    begin = client.get_cursor(PROJECT, "bytime", 0, "begin").get_cursor()
    end = client.get_cursor(PROJECT, "bytime", 0, "end").get_cursor()
    assert begin != end
    assert client.get_cursor(PROJECT, "bytime", 0, int(time.time()) - 3600).get_cursor() == begin
    assert client.get_cursor(PROJECT, "bytime", 0, int(time.time()) + 3600).get_cursor() == end
    with pytest.raises(LogException) as info:  # a raw size over SLS's 10 MB PutLogs limit
        client._send("POST", PROJECT, b"x" * 64, "/logstores/bytime/shards/lb", {},
                     {"Content-Type": "application/x-protobuf", "x-log-compresstype": "lz4",
                      "x-log-bodyrawsize": str(11 * 1024 * 1024)})
    assert info.value.get_error_code() == "PostBodyTooLarge" and info.value.resp_status == 413
