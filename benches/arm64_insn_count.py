"""Instructions in the compiled inner loops of the ARM64 paths, from the disassembly.

No ARM machine is here, so no timing: this cross-compiles each part with the flags of
the arm64 stage (-O2), disassembles it with aarch64-linux-gnu-objdump and, for each
function, lists every loop (a backward branch within the function) with the number of
instructions from its target to the branch.  Per-block figures follow by dividing the
loop that handles N blocks by N (and, for loops over rounds, multiplying by the rounds).

    python benches/arm64_insn_count.py [csrc/aes/aes_armv8.c ...]
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = [
    "csrc/aes/aes_armv8.c",
    "csrc/sm4/sm4_sm4e.c",
    "csrc/ghash/ghash_pmull.c",
    "csrc/aes/aes_portable.c",
    "csrc/sm4/sm4_portable.c",
    "csrc/ghash/ghash_portable.c",
]
FUNC = re.compile(r"^[0-9a-f]+ <(?P<name>[^>]+)>:$")
BRANCH = re.compile(r"^(b(\.\w+)?|cbn?z|tbn?z)$")


def loops(obj: Path) -> list[tuple[str, int, int]]:
    """(function, loop start address, instructions in the loop) for every backward branch."""
    out = subprocess.run(
        ["aarch64-linux-gnu-objdump", "-d", "--no-show-raw-insn", str(obj)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    found: list[tuple[str, int, int]] = []
    func = ""
    addrs: list[int] = []
    for line in out.splitlines():
        m = FUNC.match(line)
        if m:
            func, addrs = m["name"], []
            continue
        parts = line.strip().split(None, 2)
        if len(parts) < 2 or not re.fullmatch(r"[0-9a-f]+:", parts[0]):
            continue
        addr = int(parts[0][:-1], 16)
        addrs.append(addr)
        op = parts[1]
        if BRANCH.match(op) and len(parts) > 2:
            target = re.search(r"\b([0-9a-f]+) <", parts[2])
            if target and int(target.group(1), 16) <= addr:
                start = int(target.group(1), 16)
                found.append((func, start, sum(1 for a in addrs if start <= a <= addr)))
    return found


def main(argv: list[str]) -> int:
    sources = argv or DEFAULT
    with tempfile.TemporaryDirectory() as tmp:
        for src in sources:
            obj = Path(tmp) / (Path(src).stem + ".o")
            subprocess.run(
                [
                    "aarch64-linux-gnu-gcc",
                    "-std=gnu11",
                    "-O2",
                    "-I",
                    str(ROOT / "csrc/include"),
                    "-I",
                    str(ROOT / "csrc"),
                    "-c",
                    str(ROOT / src),
                    "-o",
                    str(obj),
                ],
                check=True,
            )
            print(f"== {src}")
            for func, start, n in loops(obj):
                print(f"  {func:32s} loop at {start:#06x}: {n} instructions")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
