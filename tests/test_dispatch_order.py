"""The default implementation is the fastest the CPU has (issue 18 item 11).

The shape test in test_aead_api.py compares the default with the table it comes from, so
a reordered table in csrc/dispatch.c (e.g. ``aesni`` before ``vaes512``, 2.2x slower at
64 KiB) passed it.  Here the order is pinned independently of that table, and each
implementation's CPU needs (read from the ``supported()`` of its cipher and GHASH parts)
say when it must be on offer.
"""

from typing import Dict, FrozenSet, List, Tuple

import pytest
from sls_envelope._native import ffi, lib

import sls_envelope
from sls_envelope import AESGCM, SM4GCM

# Fastest first, with the CPU features (names as sls_env_cpu_features() prints them)
# whose presence means the implementation must be available.
_PINNED: Dict[str, List[Tuple[str, FrozenSet[str]]]] = {
    "aes-gcm": [
        ("vaes512", frozenset({"avx512f", "avx512bw", "avx512vl", "vaes", "aesni", "vpclmulqdq", "pclmul"})),
        ("vaes256", frozenset({"avx2", "vaes", "aesni", "vpclmulqdq", "pclmul"})),
        ("aesni", frozenset({"aesni", "ssse3", "sse4.1", "pclmul"})),
        ("armv8", frozenset({"aes", "pmull"})),  # ARM64
        ("portable", frozenset()),
    ],
    "sm4-gcm": [
        ("gfni", frozenset({"avx512f", "avx512bw", "avx512vl", "gfni", "vpclmulqdq", "pclmul"})),
        ("gfni256", frozenset({"avx", "avx2", "ssse3", "gfni", "vpclmulqdq", "pclmul"})),
        ("vaes256", frozenset({"avx", "avx2", "aesni", "ssse3", "vaes", "vpclmulqdq", "pclmul"})),
        ("aesni", frozenset({"avx", "avx2", "aesni", "ssse3", "pclmul"})),
        ("sm4e", frozenset({"sm4", "pmull"})),  # ARM64
        ("armv8", frozenset({"aes", "pmull"})),  # ARM64 without SM4: the S-box through AESE
        ("portable", frozenset()),
    ],
}


def _features() -> FrozenSet[str]:
    return frozenset(filter(None, ffi.string(lib.sls_env_cpu_features()).decode().split(",")))


@pytest.mark.parametrize("label", sorted(_PINNED))
def test_available_follow_the_pinned_order(label: str) -> None:
    pinned = [name for name, _ in _PINNED[label]]
    available = sls_envelope.available_implementations()[label]
    assert set(available) <= set(pinned), f"{label}: an implementation not pinned here: {available}"
    assert available == [name for name in pinned if name in available]


@pytest.mark.parametrize("label", sorted(_PINNED))
def test_default_is_the_fastest_the_cpu_has(label: str) -> None:
    features = _features()
    expected = next(name for name, needs in _PINNED[label] if needs <= features)
    assert expected in sls_envelope.available_implementations()[label]
    forced = sls_envelope.aead._FORCED.get(label)
    if forced is not None:
        pytest.skip(f"SLS_ENVELOPE_IMPL forces {forced}")
    cls = AESGCM if label == "aes-gcm" else SM4GCM
    assert cls(bytes(16)).implementation == expected


def _cpu_vendor() -> str:
    """vendor_id of /proc/cpuinfo (Linux x86), or "" elsewhere."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("vendor_id"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def test_vaes512_ghash_form_follows_the_vendor() -> None:
    """Karatsuba products on AMD, schoolbook elsewhere (csrc/dispatch.c, measured there),
    and the testing hook forces either for the keys set up after it, then gives back the
    CPU's."""
    if "vaes512" not in sls_envelope.available_implementations()["aes-gcm"]:
        pytest.skip("no vaes512 on this CPU")
    expected = 1 if _cpu_vendor() == "AuthenticAMD" else 0
    form = lib.sls_env_testing_aead_ghash_form
    assert form(AESGCM(bytes(32), impl="vaes512")._ctx) == expected
    try:
        for forced in (1 - expected, expected):
            assert lib.sls_env_testing_ghash_form(forced) == forced
            assert form(AESGCM(bytes(32), impl="vaes512")._ctx) == forced
    finally:
        assert lib.sls_env_testing_ghash_form(-1) == expected
    assert form(AESGCM(bytes(32), impl="vaes512")._ctx) == expected
    # Paths without the choice say so.
    for name in sls_envelope.available_implementations()["aes-gcm"]:
        if name != "vaes512":
            assert form(AESGCM(bytes(32), impl=name)._ctx) == -1
