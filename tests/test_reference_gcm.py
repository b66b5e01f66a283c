"""The tests' own SM4-GCM reference (tests/reference_gcm.py) against RFC 8998 and OpenSSL."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from . import reference_gcm
from .vectors import sm4_standard


def test_rfc8998_a1() -> None:
    v = sm4_standard()["rfc8998-a1-gcm"]
    key, iv, pt, aad = (bytes.fromhex(v[k]) for k in ("key", "iv", "plaintext", "aad"))
    assert reference_gcm.sm4_gcm_encrypt(key, iv, pt, aad) == bytes.fromhex(v["ciphertext"] + v["tag"])


@pytest.mark.skipif(reference_gcm.UNDER_MEMCHECK, reason="OpenSSL's SM4-GCM tag is undefined to memcheck")
@settings(max_examples=25, deadline=None)
@given(key=st.binary(min_size=16, max_size=16), nonce=st.binary(min_size=12, max_size=12),
       data=st.binary(max_size=70), aad=st.binary(max_size=40))
def test_matches_openssl(key: bytes, nonce: bytes, data: bytes, aad: bytes) -> None:
    enc = Cipher(algorithms.SM4(key), modes.GCM(nonce)).encryptor()
    enc.authenticate_additional_data(aad)
    assert reference_gcm.sm4_gcm_encrypt(key, nonce, data, aad) == enc.update(data) + enc.finalize() + enc.tag
