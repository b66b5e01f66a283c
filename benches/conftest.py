"""Benchmarks put sls-envelope and `cryptography` (OpenSSL) side by side in one run.

Run:  python -m pytest benches --benchmark-only --benchmark-group-by=param:size,group
Throughput per row = size / mean; docs/BENCHMARKS.md has the figures and the command.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

KIB = 1024
MIB = 1024 * KIB
SIZES = [64, 256, KIB, 16 * KIB, 64 * KIB, MIB, 4 * MIB]


def pytest_collection_modifyitems(config: Any, items: list) -> None:
    for item in items:
        item.add_marker(pytest.mark.benchmark)


@pytest.fixture(scope="session")
def payloads() -> dict:
    return {size: os.urandom(size) for size in SIZES}
