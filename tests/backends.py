"""Skipping, or failing, tests of optional KMS backends whose packages are missing.

Locally a missing backend is a visible skip; in CI (``SLS_ENVELOPE_REQUIRE_BACKENDS=1``) it
is a failure, so that backend tests cannot silently stop running.  Use at module level:

    from backends import require_module
    require_module("alibabacloud_kms20160120", extra="aliyun")
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Optional

import pytest

REQUIRE_ENV = "SLS_ENVELOPE_REQUIRE_BACKENDS"


def backends_required() -> bool:
    return os.environ.get(REQUIRE_ENV, "") == "1"


def require_module(name: str, *, extra: Optional[str] = None) -> ModuleType:
    """Import and return module name; if it is missing, skip the calling test module, or
    fail it when SLS_ENVELOPE_REQUIRE_BACKENDS=1."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        hint = f" (install the '{extra}' extra)" if extra else ""
        if backends_required():
            pytest.fail(f"{name} is not importable{hint} but {REQUIRE_ENV}=1: {exc}", pytrace=False)
        pytest.skip(f"backend module {name} not installed{hint}", allow_module_level=True)
        raise  # unreachable: pytest.skip raises
