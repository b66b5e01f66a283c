"""The two byte encodings of an encryption context that backends bind as AES-GCM AAD.

KMSs that take a context natively (AWS KMS, Alibaba KMS) get the mapping as is; the
others bind one of these encodings instead.  Both are canonical (the same mapping gives
the same bytes whatever order it was built in, so a context written by one process
unwraps in another) and injective (two different mappings never give the same bytes).
They cannot merge: blobs already stored by each backend were sealed under its own.

* :func:`canonical_context` -- JSON with sorted keys, no whitespace, UTF-8.  Bound by the
  OpenBao transit backend (as ``associated_data``) and the PKCS#11 backend.
* :func:`length_prefixed_context` -- a big-endian u32 pair count, then each key and value
  (keys sorted) as a u32 length and its UTF-8 bytes.  Bound by LocalKms's wrapped blobs.
"""

from __future__ import annotations

import json
import struct
from typing import Dict, Mapping

from .base import EncryptionContext

__all__ = ["canonical_context", "checked_context", "length_prefixed_context"]


def checked_context(context: EncryptionContext) -> Dict[str, str]:
    """context as a plain dict, after checking every key and value is a str."""
    # A dict is checked first: isinstance against typing.Mapping goes through two Python-level
    # __instancecheck__ calls, and every KMS call checks a context (issue 15 item 9).
    if context.__class__ is not dict and not isinstance(context, Mapping):
        raise ValueError("encryption context must be a mapping of strings")
    checked: Dict[str, str] = {}
    for key, value in context.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ValueError("encryption context keys and values must be str")
        checked[key] = value
    return checked


def canonical_context(context: EncryptionContext) -> bytes:
    """The JSON encoding of context (empty mapping -> b"{}")."""
    return json.dumps(
        checked_context(context), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")


def length_prefixed_context(context: EncryptionContext) -> bytes:
    """The length-prefixed encoding of context (empty mapping -> four zero bytes)."""
    checked = checked_context(context)
    parts = [struct.pack(">I", len(checked))]
    for key in sorted(checked):
        for item in (key.encode("utf-8"), checked[key].encode("utf-8")):
            parts.append(struct.pack(">I", len(item)) + item)
    return b"".join(parts)
