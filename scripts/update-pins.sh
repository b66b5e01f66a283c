#!/usr/bin/env bash
# Moves the pins: resolves every test and CI dependency (".[test,all,fuzz]", pip, setuptools,
# wheel) at its newest release in a throwaway venv and writes the exact versions to
# constraints.txt, which scripts/test.sh installs from.  Then run the suite and commit
# constraints.txt with the result:
#
#   bash scripts/update-pins.sh && bash scripts/test.sh
#
# With --keep, the pins already in constraints.txt stay as they are and only what is not
# pinned yet (a dependency added since) is resolved and pinned.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
unset PIP_CONSTRAINT
if [ "${1:-}" = --keep ]; then
    cp constraints.txt "$tmp/keep.txt"
    export PIP_CONSTRAINT=$tmp/keep.txt
fi
python3 -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install -q --upgrade pip setuptools wheel
"$tmp/venv/bin/python" -m pip install -q ".[test,all,fuzz]"
{
    echo "# Exact versions of every test and CI dependency, installed by scripts/test.sh"
    echo "# (SLS_ENVELOPE_NEWEST=1 ignores them).  Written by scripts/update-pins.sh on $(date -u +%F)"
    echo "# with $("$tmp/venv/bin/python" -V); the library's own requirements stay ranges (pyproject.toml)."
    "$tmp/venv/bin/python" -m pip freeze --all --exclude sls-envelope | sort -f
} >constraints.txt
echo "constraints.txt: $(grep -vc '^#' constraints.txt) pins"
