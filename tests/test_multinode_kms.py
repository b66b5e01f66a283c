"""OpenBaoKms over several node addresses: a dead node is skipped, the node that
answered is kept, and a cluster with no node answering is KmsUnavailableError after
bounded retries.  (The node the real server fixture starts is one; the others are
loopback ports nothing listens on, i.e. killed nodes.)"""

from __future__ import annotations

import secrets
import time
from typing import Any

import pytest

from .backends import require_module

hvac = require_module("hvac", extra="openbao")

from .servers import OpenBaoServer, free_port  # noqa: E402
from sls_envelope.exceptions import KmsUnavailableError  # noqa: E402
from sls_envelope.kms.base import RetryPolicy  # noqa: E402
from sls_envelope.kms.openbao import OpenBaoKms  # noqa: E402

RETRIES = RetryPolicy(attempts=4, base_delay=0.001, max_delay=0.005)


def _key(server: OpenBaoServer) -> str:
    admin: Any = hvac.Client(url=server.url, token=server.root_token, timeout=10)
    name = "cmk-" + secrets.token_hex(6)
    admin.secrets.transit.create_key(name=name, key_type="aes256-gcm96")
    return name


def test_dead_nodes_are_skipped_and_the_live_one_kept(openbao_server: OpenBaoServer) -> None:
    dead = [f"http://127.0.0.1:{free_port()}" for _ in range(2)]
    kms = OpenBaoKms(dead + [openbao_server.url], token=openbao_server.root_token, retry_policy=RETRIES,
                     timeout=2)
    name = _key(openbao_server)
    ctx = {"project": "p", "logstore": "l"}
    t0 = time.perf_counter()
    dk = kms.generate_data_key(name, context=ctx)
    pause = time.perf_counter() - t0
    print(f"failover past 2 dead nodes: {pause * 1e3:.1f} ms")
    assert kms._clients[kms._current].url == openbao_server.url  # kept for later calls
    assert kms.decrypt(dk.ciphertext_blob, context=ctx) == dk.plaintext
    assert "token" not in repr(kms).lower() or openbao_server.root_token not in repr(kms)
    kms.close()


def test_no_node_answering_is_unavailable_after_bounded_retries() -> None:
    dead = [f"http://127.0.0.1:{free_port()}" for _ in range(3)]
    kms = OpenBaoKms(dead, token="t", retry_policy=RETRIES, timeout=1)
    with pytest.raises(KmsUnavailableError):
        kms.generate_data_key("cmk", context={"project": "p", "logstore": "l"})
    kms.close()


def test_url_list_must_be_non_empty() -> None:
    with pytest.raises(ValueError):
        OpenBaoKms([], token="t")
