"""atheris harness: the v1 batch parser and LogstoreCipher.decrypt on arbitrary bytes.

    python tests/fuzz/fuzz_batch_format.py -max_total_time=30 CORPUS_DIR

Checks, for every input:
  * format.parse_header / format.inspect raise nothing but FormatError;
  * LogstoreCipher.decrypt and decrypt_many (both suites) raise nothing but
    SlsEnvelopeError subclasses;
  * decrypt accepts exactly what an independent implementation accepts: the session
    key and commitment re-derived with pyca/cryptography's HKDF, the batch opened
    with pyca/cryptography's AES-GCM or SM4-GCM, and the plaintexts equal.
Seeds: tests/fuzz/corpus_batch_format/ (tests/fuzz/make_py_seeds.py).
"""

from __future__ import annotations

import sys
from typing import Optional

import atheris

with atheris.instrument_imports():
    from cryptography.exceptions import InvalidTag as RefInvalidTag
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM as RefAESGCM

    from sls_envelope import FormatError, SlsEnvelopeError
    from sls_envelope import format as fmt

from harness_common import FIXED_DATA_KEY, PROJECT, all_ciphers

CIPHERS = all_ciphers()


def reference_open(suite_name: str, blob: bytes) -> Optional[bytes]:
    """The plaintext if blob is a valid v1 batch of CIPHERS[suite_name], else None."""
    if len(blob) < fmt.MIN_BLOB_LEN or blob[:4] != fmt.MAGIC or blob[4] != fmt.VERSION or blob[6] != 0:
        return None
    suite = fmt.SUITES.get(blob[5])
    if suite is None or suite.name != suite_name or blob[fmt.KEY_REF_OFFSET:fmt.SALT_OFFSET] != CIPHERS[suite_name]._record.key_ref:
        return None
    logstore = CIPHERS[suite_name].logstore
    info = fmt.session_info(suite, blob[fmt.KEY_REF_OFFSET:fmt.SALT_OFFSET], PROJECT, logstore)
    okm = suite.kdf(suite.key_len + fmt.COMMIT_LEN, blob[fmt.SALT_OFFSET:fmt.NONCE_OFFSET], info).derive(FIXED_DATA_KEY)
    key, commitment = okm[:suite.key_len], okm[suite.key_len:]
    if commitment != blob[fmt.COMMIT_OFFSET:fmt.HEADER_LEN]:
        return None
    nonce, aad, body = blob[fmt.NONCE_OFFSET:fmt.NONCE_OFFSET + 12], blob[:fmt.HEADER_LEN], blob[fmt.HEADER_LEN:]
    try:
        if suite.name == "aes-256-gcm":
            return RefAESGCM(key).decrypt(nonce, body, aad)
        dec = Cipher(algorithms.SM4(key), modes.GCM(nonce, body[-16:])).decryptor()
        dec.authenticate_additional_data(aad)
        return dec.update(body[:-16]) + dec.finalize()
    except RefInvalidTag:
        return None


def test_one_input(data: bytes) -> None:
    try:
        info = fmt.inspect(data)
        assert info["ciphertext_len"] == len(data) - fmt.MIN_BLOB_LEN
        header = fmt.parse_header(bytearray(data))
        assert header.nonce.hex() == info["nonce"]
    except FormatError:
        pass
    for suite_name, cipher in CIPHERS.items():
        try:
            ours: Optional[bytes] = cipher.decrypt(data)
        except SlsEnvelopeError:
            ours = None
        assert ours == reference_open(suite_name, data), "decrypt disagrees with the reference"
        try:
            many = cipher.decrypt_many([data, memoryview(data)])
            assert many == [ours, ours]
        except SlsEnvelopeError:
            assert ours is None


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
