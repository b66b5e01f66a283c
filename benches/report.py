"""Turn a pytest-benchmark JSON file into the Markdown tables of docs/BENCHMARKS.md.

    python -m pytest benches --benchmark-only --benchmark-json=bench.json
    python benches/report.py bench.json > tables.md

Per row: median seconds per round -> ns per message, GB/s (10^9 bytes/s), cycles per
byte at the CPU's nominal clock (this VM exposes no cycle counter, so cycles/byte is
time x nominal MHz), and the ratio to `cryptography` in the same group and size
(above 1 means sls-envelope is faster).
"""

from __future__ import annotations

import json
import re
import sys
from collections import defaultdict
from typing import Any, Dict, List, Optional, Tuple


def nominal_mhz(machine: Dict[str, Any]) -> Optional[float]:
    brand = machine.get("cpu", {}).get("brand_raw", "")
    match = re.search(r"@ ([\d.]+)GHz", brand)
    if match:
        return float(match.group(1)) * 1000
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("cpu MHz"):
                    return float(line.split(":")[1])
    except OSError:
        pass
    return None


def size_label(size: int) -> str:
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale and size % scale == 0:
            return f"{size // scale} {unit}"
    return f"{size} B"


def main(path: str) -> None:
    data = json.load(open(path))
    mhz = nominal_mhz(data.get("machine_info", {}))
    groups: Dict[Tuple[str, int], List[Dict[str, Any]]] = defaultdict(list)
    plain: List[Dict[str, Any]] = []  # unparametrized (benches/bench_logstore.py): one table
    for bench in data["benchmarks"]:
        params = bench.get("params") or {}
        if not params:
            plain.append(bench)
            continue
        size = params.get("size") or bench.get("extra_info", {}).get("bytes_per_round", 0)
        groups[(bench["group"], size)].append(bench)
    by_group: Dict[str, List[int]] = defaultdict(list)
    for group, size in groups:
        by_group[group].append(size)
    for group in sorted(by_group):
        print(f"\n### {group}\n")
        print("| size | implementation | ns/message | GB/s | cycles/byte | vs cryptography |")
        print("|---:|---|---:|---:|---:|---:|")
        for size in sorted(set(by_group[group])):
            rows = groups[(group, size)]
            baseline = None
            for bench in rows:
                name = (bench.get("params") or {}).get("lib", "")
                threads = (bench.get("params") or {}).get("threads")
                if str(name).startswith("cryptography") and threads in (None, 1):
                    baseline = bench["stats"]["median"]
            for bench in sorted(rows, key=lambda b: b["stats"]["median"]):
                params = bench.get("params") or {}
                info = bench.get("extra_info", {})
                median = bench["stats"]["median"]
                messages = info.get("messages_per_round", 1)
                total = info.get("bytes_per_round", size)
                label = str(params.get("lib", bench["name"]))
                if "threads" in params:
                    label += f", {params['threads']} thread(s)"
                gbps = f"{total / median / 1e9:.2f}" if total else ""
                cpb = f"{median * mhz * 1e6 / total:.3f}" if mhz and total else ""
                ratio = f"{baseline / median:.2f}x" if baseline and "threads" not in params else ""
                shown = size_label(size) if size else ""
                print(f"| {shown} | {label} | {median / messages * 1e9:,.0f} | {gbps} | {cpb} | {ratio} |")
    if plain:
        print("\n### Logstore encryption (`benches/bench_logstore.py`)\n")
        print('Median per call (a "1000 x 1KiB" call handles 1,000 batches):\n')
        print("| group | benchmark | median per call |")
        print("|---|---|---:|")
        for bench in sorted(plain, key=lambda b: (b["group"], b["stats"]["median"])):
            print(f"| {bench['group']} | {bench['name']} | {bench['stats']['median'] * 1e6:,.1f} µs |")


if __name__ == "__main__":
    main(sys.argv[1])
