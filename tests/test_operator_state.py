"""What a new operator tripped on in the home directory's state (issue 13 items 7, 8, 10-13)."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from typing import Any, List

import pytest

from sls_envelope import cli
from sls_envelope.exceptions import ConfigError
from sls_envelope.home import Home
from sls_envelope.keys import KeyManager
from sls_envelope.kms.local import LocalKms

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _first_service_logstore(home: str, name: str, barrier: Any) -> None:
    barrier.wait()
    manager = Home(home).open_manager()
    manager.create_logstore("proj", name, {"enable": True, "encrypt_type": "default"})
    manager.close()


def test_a_fresh_home_used_by_8_processes_at_once_makes_one_service_cmk(tmp_path: Any) -> None:
    """Item 11: the first use is race-free: one CMK; the other processes reuse it."""
    ctx = multiprocessing.get_context("spawn")
    for round_ in range(3):
        home = str(tmp_path / f"home{round_}")
        barrier = ctx.Barrier(8)
        workers = [ctx.Process(target=_first_service_logstore, args=(home, f"store{i}", barrier)) for i in range(8)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(120)
            assert w.exitcode == 0
        keys = LocalKms(os.path.join(home, "kms")).list_keys()
        assert len(keys) == 1, keys
        records = Home(home).open_manager().list_logstores()
        assert {r.cmk_key_id for r in records} == {keys[0]["KeyId"]} and len(records) == 8


def _run(capsys: Any, *argv: str) -> "tuple[int, str, str]":
    try:
        code = cli.main(list(argv))
    except SystemExit as exit_:  # argparse's usage errors
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


# ---- item 13: names and paths -------------------------------------------------------------------


@pytest.mark.parametrize("project, logstore", [
    ("a", "b/c"), ("a/b", "c"), ("proj", "bad\nname"), ("proj", "esc\x1b[31m"), ("Proj", "store"),
    ("proj", "Store"), ("proj", "-store"), ("proj", "store_"), ("pro_j", "store"), ("proj", "x" * 64),
    ("p" * 64, "store"), ("proj", "caf\u00e9"), ("proj", ""), ("", "store"),
])
def test_names_sls_refuses_are_refused_where_logstores_are_created(project: str, logstore: str) -> None:
    manager = KeyManager(LocalKms())
    with pytest.raises(ConfigError) as caught:
        manager.create_logstore(project, logstore, {"enable": False})
    assert caught.value.code == "ParameterInvalid" and caught.value.http_status == 400
    assert "\x1b" not in str(caught.value) and "\n" not in str(caught.value)
    assert manager.list_logstores() == []


def test_names_sls_allows_are_accepted() -> None:
    manager = KeyManager(LocalKms())
    for project, logstore in (("my-project-1", "access_log"), ("p" * 63, "l" * 63), ("0a0", "a-b_c")):
        manager.create_logstore(project, logstore, {"enable": False})
    assert len(manager.list_logstores()) == 3


def test_cli_refuses_bad_names_in_one_line_without_raw_control_characters(tmp_path: Any, capsys: Any) -> None:
    for ref in ("a/b/c", "proj/esc\x1b[2Jx", "proj/new\nline"):
        code, out, err = _run(capsys, "--home", str(tmp_path), "logstore", "create", ref)
        assert code == 2 and out == ""
        assert "\x1b" not in err and err.count("\n") == err.strip().count("\n") + 1
        assert "invalid" in err
    assert not os.path.exists(tmp_path / "keys.sqlite")


def test_cli_creates_only_names_of_sls_length_but_reaches_shorter_ones(tmp_path: Any, capsys: Any) -> None:
    """SLS names are 3 to 63 characters: the command line creates no shorter one, while a
    record made through the library (which accepts 1) stays reachable."""
    for ref in ("ab/store", "proj/ab"):
        code, out, err = _run(capsys, "--home", str(tmp_path), "logstore", "create", ref)
        assert code == 2 and "3 to 63 characters" in err
    code, out, err = _run(capsys, "--home", str(tmp_path), "logstore", "create", "abc/def")
    assert code == 0, err
    code, out, err = _run(capsys, "--home", str(tmp_path), "logstore", "show", "p/l")
    assert code != 2 and "does not exist" in err


def test_empty_home_is_refused(tmp_path: Any, capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for argv in (["--home", "", "logstore", "list"], ["logstore", "list", "--home", ""]):
        code, out, err = _run(capsys, *argv)
        assert code == 2 and "home directory must not be empty" in err
    assert os.listdir(tmp_path) == []
    with pytest.raises(ValueError, match="empty"):
        Home("")


# ---- item 12: clean errors ----------------------------------------------------------------------


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "internal error" not in err, err
    return lines[0]


def test_deeply_nested_encrypt_conf_is_a_usage_error(tmp_path: Any, capsys: Any) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    code, _, err = _run(capsys, "--home", str(tmp_path), "logstore", "create", "proj/store", "--encrypt-conf", deep)
    assert code == 2 and "nested too deeply" in _one_error_line(err)
    conf_file = tmp_path / "conf.json"
    conf_file.write_text('{"enable": ' + deep + "}")
    code, _, err = _run(capsys, "--home", str(tmp_path), "logstore", "create", "proj/store",
                        "--encrypt-conf", f"@{conf_file}")
    assert code == 2 and str(conf_file) in _one_error_line(err)


def test_a_corrupt_key_store_is_named_in_one_line_and_left_alone(tmp_path: Any, capsys: Any) -> None:
    store = tmp_path / "keys.sqlite"
    store.write_bytes(b"this is not an SQLite database" * 100)
    before = store.read_bytes()
    code, _, err = _run(capsys, "--home", str(tmp_path), "logstore", "list")
    line = _one_error_line(err)
    assert code == 1 and str(store) in line and "not a usable key-record store" in line
    assert store.read_bytes() == before


def test_a_key_store_locked_too_long_is_named_in_one_line(tmp_path: Any, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: Any) -> None:
    import sqlite3

    from sls_envelope.keystore import SqliteKeyStore

    Home(str(tmp_path)).open_manager().close()
    holder = sqlite3.connect(str(tmp_path / "keys.sqlite"), isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process's long write
    monkeypatch.setattr(SqliteKeyStore, "BUSY_TIMEOUT", 0.2)
    try:
        code, _, err = _run(capsys, "--home", str(tmp_path), "logstore", "create", "proj/store")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    line = _one_error_line(err)
    assert code == 1 and "keys.sqlite" in line and "locked by another process" in line


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.__setitem__("account_id", {"x": 1}), "account_id must be a string"),
    (lambda d: d.__setitem__("keys", []), "keys must be an object"),
    (lambda d: next(iter(d["keys"].values())).__setitem__("state", 3), "state"),
])
def test_state_files_of_the_wrong_shape_are_refused_by_the_cli_and_never_rewritten(
        tmp_path: Any, capsys: Any, mutate: Any, message: str) -> None:
    code, _, _ = _run(capsys, "--home", str(tmp_path), "kms", "create-key")
    assert code == 0
    path = tmp_path / "kms" / "localkms.json"
    document = json.loads(path.read_text())
    mutate(document)
    path.write_text(json.dumps(document))
    before = path.read_bytes()
    for argv in (["kms", "list-keys"], ["logstore", "create", "proj/store"]):
        code, _, err = _run(capsys, "--home", str(tmp_path), *argv)
        line = _one_error_line(err)
        assert code == 1 and str(path) in line and message in line, line
    assert path.read_bytes() == before


# ---- item 7: a read-only home --------------------------------------------------------------------


def _read_only_run(home: str, *argv: str) -> "subprocess.CompletedProcess[str]":
    """The CLI in a mount namespace where ``home`` is a read-only bind mount (EROFS, as a
    read-only volume gives; root ignores permission bits, so chmod cannot show this)."""
    command = " ".join(["exec", sys.executable, "-m", "sls_envelope", "--home", home, *argv])
    script = f"mount --bind {home} {home} && mount -o remount,ro,bind {home} && {command}"
    return subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": ROOT})


def _can_mount_read_only(tmp_path: Any) -> bool:
    if sys.platform != "linux" or os.geteuid() != 0:
        return False
    probe = tmp_path / "probe"
    probe.mkdir()
    try:
        done = subprocess.run(["unshare", "-m", "sh", "-c", f"mount --bind {probe} {probe}"], capture_output=True,
                              timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def test_read_only_home_still_lists_and_shows_and_refuses_changes_in_one_line(tmp_path: Any, capsys: Any) -> None:
    if not _can_mount_read_only(tmp_path):
        pytest.skip("needs root and mount namespaces (unshare -m) for a read-only bind mount")
    home = str(tmp_path / "home")
    assert _run(capsys, "--home", home, "logstore", "create", "proj/store")[0] == 0
    before = {name: (tmp_path / "home" / name).read_bytes() for name in ("keys.sqlite", "kms/localkms.json")}
    for argv in (["logstore", "list"], ["logstore", "show", "proj/store"], ["kms", "list-keys"],
                 ["--json", "logstore", "list"]):
        done = _read_only_run(home, *argv)
        assert done.returncode == 0 and ("store" in done.stdout or "Enabled" in done.stdout), (argv, done.stderr)
        assert done.stderr == ""
    for argv, doing in ((["logstore", "create", "proj/other"], "keys.sqlite"), (["kms", "create-key"], "LocalKms")):
        done = _read_only_run(home, *argv)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 1 and len(lines) == 1 and "read-only" in lines[0] and doing in lines[0], done.stderr
        assert "internal error" not in done.stderr
    assert {name: (tmp_path / "home" / name).read_bytes() for name in before} == before


# ---- item 8: the CMK's state in show and list; logstore delete -------------------------------------


def _byok_home(tmp_path: Any, capsys: Any) -> "tuple[str, str]":
    home = str(tmp_path / "home")
    code, cmk, _ = _run(capsys, "--home", home, "kms", "create-key")
    assert code == 0
    code, arn, _ = _run(capsys, "--home", home, "kms", "create-role", "sls-byok")
    conf = {"enable": True, "encrypt_type": "sm4",
            "user_cmk_info": {"cmk_key_id": cmk.strip(), "arn": arn.strip(), "region_id": "cn-hangzhou"}}
    assert _run(capsys, "--home", home, "logstore", "create", "proj/byok", "--encrypt-conf", json.dumps(conf))[0] == 0
    assert _run(capsys, "--home", home, "logstore", "create", "proj/plain", "--encrypt-conf",
                '{"enable": false}')[0] == 0
    return home, cmk.strip()


def _shown_state(capsys: Any, home: str) -> "tuple[str, str]":
    code, out, _ = _run(capsys, "--home", home, "--json", "logstore", "show", "proj/byok")
    assert code == 0
    listed = {f"{r['project']}/{r['logstore']}": r for r in json.loads(_run(capsys, "--home", home, "--json",
                                                                           "logstore", "list")[1])}
    assert listed["proj/plain"]["cmk_state"] is None
    return json.loads(out)["cmk_state"], listed["proj/byok"]["cmk_state"]


def test_show_and_list_give_the_byok_cmk_state_as_the_kms_reports_it_now(tmp_path: Any, capsys: Any) -> None:
    home, cmk = _byok_home(tmp_path, capsys)
    assert _shown_state(capsys, home) == ("Enabled", "Enabled")
    _run(capsys, "--home", home, "kms", "disable-key", cmk)
    assert _shown_state(capsys, home) == ("Disabled", "Disabled")
    code, out, _ = _run(capsys, "--home", home, "logstore", "show", "proj/byok")
    assert code == 0 and "CMK state" in out and "Disabled" in out
    code, out, _ = _run(capsys, "--home", home, "logstore", "list")
    assert "CMK STATE" in out and "Disabled" in out
    _run(capsys, "--home", home, "kms", "enable-key", cmk)
    _run(capsys, "--home", home, "kms", "schedule-key-deletion", cmk)
    assert _shown_state(capsys, home) == ("PendingDeletion", "PendingDeletion")
    # The CMK gone from the KMS altogether (a purge after the window): "deleted".
    path = tmp_path / "home" / "kms" / "localkms.json"
    document = json.loads(path.read_text())
    del document["keys"][cmk]
    path.write_text(json.dumps(document))
    assert _shown_state(capsys, home) == ("deleted", "deleted")


def test_logstore_delete_removes_the_key_record_and_says_what_is_lost(tmp_path: Any, capsys: Any) -> None:
    home, cmk = _byok_home(tmp_path, capsys)
    code, _, err = _run(capsys, "--home", home, "logstore", "delete", "proj/byok")
    assert code == 2 and "--yes" in err and "never be decrypted" in err
    assert len(Home(home).open_manager().list_logstores()) == 2
    code, out, _ = _run(capsys, "--home", home, "logstore", "delete", "proj/byok", "--yes")
    assert code == 0 and "can no longer be decrypted" in out and cmk in out
    assert [r.logstore for r in Home(home).open_manager().list_logstores()] == ["plain"]
    assert LocalKms(os.path.join(home, "kms")).describe_key(cmk)["KeyState"] == "Enabled"  # the CMK is kept
    code, _, err = _run(capsys, "--home", home, "logstore", "delete", "proj/byok", "--yes")
    assert code == 1 and "LogStoreNotExist" in err
    code, out, _ = _run(capsys, "--home", home, "--json", "logstore", "delete", "proj/plain", "--yes")
    assert code == 0 and json.loads(out) == {"deleted": "proj/plain", "encrypted": False, "cmk_key_id": None}


# ---- item 10: SIGKILL during a LocalKms change leaves no key material behind ------------------------

_CHANGER = """
import os, sys
if sys.argv[2] == "named":  # a platform without O_TMPFILE: named temporaries
    delattr(os, "O_TMPFILE")
from sls_envelope.kms.local import LocalKms
kms = LocalKms(sys.argv[1])
print("ready", flush=True)
while True:
    key = kms.create_key("churn")
    kms.disable_key(key)
    kms.enable_key(key)
"""


@pytest.mark.skipif(not hasattr(os, "O_TMPFILE"), reason="Linux O_TMPFILE")
def test_saves_use_an_unnamed_file_where_the_platform_has_one(tmp_path: Any,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """On Linux the named-temporary fallback is never taken (it once was: os.link with its
    defaults calls link(2), which cannot link /proc/self/fd/N and fails with EXDEV)."""
    from sls_envelope import atomic_output

    kms = LocalKms(tmp_path)

    def refuse(directory: str, name: str) -> None:
        raise AssertionError("the named-temporary fallback (or the copy where linkat fails) was taken")

    monkeypatch.setattr(atomic_output, "_open_named", refuse)
    key = kms.create_key("unnamed")
    assert LocalKms(tmp_path).describe_key(key)["KeyState"] == "Enabled"
    assert _temporaries(tmp_path) == []


def _temporaries(directory: Any) -> List[str]:
    return sorted(name for name in os.listdir(directory) if name.startswith(".localkms"))  # today's and legacy


@pytest.mark.skipif(not hasattr(os, "O_TMPFILE"), reason="Linux O_TMPFILE")
@pytest.mark.parametrize("mode", ["tmpfile", "named"])
def test_sigkill_during_localkms_changes_leaves_no_temporary_file(tmp_path: Any, mode: str) -> None:
    directory = tmp_path / "kms"
    LocalKms(directory)
    right_after_kill = 0
    for kill in range(12):
        child = subprocess.Popen([sys.executable, "-c", _CHANGER, str(directory), mode], stdout=subprocess.PIPE,
                                 text=True, env={**os.environ, "PYTHONPATH": ROOT})
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
        time.sleep(0.02 + 0.013 * kill)  # mid-loop, at a different point each time
        child.send_signal(signal.SIGKILL)
        child.wait(30)
        child.stdout.close()
        right_after_kill += len(_temporaries(directory))
        kms = LocalKms(directory)  # the next process: a valid state, and no temporary left
        assert _temporaries(directory) == [], (mode, kill)
        assert all(kms.describe_key(k["KeyId"])["KeyState"] in ("Enabled", "Disabled") for k in kms.list_keys())
    # With O_TMPFILE a temporary has a name only between linkat and rename (microseconds);
    # named temporaries are left often, and removed by the next process (asserted above).
    print(f"{mode}: {right_after_kill} temporaries right after 12 kills")


def test_records_made_before_the_naming_rules_are_listed_escaped(tmp_path: Any, capsys: Any) -> None:
    """A store written by an older release may hold a name with ESC or a newline: `logstore
    list` shows it escaped, never raw."""
    from sls_envelope.keystore import KeyRecord, SqliteKeyStore

    Home(str(tmp_path)).ensure()
    store = SqliteKeyStore(str(tmp_path / "keys.sqlite"))
    store.add(KeyRecord("proj", "evil\x1b[2J\nname", '{"enable": false}', created_at=time.time()))
    store.close()
    code, out, _ = _run(capsys, "--home", str(tmp_path), "logstore", "list")
    assert code == 0 and "\x1b" not in out and "evil\\x1b[2J\\nname" in out


def test_logstore_list_asks_the_kms_once_per_cmk(tmp_path: Any, capsys: Any, monkeypatch: Any) -> None:
    # Every service-key Logstore has the one service CMK: its state is asked for once.
    home = str(tmp_path / "h")
    for name in ("one", "two", "three"):
        assert _run(capsys, "--home", home, "logstore", "create", f"prj/{name}")[0] == 0
    asked: List[str] = []
    describe = LocalKms.describe_key

    def counting(self: LocalKms, key_id: str) -> Any:
        asked.append(key_id)
        return describe(self, key_id)

    monkeypatch.setattr(LocalKms, "describe_key", counting)
    code, out, _ = _run(capsys, "--home", home, "--json", "logstore", "list")
    assert code == 0 and len(json.loads(out)) == 3
    assert len(asked) == 1 and all(r["cmk_state"] == "Enabled" for r in json.loads(out))
