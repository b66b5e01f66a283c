"""Regenerate tests/vectors/format_v1.json (deterministic: fixed keys, salts, prefixes, counters).

    PYTHONPATH=. python tests/vectors/make_format_v1.py

The blobs come from sls_envelope.format's private deterministic hook; the session keys
and commitments are recomputed here with pyca/cryptography's HKDF, and the tests check
every blob against an independent AES-GCM / SM4-GCM computation as well.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List

from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sls_envelope.format import SUITES, session_info, suite_by_name
from sls_envelope.session_codec import _seal_with

HERE = os.path.dirname(os.path.abspath(__file__))


def _pattern(n: int, seed: int) -> bytes:
    return bytes((seed + 7 * i) & 0xFF for i in range(n))


CASES: List[Dict[str, Any]] = [
    {"name": "aes empty batch", "suite": "aes-256-gcm", "project": "my-project", "logstore": "my-logstore",
     "counter": 0, "plaintext": b""},
    {"name": "aes short batch", "suite": "aes-256-gcm", "project": "my-project", "logstore": "my-logstore",
     "counter": 1, "plaintext": b"hello, log service"},
    {"name": "aes 100 bytes, high counter", "suite": "aes-256-gcm", "project": "p", "logstore": "l",
     "counter": 2**31 - 1, "plaintext": _pattern(100, 3)},
    {"name": "sm4 empty batch", "suite": "sm4-gcm", "project": "my-project", "logstore": "my-logstore",
     "counter": 0, "plaintext": b""},
    {"name": "sm4 short batch", "suite": "sm4-gcm", "project": "my-project", "logstore": "my-logstore",
     "counter": 1, "plaintext": b"hello, log service"},
    {"name": "sm4 non-ascii names", "suite": "sm4-gcm", "project": "项目", "logstore": "日志库",
     "counter": 5, "plaintext": _pattern(65, 11)},
]


def build() -> Dict[str, Any]:
    vectors = []
    for index, case in enumerate(CASES):
        suite = suite_by_name(case["suite"])
        data_key = _pattern(32, 0x40 + index)
        key_ref = _pattern(16, 0xA0 + index)
        salt = _pattern(32, 0x10 + index)
        prefix = _pattern(4, 0xF0 + index)
        info = session_info(suite, key_ref, case["project"], case["logstore"])
        okm = HKDF(suite.hash(), suite.key_len + 32, salt, info).derive(data_key)
        (blob,) = _seal_with(
            suite.name, data_key, key_ref, case["project"], case["logstore"],
            salt=salt, nonce_prefix=prefix, counter=case["counter"], batches=[case["plaintext"]],
        )
        vectors.append({
            "name": case["name"], "suite": suite.name, "suite_id": suite.id,
            "project": case["project"], "logstore": case["logstore"],
            "data_key": data_key.hex(), "key_ref": key_ref.hex(), "salt": salt.hex(),
            "nonce_prefix": prefix.hex(), "counter": case["counter"], "hkdf_info": info.hex(),
            "session_key": okm[: suite.key_len].hex(), "commitment": okm[suite.key_len:].hex(),
            "plaintext": case["plaintext"].hex(), "blob": blob.hex(),
        })
    return {
        "format": "sls-envelope batch format v1",
        "note": "see docs/FORMAT.md; hex strings; names are UTF-8",
        "suites": {str(s.id): s.name for s in SUITES.values()},
        "vectors": vectors,
    }


if __name__ == "__main__":
    with open(os.path.join(HERE, "format_v1.json"), "w", encoding="utf-8") as handle:
        json.dump(build(), handle, indent=2, ensure_ascii=False)
        handle.write("\n")
