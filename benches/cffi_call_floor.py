"""What a Python call into the kernel costs before any byte is encrypted (issue 19's bound).

    PYTHONPATH=. python benches/cffi_call_floor.py [--rounds 7]

`AESGCM.encrypt_into` ends in one CFFI call of sls_env_aead_encrypt (seven arguments)
on a buffer made by ``ffi.from_buffer``; cryptography's ends in one pyo3 call.  This
builds a throwaway CFFI module (in a temporary directory, compiled the way the
extension is: out-of-line API mode) whose functions have that signature and do nothing,
and times, alternating round by round:

* the empty function with 7, 5 and 3 arguments and with none (CFFI converts each
  argument and, from two arguments on, unpacks a tuple);
* ``ffi.from_buffer`` of a bytearray;
* ``AESGCM.encrypt_into`` of an empty message, ours and cryptography's: the whole
  fixed cost of one call on each side, the kernel's own work on an empty message being
  ~13 ns (benches/c_bench.sh).

Prints the medians with the CPU.  A benchmark: it asserts nothing.
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import sys
import tempfile
import timeit
from typing import Any, Callable, Dict, List

import cffi  # type: ignore[import-untyped]

from sls_envelope.aead import AESGCM
from sls_envelope.bench import cpu_model

SIGNATURES = [
    "int f7(void *ctx, const uint8_t *nonce, const uint8_t *aad, size_t aad_len, const uint8_t *in,"
    " size_t in_len, uint8_t *out)",
    "int f5(void *ctx, const uint8_t *nonce, const uint8_t *in, size_t in_len, uint8_t *out)",
    "int f3(void *ctx, const uint8_t *nonce, uint8_t *out)",
    "int f0(void)",
]


def build(where: str) -> Any:
    """Compiles the module of empty functions into ``where`` and imports it."""
    ffi = cffi.FFI()
    ffi.cdef("".join(sig + ";\n" for sig in SIGNATURES))
    ffi.set_source("_cffi_call_floor", "#include <stddef.h>\n#include <stdint.h>\n"
                   + "".join(sig + " { return 0; }\n" for sig in SIGNATURES))
    ffi.compile(tmpdir=where, verbose=False)
    sys.path.insert(0, where)
    return importlib.import_module("_cffi_call_floor")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM as PycaAESGCM

    with tempfile.TemporaryDirectory(prefix="cffi-call-floor-") as where:
        mod = build(where)
        ffi, lib = mod.ffi, mod.lib
        null, nonce, out = ffi.NULL, os.urandom(12), bytearray(16)
        cout = ffi.from_buffer(out)
        f7, f5, f3, f0 = lib.f7, lib.f5, lib.f3, lib.f0
        ours, pyca = AESGCM(os.urandom(32)), PycaAESGCM(os.urandom(32))
        from_buffer, byte_array = ffi.from_buffer, ffi.typeof("uint8_t[]")
        cases: Dict[str, Callable[[], object]] = {
            "empty C function, 7 arguments": lambda: f7(null, nonce, b"", 0, b"", 0, cout),
            "empty C function, 5 arguments": lambda: f5(null, nonce, b"", 0, cout),
            "empty C function, 3 arguments": lambda: f3(null, nonce, cout),
            "empty C function, no argument": lambda: f0(),
            "ffi.from_buffer(uint8_t[], bytearray)": lambda: from_buffer(byte_array, out),
            "sls-envelope AESGCM.encrypt_into, 0 B": lambda: ours.encrypt_into(nonce, b"", None, out),
            "cryptography AESGCM.encrypt_into, 0 B": lambda: pyca.encrypt_into(nonce, b"", None, out),
            "an empty lambda (the timing loop)": lambda: None,
        }
        times: Dict[str, List[float]] = {name: [] for name in cases}
        for _ in range(args.rounds):
            for name, fn in cases.items():
                times[name].append(min(timeit.repeat(fn, number=20000, repeat=3)) / 20000 * 1e9)
    print(f"{cpu_model()}: median of {args.rounds} alternating rounds (each the best of 3 x 20,000 calls)")
    for name, values in times.items():
        print(f"  {name:42s} {statistics.median(values):7.1f} ns")


if __name__ == "__main__":
    main()
