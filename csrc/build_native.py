"""CFFI build of the private extension ``sls_envelope._native`` (out-of-line API mode).

Every ``.c`` under ``csrc/`` except the test and fuzz drivers is compiled with the
baseline flags of the target: instruction sets beyond the baseline are enabled per
function with ``__attribute__((target(...)))`` inside the files that need them, and each
such path is chosen at run time by ``csrc/dispatch.c``, so one wheel runs everywhere.
"""

from __future__ import annotations

import pathlib
import re
import sys

from cffi import FFI

HERE = pathlib.Path(__file__).resolve().parent
EXCLUDED_DIRS = {"tests"}


def _sources() -> list[str]:
    found = []
    for path in sorted(HERE.rglob("*.c")):
        rel = path.relative_to(HERE)
        if rel.parts[0] in EXCLUDED_DIRS:
            continue
        found.append(str(path.relative_to(HERE.parent)))
    return found


# The public API, then the entry points only the tests use (kept out of the public header).
HEADERS = ("sls_env.h", "sls_env_testing.h")


def _cdef() -> str:
    """The headers, minus what cffi's parser does not take (preprocessor lines)."""
    lines = []
    for name in HEADERS:
        header = (HERE / "include" / name).read_text()
        body = header.split("extern \"C\" {\n#endif", 1)[1].rsplit("#ifdef __cplusplus", 1)[0]
        for line in body.splitlines():
            m = re.match(r"#define (SLS_ENV_\w+) (-?\d+)\b", line)
            if m:
                lines.append(f"#define {m.group(1)} {m.group(2)}")
            elif not line.startswith("#"):
                lines.append(line)
    return "\n".join(lines)


ffibuilder = FFI()
ffibuilder.cdef(_cdef())

if sys.platform == "win32":
    _extra_compile_args: list[str] = ["/O2"]
else:
    _extra_compile_args = ["-O3", "-std=gnu11", "-fvisibility=hidden", "-Wall", "-Wextra",
                           "-Wno-unused-parameter"]

ffibuilder.set_source(
    "sls_envelope._native",
    "".join(f'#include "{name}"\n' for name in HEADERS),
    sources=_sources(),
    include_dirs=["csrc/include", "csrc"],
    extra_compile_args=_extra_compile_args,
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
