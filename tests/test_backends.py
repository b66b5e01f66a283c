"""The skip-or-fail rule for optional backends."""

from __future__ import annotations

import json

import pytest

from .backends import require_module

MISSING = "sls_envelope_no_such_backend_module"


def test_present_module_is_returned() -> None:
    assert require_module("json") is json


def test_missing_module_skips_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLS_ENVELOPE_REQUIRE_BACKENDS", raising=False)
    with pytest.raises(pytest.skip.Exception, match=MISSING):
        require_module(MISSING)


def test_missing_module_fails_when_backends_are_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLS_ENVELOPE_REQUIRE_BACKENDS", "1")
    with pytest.raises(pytest.fail.Exception, match=MISSING):
        require_module(MISSING)
