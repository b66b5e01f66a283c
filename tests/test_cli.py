"""The sls-envelope command, driven as a subprocess: every command, good and bad input."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import struct
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pytest

from sls_envelope.stream import read_header

ROOT = Path(__file__).resolve().parents[1]
CHUNK = 1024  # --chunk-size for tests: several frames from a few KiB


def _env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.pop("SLS_ENVELOPE_HOME", None)
    env.update(extra or {})
    return env


def run(home: Optional[Path], *args: str, stdin: bytes = b"", env: Optional[Dict[str, str]] = None,
        cwd: Optional[Path] = None) -> "subprocess.CompletedProcess[bytes]":
    command = [sys.executable, "-m", "sls_envelope"]
    if home is not None:
        command += ["--home", str(home)]
    return subprocess.run(command + list(args), input=stdin, capture_output=True, env=_env(env), cwd=cwd,
                          timeout=300)


def ok(result: "subprocess.CompletedProcess[bytes]") -> str:
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


def failed(result: "subprocess.CompletedProcess[bytes]", status: int = 1) -> str:
    """The one-line error of a failed run (no traceback)."""
    err = result.stderr.decode()
    assert result.returncode == status, (result.returncode, err, result.stdout[:200])
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("sls-envelope: error: ")
    return lines[0]


def js(result: "subprocess.CompletedProcess[bytes]") -> Any:
    return json.loads(ok(result))


def no_leftovers(directory: Path, expected: List[str]) -> None:
    assert sorted(p.name for p in directory.iterdir()) == sorted(expected)


@pytest.fixture(scope="module")
def world(tmp_path_factory: Any) -> Dict[str, Any]:
    """A home with a CMK, a role and three Logstores: AES service key, SM4 service key, SM4 BYOK."""
    home = tmp_path_factory.mktemp("cli") / "home"
    cmk = ok(run(home, "kms", "create-key", "--description", "customer key")).strip()
    arn = ok(run(home, "kms", "create-role", "sls-byok")).strip()
    ok(run(home, "logstore", "create", "proj/aes"))
    ok(run(home, "logstore", "create", "proj/sm4", "--encrypt-conf", '{"enable": true, "encrypt_type": "sm4"}'))
    conf = {"enable": True, "encrypt_type": "sm4",
            "user_cmk_info": {"cmk_key_id": cmk, "arn": arn, "region_id": "cn-hangzhou"}}
    conf_file = home.parent / "byok.json"
    conf_file.write_text(json.dumps(conf))
    ok(run(home, "logstore", "create", "proj/byok", "--encrypt-conf", f"@{conf_file}"))
    return {"home": home, "cmk": cmk, "arn": arn}


# ---- the command itself ------------------------------------------------------------------------


def test_help_and_version() -> None:
    assert "demo" in ok(run(None, "--help")) and "encrypt" in ok(run(None, "--help"))
    assert ok(run(None, "--version")).startswith("sls-envelope ")
    for command in (["kms"], ["logstore"], ["encrypt"], ["bench"]):
        assert ok(run(None, *command, "--help")).startswith("usage:")


def test_usage_errors_are_one_line_with_status_2(tmp_path: Path) -> None:
    failed(run(tmp_path, "no-such-command"), 2)
    failed(run(tmp_path), 2)
    failed(run(tmp_path, "kms"), 2)
    failed(run(tmp_path, "logstore", "show", "no-slash"), 2)
    failed(run(tmp_path, "logstore", "show", "/logstore"), 2)
    failed(run(tmp_path, "encrypt", "p/l", "in"), 2)
    failed(run(tmp_path, "bench", "--sizes", "0"), 2)
    failed(run(tmp_path, "bench", "--sizes", "huge"), 2)
    failed(run(tmp_path, "demo", "--records", "-5"), 2)


def test_console_script_is_declared() -> None:
    text = (ROOT / "pyproject.toml").read_text()
    assert 'sls-envelope = "sls_envelope.cli:main"' in text
    script = Path(sysconfig.get_path("scripts")) / "sls-envelope"
    if not script.exists():
        pytest.skip("the package is not installed in this interpreter (the CI venv installs it)")
    result = subprocess.run([str(script), "--version"], capture_output=True, env=_env())
    assert ok(result).startswith("sls-envelope ")


# ---- home -----------------------------------------------------------------------------------------


def test_home_is_created_owner_only(tmp_path: Path) -> None:
    home = tmp_path / "a" / "home"
    ok(run(home, "kms", "list-keys"))
    ok(run(home, "logstore", "list"))
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE((home / "kms").stat().st_mode) == 0o700
    assert stat.S_IMODE((home / "kms" / "localkms.json").stat().st_mode) == 0o600
    assert stat.S_IMODE((home / "keys.sqlite").stat().st_mode) == 0o600


def test_home_from_environment(tmp_path: Path) -> None:
    home = tmp_path / "env-home"
    key = ok(run(None, "kms", "create-key", env={"SLS_ENVELOPE_HOME": str(home)})).strip()
    assert (home / "kms" / "localkms.json").exists()
    assert key in ok(run(home, "kms", "list-keys"))


def test_default_home_is_per_user(tmp_path: Path) -> None:
    data = tmp_path / "xdg"
    ok(run(None, "kms", "create-key", env={"XDG_DATA_HOME": str(data), "HOME": str(tmp_path)}))
    assert (data / "sls-envelope" / "kms" / "localkms.json").exists()


# ---- kms --------------------------------------------------------------------------------------------


def test_kms_key_lifecycle(tmp_path: Path) -> None:
    home = tmp_path / "home"
    key = ok(run(home, "kms", "create-key", "--description", "my key")).strip()
    listing = ok(run(home, "kms", "list-keys"))
    assert "KEY ID" in listing and key in listing and "my key" in listing and "Enabled" in listing
    meta = js(run(home, "kms", "describe-key", key, "--json"))
    assert meta["KeyId"] == key and meta["KeyState"] == "Enabled" and "_material" not in meta
    assert "KeyState" in ok(run(home, "kms", "describe-key", key))
    assert ok(run(home, "kms", "disable-key", key)).strip() == f"{key}: Disabled"
    assert js(run(home, "--json", "kms", "describe-key", key))["KeyState"] == "Disabled"
    assert ok(run(home, "kms", "enable-key", key)).strip() == f"{key}: Enabled"
    out = ok(run(home, "kms", "schedule-key-deletion", key, "--pending-window-days", "10"))
    assert "PendingDeletion" in out and "deleted for good after" in out
    assert js(run(home, "kms", "cancel-key-deletion", key, "--json"))["KeyState"] == "Enabled"
    keys = js(run(home, "kms", "list-keys", "--json"))
    assert [k["KeyId"] for k in keys] == [key]
    assert "material" not in json.dumps(keys)


def test_kms_bad_input(tmp_path: Path) -> None:
    home = tmp_path / "home"
    key = ok(run(home, "kms", "create-key")).strip()
    assert "not found" in failed(run(home, "kms", "describe-key", "no-such-key"))
    assert "Forbidden.KeyNotFound" in failed(run(home, "kms", "disable-key", "no-such-key"))
    assert "pending_window_days" in failed(run(home, "kms", "schedule-key-deletion", key,
                                                "--pending-window-days", "3"))
    assert "not pending deletion" in failed(run(home, "kms", "cancel-key-deletion", key))
    failed(run(home, "kms", "describe-key"), 2)


def test_kms_roles(tmp_path: Path) -> None:
    home = tmp_path / "home"
    arn = ok(run(home, "kms", "create-role", "log-role")).strip()
    assert arn == "acs:ram::1000000000000000:role/log-role"
    role = js(run(home, "kms", "create-role", "custom", "--policy", "AliyunKMSFullAccess", "--json",
                  "--trust-policy", '{"Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", '
                                    '"Principal": {"Service": ["ecs.aliyuncs.com"]}}], "Version": "1"}'))
    assert role["Policies"] == ["AliyunKMSFullAccess"]
    assert role["TrustPolicy"]["Statement"][0]["Principal"]["Service"] == ["ecs.aliyuncs.com"]
    assert "already exists" in failed(run(home, "kms", "create-role", "log-role"))
    assert "not valid JSON" in failed(run(home, "kms", "create-role", "r2", "--trust-policy", "{oops"), 2)
    assert "Statement" in failed(run(home, "kms", "create-role", "r3", "--trust-policy", "[]"))
    assert "role name" in failed(run(home, "kms", "create-role", "bad name!"))


# ---- logstore ------------------------------------------------------------------------------------------


def test_logstore_show_and_list(world: Dict[str, Any]) -> None:
    home = world["home"]
    shown = ok(run(home, "logstore", "show", "proj/byok"))
    assert "sm4-gcm" in shown and "byok" in shown and world["cmk"] in shown and world["arn"] in shown
    record = js(run(home, "logstore", "show", "proj/aes", "--json"))
    assert record["suite"] == "aes-256-gcm" and record["key_type"] == "service" and record["encrypted"]
    assert record["encrypt_conf"] == {"enable": True, "encrypt_type": "default"}
    assert len(record["key_ref"]) == 32
    listing = ok(run(home, "logstore", "list"))
    assert [line.split()[0] for line in listing.splitlines()[2:]] == ["proj/aes", "proj/byok", "proj/sm4"]
    assert [r["logstore"] for r in js(run(home, "logstore", "list", "proj", "--json"))] == ["aes", "byok", "sm4"]
    assert "no Logstores in project other" in ok(run(home, "logstore", "list", "other"))


def test_logstore_create_variants(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert "not encrypted" in ok(run(home, "logstore", "create", "prj/plain", "--encrypt-conf", '{"enable": false}'))
    created = js(run(home, "logstore", "create", "prj/legacy", "--json",
                     "--encrypt-conf", '{"enable": true, "encrypt_type": "m4"}'))
    assert created["suite"] == "sm4-gcm" and created["encrypt_conf"]["encrypt_type"] == "m4"  # echoed as sent
    (tmp_path / "in.bin").write_bytes(b"data")
    assert "not encrypted" in failed(run(home, "encrypt", "prj/plain", str(tmp_path / "in.bin"),
                                         str(tmp_path / "out.bin")))
    no_leftovers(tmp_path, ["home", "in.bin"])


def test_logstore_bad_input(world: Dict[str, Any], tmp_path: Path) -> None:
    home = world["home"]
    assert "already exists" in failed(run(home, "logstore", "create", "proj/aes"))
    assert "does not exist" in failed(run(home, "logstore", "show", "proj/nope"))
    assert "not valid JSON" in failed(run(home, "logstore", "create", "proj/xyz", "--encrypt-conf", '{"enable": tru'), 2)
    bad = tmp_path / "bad.json"
    bad.write_text("{,}")
    assert "bad.json" in failed(run(home, "logstore", "create", "proj/xyz", "--encrypt-conf", f"@{bad}"), 2)
    assert "cannot read" in failed(run(home, "logstore", "create", "proj/xyz", "--encrypt-conf",
                                       f"@{tmp_path / 'missing.json'}"), 2)
    assert "unknown field" in failed(run(home, "logstore", "create", "proj/xyz", "--encrypt-conf",
                                         '{"enable": true, "encrypt_type": "default", "colour": 1}'))
    assert "unauthenticated" in failed(run(home, "logstore", "create", "proj/xyz", "--encrypt-conf",
                                           '{"enable": true, "encrypt_type": "aes_ecb"}'))
    byok_missing_role = json.dumps({"enable": True, "encrypt_type": "default", "user_cmk_info": {
        "cmk_key_id": world["cmk"], "arn": "acs:ram::1000000000000000:role/nobody", "region_id": "cn-hangzhou"}})
    assert "EntityNotExist.Role" in failed(run(home, "logstore", "create", "proj/xyz", "--encrypt-conf",
                                               byok_missing_role))
    assert "proj/xyz" not in ok(run(home, "logstore", "list"))


# ---- encrypt and decrypt --------------------------------------------------------------------------------


def cli_seal(home: Path, logstore: str, data: bytes, work: Path, name: str = "sealed") -> Path:
    src, dst = work / f"{name}.in", work / f"{name}.slss"
    src.write_bytes(data)
    ok(run(home, "encrypt", logstore, str(src), str(dst), "--chunk-size", str(CHUNK)))
    return dst


@pytest.mark.parametrize("logstore", ["proj/aes", "proj/sm4", "proj/byok"])
@pytest.mark.parametrize("size", [0, 5 * CHUNK + 7])
def test_file_round_trip(world: Dict[str, Any], tmp_path: Path, logstore: str, size: int) -> None:
    data = os.urandom(size)
    sealed = cli_seal(world["home"], logstore, data, tmp_path)
    assert read_header(open(sealed, "rb")).logstore == logstore.split("/")[1]
    ok(run(world["home"], "decrypt", logstore, str(sealed), str(tmp_path / "out")))
    assert (tmp_path / "out").read_bytes() == data
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o600


def test_stdin_and_stdout(world: Dict[str, Any]) -> None:
    data = os.urandom(3 * CHUNK + 1)
    sealed = run(world["home"], "encrypt", "proj/aes", "-", "-", "--chunk-size", str(CHUNK), stdin=data)
    assert sealed.returncode == 0 and sealed.stdout[:4] == b"SLSS" and sealed.stderr == b""
    opened = run(world["home"], "decrypt", "proj/aes", "-", "-", stdin=sealed.stdout)
    assert opened.returncode == 0 and opened.stdout == data and opened.stderr == b""


def test_no_progress_bar_when_piped(world: Dict[str, Any], tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.write_bytes(os.urandom(4 * CHUNK))
    result = run(world["home"], "encrypt", "proj/aes", str(src), str(tmp_path / "out"), "--chunk-size", str(CHUNK))
    assert result.returncode == 0 and result.stderr == b"" and result.stdout == b""
    stats = js(run(world["home"], "decrypt", "proj/aes", str(tmp_path / "out"), str(tmp_path / "back"), "--json"))
    assert stats == {"frames": 4, "plaintext_bytes": 4 * CHUNK, "stream_bytes": (tmp_path / "out").stat().st_size}


def test_unknown_logstore(world: Dict[str, Any], tmp_path: Path) -> None:
    (tmp_path / "in").write_bytes(b"x")
    for command in ("encrypt", "decrypt"):
        assert "does not exist" in failed(run(world["home"], command, "proj/nope", str(tmp_path / "in"),
                                              str(tmp_path / "out")))
    no_leftovers(tmp_path, ["in"])


def test_unreadable_input_and_unwritable_output(world: Dict[str, Any], tmp_path: Path) -> None:
    home = world["home"]
    assert "No such file" in failed(run(home, "encrypt", "proj/aes", str(tmp_path / "missing"), str(tmp_path / "o")))
    assert "is a directory" in failed(run(home, "encrypt", "proj/aes", str(tmp_path), str(tmp_path / "o")))
    (tmp_path / "in").write_bytes(b"x")
    assert "does not exist" in failed(run(home, "encrypt", "proj/aes", str(tmp_path / "in"),
                                          str(tmp_path / "no-dir" / "o")))
    assert "is a directory" in failed(run(home, "encrypt", "proj/aes", str(tmp_path / "in"), str(tmp_path)))
    if os.geteuid() != 0:  # root reads everything
        locked = tmp_path / "locked"
        locked.write_bytes(b"x")
        locked.chmod(0)
        assert "Permission denied" in failed(run(home, "encrypt", "proj/aes", str(locked), str(tmp_path / "o")))
        locked.unlink()
    no_leftovers(tmp_path, ["in"])


def test_not_a_stream(world: Dict[str, Any], tmp_path: Path) -> None:
    (tmp_path / "plain").write_bytes(b"just some text\n")
    assert "not a sls-envelope stream" in failed(run(world["home"], "decrypt", "proj/aes", str(tmp_path / "plain"),
                                                     str(tmp_path / "out")))
    (tmp_path / "empty").write_bytes(b"")
    failed(run(world["home"], "decrypt", "proj/aes", str(tmp_path / "empty"), str(tmp_path / "out")))
    no_leftovers(tmp_path, ["plain", "empty"])


def test_wrong_logstore(world: Dict[str, Any], tmp_path: Path) -> None:
    sealed = cli_seal(world["home"], "proj/aes", b"data", tmp_path)
    assert "sealed for Logstore proj/aes, not proj/sm4" in failed(
        run(world["home"], "decrypt", "proj/sm4", str(sealed), str(tmp_path / "out")))
    no_leftovers(tmp_path, ["sealed.in", "sealed.slss"])


def frames_of(path: Path) -> Tuple[bytes, List[bytes]]:
    stream = path.read_bytes()
    with open(path, "rb") as handle:
        header = read_header(handle).raw
    pos, frames = len(header), []
    while pos < len(stream):
        (length,) = struct.unpack_from(">I", stream, pos)
        frames.append(stream[pos : pos + 4 + length])
        pos += 4 + length
    return header, frames


def damaged_variants(path: Path) -> Dict[str, bytes]:
    raw = path.read_bytes()
    header, frames = frames_of(path)
    assert len(frames) == 4
    flipped = bytearray(raw)
    flipped[len(raw) // 2] ^= 0x01
    return {
        "flipped byte": bytes(flipped),
        "truncated mid-frame": raw[:-10],
        "truncated at a frame boundary": header + b"".join(frames[:3]),
        "reordered frames": header + b"".join([frames[0], frames[2], frames[1], frames[3]]),
        "dropped frame": header + b"".join(frames[:1] + frames[2:]),
        "duplicated frame": header + b"".join(frames[:2] + frames[1:]),
        "trailing data": raw + b"more",
    }


EXPECTED = {
    "flipped byte": "failed authentication",
    "truncated mid-frame": "cut short",
    "truncated at a frame boundary": "without its final frame",
    "reordered frames": "out of place",
    "dropped frame": "out of place",
    "duplicated frame": "out of place",
    "trailing data": "follows the final frame",
}


def test_damaged_streams_are_refused_leaving_nothing(world: Dict[str, Any], tmp_path: Path) -> None:
    sealed = cli_seal(world["home"], "proj/aes", os.urandom(4 * CHUNK - 100), tmp_path)
    (tmp_path / "existing").write_bytes(b"keep me")
    for name, data in damaged_variants(sealed).items():
        bad = tmp_path / "bad.slss"
        bad.write_bytes(data)
        for out in ("fresh", "existing"):
            line = failed(run(world["home"], "decrypt", "proj/aes", str(bad), str(tmp_path / out)))
            assert EXPECTED[name] in line, (name, line)
        assert (tmp_path / "existing").read_bytes() == b"keep me"
        no_leftovers(tmp_path, ["sealed.in", "sealed.slss", "bad.slss", "existing"])


def test_damaged_stream_on_stdout_fails(world: Dict[str, Any], tmp_path: Path) -> None:
    """stdout cannot be taken back: earlier frames are out, but the exit status says no."""
    data = os.urandom(4 * CHUNK - 100)
    sealed = cli_seal(world["home"], "proj/aes", data, tmp_path)
    header, frames = frames_of(sealed)
    result = run(world["home"], "decrypt", "proj/aes", "-", "-", stdin=header + b"".join(frames[:3]))
    assert result.returncode == 1 and b"without its final frame" in result.stderr
    assert result.stdout == data[: 3 * CHUNK]  # only authenticated frames were released


def test_verbose_shows_the_traceback(world: Dict[str, Any], tmp_path: Path) -> None:
    sealed = cli_seal(world["home"], "proj/aes", os.urandom(2 * CHUNK), tmp_path)
    raw = bytearray(sealed.read_bytes())
    raw[-1] ^= 1
    sealed.write_bytes(bytes(raw))
    result = run(world["home"], "--verbose", "decrypt", "proj/aes", str(sealed), str(tmp_path / "out"))
    assert result.returncode == 1 and b"Traceback" in result.stderr
    assert result.stderr.decode().splitlines()[-1].startswith("sls-envelope: error: ")
    assert not (tmp_path / "out").exists()


def test_disabled_cmk_refuses_byok_only(tmp_path: Path) -> None:
    home = tmp_path / "home"
    cmk = ok(run(home, "kms", "create-key")).strip()
    arn = ok(run(home, "kms", "create-role", "role")).strip()
    ok(run(home, "logstore", "create", "prj/byok", "--encrypt-conf", json.dumps({
        "enable": True, "encrypt_type": "default",
        "user_cmk_info": {"cmk_key_id": cmk, "arn": arn, "region_id": "cn-hangzhou"}})))
    ok(run(home, "logstore", "create", "prj/service"))
    work = tmp_path / "work"
    work.mkdir()
    data = os.urandom(3 * CHUNK)
    byok_sealed = cli_seal(home, "prj/byok", data, work, "byok")
    ok(run(home, "kms", "disable-key", cmk))
    assert "Rejected.Disabled" in failed(run(home, "decrypt", "prj/byok", str(byok_sealed), str(work / "out")))
    assert "Rejected.Disabled" in failed(run(home, "encrypt", "prj/byok", str(work / "byok.in"), str(work / "out")))
    no_leftovers(work, ["byok.in", "byok.slss"])
    service_sealed = cli_seal(home, "prj/service", data, work, "service")  # goes on
    ok(run(home, "decrypt", "prj/service", str(service_sealed), str(work / "service.out")))
    ok(run(home, "kms", "schedule-key-deletion", cmk))
    assert "Rejected.PendingDeletion" in failed(run(home, "decrypt", "prj/byok", str(byok_sealed), str(work / "out")))
    ok(run(home, "kms", "cancel-key-deletion", cmk))
    ok(run(home, "decrypt", "prj/byok", str(byok_sealed), str(work / "out")))
    assert (work / "out").read_bytes() == data


def test_refuses_ciphertext_to_a_terminal(world: Dict[str, Any], tmp_path: Path) -> None:
    pty = pytest.importorskip("pty")
    (tmp_path / "in").write_bytes(b"x")
    primary, secondary = pty.openpty()
    try:
        command = [sys.executable, "-m", "sls_envelope", "--home", str(world["home"]), "encrypt", "proj/aes",
                   str(tmp_path / "in"), "-"]
        result = subprocess.run(command, stdout=secondary, stderr=subprocess.PIPE, env=_env(), timeout=60)
    finally:
        os.close(secondary)
        os.close(primary)
    assert result.returncode == 2 and b"terminal" in result.stderr


@pytest.mark.parametrize("with_tqdm", [True, False])
def test_progress_bar_on_a_terminal(world: Dict[str, Any], tmp_path: Path, with_tqdm: bool) -> None:
    """A bar on a terminal with tqdm; without tqdm (the optional `cli` extra), no bar and no error."""
    pty = pytest.importorskip("pty")
    if with_tqdm:
        pytest.importorskip("tqdm")
    (tmp_path / "in").write_bytes(os.urandom(64 * CHUNK))
    primary, secondary = pty.openpty()
    import fcntl
    import termios

    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a new pty is 0 wide
    try:
        hide = "" if with_tqdm else "sys.modules['tqdm'] = None; "  # import tqdm -> ImportError
        command = [sys.executable, "-c", f"import sys; {hide}from sls_envelope.cli import main; sys.exit(main())",
                   "--home", str(world["home"]), "encrypt", "proj/aes",
                   str(tmp_path / "in"), str(tmp_path / "out"), "--chunk-size", str(CHUNK)]
        result = subprocess.run(command, stdout=subprocess.PIPE, stderr=secondary, env=_env(), timeout=60)
        os.set_blocking(primary, False)
        try:
            shown = os.read(primary, 65536)
        except BlockingIOError:
            shown = b""
    finally:
        os.close(secondary)
        os.close(primary)
    assert result.returncode == 0
    assert (tmp_path / "out").stat().st_size > 64 * CHUNK
    if with_tqdm:
        assert b"encrypt" in shown and b"B/s" in shown
    else:
        assert shown == b""


# ---- demo and bench ------------------------------------------------------------------------------------


def test_demo_small(tmp_path: Path) -> None:
    out = ok(run(tmp_path / "unused-home", "demo", "--records", "5000", "--batch-size", "64K"))
    assert "refused (Rejected.Disabled)" in out and "goes on" in out and "reads and writes again" in out
    assert "access-log-aes" in out and "access-log-sm4-byok" in out
    assert out.count("B/s") == 4  # encrypt and decrypt of both Logstores
    assert not (tmp_path / "unused-home").exists()  # the demo works in a directory of its own
    result = js(run(None, "demo", "--records", "2000", "--json"))
    assert result["records"] == 2000 and len(result["logstores"]) == 2
    assert all(f["encrypt_bytes_per_second"] > 0 for f in result["logstores"])


@pytest.mark.slow
def test_demo_default() -> None:
    started = time.monotonic()
    out = ok(run(None, "demo"))
    assert "200,000 records" in out and out.count("B/s") == 4
    print(out, f"({time.monotonic() - started:.1f} s)")


def test_bench_json_and_table(tmp_path: Path) -> None:
    result = js(run(None, "bench", "--sizes", "64", "1K", "--min-time", "0.001", "--repeat", "1", "--json"))
    import sls_envelope
    from sls_envelope.bench import cpu_model

    env = result["environment"]
    assert env["cpu"] == cpu_model() and env["cpu"] and env["sls_envelope_version"] == sls_envelope.__version__
    assert env["default_implementation"] == {
        "aes-256-gcm": sls_envelope.AESGCM(bytes(32)).implementation,
        "sm4-gcm": sls_envelope.SM4GCM(bytes(16)).implementation,
    }
    rows = result["rows"]
    libraries = {(r["algorithm"], r["library"]) for r in rows}
    assert ("aes-256-gcm", "cryptography") in libraries and ("aes-256-gcm", "sls-envelope") in libraries
    assert ("sm4-gcm", "sls-envelope") in libraries

    for alg, label in (("aes-256-gcm", "aes-gcm"), ("sm4-gcm", "sm4-gcm")):
        impls = {r["implementation"] for r in rows if r["algorithm"] == alg and r["library"] == "sls-envelope"}
        assert impls == set(sls_envelope.available_implementations()[label])
    assert {r["mode"] for r in rows} == {"single", "batch"}
    for row in rows:
        assert row["gbps"] > 0 and row["ns_per_message"] > 0
        assert row["gbps"] == pytest.approx(row["size"] / row["ns_per_message"])
        if row["library"] == "cryptography":
            assert row["ratio"] == 1.0
    table = ok(run(None, "bench", "--sizes", "256", "--algorithm", "sm4", "--min-time", "0.001", "--repeat", "1"))
    assert "GB/S" in table and "NS/MSG" in table and "sm4-gcm" in table
    assert f"CPU: {cpu_model()}" in table and "default implementations: aes-256-gcm " in table


def test_bench_plot(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    png = tmp_path / "bench.png"
    out = ok(run(None, "bench", "--sizes", "64", "4K", "--algorithm", "aes", "--min-time", "0.001",
                 "--repeat", "1", "--plot", str(png)))
    assert f"plot written to {png}" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_plot_labels(tmp_path: Path) -> None:
    """The chart names the CPU, version and defaults, gives the batch size in the legend, and
    keeps the legend outside the panels (below every axis, so it covers no curve)."""
    pytest.importorskip("matplotlib")
    import matplotlib.figure

    from sls_envelope import bench

    rows = bench.run_bench([64, 4096], algorithms=["aes-256-gcm"], min_time=0.001, repeat=1)
    env = bench.bench_environment()
    figures = []
    original = matplotlib.figure.Figure.savefig

    def keep(self: matplotlib.figure.Figure, *args: object, **kwargs: object) -> None:
        figures.append(self)
        original(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(matplotlib.figure.Figure, "savefig", keep)
        bench.plot(rows, str(tmp_path / "b.png"), env)
    (fig,) = figures
    assert env["cpu"] in fig._suptitle.get_text() and env["sls_envelope_version"] in fig._suptitle.get_text()
    (legend,) = fig.legends
    texts = [t.get_text() for t in legend.get_texts()]
    counts = sorted({r.messages_per_call for r in rows if r.mode == "batch"})
    assert any(f"batch of {counts[0]}-{counts[-1]} msgs" in t for t in texts), texts
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(fig).get_renderer()
    box = legend.get_window_extent(renderer)
    assert all(box.y1 <= ax.get_window_extent(renderer).y0 for ax in fig.axes)
    assert all(ax.get_legend() is None for ax in fig.axes)


# ---- large files in constant memory ----------------------------------------------------------------------


# VmHWM, not getrusage: Linux carries ru_maxrss across exec, so a child forked from a big
# pytest process would report the parent's peak.
_RSS_WRAPPER = (
    "import sys; from sls_envelope.cli import main; rc = main(sys.argv[1:]); "
    "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0]; "
    "sys.stderr.write('MAXRSS %d\\n' % int(hwm.split()[1])); sys.exit(rc)"
)


def _run_measured(home: Path, *args: str) -> Tuple[float, int]:
    """Seconds and peak RSS (bytes) of one CLI run."""
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", _RSS_WRAPPER, "--home", str(home), *args],
                            capture_output=True, env=_env(), timeout=600)
    seconds = time.monotonic() - started
    assert result.returncode == 0, result.stderr.decode()
    line = result.stderr.decode().strip().splitlines()[-1]
    assert line.startswith("MAXRSS ")
    return seconds, int(line.split()[1]) * 1024  # Linux reports KiB


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="peak RSS is read from Linux's /proc")
def test_256_mib_file_in_constant_memory(tmp_path: Path) -> None:
    home = tmp_path / "home"
    ok(run(home, "logstore", "create", "prj/big"))
    src = tmp_path / "big.bin"
    block = os.urandom(1 << 20)
    with open(src, "wb") as handle:
        for i in range(256):
            handle.write(block[i:] + block[:i])  # 256 distinct MiB
    enc_s, enc_rss = _run_measured(home, "encrypt", "prj/big", str(src), str(tmp_path / "big.slss"))
    dec_s, dec_rss = _run_measured(home, "decrypt", "prj/big", str(tmp_path / "big.slss"), str(tmp_path / "big.out"))
    assert _sha256(tmp_path / "big.out") == _sha256(src)
    print(f"256 MiB: encrypt {enc_s:.2f} s, peak RSS {enc_rss / 2**20:.1f} MiB; "
          f"decrypt {dec_s:.2f} s, peak RSS {dec_rss / 2**20:.1f} MiB")
    assert enc_rss < 128 << 20 and dec_rss < 128 << 20
    shutil.rmtree(tmp_path)
