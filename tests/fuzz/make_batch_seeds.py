"""Write the seed corpus of the C batch fuzzer (tests/fuzz/fuzz_batch.c) to tests/fuzz/corpus_batch/.

Each seed follows the harness's input layout: a selector byte (bit 0: SM4, bits 1-2: AES key
size, bits 3+: implementation index), the key, the operation (0 decrypt_many, 1 open_record,
2 encrypt/decrypt round trip, 3 seal/open records), then that operation's fields.  The
decrypt seeds carry valid ciphertexts made with pyca/cryptography (an independent
implementation), so the fuzzer starts from inputs that reach the success paths.

    python tests/fuzz/make_batch_seeds.py      # deterministic: same bytes every run
"""

from __future__ import annotations

import pathlib
import random
import struct

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

OUT = pathlib.Path(__file__).resolve().parent / "corpus_batch"


def seal(sm4: bool, key: bytes, nonce: bytes, aad: bytes, msg: bytes) -> bytes:
    if not sm4:
        return AESGCM(key).encrypt(nonce, msg, aad)
    enc = Cipher(algorithms.SM4(key), modes.GCM(nonce)).encryptor()
    enc.authenticate_additional_data(aad)
    return enc.update(msg) + enc.finalize() + enc.tag


def selector(sm4: bool, key_len: int, impl: int) -> int:
    return (1 if sm4 else 0) | ({16: 0, 24: 1, 32: 2}[key_len] << 1) | (impl << 3)


def decrypt_many_seed(rng: random.Random, sm4: bool, key_len: int, impl: int, n: int,
                      shared: bool) -> bytes:
    key = rng.randbytes(key_len)
    nonces = [rng.randbytes(12) for _ in range(n)]
    msgs = [rng.randbytes(rng.randrange(0, 300)) for _ in range(n)]
    aads = [rng.randbytes(rng.randrange(0, 40)) for _ in range(n)]
    if shared:
        aads = [aads[0]] * n if n else []
    cts = [seal(sm4, key, nonces[i], aads[i], msgs[i]) for i in range(n)]
    out = bytes([selector(sm4, key_len, impl)]) + key + bytes([0, n, int(shared)])
    out += b"".join(nonces)
    for i in range(n):
        out += struct.pack(">HB", len(cts[i]), len(aads[i]))
    out += (aads[0] if n else b"") if shared else b"".join(aads)
    return out + b"".join(cts)


def open_record_seed(rng: random.Random, sm4: bool, impl: int) -> bytes:
    key = rng.randbytes(16)
    header_len, nonce_offset = 28, 8  # the v1 batch header's shape: magic/ids, then the nonce
    header = bytearray(rng.randbytes(header_len))
    msg = rng.randbytes(rng.randrange(0, 200))
    nonce = bytes(header[nonce_offset:nonce_offset + 12])
    record = bytes(header) + seal(sm4, key, nonce, bytes(header), msg)
    return bytes([selector(sm4, 16, impl)]) + key + bytes([1, header_len, nonce_offset]) + record


def round_trip_seed(rng: random.Random, sm4: bool, key_len: int, impl: int) -> bytes:
    n = rng.randrange(1, 6)
    out = bytes([selector(sm4, key_len, impl)]) + rng.randbytes(key_len) + bytes([2, n, 20])
    out += rng.randbytes(12 * n) + rng.randbytes(20)
    lens = [rng.choice([0, 1, 15, 16, 17, 64, 127, 128, 129, 500]) for _ in range(n)]
    out += b"".join(struct.pack(">H", x) for x in lens)
    return out + rng.randbytes(sum(lens)) + bytes([3, 7, 5])


def records_seed(rng: random.Random, sm4: bool, impl: int, counter0: int) -> bytes:
    n = rng.randrange(1, 5)
    out = bytes([selector(sm4, 16, impl)]) + rng.randbytes(16) + bytes([3, 16, 8, n])
    out += rng.randbytes(28) + rng.randbytes(4) + struct.pack(">Q", counter0)
    lens = [rng.randrange(0, 300) for _ in range(n)]
    out += b"".join(struct.pack(">H", x) for x in lens)
    return out + rng.randbytes(sum(lens))


def main() -> None:
    rng = random.Random(20260701)
    OUT.mkdir(exist_ok=True)
    seeds = {}
    for sm4 in (False, True):
        name = "sm4" if sm4 else "aes"
        for impl in range(3):
            for key_len in ((16,) if sm4 else (16, 24, 32)):
                seeds[f"decrypt_many_{name}{key_len * 8}_impl{impl}"] = decrypt_many_seed(
                    rng, sm4, key_len, impl, 3, False)
                seeds[f"round_trip_{name}{key_len * 8}_impl{impl}"] = round_trip_seed(
                    rng, sm4, key_len, impl)
            seeds[f"decrypt_many_shared_aad_{name}_impl{impl}"] = decrypt_many_seed(
                rng, sm4, 16, impl, 4, True)
            seeds[f"open_record_{name}_impl{impl}"] = open_record_seed(rng, sm4, impl)
            seeds[f"records_{name}_impl{impl}"] = records_seed(rng, sm4, impl, 1)
        seeds[f"records_counter_wrap_{name}"] = records_seed(rng, sm4, 0, 2**64 - 2)
        seeds[f"decrypt_many_empty_{name}"] = decrypt_many_seed(rng, sm4, 16, 0, 0, False)
    for old in OUT.iterdir():
        old.unlink()
    for name, data in sorted(seeds.items()):
        (OUT / name).write_bytes(data)
    print(f"{len(seeds)} seeds in {OUT}")


if __name__ == "__main__":
    main()
