# Sourced by scripts/test.sh and scripts/c-checks.sh: runs one named stage of the suite.
#
#   run_stage NAME COMMAND [ARGS...]
#
# The command's output is shown and kept in $SLS_ENVELOPE_LOGS/NAME.log (default
# build/logs/).  A stage that fails prints one line that says which stage, its first
# error and where the full log is, then the script exits with the stage's status.
# Each stage's time goes to timings.txt beside the logs for the closing summary.

stage_logs=${SLS_ENVELOPE_LOGS:-$(pwd)/build/logs}
mkdir -p "$stage_logs"

# The first line of a log that looks like an error: pytest's FAILED/ERROR lines and
# 'E ' assertion lines, compiler and sanitizer errors, valgrind's error headers (with the
# frame after them), Python tracebacks' last line is not searched for: the FAILED line names it.
_first_error() {
    local log=$1 line
    line=$(grep -m1 -nE '^(FAILED|ERROR) |^E +[A-Za-z]|: error: |ERROR: (Address|Leak|libFuzzer)|runtime error:|^==[0-9]+== (Conditional|Use of|Invalid|Syscall|Mismatched|Source and)|^[a-z0-9_-]+: .*(NOT|failed|FAIL)|^FAIL|Error: |error: ' "$log" || true)
    if [ -z "$line" ]; then
        tail -n 20 "$log" | grep -v '^\s*$' | tail -n 1
        return
    fi
    local n=${line%%:*} text=${line#*:}
    if [[ $text =~ ^==[0-9]+== ]]; then
        # valgrind: the error kind, then its innermost frame.
        text="$text $(sed -n "$((n + 1))p" "$log" | sed -E 's/^==[0-9]+== +//')"
    fi
    echo "$text"
}

run_stage() {
    local name=$1 rc start=$SECONDS
    shift
    local log=$stage_logs/$name.log
    echo "== $name"
    set +e
    (set -e; "$@") 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    set -e
    local took=$((SECONDS - start))
    echo "$name ${took}s" >>"$stage_logs/timings.txt"
    if [ "$rc" != 0 ]; then
        echo "FAILED stage '$name' (exit $rc, ${took}s): $(_first_error "$log" | cut -c1-400) -- full log: $log" >&2
        exit "$rc"
    fi
    echo "== $name passed in ${took}s"
}
