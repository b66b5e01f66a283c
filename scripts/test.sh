#!/usr/bin/env bash
# The whole test suite on a fresh machine: system packages, a venv with every extra at
# the versions pinned in constraints.txt, the extension built from source, then every
# stage below.  `.ci/run` runs exactly this.
#
#   bash scripts/test.sh            # everything
#   SLS_ENVELOPE_NEWEST=1 ...       # the newest releases instead of the pins (constraints.txt)
#   SLS_ENVELOPE_VENV=/path ...     # use (or create) another venv
#   SLS_ENVELOPE_REQUIRE_BACKENDS=1 # a KMS backend that cannot run fails instead of skipping (CI)
#
# Stages, in order (each one's output is also kept in build/logs/<stage>.log; a failing
# stage prints one line naming itself, its first error and that log):
#   deps            Debian packages (as root), the venv, pip install -e ".[test,all]"
#   mypy            mypy --strict over the package
#   pytest          the whole suite over every implementation this CPU has, every backend
#   layers-*        the Logstore layers over each non-default implementation
#   portable        the AEAD and Logstore tests on the portable path alone
#   asan ct memcheck fuzz atheris arm64   the hardening stages (scripts/c-checks.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
venv=${SLS_ENVELOPE_VENV:-$root/.venv}
export SLS_ENVELOPE_LOGS=${SLS_ENVELOPE_LOGS:-$root/build/logs}
mkdir -p "$SLS_ENVELOPE_LOGS" && : >"$SLS_ENVELOPE_LOGS/timings.txt"
# shellcheck source=scripts/stage.sh
. scripts/stage.sh
suite_start=$SECONDS

# The pins: exact versions of every test and CI dependency (scripts/update-pins.sh
# moves them).  The library's own requirements in pyproject.toml stay ranges.
# PIP_CONSTRAINT rather than -c: pip passes it on to the isolated environment that builds
# the extension, so setuptools and cffi are pinned there too.
if [ "${SLS_ENVELOPE_NEWEST:-0}" = 1 ]; then
    unset PIP_CONSTRAINT
    export SLS_ENVELOPE_PIP_ARGS="--upgrade --upgrade-strategy eager"
else
    export PIP_CONSTRAINT=$root/constraints.txt SLS_ENVELOPE_PIP_ARGS=""
fi

# System packages the backend tests and the C checks need (Debian names).
apt_packages=(softhsm2 valgrind clang postgresql gcc-aarch64-linux-gnu libc6-dev-arm64-cross libasan8-arm64-cross qemu-user)

stage_deps() {
    local missing=() pkg
    for pkg in "${apt_packages[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if ((${#missing[@]})); then
        if [ "$(id -u)" = 0 ]; then
            echo "apt-get install ${missing[*]}"
            apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
        else
            echo "not root: cannot install ${missing[*]}; tests that need them will skip (or fail under CI)"
        fi
    fi
    echo "venv $venv (${PIP_CONSTRAINT:+pins: $PIP_CONSTRAINT}${SLS_ENVELOPE_PIP_ARGS:+newest releases})"
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    # shellcheck disable=SC2086 # the arguments are words on purpose
    "$venv/bin/python" -m pip install -q $SLS_ENVELOPE_PIP_ARGS --upgrade pip setuptools wheel
    # Editable: the extension is built in place, so the tests import exactly this tree.
    # shellcheck disable=SC2086
    "$venv/bin/python" -m pip install -q $SLS_ENVELOPE_PIP_ARGS -e ".[test,all]"
    "$venv/bin/python" -m pip list --format=freeze >"$SLS_ENVELOPE_LOGS/pip-freeze.txt"
    echo "installed: $(grep -iE '^(cryptography|hypothesis|cffi)==' "$SLS_ENVELOPE_LOGS/pip-freeze.txt" | tr '\n' ' ')"
}
run_stage deps stage_deps
py="$venv/bin/python"
pytest=("$py" -m pytest -p no:cacheprovider -q)

run_stage mypy "$py" -m mypy sls_envelope
run_stage pytest "${pytest[@]}"

# The AEAD tests above already run every implementation; these passes run the layers
# built on the AEADs (format, keys, streams, nonce safety) over each non-default one too.
layers=(tests/test_format.py tests/test_keys.py tests/test_stream.py tests/test_nonce_safety.py)
for forced in $("$py" -c '
import itertools, sls_envelope
impls = sls_envelope.available_implementations()
for aes, sm4 in itertools.zip_longest(impls["aes-gcm"][1:], impls["sm4-gcm"][1:], fillvalue="portable"):
    print(f"aes-gcm={aes},sm4-gcm={sm4}")
'); do
    run_stage "layers-${forced//[=,]/-}" env SLS_ENVELOPE_IMPL="$forced" "${pytest[@]}" "${layers[@]}"
done

# The portable path alone, as on a CPU without extensions.
run_stage portable env SLS_ENVELOPE_DISABLE=all "${pytest[@]}" tests/test_aead_vectors.py \
    tests/test_aead_api.py tests/test_aead_differential.py "${layers[@]}"

# Hardening: sanitizers, constant-time check, memcheck, fuzzers, ARM64 (each its own stage).
SLS_ENVELOPE_PY="$py" bash scripts/c-checks.sh

echo "== every stage passed in $((SECONDS - suite_start))s: $(tr '\n' ' ' <"$SLS_ENVELOPE_LOGS/timings.txt")"
