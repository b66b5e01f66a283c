"""sls-envelope side by side with the libraries a user would pick instead (issue 19).

    /work/venv/bin/pip install -r benches/requirements-peers.txt   # bench-only, not library extras
    PYTHONPATH=. python benches/peers.py [--sizes 1K 64K 1M] [--rounds 15]

* Tink's ``Aead`` primitive with the AES256_GCM key template (``tink`` on PyPI): a keyset
  handle made once, ``encrypt(plaintext, associated_data)`` per message.  Its output is
  a 5-byte key prefix, a 12-byte random nonce, the ciphertext and the tag.
* The AWS Encryption SDK (``aws-encryption-sdk``): a raw AES-256 wrapping key
  (``RawMasterKey``, AES-256-GCM wrapping) behind a ``CachingCryptoMaterialsManager``, so
  one data key serves every message (the cheapest way to use it), the committing suite
  without signature ``AES_256_GCM_HKDF_SHA512_COMMIT_KEY`` and the policy
  REQUIRE_ENCRYPT_REQUIRE_DECRYPT.  Each message is a full ESDK message (header with the
  encrypted data key, per-message HKDF, key commitment).
* Ours: ``LogstoreCipher.encrypt``/``decrypt`` of a Logstore with a local KMS (the record
  header, session data key, key commitment), and the raw ``AESGCM`` for reference.

Each pair is timed in alternating rounds (benches/targets.py's ``compare``), so a shared
machine's drift hits both alike; the figure to read is the ratio, printed with the CPU.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable, List, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))

from targets import compare  # the alternating timer, one definition

from sls_envelope import AESGCM, KeyManager
from sls_envelope.bench import cpu_model
from sls_envelope.kms import LocalKms
from sls_envelope.sizes import format_size, parse_size

AAD = b"project/logstore"
Pair = Tuple[Callable[[bytes], bytes], Callable[[bytes], bytes]]  # (encrypt, decrypt)


def tink_aead() -> Pair:
    import tink
    from tink import aead

    aead.register()
    primitive = tink.new_keyset_handle(aead.aead_key_templates.AES256_GCM).primitive(aead.Aead)
    return (lambda m: primitive.encrypt(m, AAD)), (lambda c: primitive.decrypt(c, AAD))


def aws_esdk() -> Pair:
    import aws_encryption_sdk
    from aws_encryption_sdk.identifiers import (
        Algorithm,
        CommitmentPolicy,
        EncryptionKeyType,
        WrappingAlgorithm,
    )
    from aws_encryption_sdk.internal.crypto.wrapping_keys import WrappingKey
    from aws_encryption_sdk.key_providers.raw import RawMasterKeyProvider

    class OneRawKey(RawMasterKeyProvider):  # type: ignore[misc]
        """The SDK's raw-key provider: one AES-256 wrapping key held in memory."""
        provider_id = "bench"

        def __init__(self, **kwargs: object) -> None:
            self._wrapping_key = WrappingKey(
                wrapping_algorithm=WrappingAlgorithm.AES_256_GCM_IV12_TAG16_NO_PADDING,
                wrapping_key=os.urandom(32), wrapping_key_type=EncryptionKeyType.SYMMETRIC)

        def _get_raw_key(self, key_id: bytes) -> WrappingKey:
            return self._wrapping_key

    provider = OneRawKey()
    provider.add_master_key(b"wrapping-key")
    cmm = aws_encryption_sdk.CachingCryptoMaterialsManager(
        master_key_provider=provider, cache=aws_encryption_sdk.LocalCryptoMaterialsCache(capacity=10),
        max_age=3600.0, max_messages_encrypted=2 ** 32)
    client = aws_encryption_sdk.EncryptionSDKClient(
        commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT)
    suite = Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY
    context = {"logstore": "project/logstore"}

    def encrypt(message: bytes) -> bytes:
        out, _ = client.encrypt(source=message, materials_manager=cmm, algorithm=suite,
                                encryption_context=context)
        return bytes(out)

    def decrypt(sealed: bytes) -> bytes:
        out, _ = client.decrypt(source=sealed, materials_manager=cmm)
        return bytes(out)

    return encrypt, decrypt


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", type=parse_size, default=[1024, 65536, 1 << 20])
    parser.add_argument("--no-esdk", action="store_true", help="skip the (slow) AWS Encryption SDK")
    args = parser.parse_args(argv)

    cipher = KeyManager(LocalKms()).create_logstore("bench", "store", {"enable": True, "encrypt_type": "default"})
    assert cipher is not None
    raw = AESGCM(os.urandom(32))
    nonce = bytes(12)
    ours: Pair = (cipher.encrypt, cipher.decrypt)
    peers = [("Tink Aead AES256_GCM", tink_aead())]
    if not args.no_esdk:
        peers.append(("AWS ESDK raw AES, cached key, COMMIT_KEY", aws_esdk()))
    print(f"CPU: {cpu_model()}; implementation {raw.implementation}; "
          f"ratio = their time / ours (> 1: ours faster); timing on a possibly shared machine")
    for size in args.sizes:
        data = os.urandom(size)
        number = max(5, 2_000_000 // size)
        sealed_ours = cipher.encrypt(data)
        for name, (enc, dec) in peers:
            sealed = enc(data)
            assert dec(sealed) == data and cipher.decrypt(sealed_ours) == data
            slow = "ESDK" in name
            their_number = max(3, number // 20) if slow else number
            calls = (("encrypt", lambda d=data: ours[0](d), lambda d=data, e=enc: e(d)),
                     ("decrypt", lambda s=sealed_ours: ours[1](s), lambda s=sealed, f=dec: f(s)))
            for op, mine, theirs in calls:
                a, b, ratio, best = compare(mine, theirs, number, their_number)
                print(f"LogstoreCipher.{op} {format_size(size):>7} vs {name:40s} ours {a * 1e6:10.2f} us  "
                      f"theirs {b * 1e6:10.2f} us  ratio {ratio:6.2f}x (best rounds {best:6.2f}x)")
        a, b, ratio, best = compare(lambda d=data: cipher.encrypt(d), lambda d=data: raw.encrypt(nonce, d, AAD), number)
        print(f"LogstoreCipher.encrypt {format_size(size):>7} vs our raw AESGCM.encrypt{'':17s} "
              f"ours {a * 1e6:10.2f} us  raw    {b * 1e6:10.2f} us  ratio {ratio:6.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
