"""Known-answer tests: Wycheproof, NIST CAVP, RFC 8998, GB/T 32907, draft-ribose-cfrg-sm4,
for every implementation this CPU runs."""

from __future__ import annotations

import pytest

from sls_envelope import AESGCM, SM4GCM, InvalidTag
from sls_envelope._native import ffi, lib

from .vectors import nist_rsp, ribose, sm4_standard, wycheproof

AES_WYCHEPROOF = list(wycheproof("aes_gcm_test.json"))
SM4_WYCHEPROOF = list(wycheproof("sm4_gcm_test.json"))


def _check_wycheproof(cls: type, impl: str, tests: list) -> int:
    checked = 0
    for t in tests:
        aead = cls(t["key"], impl=impl)
        if t["ivSize"] != 96:
            # A 12-byte-nonce API must refuse every other IV size, both ways.
            with pytest.raises(ValueError):
                aead.encrypt(t["iv"], t["msg"], t["aad"])
            with pytest.raises(ValueError):
                aead.decrypt(t["iv"], t["ct"] + t["tag"], t["aad"])
            continue
        checked += 1
        if t["result"] == "valid":
            assert aead.encrypt(t["iv"], t["msg"], t["aad"]) == t["ct"] + t["tag"], t["tcId"]
            assert aead.decrypt(t["iv"], t["ct"] + t["tag"], t["aad"]) == t["msg"], t["tcId"]
        else:
            with pytest.raises(InvalidTag):
                aead.decrypt(t["iv"], t["ct"] + t["tag"], t["aad"])
    return checked


def test_wycheproof_aes_gcm(aes_impl: str) -> None:
    assert _check_wycheproof(AESGCM, aes_impl, AES_WYCHEPROOF) == 197


def test_wycheproof_sm4_gcm(sm4_impl: str) -> None:
    assert _check_wycheproof(SM4GCM, sm4_impl, SM4_WYCHEPROOF) == 65


@pytest.mark.parametrize("name", ["gcmEncryptExtIV128.rsp", "gcmEncryptExtIV256.rsp"])
def test_nist_cavp_encrypt(aes_impl: str, name: str) -> None:
    cases = nist_rsp(name)
    assert len(cases) == 375
    for case in cases:
        aead = AESGCM(case["Key"], impl=aes_impl)
        sealed = aead.encrypt(case["IV"], case["PT"], case["AAD"])
        assert sealed == case["CT"] + case["Tag"], case["count"]
        assert aead.decrypt(case["IV"], sealed, case["AAD"]) == case["PT"]


def test_nist_cavp_decrypt(aes_impl: str) -> None:
    cases = nist_rsp("gcmDecrypt256.rsp")
    assert len(cases) == 375 and any(c["fail"] for c in cases) and not all(c["fail"] for c in cases)
    for case in cases:
        aead = AESGCM(case["Key"], impl=aes_impl)
        sealed = case["CT"] + case["Tag"]
        if case["fail"]:
            with pytest.raises(InvalidTag):
                aead.decrypt(case["IV"], sealed, case["AAD"])
        else:
            assert aead.decrypt(case["IV"], sealed, case["AAD"]) == case["PT"], case["count"]


def test_rfc8998_a1_sm4_gcm(sm4_impl: str) -> None:
    v = sm4_standard()["rfc8998-a1-gcm"]
    aead = SM4GCM(bytes.fromhex(v["key"]), impl=sm4_impl)
    iv, aad = bytes.fromhex(v["iv"]), bytes.fromhex(v["aad"])
    pt, sealed = bytes.fromhex(v["plaintext"]), bytes.fromhex(v["ciphertext"] + v["tag"])
    assert aead.encrypt(iv, pt, aad) == sealed
    assert aead.decrypt(iv, sealed, aad) == pt


def _block_encrypt(aead: SM4GCM, block: bytes) -> bytes:
    out = ffi.new("uint8_t[]", len(block))
    assert lib.sls_env_block_encrypt(aead._ctx, block, out, len(block) // 16) == lib.SLS_ENV_OK
    return bytes(ffi.buffer(out))


def test_gbt32907_example1(sm4_impl: str) -> None:
    v = sm4_standard()["gbt32907-ex1"]
    aead = SM4GCM(bytes.fromhex(v["key"]), impl=sm4_impl)
    assert _block_encrypt(aead, bytes.fromhex(v["plaintext"])) == bytes.fromhex(v["ciphertext"])


def test_gbt32907_example2_million_iterations(sm4_impl: str) -> None:
    v = sm4_standard()["gbt32907-ex2"]
    assert v["iterations"] == 1_000_000
    aead = SM4GCM(bytes.fromhex(v["key"]), impl=sm4_impl)
    block = ffi.new("uint8_t[16]", bytes.fromhex(v["plaintext"]))
    assert lib.sls_env_block_iterate(aead._ctx, block, v["iterations"]) == lib.SLS_ENV_OK
    assert bytes(ffi.buffer(block)) == bytes.fromhex(v["ciphertext"])


def test_ribose_sm4_ecb(sm4_impl: str) -> None:
    cases = ribose("ecb")
    assert cases
    for case in cases:
        aead = SM4GCM(case["KEY"], impl=sm4_impl)
        assert _block_encrypt(aead, case["PLAINTEXT"]) == case["CIPHERTEXT"]


def test_ribose_sm4_ctr_keystream(sm4_impl: str) -> None:
    """CTR = the block cipher over successive counter blocks (128-bit increment)."""
    cases = ribose("ctr")
    assert cases
    for case in cases:
        aead = SM4GCM(case["KEY"], impl=sm4_impl)
        start = int.from_bytes(case["IV"], "big")
        count = len(case["PLAINTEXT"]) // 16
        counters = b"".join(((start + i) % 2**128).to_bytes(16, "big") for i in range(count))
        stream = _block_encrypt(aead, counters)
        assert bytes(a ^ b for a, b in zip(case["PLAINTEXT"], stream)) == case["CIPHERTEXT"]


def test_fips197_aes_blocks(aes_impl: str) -> None:
    """FIPS 197 appendix C: one block with each key size."""
    pt = bytes.fromhex("00112233445566778899aabbccddeeff")
    expected = {
        16: "69c4e0d86a7b0430d8cdb78070b4c55a",
        24: "dda97ca4864cdfe06eaf70a0ec0d7191",
        32: "8ea2b7ca516745bfeafc49904b496089",
    }
    for size, ct in expected.items():
        aead = AESGCM(bytes(range(size)), impl=aes_impl)
        out = ffi.new("uint8_t[16]")
        assert lib.sls_env_block_encrypt(aead._ctx, pt, out, 1) == lib.SLS_ENV_OK
        assert bytes(ffi.buffer(out)) == bytes.fromhex(ct)
