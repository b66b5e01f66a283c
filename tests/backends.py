"""Skip-or-fail for tests of optional backends.

Locally, a backend whose package or system library is missing is a visible skip.
In CI (``SLS_ENVELOPE_REQUIRE_BACKENDS=1``, set by .ci/run) it is a failure, so a
broken install cannot pass as a green run of skipped tests.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Optional

import pytest

__all__ = ["require_module", "missing_backend", "backends_required"]


def backends_required() -> bool:
    return os.environ.get("SLS_ENVELOPE_REQUIRE_BACKENDS") == "1"


def missing_backend(reason: str) -> None:
    """Skip (locally) or fail (SLS_ENVELOPE_REQUIRE_BACKENDS=1) because of reason."""
    if backends_required():
        pytest.fail(f"backend required but missing: {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def require_module(name: str, *, extra: Optional[str] = None) -> ModuleType:
    """The module name, imported; else skip or fail as missing_backend does."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        hint = f"; install the '{extra}' extra" if extra else ""
        missing_backend(f"{name} is not installed ({exc}){hint}")
        raise  # unreachable: missing_backend always raises
