"""AES-GCM and SM4-GCM: sls-envelope against `cryptography` (OpenSSL 4), single calls,
encrypt_into, batches of 1,000 and two threads."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM as OpenSslAesGcm

import sls_envelope
from sls_envelope import AESGCM, SM4GCM
from sls_envelope.bench import openssl_sm4_gcm

from .conftest import KIB, MIB, SIZES

NONCE = bytes(12)
AAD = b"project/logstore"
AES_IMPLS = sls_envelope.available_implementations()["aes-gcm"]
SM4_IMPLS = sls_envelope.available_implementations()["sm4-gcm"]



def set_info(benchmark: Any, size: int, count: int = 1) -> None:
    benchmark.extra_info["bytes_per_round"] = size * count
    benchmark.extra_info["messages_per_round"] = count


# ---- single-message encrypt ---------------------------------------------------------

@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("lib", ["cryptography"] + [f"sls-{name}" for name in AES_IMPLS])
def test_aes256_encrypt(benchmark: Any, payloads: dict, size: int, lib: str) -> None:
    benchmark.group = "aes-256-gcm encrypt"
    key = bytes(32)
    aead = OpenSslAesGcm(key) if lib == "cryptography" else AESGCM(key, impl=lib[4:])
    set_info(benchmark, size)
    benchmark(aead.encrypt, NONCE, payloads[size], AAD)


@pytest.mark.parametrize("size", [16 * KIB, 64 * KIB, MIB, 4 * MIB])
@pytest.mark.parametrize("lib", ["cryptography"] + [f"sls-{name}" for name in AES_IMPLS])
def test_aes256_encrypt_into(benchmark: Any, payloads: dict, size: int, lib: str) -> None:
    benchmark.group = "aes-256-gcm encrypt_into"
    key = bytes(32)
    aead = OpenSslAesGcm(key) if lib == "cryptography" else AESGCM(key, impl=lib[4:])
    buf = bytearray(size + 16)
    set_info(benchmark, size)
    benchmark(aead.encrypt_into, NONCE, payloads[size], AAD, buf)


@pytest.mark.parametrize("size", [KIB, 64 * KIB, MIB])
@pytest.mark.parametrize("lib", ["cryptography"] + [f"sls-{name}" for name in AES_IMPLS])
def test_aes256_decrypt(benchmark: Any, payloads: dict, size: int, lib: str) -> None:
    benchmark.group = "aes-256-gcm decrypt"
    key = bytes(32)
    aead = OpenSslAesGcm(key) if lib == "cryptography" else AESGCM(key, impl=lib[4:])
    sealed = aead.encrypt(NONCE, payloads[size], AAD)
    set_info(benchmark, size)
    benchmark(aead.decrypt, NONCE, sealed, AAD)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("lib", ["cryptography"] + [f"sls-{name}" for name in SM4_IMPLS])
def test_sm4_encrypt(benchmark: Any, payloads: dict, size: int, lib: str) -> None:
    benchmark.group = "sm4-gcm encrypt"
    key = bytes(16)
    if lib == "cryptography":
        encrypt = openssl_sm4_gcm(key)
    else:
        encrypt = SM4GCM(key, impl=lib[4:]).encrypt
    if lib in ("cryptography", "sls-portable") and size > MIB:
        pytest.skip("slow table-based or portable path: 1 MiB is enough")
    set_info(benchmark, size)
    benchmark(encrypt, NONCE, payloads[size], AAD)


# ---- batches of 1,000 equal messages -------------------------------------------------

@pytest.mark.parametrize("size", [64, 256, KIB, 16 * KIB])
@pytest.mark.parametrize("lib", ["cryptography-loop", "sls-loop", "sls-encrypt_many"])
@pytest.mark.parametrize("alg", ["aes-256-gcm", "sm4-gcm"])
def test_batch_1000(benchmark: Any, payloads: dict, size: int, lib: str, alg: str) -> None:
    benchmark.group = f"{alg} batch of 1000"
    count = 1000
    nonces = [i.to_bytes(12, "big") for i in range(count)]
    messages = [payloads[size]] * count
    if alg == "aes-256-gcm":
        ours: Any = AESGCM(bytes(32))
        theirs = OpenSslAesGcm(bytes(32)).encrypt
    else:
        if lib == "cryptography-loop" and size > KIB:
            pytest.skip("OpenSSL's SM4 is too slow for this to be useful")
        ours = SM4GCM(bytes(16))
        theirs = openssl_sm4_gcm(bytes(16))
    set_info(benchmark, size, count)
    if lib == "cryptography-loop":
        benchmark(lambda: [theirs(n, m, AAD) for n, m in zip(nonces, messages)])
    elif lib == "sls-loop":
        encrypt = ours.encrypt
        benchmark(lambda: [encrypt(n, m, AAD) for n, m in zip(nonces, messages)])
    else:
        benchmark(ours.encrypt_many, nonces, messages, AAD)


# ---- two threads ---------------------------------------------------------------------

@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("lib", ["cryptography", "sls"])
def test_aes256_threads_1mib(benchmark: Any, payloads: dict, threads: int, lib: str) -> None:
    """Total throughput of `threads` threads each encrypting 8 x 1 MiB (the GIL is released)."""
    benchmark.group = "aes-256-gcm 1 MiB x 8 per thread"
    aead = OpenSslAesGcm(bytes(32)) if lib == "cryptography" else AESGCM(bytes(32))
    data, per_thread = payloads[MIB], 8
    buffers = [bytearray(MIB + 16) for _ in range(threads)]

    def work(buf: bytearray) -> None:
        for _ in range(per_thread):
            aead.encrypt_into(NONCE, data, AAD, buf)

    def run() -> None:
        pool = [threading.Thread(target=work, args=(buffers[i],)) for i in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()

    set_info(benchmark, MIB, per_thread * threads)
    benchmark(run)
