"""Logstore encryption against the bare AEADs (pytest-benchmark).

    PYTHONPATH=. python -m pytest benches/bench_logstore.py --benchmark-only \
        --benchmark-group-by=group --benchmark-columns=min,median,ops

Targets (issue 4): LogstoreCipher.encrypt of a 64 KiB batch within 10% of the raw
AESGCM.encrypt of the same kernel; encrypt_many of 1 KiB batches at least as many
batches per second as a Python loop of cryptography's bare AESGCM.encrypt.  Each group
also shows cryptography's AESGCM side by side.  No KMS call happens on these paths
(service key, no revalidation due).
"""

from __future__ import annotations

import os
from typing import Any, List

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM as PycaAESGCM

from sls_envelope import AESGCM, SM4GCM, KeyManager, LogstoreCipher
from sls_envelope.kms import LocalKms

KEY = os.urandom(32)
NONCE = os.urandom(12)
AAD = os.urandom(99)  # the v1 header is 99 bytes of AAD
BATCH_64K = os.urandom(64 * 1024)
BATCHES_1K: List[bytes] = [os.urandom(1024) for _ in range(1000)]


def _cipher(encrypt_type: str) -> LogstoreCipher:
    cipher = KeyManager(LocalKms()).create_logstore("bench", "store", {"enable": True, "encrypt_type": encrypt_type})
    assert cipher is not None
    return cipher


AES_CIPHER = _cipher("default")
SM4_CIPHER = _cipher("sm4")


# ---- one 64 KiB batch -------------------------------------------------------------------------


@pytest.mark.benchmark(group="aes 64KiB encrypt")
def test_logstore_encrypt_64k(benchmark: Any) -> None:
    benchmark(AES_CIPHER.encrypt, BATCH_64K)


@pytest.mark.benchmark(group="aes 64KiB encrypt")
def test_raw_aesgcm_encrypt_64k(benchmark: Any) -> None:
    benchmark(AESGCM(KEY).encrypt, NONCE, BATCH_64K, AAD)


@pytest.mark.benchmark(group="aes 64KiB encrypt")
def test_pyca_aesgcm_encrypt_64k(benchmark: Any) -> None:
    benchmark(PycaAESGCM(KEY).encrypt, NONCE, BATCH_64K, AAD)


@pytest.mark.benchmark(group="aes 64KiB decrypt")
def test_logstore_decrypt_64k(benchmark: Any) -> None:
    benchmark(AES_CIPHER.decrypt, AES_CIPHER.encrypt(BATCH_64K))


@pytest.mark.benchmark(group="aes 64KiB decrypt")
def test_raw_aesgcm_decrypt_64k(benchmark: Any) -> None:
    aead = AESGCM(KEY)
    benchmark(aead.decrypt, NONCE, aead.encrypt(NONCE, BATCH_64K, AAD), AAD)


@pytest.mark.benchmark(group="sm4 64KiB encrypt")
def test_logstore_sm4_encrypt_64k(benchmark: Any) -> None:
    benchmark(SM4_CIPHER.encrypt, BATCH_64K)


@pytest.mark.benchmark(group="sm4 64KiB encrypt")
def test_raw_sm4gcm_encrypt_64k(benchmark: Any) -> None:
    benchmark(SM4GCM(KEY[:16]).encrypt, NONCE, BATCH_64K, AAD)


# ---- 1000 batches of 1 KiB -------------------------------------------------------------------------


@pytest.mark.benchmark(group="aes 1000 x 1KiB encrypt")
def test_logstore_encrypt_many_1k(benchmark: Any) -> None:
    benchmark(AES_CIPHER.encrypt_many, BATCHES_1K)


@pytest.mark.benchmark(group="aes 1000 x 1KiB encrypt")
def test_logstore_encrypt_loop_1k(benchmark: Any) -> None:
    encrypt = AES_CIPHER.encrypt
    benchmark(lambda: [encrypt(b) for b in BATCHES_1K])


@pytest.mark.benchmark(group="aes 1000 x 1KiB encrypt")
def test_pyca_aesgcm_loop_1k(benchmark: Any) -> None:
    encrypt = PycaAESGCM(KEY).encrypt
    benchmark(lambda: [encrypt(NONCE, b, AAD) for b in BATCHES_1K])


@pytest.mark.benchmark(group="aes 1000 x 1KiB encrypt")
def test_raw_aesgcm_loop_1k(benchmark: Any) -> None:
    encrypt = AESGCM(KEY).encrypt
    benchmark(lambda: [encrypt(NONCE, b, AAD) for b in BATCHES_1K])


@pytest.mark.benchmark(group="aes 1000 x 1KiB decrypt")
def test_logstore_decrypt_many_1k(benchmark: Any) -> None:
    benchmark(AES_CIPHER.decrypt_many, AES_CIPHER.encrypt_many(BATCHES_1K))


@pytest.mark.benchmark(group="aes 1000 x 1KiB decrypt")
def test_pyca_aesgcm_decrypt_loop_1k(benchmark: Any) -> None:
    aead = PycaAESGCM(KEY)
    sealed = [aead.encrypt(NONCE, b, AAD) for b in BATCHES_1K]
    benchmark(lambda: [aead.decrypt(NONCE, c, AAD) for c in sealed])
