#!/usr/bin/env bash
# Hardening checks (issue 7), run by scripts/test.sh and so by .ci/run:
#
#   asan      csrc/tests/kernel_test.c over every implementation, built with
#             -fsanitize=address,undefined -fno-sanitize-recover=all
#   ct        csrc/tests/ct_check.c under valgrind memcheck with secrets marked undefined
#             (ctgrind), failing on any secret-dependent branch or memory index, plus its
#             negative control, which must be flagged
#   memcheck  a subset of the Python test suite under valgrind memcheck (the extension)
#   fuzz      the libFuzzer harness tests/fuzz/fuzz_batch.c over tests/fuzz/corpus_batch
#   atheris   every tests/fuzz/fuzz_*.py harness over its tests/fuzz/corpus_* seeds
#   arm64     the whole kernel cross-compiled for ARM64 (aarch64-linux-gnu-gcc) and kernel_test
#             run under qemu-aarch64 -cpu max with every ARM64 path, under -cpu cortex-a57
#             (AES without SM4), then with AES masked and with all of them masked
#
#   bash scripts/c-checks.sh                 # every stage
#   bash scripts/c-checks.sh asan ct         # some
#   SLS_ENVELOPE_PY=/path/to/python          # interpreter with the package's test deps and
#                                            # the extension built in place (default .venv)
#   FUZZ_SECONDS=60 ATHERIS_SECONDS=30       # time limits of the fuzz stages (per harness)
#
# Idempotent: builds go to build/c-checks/ (ignored by git); system packages are
# installed when missing (as root); seed corpora are copied before fuzzing, never
# modified.  See docs/SECURITY.md for what each stage covers.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
out=$root/build/c-checks
mkdir -p "$out"
py=${SLS_ENVELOPE_PY:-$root/.venv/bin/python}
[ -x "$py" ] || py=$(command -v python3)
fuzz_seconds=${FUZZ_SECONDS:-60}
atheris_seconds=${ATHERIS_SECONDS:-30}

# shellcheck source=scripts/stage.sh
. scripts/stage.sh
# What this script installs is pinned by constraints.txt like the rest of the suite,
# unless scripts/test.sh asks for the newest releases (SLS_ENVELOPE_NEWEST=1).
if [ -z "${SLS_ENVELOPE_PIP_ARGS+set}" ]; then
    export PIP_CONSTRAINT=$root/constraints.txt
fi
pip_args=${SLS_ENVELOPE_PIP_ARGS:-}

stages=("$@")
((${#stages[@]})) || stages=(asan ct memcheck fuzz atheris arm64)

# ---- system packages ------------------------------------------------------------
install_pkgs() {
    if [ "$(id -u)" != 0 ]; then
        echo "c-checks: not root, cannot install $*" >&2
        exit 1
    fi
    echo "== apt-get install $*"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
# Installs those of the packages "$@" that dpkg does not list as installed (a command
# being on PATH does not say its companion packages are there).
ensure_pkgs() {
    local pkg missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    ((${#missing[@]} == 0)) || install_pkgs "${missing[@]}"
}
ensure_pkgs valgrind clang gcc
# libFuzzer's runtime ships separately from clang on Debian, matching its major version.
ensure_pkgs "libclang-rt-$(clang -dumpversion | cut -d. -f1)-dev"

lib_sources() {
    find csrc -name '*.c' -not -path 'csrc/tests/*' | sort
}
warn_flags=(-std=gnu11 -Wall -Wextra -Wno-unused-parameter -Icsrc/include -Icsrc)

stage_asan() {
    echo "asan: kernel_test with -fsanitize=address,undefined"
    gcc "${warn_flags[@]}" -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
        -fno-sanitize-recover=all $(lib_sources) csrc/tests/kernel_test.c -o "$out/kernel_test_asan" -lpthread
    local seed=${KERNEL_TEST_SEED:-$(date +%s)}
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
        "$out/kernel_test_asan" "$seed"
}

stage_ct() {
    echo "ct: ctgrind-style secret-taint run under valgrind memcheck"
    # The shipped optimisation level (csrc/build_native.py), since optimisers are what
    # turn masks into branches.  gcm.c's one call to sls_env_ct_equal goes to the
    # driver's wrapper, which declassifies only the verdict (see ct_check.c).
    local flags=("${warn_flags[@]}" -O3 -g -fvisibility=hidden) objs=() f o
    mkdir -p "$out/ct"
    for f in $(lib_sources); do
        o=$out/ct/$(echo "$f" | tr / _).o
        if [ "$f" = csrc/gcm/gcm.c ]; then
            gcc "${flags[@]}" -Dsls_env_ct_equal=sls_env_ct_equal_declassified -c "$f" -o "$o"
        else
            gcc "${flags[@]}" -c "$f" -o "$o"
        fi
        objs+=("$o")
    done
    gcc "${flags[@]}" csrc/tests/ct_check.c "${objs[@]}" -o "$out/ct/ct_check" -lpthread
    local vg=(valgrind -q --tool=memcheck --error-exitcode=42 --track-origins=yes --num-callers=20)

    # Negative control first: a deliberately leaky lookup and comparison must be caught.
    local rc=0
    "${vg[@]}" "$out/ct/ct_check" negative-control >"$out/ct/negative.log" 2>&1 || rc=$?
    if [ "$rc" != 42 ] || ! grep -q "Conditional jump or move depends on uninitialised" "$out/ct/negative.log" ||
        ! grep -q "Use of uninitialised value of size" "$out/ct/negative.log"; then
        cat "$out/ct/negative.log"
        echo "ct: the negative control was NOT flagged (exit $rc): the check is blind" >&2
        return 1
    fi
    echo "ct: negative control flagged as it must be (secret branch and secret index)"

    # Valgrind runs the CPU it emulates (no AVX-512, VAES, VPCLMULQDQ, GFNI); masking
    # them as well keeps the run the same on a future valgrind that emulates more.
    SLS_ENVELOPE_DISABLE=${CT_DISABLE:-avx512,vaes,vpclmulqdq,gfni} "${vg[@]}" "$out/ct/ct_check"
}

stage_memcheck() {
    echo "memcheck: Python tests through the extension under valgrind"
    # CPython from pyenv-style builds trips memcheck on its own code (int.from_bytes of
    # an empty value, long before our module loads); Debian's python3 is clean with
    # its suppression file, so this stage uses a venv of it.
    local mpy=$py supp=()
    if [ -x /usr/bin/python3 ] && [ -f /usr/lib/valgrind/python3.supp ]; then
        local venv=$out/memcheck-venv
        if [ ! -x "$venv/bin/python" ]; then
            /usr/bin/python3 -m venv "$venv" || {
                install_pkgs python3-venv
                /usr/bin/python3 -m venv "$venv"
            }
        fi
        # shellcheck disable=SC2086
        "$venv/bin/python" -m pip install -q $pip_args cffi cryptography pytest hypothesis gmssl
        mpy=$venv/bin/python
        supp=(--suppressions=/usr/lib/valgrind/python3.supp)
    fi
    [ -n "$(ls sls_envelope/_native*.so 2>/dev/null)" ] ||
        "$py" setup.py build_ext --inplace -q
    # PYTHONMALLOC=malloc: memcheck sees every object allocation (pymalloc's arenas
    # hide them and confuse it).  Leaks are not checked (the interpreter keeps much
    # alive at exit); invalid reads/writes and uses of undefined values are errors.
    local vg=(valgrind -q --tool=memcheck --error-exitcode=43 --leak-check=no --num-callers=30
              "${supp[@]}" --suppressions=scripts/valgrind-python.supp)

    # Negative control first: a deliberate branch on never-written memory inside our
    # extension (sls_env_testing_uninit_branch, csrc/testing.c) must fail the run with a
    # stack that names the extension; otherwise the stage could not see our errors.
    local rc=0
    PYTHONPATH=$root PYTHONMALLOC=malloc "${vg[@]}" "$mpy" -c \
        "from sls_envelope._native import lib; lib.sls_env_testing_uninit_branch()" \
        >"$out/memcheck-negative.log" 2>&1 || rc=$?
    if [ "$rc" != 43 ] || ! grep -q "Conditional jump or move depends on uninitialised" "$out/memcheck-negative.log" ||
        ! grep -qE "sls_env_testing_uninit_branch|_native[^ ]*\.so" "$out/memcheck-negative.log"; then
        cat "$out/memcheck-negative.log"
        echo "memcheck: the negative control was NOT flagged (exit $rc): the stage is blind" >&2
        return 1
    fi
    echo "memcheck: negative control flagged as it must be (uninitialised branch in the extension)"

    # The tests.  Nothing of ours is suppressed: every error fails the stage.  What is kept
    # out is third-party code whose own results memcheck flags: OpenSSL's SM4-GCM tag in the
    # cryptography wheel (scripts/memcheck-probe-openssl-sm4.py shows it with no module of
    # ours loaded), so under SLS_ENVELOPE_UNDER_MEMCHECK=1 the tests take SM4-GCM references
    # from tests/reference_gcm.py (SP 800-38D in Python over gmssl's SM4) instead.
    local tests=${MEMCHECK_TESTS:-tests/test_aead_api.py tests/test_format.py tests/test_stream.py tests/test_reference_gcm.py}
    # shellcheck disable=SC2086
    PYTHONPATH=$root PYTHONMALLOC=malloc SLS_ENVELOPE_UNDER_MEMCHECK=1 "${vg[@]}" \
        "$mpy" -m pytest -q -p no:cacheprovider $tests
}

stage_fuzz() {
    echo "fuzz: libFuzzer on the C batch and record API (${fuzz_seconds}s)"
    clang "${warn_flags[@]}" -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
        $(lib_sources) tests/fuzz/fuzz_batch.c -o "$out/fuzz_batch" -lpthread
    # Work on a copy: the committed seeds stay as they are.
    rm -rf "$out/corpus_batch" && cp -r tests/fuzz/corpus_batch "$out/corpus_batch"
    rm -rf "$out/fuzz_artifacts" && mkdir -p "$out/fuzz_artifacts"
    local rc=0
    "$out/fuzz_batch" -max_total_time="$fuzz_seconds" -max_len=16384 -timeout=20 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$out/fuzz_artifacts/" "$out/corpus_batch" \
        >"$out/fuzz_batch.log" 2>&1 || rc=$?
    grep -E "^(INFO: seed corpus|#[0-9]+\s+DONE|Done|stat::number_of_executed_units|stat::peak_rss)" \
        "$out/fuzz_batch.log" || true
    if [ "$rc" != 0 ] || [ -n "$(ls -A "$out/fuzz_artifacts")" ]; then
        tail -60 "$out/fuzz_batch.log"
        echo "fuzz: failed (exit $rc), findings in $out/fuzz_artifacts" >&2
        return 1
    fi
}

stage_atheris() {
    echo "atheris: Python parser and decrypt harnesses (${atheris_seconds}s each)"
    # shellcheck disable=SC2086 # the arguments are words on purpose
    "$py" -c "import atheris" 2>/dev/null || "$py" -m pip install -q $pip_args "atheris>=2.3"
    local h name corpus rc
    for h in tests/fuzz/fuzz_*.py; do
        name=$(basename "$h" .py)
        name=${name#fuzz_}
        corpus=$out/corpus_$name
        rm -rf "$corpus" && mkdir -p "$corpus" "$out/atheris_artifacts"
        [ -d "tests/fuzz/corpus_$name" ] && cp -r "tests/fuzz/corpus_$name/." "$corpus/"
        echo "-- $h"
        rc=0
        PYTHONPATH=$root "$py" "$h" -max_total_time="$atheris_seconds" -timeout=20 \
            -artifact_prefix="$out/atheris_artifacts/$name-" "$corpus" >"$out/atheris_$name.log" 2>&1 || rc=$?
        grep -E "^(INFO: Seed|Done|#[0-9]+\s+DONE)" "$out/atheris_$name.log" || true
        if [ "$rc" != 0 ]; then
            tail -40 "$out/atheris_$name.log"
            echo "atheris: $h failed (exit $rc)" >&2
            return 1
        fi
    done
}

stage_arm64() {
    echo "== arm64: the kernel built for ARM64 and its test run under qemu-aarch64"
    ensure_pkgs gcc-aarch64-linux-gnu libc6-dev-arm64-cross libasan8-arm64-cross qemu-user
    # -Werror: the x86 files must compile cleanly to their unavailable stubs there.
    aarch64-linux-gnu-gcc "${warn_flags[@]}" -Werror -O2 -static $(lib_sources) csrc/tests/kernel_test.c \
        -o "$out/kernel_test_arm64" -lpthread
    local seed=${KERNEL_TEST_SEED:-$(date +%s)}
    # -cpu max has AES, PMULL and SM4: every ARM64 path runs and is compared with the
    # portable one and the vectors.  Then the features masked: only portable may run.
    qemu-aarch64 -cpu max "$out/kernel_test_arm64" "$seed" | tee "$out/arm64_max.log"
    grep -q "AES-GCM armv8 .*ok" "$out/arm64_max.log"
    grep -q "SM4-GCM sm4e .*ok" "$out/arm64_max.log"
    grep -q "SM4-GCM armv8 .*ok" "$out/arm64_max.log"
    # Cortex-A57 has AES and PMULL but not SM4: the HWCAPs themselves (no masking) must
    # make SM4-GCM's default the AESE path, with sm4e not on offer (kernel_test prints the
    # paths in dispatch order, the default first).
    qemu-aarch64 -cpu cortex-a57 "$out/kernel_test_arm64" "$seed" | tee "$out/arm64_a57.log"
    if ! grep -m1 "SM4-GCM" "$out/arm64_a57.log" | grep -q "SM4-GCM armv8 .*ok" ||
        grep -q "sm4e" "$out/arm64_a57.log"; then
        echo "arm64: on a CPU with AES and no SM4 the SM4-GCM default is not armv8" >&2
        return 1
    fi
    # AES alone masked: neither `armv8` path may run (the SM4 one needs AESE, not only
    # PMULL), SM4-GCM keeps `sm4e`.
    SLS_ENVELOPE_DISABLE=aes qemu-aarch64 -cpu max "$out/kernel_test_arm64" "$seed" \
        | tee "$out/arm64_noaes.log"
    if grep -q "armv8" "$out/arm64_noaes.log" || ! grep -q "SM4-GCM sm4e .*ok" "$out/arm64_noaes.log"; then
        echo "arm64: with AES masked an armv8 path ran, or sm4e did not" >&2
        return 1
    fi
    SLS_ENVELOPE_DISABLE=aes,pmull,sm4 qemu-aarch64 -cpu max "$out/kernel_test_arm64" "$seed" \
        | tee "$out/arm64_masked.log"
    if grep -qE "armv8|sm4e" "$out/arm64_masked.log"; then
        echo "arm64: an ARM64 path ran with its features masked" >&2
        return 1
    fi
    # The fuzz harness for ARM64: no cross libFuzzer, so its seed corpus is replayed once
    # through every path of -cpu max with the harness's portable oracle (it aborts on a
    # disagreement), built with ASan and UBSan (Debian's libasan8-arm64-cross, run with
    # the cross sysroot as qemu's -L).
    aarch64-linux-gnu-gcc "${warn_flags[@]}" -Werror -O1 -g -fsanitize=address,undefined \
        -fno-sanitize-recover=all $(lib_sources) tests/fuzz/fuzz_batch.c tests/fuzz/replay_main.c \
        -o "$out/fuzz_batch_arm64_asan" -lpthread
    ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 qemu-aarch64 -cpu max -L /usr/aarch64-linux-gnu \
        "$out/fuzz_batch_arm64_asan" tests/fuzz/corpus_batch/*
}

for s in "${stages[@]}"; do
    run_stage "$s" "stage_$s"
done
