"""Shared fixtures: every AEAD test runs over every implementation this CPU has."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Callable

import pytest

import sls_envelope
from sls_envelope import AESGCM, SM4GCM

# The servers the tests run against, session fixtures registered here once: imported into
# each test module instead, every module would get its own fixture definition, and so
# start its own servers (two modules used openbao_server: two OpenBao servers a run).
from tests.cluster import openbao_cluster, postgres  # noqa: F401
from tests.servers import moto_server, openbao_server, silent_server, softhsm_token  # noqa: F401

AES_IMPLS = sls_envelope.available_implementations()["aes-gcm"]
SM4_IMPLS = sls_envelope.available_implementations()["sm4-gcm"]

# GHASH product forms (csrc/dispatch.c, sls_env_ghash_form): vaes512 multiplies in the
# form its CPU's vendor suits, schoolbook or Karatsuba; the tests run both on any CPU,
# forcing each through the testing hook for the keys set up meanwhile.
GHASH_FORMS = {0: "schoolbook", 1: "karatsuba"}


def _has_ghash_forms(cls: type, name: str) -> bool:
    from sls_envelope._native import lib

    return int(lib.sls_env_testing_aead_ghash_form(cls(bytes(16), impl=name)._ctx)) >= 0


def _with_forms(cls: type, names: list[str]) -> list[tuple[str, int | None]]:
    out: list[tuple[str, int | None]] = []
    for name in names:
        out += [(name, f) for f in GHASH_FORMS] if _has_ghash_forms(cls, name) else [(name, None)]
    return out


def _ids(alg: str, params: list[tuple[str, int | None]]) -> list[str]:
    return [f"{alg}{name}" + (f"-{GHASH_FORMS[f]}" if f is not None else "") for name, f in params]


@contextlib.contextmanager
def _ghash_form(form: int | None) -> Iterator[None]:
    """Keys set up inside get `form` (None: whatever the CPU's is)."""
    from sls_envelope._native import lib

    if form is None:
        yield
        return
    assert lib.sls_env_testing_ghash_form(form) == form
    try:
        yield
    finally:
        lib.sls_env_testing_ghash_form(-1)


AES_PARAMS = _with_forms(AESGCM, AES_IMPLS)
SM4_PARAMS = _with_forms(SM4GCM, SM4_IMPLS)


def pytest_report_header(config: Any) -> str:
    from sls_envelope._native import ffi, lib

    return (
        f"sls-envelope CPU features: {ffi.string(lib.sls_env_cpu_features()).decode() or '(none)'}; "
        f"implementations: {sls_envelope.available_implementations()}"
    )


@pytest.fixture(params=AES_PARAMS, ids=_ids("", AES_PARAMS))
def aes_impl(request: Any) -> Iterator[str]:
    name, form = request.param
    with _ghash_form(form):
        yield str(name)


@pytest.fixture(params=SM4_PARAMS, ids=_ids("", SM4_PARAMS))
def sm4_impl(request: Any) -> Iterator[str]:
    name, form = request.param
    with _ghash_form(form):
        yield str(name)


ALL_IMPLS = [("aes", name, form) for name, form in AES_PARAMS] + [("sm4", name, form) for name, form in SM4_PARAMS]


@pytest.fixture(params=ALL_IMPLS, ids=_ids("aes-", AES_PARAMS) + _ids("sm4-", SM4_PARAMS))
def aead_factory(request: Any) -> Iterator[Callable[[bytes], Any]]:
    """Builds an AEAD of one algorithm and implementation from a key (AES keys any size)."""
    alg, name, form = request.param

    def make(key: bytes) -> Any:
        cls = AESGCM if alg == "aes" else SM4GCM
        return cls(key, impl=name)

    make.alg = alg  # type: ignore[attr-defined]
    make.impl = name  # type: ignore[attr-defined]
    with _ghash_form(form):
        yield make
