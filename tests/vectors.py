"""Readers for the known-answer vector files under tests/vectors/ (see each SOURCE)."""

from __future__ import annotations

import json
import pathlib
from typing import Dict, Iterator, List

VECTORS = pathlib.Path(__file__).resolve().parent / "vectors"


def wycheproof(name: str) -> Iterator[Dict[str, object]]:
    """Every test of a Wycheproof AEAD file, flattened with its group's sizes."""
    data = json.loads((VECTORS / "wycheproof" / name).read_text())
    for group in data["testGroups"]:
        for test in group["tests"]:
            yield {
                "tcId": test["tcId"],
                "ivSize": group["ivSize"],
                "tagSize": group["tagSize"],
                "key": bytes.fromhex(test["key"]),
                "iv": bytes.fromhex(test["iv"]),
                "aad": bytes.fromhex(test["aad"]),
                "msg": bytes.fromhex(test["msg"]),
                "ct": bytes.fromhex(test["ct"]),
                "tag": bytes.fromhex(test["tag"]),
                "result": test["result"],
                "flags": test["flags"],
            }


def nist_rsp(name: str) -> List[Dict[str, object]]:
    """Cases of a NIST CAVP GCM .rsp file; a decrypt case with a bare FAIL line gets fail=True."""
    cases: List[Dict[str, object]] = []
    current: Dict[str, object] = {}
    for raw in (VECTORS / "nist-gcm" / name).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or line.startswith("["):
            continue
        if line == "FAIL":
            current["fail"] = True
            continue
        key, _, value = (part.strip() for part in line.partition("="))
        if key == "Count":
            current = {"count": int(value), "fail": False}
            cases.append(current)
        else:
            current[key] = bytes.fromhex(value)
    return cases


def sm4_standard() -> Dict[str, Dict[str, object]]:
    data = json.loads((VECTORS / "sm4" / "sm4_standard.json").read_text())
    return {vector["id"]: vector for vector in data["vectors"]}


def ribose(mode: str) -> List[Dict[str, bytes]]:
    """draft-ribose-cfrg-sm4-10 vectors for one mode (ecb, ctr)."""
    cases: List[Dict[str, bytes]] = []
    current: Dict[str, bytes] = {}
    for raw in (VECTORS / "sm4" / f"draft-ribose-cfrg-sm4-10-{mode}.txt").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", "[")):
            continue
        key, _, value = line.partition(" = ")
        if key.upper() == "COUNT":
            current = {}
            cases.append(current)
        else:
            current[key.upper()] = bytes.fromhex(value)
    return cases
