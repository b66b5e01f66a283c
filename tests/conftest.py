"""Shared fixtures: every AEAD test runs over every implementation this CPU has."""

from __future__ import annotations

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


def pytest_report_header(config: Any) -> str:
    from sls_envelope._native import ffi, lib

    return (
        f"sls-envelope CPU features: {ffi.string(lib.sls_env_cpu_features()).decode() or '(none)'}; "
        f"implementations: {sls_envelope.available_implementations()}"
    )


@pytest.fixture(params=AES_IMPLS)
def aes_impl(request: Any) -> str:
    return str(request.param)


@pytest.fixture(params=SM4_IMPLS)
def sm4_impl(request: Any) -> str:
    return str(request.param)


ALL_IMPLS = [("aes", name) for name in AES_IMPLS] + [("sm4", name) for name in SM4_IMPLS]


@pytest.fixture(params=ALL_IMPLS, ids=[f"{alg}-{name}" for alg, name in ALL_IMPLS])
def aead_factory(request: Any) -> Callable[[bytes], Any]:
    """Builds an AEAD of one algorithm and implementation from a key (AES keys any size)."""
    alg, name = request.param

    def make(key: bytes) -> Any:
        cls = AESGCM if alg == "aes" else SM4GCM
        return cls(key, impl=name)

    make.alg = alg  # type: ignore[attr-defined]
    make.impl = name  # type: ignore[attr-defined]
    return make
