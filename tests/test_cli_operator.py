"""What a new operator tripped on (issue 13 items 4-7, 10): the CLI driven as a subprocess, real signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest

from tests.test_cli import CHUNK, _env, failed, ok, run

BIG = 64 << 20  # large enough that a run is still writing when the signal arrives


@pytest.fixture(scope="module")
def home(tmp_path_factory: Any) -> Path:
    path = tmp_path_factory.mktemp("operator") / "home"
    ok(run(path, "logstore", "create", "proj/aes"))
    return path


@pytest.fixture(scope="module")
def big_input(tmp_path_factory: Any) -> Path:
    path = tmp_path_factory.mktemp("big") / "big.log"
    with open(path, "wb") as handle:
        block = os.urandom(1 << 20)
        for _ in range(BIG >> 20):
            handle.write(block)
    return path


def _names(directory: Path) -> List[str]:
    return sorted(p.name for p in directory.iterdir())


# ---- item 4: the summary never follows the stream on stdout ------------------------------------------


def test_json_summary_goes_to_stderr_when_stream_is_on_stdout(home: Path, tmp_path: Path) -> None:
    plain = tmp_path / "in.log"
    plain.write_bytes(os.urandom(5000))
    result = run(home, "encrypt", "--json", "--chunk-size", str(CHUNK), "proj/aes", str(plain), "-")
    assert result.returncode == 0, result.stderr.decode()
    summary = json.loads(result.stderr)
    assert summary["plaintext_bytes"] == 5000 and summary["stream_bytes"] == len(result.stdout)
    back = run(home, "decrypt", "--json", "proj/aes", "-", "-", stdin=result.stdout)
    assert back.returncode == 0, back.stderr.decode()
    assert back.stdout == plain.read_bytes()
    assert json.loads(back.stderr)["plaintext_bytes"] == 5000
    # to a file, the summary stays on stdout
    out = tmp_path / "out.sls"
    assert json.loads(ok(run(home, "encrypt", "--json", "proj/aes", str(plain), str(out))))["frames"] >= 1


# ---- item 5: SIGTERM and SIGHUP clean up as Ctrl-C does ------------------------------------------------


def _start(home: Path, *args: str) -> "subprocess.Popen[bytes]":
    return subprocess.Popen([sys.executable, "-m", "sls_envelope", "--home", str(home), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env())


def _wait_for_partial(directory: Path, before: List[str], proc: "subprocess.Popen[bytes]") -> None:
    """Until the run has begun writing (something new in the directory, or bytes written)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        io = Path(f"/proc/{proc.pid}/io")
        if _names(directory) != before:
            return
        if io.exists():
            written = [int(line.split()[1]) for line in io.read_text().splitlines() if line.startswith("wchar")]
            if written and written[0] > 1 << 20:
                return
        time.sleep(0.01)
    raise AssertionError("the run finished or never started writing")


@pytest.mark.parametrize("sig, status", [(signal.SIGTERM, 143), (signal.SIGHUP, 129), (signal.SIGINT, 130)])
def test_signals_remove_partial_output(home: Path, big_input: Path, tmp_path: Path, sig: int, status: int) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    proc = _start(home, "encrypt", "proj/aes", str(big_input), str(out_dir / "big.sls"))
    _wait_for_partial(out_dir, [], proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == status, err
    assert err.decode().strip() == "sls-envelope: interrupted"
    assert _names(out_dir) == []


# ---- item 6: input and output the same file -----------------------------------------------------------


def test_same_input_and_output_refused(home: Path, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(b"secret line\n" * 100)
    original = log.read_bytes()
    for command in ("encrypt", "decrypt"):
        assert "same file" in failed(run(home, command, "proj/aes", str(log), str(log)), 2)
        # same file through another path (a hard link, a relative path)
        link = tmp_path / f"{command}.link"
        os.link(log, link)
        assert "same file" in failed(run(home, command, "proj/aes", str(log), str(link)), 2)
        assert "same file" in failed(run(home, command, "proj/aes", "access.log", str(log), cwd=tmp_path), 2)
        link.unlink()
    assert log.read_bytes() == original
    # stdout redirected into the input file
    with open(log, "ab") as sink:
        result = subprocess.run([sys.executable, "-m", "sls_envelope", "--home", str(home), "encrypt", "proj/aes",
                                 str(log), "-"], stdout=sink, stderr=subprocess.PIPE, env=_env(), timeout=120)
    assert result.returncode == 2 and b"same file" in result.stderr
    assert log.read_bytes() == original


# ---- item 7: error messages ---------------------------------------------------------------------------------


def test_trailing_data_message_says_what_the_number_is(home: Path, tmp_path: Path) -> None:
    plain = tmp_path / "in.log"
    plain.write_bytes(b"x" * 3000)
    stream = tmp_path / "in.sls"
    ok(run(home, "encrypt", "--chunk-size", str(CHUNK), "proj/aes", str(plain), str(stream)))
    joined = tmp_path / "joined.sls"
    joined.write_bytes(stream.read_bytes() + b"more")
    line = failed(run(home, "decrypt", "proj/aes", str(joined), str(tmp_path / "out.log")))
    assert "data follows the final frame (frame 2, counting from 0)" in line
    assert not (tmp_path / "out.log").exists()


def test_json_errors_are_json_on_stderr(home: Path, tmp_path: Path) -> None:
    result = run(home, "--json", "decrypt", "proj/aes", str(tmp_path / "missing"), str(tmp_path / "o"))
    assert result.returncode == 1 and result.stdout == b""
    error: Dict[str, Any] = json.loads(result.stderr)
    assert set(error) == {"error", "code"} and "cannot read" in error["error"] and error["code"]
    result = run(home, "encrypt", "--json", "nope/nope", "-", "-")
    assert result.returncode != 0 and json.loads(result.stderr)["error"]
    same = tmp_path / "same"
    same.write_bytes(b"x")
    result = run(home, "--json", "encrypt", "proj/aes", str(same), str(same))
    assert result.returncode == 2
    assert json.loads(result.stderr) == {"error": json.loads(result.stderr)["error"], "code": "UsageError"}


def test_plot_hint_names_the_extra_both_ways(home: Path, tmp_path: Path) -> None:
    # A directory that shadows matplotlib with a module that fails to import, as when it is absent.
    shadow = tmp_path / "shadow"
    (shadow / "matplotlib").mkdir(parents=True)
    (shadow / "matplotlib" / "__init__.py").write_text("raise ImportError('no matplotlib here')\n")
    env = {"PYTHONPATH": os.pathsep.join([str(shadow), _env()["PYTHONPATH"]])}
    line = failed(run(home, "bench", "--plot", str(tmp_path / "x.png"), env=env), 2)
    assert "pip install 'sls-envelope[plot]'" in line and "pip install -e '.[plot]'" in line


# ---- item 10: SIGKILL mid-write leaves nothing (unnamed temporary), or nothing after the next run ----------


@pytest.mark.parametrize("command", ["encrypt", "decrypt"])
def test_sigkill_leaves_no_file(home: Path, big_input: Path, tmp_path: Path, command: str) -> None:
    from sls_envelope.atomic_output import _open_unnamed

    out_dir = tmp_path / "out"
    out_dir.mkdir()
    fd = _open_unnamed(str(out_dir))
    if fd is None:
        pytest.skip("O_TMPFILE is not available here; the named fallback is tested below")
    os.close(fd)
    source = big_input
    if command == "decrypt":
        source = tmp_path / "big.sls"
        ok(run(home, "encrypt", "proj/aes", str(big_input), str(source)))
    proc = _start(home, command, "proj/aes", str(source), str(out_dir / "out"))
    _wait_for_partial(out_dir, [], proc)
    assert _names(out_dir) == []  # nothing named while it writes
    proc.kill()
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert _names(out_dir) == []


def test_sigkill_with_named_fallback_is_swept_by_next_run(home: Path, big_input: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "sls_envelope", "--home", str(home), "encrypt", "proj/aes",
                             str(big_input), str(out_dir / "big.sls")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=_env({"SLS_ENVELOPE_NAMED_TEMP": "1"}))
    _wait_for_partial(out_dir, [], proc)
    proc.kill()
    proc.wait(timeout=60)
    left = _names(out_dir)
    assert len(left) == 1 and left[0].startswith(f".big.sls.sls-envelope-{proc.pid}-")
    small = tmp_path / "small.log"
    small.write_bytes(b"x" * 100)
    ok(run(home, "encrypt", "proj/aes", str(small), str(out_dir / "small.sls"), env={"SLS_ENVELOPE_NAMED_TEMP": "1"}))
    assert _names(out_dir) == ["small.sls"]


# ---- item 9: the README's command section shows byok.json and kms serve ----------------------------------------


def test_readme_byok_json_creates_a_byok_logstore(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## The command", 1)[1].split("\n## ", 1)[0]
    body = section.split("cat > byok.json <<'JSON'", 1)[1].split("\n", 1)[1].split("\nJSON\n", 1)[0]
    home = tmp_path / "home"
    key_id = ok(run(home, "kms", "create-key")).strip()
    arn = ok(run(home, "kms", "create-role", "sls-byok")).strip()
    account = arn.split(":")[3]
    conf = tmp_path / "byok.json"
    conf.write_text(body.replace("<KeyId>", key_id).replace("<account>", account))
    ok(run(home, "logstore", "create", "shop/audit", "--encrypt-conf", f"@{conf}"))
    shown = json.loads(ok(run(home, "--json", "logstore", "show", "shop/audit")))
    assert key_id in json.dumps(shown)
    assert "sls-envelope kms serve" in section and "docs/KMS.md" in section


def test_json_usage_errors_are_json(home: Path) -> None:
    result = run(home, "--json", "encrypt", "proj/aes")  # missing arguments: an argparse error
    assert result.returncode == 2
    error = json.loads(result.stderr)
    assert error["code"] == "UsageError" and "required" in error["error"]
    assert "sls-envelope: error:" in failed(run(home, "encrypt", "proj/aes"), 2)
