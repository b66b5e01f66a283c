"""Alternating A/B of the C kernel at two git revisions: is a kernel change faster?

    python benches/c_ab.py HEAD~1 HEAD sm4 gfni 0,256,1024,65536 [--rounds 15]

Builds benches/c_bench.c (this checkout's copy, so older revisions need not have its
one-cell mode) against each revision's csrc/ with the extension's flags, then runs the
two binaries in turn, round after round, and prints the median ns per call of each and
their ratio.  Alternating matters on a VM whose speed drifts by up to 2x within minutes:
two runs made one after the other compare the phases, not the code.
"""
from __future__ import annotations

import argparse
import collections
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parent.parent


def build(revision: str, workdir: Path) -> Path:
    """Export revision's csrc/ and compile c_bench against it; returns the binary."""
    tree = workdir / revision.replace("/", "_").replace("~", "-").replace("^", "-")
    tree.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision, "csrc"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    sources = sorted(str(p) for p in (tree / "csrc").rglob("*.c")
                     if p.parent.name not in ("tests", "fuzz"))
    binary = tree / "c_bench"
    subprocess.run([os.environ.get("CC", "gcc"), "-O3", "-std=gnu11", f"-I{tree}/csrc/include",
                    f"-I{tree}/csrc", str(ROOT / "benches" / "c_bench.c"), *sources, "-lpthread",
                    "-o", str(binary)], check=True)
    return binary


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("old", help="git revision A (the baseline)")
    parser.add_argument("new", help="git revision B")
    parser.add_argument("alg", choices=["aes", "sm4", "aes-open", "sm4-open"],
                        help="-open: time decryption")
    parser.add_argument("impl", help="implementation name, e.g. vaes512, gfni, portable")
    parser.add_argument("sizes", help="comma-separated message sizes in bytes")
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args(argv)
    sizes = args.sizes.split(",")
    with tempfile.TemporaryDirectory(prefix="c_ab.") as tmp:
        binaries = {"old": build(args.old, Path(tmp) / "a"), "new": build(args.new, Path(tmp) / "b")}
        times: Dict[str, Dict[str, List[float]]] = {side: collections.defaultdict(list) for side in binaries}
        for _ in range(args.rounds):
            for side, binary in binaries.items():
                out = subprocess.run([str(binary), args.alg, args.impl, *sizes],
                                     check=True, capture_output=True, text=True).stdout
                for line in out.splitlines():
                    size, ns = line.split()
                    times[side][size].append(float(ns))
    print(f"{args.alg} {args.impl}: {args.old} -> {args.new}, median of {args.rounds} alternating rounds")
    for size in sizes:
        old, new = statistics.median(times["old"][size]), statistics.median(times["new"][size])
        print(f"{size:>9} B  old {old:11,.1f} ns  new {new:11,.1f} ns  new/old {new / old:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
