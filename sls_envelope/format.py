"""The v1 batch format: one sealed log batch, self-describing and versioned.

Layout (big-endian; the full specification with derivations, limits and test vectors
is docs/FORMAT.md)::

    offset size  field
         0    4  magic  b"SLSE"
         4    1  version        1
         5    1  suite          1 = AES-256-GCM + HKDF-SHA256, 2 = SM4-GCM + HKDF-SM3
         6    1  flags          0 (reserved; any other value is refused)
         7   16  key_ref        random id of the Logstore key record
        23   32  session salt   fresh per process session (secrets.token_bytes)
        55   12  nonce          4-byte session prefix || 64-bit big-endian counter
        67   32  commitment     key commitment for (data key, salt, suite, key_ref, context)
        99    n  ciphertext
      99+n   16  GCM tag        over AAD = bytes 0..98 (the whole header)

Each process session derives ``session_key || commitment`` = HKDF(hash, ikm = the
Logstore data key, salt = session salt, info = label || suite || key_ref || project ||
Logstore) and counts nonces from 0, so a (session key, nonce) pair never repeats:
a new session (new salt, new key) starts before ``SESSION_MAX_BATCHES`` batches or
``SESSION_MAX_BYTES`` bytes, in every forked child and in every new process.

This module is the wire format only (constants, suites, derivation, header, parsing,
:func:`inspect`, structure checks); sessions, the nonce policy and the fork hook that
seal and open it are :mod:`sls_envelope.session_codec` (:class:`BatchCodec`).
"""

from __future__ import annotations

import dataclasses
import struct
from typing import Any, Dict, Tuple, Type, Union

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .aead import AESGCM, SM4GCM, Buffer
from .exceptions import FormatError

__all__ = [
    "MAGIC",
    "VERSION",
    "HEADER_LEN",
    "NONCE_OFFSET",
    "TAG_LEN",
    "MIN_BLOB_LEN",
    "SESSION_MAX_BATCHES",
    "SESSION_MAX_BYTES",
    "Suite",
    "SUITES",
    "suite_by_name",
    "Header",
    "parse_header",
    "inspect",
    "session_info",
]

MAGIC = b"SLSE"
VERSION = 1

_HEADER = struct.Struct(">4sBBB16s32s12s32s")
HEADER_LEN = _HEADER.size  # 99
KEY_REF_OFFSET = 7
SALT_OFFSET = 23
NONCE_OFFSET = 55
COMMIT_OFFSET = 67
KEY_REF_LEN = 16
SALT_LEN = 32
NONCE_PREFIX_LEN = 4
COMMIT_LEN = 32
TAG_LEN = 16
MIN_BLOB_LEN = HEADER_LEN + TAG_LEN  # an empty batch

#: Batches per session key.  The nonce counter has 64 bits, so this is not about
#: nonce space: it keeps every session key far below the 2^32 invocations that
#: SP 800-38D section 8.3 allows a key, with a factor-2 margin (docs/FORMAT.md).
SESSION_MAX_BATCHES = 2**31
#: Plaintext bytes per session key: 2^40 bytes = 2^36 blocks of 16 bytes.  With
#: sigma + q <= 2^36 + 2^31 blocks, the confidentiality advantage bound
#: (sigma + q + 1)^2 / 2^129 of draft-irtf-cfrg-aead-limits is about 2^-57.
SESSION_MAX_BYTES = 2**40

_INFO_LABEL = b"sls-envelope v1 session"


@dataclasses.dataclass(frozen=True)
class Suite:
    """An AEAD and the KDF hash that goes with it."""

    id: int
    name: str
    aead: Type[Union[AESGCM, SM4GCM]]
    key_len: int
    hash: Type[hashes.HashAlgorithm]

    def kdf(self, length: int, salt: bytes, info: bytes) -> HKDF:
        return HKDF(algorithm=self.hash(), length=length, salt=salt, info=info)


#: Suite 1 is all NIST (AES, SHA-256); suite 2 is all SM (SM4, SM3), as GB/T and
#: RFC 8998 deployments require.
SUITES: Dict[int, Suite] = {
    1: Suite(1, "aes-256-gcm", AESGCM, 32, hashes.SHA256),
    2: Suite(2, "sm4-gcm", SM4GCM, 16, hashes.SM3),
}
_BY_NAME = {suite.name: suite for suite in SUITES.values()}


def suite_by_name(name: str) -> Suite:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown suite {name!r}; expected one of {sorted(_BY_NAME)}") from None


def session_info(suite: Suite, key_ref: bytes, project: str, logstore: str) -> bytes:
    """HKDF info: label || suite id || key_ref || u16 len || project || u16 len || Logstore.

    Length prefixes make the encoding injective, so no two (project, Logstore) pairs
    share an info string."""
    if len(key_ref) != KEY_REF_LEN:
        raise ValueError(f"key_ref must be {KEY_REF_LEN} bytes")
    parts = [_INFO_LABEL, bytes([suite.id]), key_ref]
    for what, name in (("project", project), ("logstore", logstore)):
        raw = name.encode("utf-8")
        if len(raw) > 0xFFFF:
            raise ValueError(f"{what} name is longer than 65535 bytes")
        parts.append(struct.pack(">H", len(raw)) + raw)
    return b"".join(parts)


def _derive(suite: Suite, data_key: Buffer, salt: bytes, info: bytes) -> Tuple[Union[AESGCM, SM4GCM], bytes]:
    """The session AEAD and the 32-byte key commitment.

    The derived key lives only in a bytearray that is zeroed once the C context (which
    wipes itself on free) holds it."""
    okm = bytearray(suite.key_len + COMMIT_LEN)
    try:
        suite.kdf(len(okm), salt, info).derive_into(data_key, okm)
        aead = suite.aead(memoryview(okm)[: suite.key_len])
        commitment = bytes(okm[suite.key_len :])
    finally:
        okm[:] = bytes(len(okm))
    return aead, commitment


# ---- parsing ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Header:
    version: int
    suite: Suite
    flags: int
    key_ref: bytes
    salt: bytes
    nonce: bytes
    commitment: bytes


def _as_bytes(blob: Any) -> bytes:
    if type(blob) is bytes:
        return blob
    if isinstance(blob, (bytearray, memoryview)):
        try:
            return memoryview(blob).tobytes()
        except (TypeError, ValueError):
            pass
    raise FormatError(f"a sealed batch must be bytes, bytearray or memoryview, not {type(blob).__name__}")


def _check_structure(data: bytes) -> Suite:
    """Everything that can be checked without a key; FormatError on any problem."""
    if len(data) < MIN_BLOB_LEN:
        if len(data) >= 4 and data[:4] != MAGIC:
            raise FormatError("not a sls-envelope batch (bad magic)")
        raise FormatError(f"truncated batch: {len(data)} bytes, at least {MIN_BLOB_LEN} expected")
    if data[:4] != MAGIC:
        raise FormatError("not a sls-envelope batch (bad magic)")
    if data[4] != VERSION:
        raise FormatError(f"unsupported batch format version {data[4]}")
    suite = SUITES.get(data[5])
    if suite is None:
        raise FormatError(f"unknown suite {data[5]}")
    if data[6] != 0:
        raise FormatError(f"reserved flags byte is {data[6]}, must be 0")
    return suite


def parse_header(blob: Any) -> Header:
    """The header of a sealed batch, without decrypting; FormatError if malformed."""
    data = _as_bytes(blob)
    suite = _check_structure(data)
    _, version, _, flags, key_ref, salt, nonce, commitment = _HEADER.unpack_from(data)
    return Header(version, suite, flags, key_ref, salt, nonce, commitment)


def inspect(blob: Any) -> Dict[str, Any]:
    """What a sealed batch says about itself, without a key: version, suite, key_ref,
    session (salt), nonce, counter, commitment (hex) and lengths."""
    header = parse_header(blob)
    return {
        "version": header.version,
        "suite": header.suite.name,
        "flags": header.flags,
        "key_ref": header.key_ref.hex(),
        "session": header.salt.hex(),
        "nonce": header.nonce.hex(),
        "counter": int.from_bytes(header.nonce[NONCE_PREFIX_LEN:], "big"),
        "commitment": header.commitment.hex(),
        "header_len": HEADER_LEN,
        "ciphertext_len": len(blob) - HEADER_LEN - TAG_LEN,
    }
