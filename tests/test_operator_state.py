"""What a new operator tripped on in the home directory's state (issue 13 items 7, 8, 10-13)."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from typing import Any, List

import pytest

from sls_envelope.home import Home
from sls_envelope.kms.local import LocalKms

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _first_service_logstore(home: str, name: str, barrier: Any) -> None:
    barrier.wait()
    manager = Home(home).open_manager()
    manager.create_logstore("proj", name, {"enable": True, "encrypt_type": "default"})
    manager.close()


def test_a_fresh_home_used_by_8_processes_at_once_makes_one_service_cmk(tmp_path: Any) -> None:
    """Item 11: the first use is race-free: one CMK; the other processes reuse it."""
    ctx = multiprocessing.get_context("spawn")
    for round_ in range(3):
        home = str(tmp_path / f"home{round_}")
        barrier = ctx.Barrier(8)
        workers = [ctx.Process(target=_first_service_logstore, args=(home, f"store{i}", barrier)) for i in range(8)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(120)
            assert w.exitcode == 0
        keys = LocalKms(os.path.join(home, "kms")).list_keys()
        assert len(keys) == 1, keys
        records = Home(home).open_manager().list_logstores()
        assert {r.cmk_key_id for r in records} == {keys[0]["KeyId"]} and len(records) == 8
