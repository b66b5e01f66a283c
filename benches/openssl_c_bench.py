"""OpenSSL's own AES-256-GCM in C beside ours, alternating (issue 19's "≥ OpenSSL's own C").

    /root/.pyenv/versions/3.11.7/bin/python benches/openssl_c_bench.py [--sizes 16384,65536,1048576]
        [--rounds 9] [--impl vaes512] [--open]

Runs with any interpreter that has ``cryptography`` (its wheel links OpenSSL statically:
OpenSSL 4.0 in cryptography 48, with the VAES/AVX-512 GCM of ``aes-gcm-avx512.pl``).  That
copy exports no EVP symbols, so the addresses of the EVP functions come from the
extension's own symbol table (``nm``) plus its load address; benches/openssl_c_bench.c,
compiled here into a small shared library, times whole messages through them in plain C.
Ours is build/c_bench (benches/c_bench.sh builds it) in its one-implementation mode.
Each round runs OpenSSL then ours, per size; the medians and their ratio are printed
with the CPU, since the machine's speed drifts.
"""

from __future__ import annotations

import argparse
import ctypes
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS = ["EVP_CIPHER_CTX_new", "EVP_CIPHER_CTX_free", "EVP_aes_256_gcm", "EVP_EncryptInit_ex",
             "EVP_DecryptInit_ex", "EVP_EncryptUpdate", "EVP_DecryptUpdate", "EVP_EncryptFinal_ex",
             "EVP_DecryptFinal_ex", "EVP_CIPHER_CTX_ctrl"]


class Evp(ctypes.Structure):
    _fields_ = [(name, ctypes.c_void_p) for name in FUNCTIONS]


def openssl_functions() -> Evp:
    """The EVP functions inside cryptography's extension (imported, so it is mapped)."""
    from cryptography.hazmat.backends.openssl import backend
    from cryptography.hazmat.bindings import _rust  # maps the library

    library = Path(_rust.__file__)
    symbols: dict[str, int] = {}
    for line in subprocess.run(["nm", str(library)], check=True, capture_output=True,
                               text=True).stdout.splitlines():
        parts = line.split()
        if len(parts) == 3:
            symbols[parts[2]] = int(parts[0], 16)
    # Load address: the mapping of the file at offset 0 (the ELF is linked at address 0).
    base = None
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split()
        if len(fields) >= 6 and fields[5] == str(library.resolve()) and int(fields[2], 16) == 0:
            base = int(fields[0].split("-")[0], 16)
            break
    if base is None:
        raise SystemExit(f"{library} is not mapped")
    print(f"# {backend.openssl_version_text()} from {library}", file=sys.stderr)
    return Evp(*[base + symbols[name] for name in FUNCTIONS])


def cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="16384,65536,1048576")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--impl", default="vaes512")
    parser.add_argument("--open", action="store_true", help="time decryption (with the tag check)")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    ours_bin = ROOT / "build" / "c_bench"
    if not ours_bin.exists():
        raise SystemExit("build/c_bench missing: run bash benches/c_bench.sh first")
    evp = openssl_functions()
    with tempfile.TemporaryDirectory(prefix="openssl_c_bench.") as tmp:
        lib_path = Path(tmp) / "openssl_c_bench.so"
        subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-o", str(lib_path),
                        str(ROOT / "benches" / "openssl_c_bench.c")], check=True)
        lib = ctypes.CDLL(str(lib_path))
        lib.openssl_c_bench.restype = ctypes.c_double
        lib.openssl_c_bench.argtypes = [ctypes.POINTER(Evp), ctypes.c_int, ctypes.c_char_p,
                                        ctypes.c_char_p, ctypes.c_size_t]
        theirs: dict[int, list[float]] = {s: [] for s in sizes}
        ours: dict[int, list[float]] = {s: [] for s in sizes}
        alg = "aes-open" if args.open else "aes"
        for _ in range(args.rounds):
            for size in sizes:
                src = ctypes.create_string_buffer(size + 16)
                dst = ctypes.create_string_buffer(size + 16)
                ns = lib.openssl_c_bench(ctypes.byref(evp), int(args.open), src, dst, size)
                if ns < 0:
                    raise SystemExit("OpenSSL reported a failure")
                theirs[size].append(ns)
            out = subprocess.run([str(ours_bin), alg, args.impl, *map(str, sizes)], check=True,
                                 capture_output=True, text=True).stdout
            for line in out.splitlines():
                size_s, ns_s = line.split()
                ours[int(size_s)].append(float(ns_s))
    what = "decrypt" if args.open else "encrypt"
    print(f"AES-256-GCM {what}, {cpu()}: median of {args.rounds} alternating rounds "
          "(each the best of 7 batches)")
    print("| size | OpenSSL ns | OpenSSL GB/s | ours ns | ours GB/s | ours/OpenSSL speed |")
    print("|---:|---:|---:|---:|---:|---:|")
    for size in sizes:
        t, o = statistics.median(theirs[size]), statistics.median(ours[size])
        print(f"| {size} | {t:,.1f} | {size / t:.2f} | {o:,.1f} | {size / o:.2f} | {t / o:.3f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
