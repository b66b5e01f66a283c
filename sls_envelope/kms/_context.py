"""The one byte encoding of an encryption context that backends bind as AES-GCM AAD.

KMSs that take a context natively (AWS KMS, Alibaba KMS) get the mapping as is;
backends that only take associated data (OpenBao transit, PKCS#11 AES-GCM) bind this
encoding instead.  It is canonical: JSON with sorted keys, no whitespace, UTF-8, so the
same mapping gives the same bytes whatever order it was built in, and a context
written by one process unwraps in another.
"""

from __future__ import annotations

import json
from typing import Dict

from .base import EncryptionContext

__all__ = ["canonical_context", "checked_context"]


def checked_context(context: EncryptionContext) -> Dict[str, str]:
    """context as a plain dict, after checking every key and value is a str."""
    checked: Dict[str, str] = {}
    for key, value in context.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ValueError("encryption context keys and values must be str")
        checked[key] = value
    return checked


def canonical_context(context: EncryptionContext) -> bytes:
    """The canonical bytes of context (empty mapping -> b"{}")."""
    return json.dumps(
        checked_context(context), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")
