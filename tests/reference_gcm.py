"""GCM written out in Python (NIST SP 800-38D, sections 6.3-7.1) over any 128-bit block cipher.

The tests use it with gmssl's pure-Python SM4 as an SM4-GCM reference that shares no code
with OpenSSL or with our kernel.  It is slow (a few ms per block) and meant for short messages.

Why it exists beside the OpenSSL reference: under valgrind memcheck (scripts/c-checks.sh
memcheck), the SM4-GCM tag that the OpenSSL inside the ``cryptography`` wheel returns is
reported as undefined when it is compared (cryptography 50.0.2 and 51.0.1 alike, with no
sls_envelope module loaded: ``scripts/memcheck-probe-openssl-sm4.py``).  The memcheck stage
judges our extension, so there the tests take their SM4-GCM references from this module
(``UNDER_MEMCHECK``); everywhere else they compare against OpenSSL as well.
"""

from __future__ import annotations

import os
import struct
from typing import Callable

import gmssl.sm4

BlockFn = Callable[[bytes], bytes]

# Set by scripts/c-checks.sh's memcheck stage.
UNDER_MEMCHECK = os.environ.get("SLS_ENVELOPE_UNDER_MEMCHECK") == "1"

_R = 0xE1 << 120  # the reduction constant of GF(2^128) in GCM's bit order (SP 800-38D 6.3)


def _gf_mul(x: int, y: int) -> int:
    """Algorithm 1 of SP 800-38D: the product of two blocks, bit 0 being the leftmost."""
    z, v = 0, y
    for i in range(127, -1, -1):
        if (x >> i) & 1:
            z ^= v
        v = (v >> 1) ^ _R if v & 1 else v >> 1
    return z


def _ghash(h: int, data: bytes) -> int:
    y = 0
    for i in range(0, len(data), 16):
        y = _gf_mul(y ^ int.from_bytes(data[i:i + 16], "big"), h)
    return y


def _pad16(data: bytes) -> bytes:
    return data + bytes(-len(data) % 16)


def gcm_encrypt(block: BlockFn, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """Ciphertext || 16-byte tag.  96-bit nonces only (J0 = IV || 0^31 || 1)."""
    if len(nonce) != 12:
        raise ValueError("this reference takes 96-bit nonces only")
    h = int.from_bytes(block(bytes(16)), "big")
    j0 = nonce + b"\x00\x00\x00\x01"
    out = bytearray()
    for i in range(0, len(plaintext), 16):
        counter = nonce + struct.pack(">I", 2 + i // 16)
        keystream = block(counter)
        chunk = plaintext[i:i + 16]
        out += bytes(a ^ b for a, b in zip(chunk, keystream))
    lengths = struct.pack(">QQ", len(aad) * 8, len(plaintext) * 8)
    s = _ghash(h, _pad16(aad) + _pad16(bytes(out)) + lengths)
    tag = (s ^ int.from_bytes(block(j0), "big")).to_bytes(16, "big")
    return bytes(out) + tag


def sm4_block(key: bytes) -> BlockFn:
    """One SM4 block encryption (GB/T 32907-2016) through gmssl's pure-Python code."""
    cipher = gmssl.sm4.CryptSM4(padding_mode=gmssl.sm4.ZERO)
    cipher.set_key(key, gmssl.sm4.SM4_ENCRYPT)
    return lambda data: bytes(cipher.crypt_ecb(data))[:16]


def sm4_gcm_encrypt(key: bytes, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
    return gcm_encrypt(sm4_block(key), nonce, plaintext, aad)
