#!/usr/bin/env bash
# Builds benches/c_bench.c against the kernel with the extension's flags (gcc -O3, no
# -march: instruction sets are enabled per function) and runs it.  Markdown on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p build
sources=$(find csrc -name '*.c' -not -path 'csrc/tests/*' | sort)
# shellcheck disable=SC2086
${CC:-gcc} -O3 -std=gnu11 -Wall -Wextra -Wno-unused-parameter -Icsrc/include -Icsrc \
    benches/c_bench.c $sources -lpthread -o build/c_bench
exec build/c_bench
