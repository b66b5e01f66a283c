"""Instructions in the compiled inner loops of the ARM64 paths, from the disassembly.

No ARM machine is here, so no timing: this cross-compiles each part with the flags of
the arm64 stage (-O2), disassembles it with aarch64-linux-gnu-objdump and, for each
function, lists every loop (a backward branch within the function) with the number of
instructions from its target to the branch.  Per-block figures follow by dividing the
loop that handles N blocks by N (and, for loops over rounds, multiplying by the rounds).

    python benches/arm64_insn_count.py [csrc/aes/aes_armv8.c ...]

The static reading needs a loop whose body is the whole per-block work; the portable
paths' bitsliced loops are nested across inlined helpers, so --dynamic measures every
path the same way instead: the kernel is built with benches/arm64_insn_driver.c, run
under qemu-aarch64 -cpu max -singlestep -d exec,nochain (one log line per executed
instruction) over N and 2N blocks, and (count(2N) - count(N)) / N is the part's
instructions per 16-byte block, everything in the loops included.  Counting is exact
and independent of qemu's speed; it is still not timing.

    python benches/arm64_insn_count.py --dynamic [--opt=-O3] [--blocks 512]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = [
    "csrc/aes/aes_armv8.c",
    "csrc/sm4/sm4_sm4e.c",
    "csrc/sm4/sm4_armv8.c",
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


def compile_flags(opt: str) -> list[str]:
    return ["aarch64-linux-gnu-gcc", "-std=gnu11", opt, "-I", str(ROOT / "csrc/include"), "-I", str(ROOT / "csrc")]


def static_counts(sources: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for src in sources:
            obj = Path(tmp) / (Path(src).stem + ".o")
            subprocess.run([*compile_flags("-O2"), "-c", str(ROOT / src), "-o", str(obj)], check=True)
            print(f"== {src}")
            for func, start, n in loops(obj):
                print(f"  {func:32s} loop at {start:#06x}: {n} instructions")


PARTS = ["aes-armv8", "aes-portable", "sm4e", "sm4-armv8", "sm4-portable", "ghash-pmull", "ghash-portable"]


def one_insn_flag() -> str:
    """QEMU 8.1 renamed -singlestep (one instruction per translation block) -one-insn-per-tb."""
    usage = subprocess.run(["qemu-aarch64", "-h"], check=True, capture_output=True, text=True).stdout
    return "-one-insn-per-tb" if "-one-insn-per-tb" in usage else "-singlestep"


def executed(binary: Path, part: str, nblocks: int, log: Path) -> int:
    """Instructions qemu-aarch64 executed for one run of the driver (one log line each)."""
    subprocess.run(
        ["qemu-aarch64", "-cpu", "max", one_insn_flag(), "-d", "exec,nochain", "-D", str(log), str(binary), part, str(nblocks)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    with log.open("rb") as f:
        count = sum(1 for line in f if line.startswith(b"Trace"))
    os.unlink(log)
    return count


def dynamic_counts(opt: str, nblocks: int) -> None:
    sources = sorted(str(p) for p in (ROOT / "csrc").rglob("*.c") if "tests" not in p.relative_to(ROOT / "csrc").parts)
    with tempfile.TemporaryDirectory() as tmp:
        binary = Path(tmp) / "driver"
        subprocess.run(
            [*compile_flags(opt), "-static", *sources, str(ROOT / "benches/arm64_insn_driver.c"), "-o", str(binary), "-lpthread"],
            check=True,
        )
        print(f"instructions per 16-byte block, executed under qemu-aarch64 ({opt}, {nblocks} vs {2 * nblocks} blocks)")
        for part in PARTS:
            one = executed(binary, part, nblocks, Path(tmp) / "log")
            two = executed(binary, part, 2 * nblocks, Path(tmp) / "log")
            print(f"  {part:16s} {(two - one) / nblocks:8.1f}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("sources", nargs="*", help="C files for the static reading (default: every ARM64 part)")
    parser.add_argument("--dynamic", action="store_true", help="executed instructions per block under qemu instead")
    parser.add_argument("--opt", default="-O2", help="optimisation flag for --dynamic (the extension ships -O3)")
    parser.add_argument("--blocks", type=int, default=512, help="N for --dynamic (a multiple of 16)")
    args = parser.parse_args(argv)
    if args.dynamic:
        dynamic_counts(args.opt, args.blocks)
    else:
        static_counts(args.sources or DEFAULT)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
