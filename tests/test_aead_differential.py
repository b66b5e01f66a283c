"""Differential tests against OpenSSL (through `cryptography`) and gmssl, with hypothesis,
for every implementation: random sizes from 0 to 70,000 bytes, unaligned views, random AAD,
and single-bit tampering of every input."""

from __future__ import annotations

import random
from typing import Any, Callable, Optional

import gmssl.sm4
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM as OpenSslAesGcm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sls_envelope import SM4GCM, InvalidTag
from sls_envelope._native import ffi, lib

DIFF_SETTINGS = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

sizes = st.one_of(st.integers(0, 300), st.integers(0, 70_000))
aad_sizes = st.one_of(st.integers(0, 40), st.integers(0, 600))


def openssl_seal(alg: str, key: bytes, nonce: bytes, data: bytes, aad: bytes) -> bytes:
    if alg == "aes":
        return OpenSslAesGcm(key).encrypt(nonce, data, aad)
    encryptor = Cipher(algorithms.SM4(key), modes.GCM(nonce)).encryptor()
    encryptor.authenticate_additional_data(aad)
    return encryptor.update(data) + encryptor.finalize() + encryptor.tag


def unaligned(data: bytes, offset: int, kind: str) -> Any:
    """data behind a view that starts `offset` bytes into its buffer."""
    backing = bytearray(offset) + bytearray(data) + bytearray(3)
    view = memoryview(backing)[offset : offset + len(data)]
    return view if kind == "memoryview" else bytes(view) if kind == "bytes" else bytearray(view)


def random_key(alg: str, rng: random.Random) -> bytes:
    return rng.randbytes(rng.choice([16, 24, 32]) if alg == "aes" else 16)


@DIFF_SETTINGS
@given(
    size=sizes,
    aad_size=aad_sizes,
    offset=st.integers(0, 15),
    kind=st.sampled_from(["bytes", "bytearray", "memoryview"]),
    seed=st.integers(0, 2**32),
)
def test_matches_openssl(aead_factory: Callable[[bytes], Any], size: int, aad_size: int,
                         offset: int, kind: str, seed: int) -> None:
    rng = random.Random(seed)
    alg = aead_factory.alg  # type: ignore[attr-defined]
    key, nonce = random_key(alg, rng), rng.randbytes(12)
    data, aad = rng.randbytes(size), rng.randbytes(aad_size)
    expected = openssl_seal(alg, key, nonce, data, aad)
    aead = aead_factory(key)
    assert aead.encrypt(nonce, unaligned(data, offset, kind), unaligned(aad, offset, kind)) == expected
    assert aead.decrypt(nonce, unaligned(expected, offset, kind), aad) == data
    # The zero-copy variants, into an unaligned writable view.
    out = memoryview(bytearray(len(expected) + offset + 1))[offset + 1 :]
    assert aead.encrypt_into(nonce, data, aad, out) == len(expected)
    assert bytes(out[: len(expected)]) == expected
    back = memoryview(bytearray(size + offset + 1))[offset + 1 :]
    assert aead.decrypt_into(nonce, expected, unaligned(aad, offset, kind), back) == size
    assert bytes(back[:size]) == data


@DIFF_SETTINGS
@given(size=st.integers(0, 2000), aad_size=st.integers(0, 64), seed=st.integers(0, 2**32),
       data=st.data())
def test_every_single_bit_flip_is_rejected(aead_factory: Callable[[bytes], Any], size: int,
                                           aad_size: int, seed: int, data: Any) -> None:
    rng = random.Random(seed)
    alg = aead_factory.alg  # type: ignore[attr-defined]
    key, nonce = random_key(alg, rng), rng.randbytes(12)
    msg, aad = rng.randbytes(size), rng.randbytes(aad_size)
    aead = aead_factory(key)
    sealed = aead.encrypt(nonce, msg, aad)
    target = data.draw(st.sampled_from(["ciphertext", "tag", "aad", "nonce"] if aad_size else
                                       ["ciphertext", "tag", "nonce"]))
    if target == "ciphertext" and size == 0:
        target = "tag"
    region = {"ciphertext": (0, size), "tag": (size, size + 16), "aad": (0, aad_size), "nonce": (0, 12)}
    start, end = region[target]
    bit = data.draw(st.integers(8 * start, 8 * end - 1))

    def flip(buf: bytes) -> bytes:
        out = bytearray(buf)
        out[bit // 8] ^= 1 << (bit % 8)
        return bytes(out)

    args = {"nonce": nonce, "data": sealed, "associated_data": aad}
    key_of = {"ciphertext": "data", "tag": "data", "aad": "associated_data", "nonce": "nonce"}
    args[key_of[target]] = flip(args[key_of[target]])
    with pytest.raises(InvalidTag):
        aead.decrypt(**args)
    # decrypt_into leaves nothing of the plaintext behind on failure.
    out = bytearray(b"\xaa" * max(size, 1))
    with pytest.raises(InvalidTag):
        aead.decrypt_into(args["nonce"], args["data"], args["associated_data"], out)
    assert out[:size] == bytes(size)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(blocks=st.integers(1, 40), seed=st.integers(0, 2**32))
def test_sm4_blocks_match_gmssl(sm4_impl: str, blocks: int, seed: int) -> None:
    rng = random.Random(seed)
    key, data = rng.randbytes(16), rng.randbytes(16 * blocks)
    oracle = gmssl.sm4.CryptSM4(padding_mode=gmssl.sm4.ZERO)
    oracle.set_key(key, gmssl.sm4.SM4_ENCRYPT)
    expected = bytes(oracle.crypt_ecb(data))[: len(data)]
    aead = SM4GCM(key, impl=sm4_impl)
    out = ffi.new("uint8_t[]", len(data))
    assert lib.sls_env_block_encrypt(aead._ctx, data, out, blocks) == lib.SLS_ENV_OK
    assert bytes(ffi.buffer(out)) == expected


@DIFF_SETTINGS
@given(count=st.integers(0, 40), equal=st.booleans(), aad_mode=st.sampled_from(["none", "shared", "each"]),
       seed=st.integers(0, 2**32))
def test_batch_equals_single(aead_factory: Callable[[bytes], Any], count: int, equal: bool,
                             aad_mode: str, seed: int) -> None:
    rng = random.Random(seed)
    alg = aead_factory.alg  # type: ignore[attr-defined]
    aead = aead_factory(random_key(alg, rng))
    nonces = [rng.randbytes(12) for _ in range(count)]
    length = rng.randrange(0, 3000)
    messages = [rng.randbytes(length if equal else rng.randrange(0, 3000)) for _ in range(count)]
    shared = rng.randbytes(rng.randrange(0, 50))
    aads: Optional[Any] = {"none": None, "shared": shared,
                           "each": [rng.randbytes(rng.randrange(0, 50)) for _ in range(count)]}[aad_mode]

    def aad_of(i: int) -> Optional[bytes]:
        return aads[i] if isinstance(aads, list) else aads

    sealed = aead.encrypt_many(nonces, messages, aads)
    assert sealed == [aead.encrypt(n, m, aad_of(i)) for i, (n, m) in enumerate(zip(nonces, messages))]
    assert aead.decrypt_many(nonces, sealed, aads) == messages
    if count:
        victim = rng.randrange(count)
        broken = list(sealed)
        tampered = bytearray(broken[victim])
        tampered[rng.randrange(len(tampered))] ^= 1 << rng.randrange(8)
        broken[victim] = bytes(tampered)
        with pytest.raises(InvalidTag) as info:
            aead.decrypt_many(nonces, broken, aads)
        assert info.value.index == victim
