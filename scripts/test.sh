#!/usr/bin/env bash
# The whole test suite on a fresh machine: system packages, a venv with every extra,
# the extension built from source, then every test.  `.ci/run` runs exactly this.
#
#   bash scripts/test.sh            # everything
#   SLS_ENVELOPE_VENV=/path ...     # use (or create) another venv
#   SLS_ENVELOPE_REQUIRE_BACKENDS=1 # a KMS backend that cannot run fails instead of skipping (CI)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
venv=${SLS_ENVELOPE_VENV:-$root/.venv}

# System packages the backend tests and the C checks need (Debian names).
apt_packages=(softhsm2 valgrind clang)
missing=()
for pkg in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    if [ "$(id -u)" = 0 ]; then
        echo "== apt-get install ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "== not root: cannot install ${missing[*]}; tests that need them will skip (or fail under CI)"
    fi
fi

echo "== venv $venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
py="$venv/bin/python"
"$py" -m pip install -q --upgrade pip setuptools wheel
# Editable: the extension is built in place, so the tests import exactly this tree.
"$py" -m pip install -q -e ".[test,all]"

echo "== mypy"
"$py" -m mypy sls_envelope

echo "== pytest (every implementation this CPU has, every backend)"
"$py" -m pytest -p no:cacheprovider -q

# The AEAD tests above already run every implementation; these passes run the layers
# built on the AEADs (format, keys, streams, nonce safety) over each non-default one too.
layers=(tests/test_format.py tests/test_keys.py tests/test_stream.py tests/test_nonce_safety.py)
for forced in $("$py" -c '
import itertools, sls_envelope
impls = sls_envelope.available_implementations()
for aes, sm4 in itertools.zip_longest(impls["aes-gcm"][1:], impls["sm4-gcm"][1:], fillvalue="portable"):
    print(f"aes-gcm={aes},sm4-gcm={sm4}")
'); do
    echo "== pytest with SLS_ENVELOPE_IMPL=$forced"
    SLS_ENVELOPE_IMPL=$forced "$py" -m pytest -p no:cacheprovider -q "${layers[@]}"
done

echo "== pytest with SLS_ENVELOPE_DISABLE=all (the portable path alone, as on a CPU without extensions)"
SLS_ENVELOPE_DISABLE=all "$py" -m pytest -p no:cacheprovider -q tests/test_aead_vectors.py tests/test_aead_api.py \
    tests/test_aead_differential.py "${layers[@]}"

echo "== hardening: sanitizers, constant-time check, memcheck, fuzzers (scripts/c-checks.sh)"
SLS_ENVELOPE_PY="$py" bash scripts/c-checks.sh
