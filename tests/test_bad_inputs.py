"""The bad-input table of docs/SECURITY.md, row by row.

Every kind of bad input (API arguments, encrypt_confs, sealed batches, stream files,
KMS answers) and the exception the user gets, with its code where it has one.  Misuse
of the Python API (wrong types, wrong sizes) raises TypeError or ValueError as
pyca/cryptography does; everything about data, confs and the KMS raises an
SlsEnvelopeError subclass.  Rows that create nothing also check that nothing was
stored.  Keep this file and the table in step.
"""

from __future__ import annotations

import io
import os
from typing import Any, Callable, Dict, List, Optional, Tuple, Type

import pytest

from sls_envelope import (
    AESGCM,
    SM4GCM,
    ConfigError,
    FormatError,
    InvalidTag,
    KeyInvalidError,
    KeyManager,
    KmsUnavailableError,
    LogstoreCipher,
    SlsEnvelopeError,
    stream,
)
from sls_envelope.kms import LocalKms, RetryPolicy
from sls_envelope.kms.local import CRYPTO_USER_POLICY, READ_ONLY_POLICY, log_service_trust_policy

from .faulty_kms import FaultyKms

AES_CONF = {"enable": True, "encrypt_type": "default"}


class World:
    def __init__(self) -> None:
        self.kms = LocalKms(None, retry_policy=RetryPolicy(attempts=2, base_delay=0.0, max_delay=0.0))
        self.cmk = self.kms.create_key("customer")
        self.arn = self.kms.create_role("byok", trust_policy=log_service_trust_policy(),
                                        policies=[CRYPTO_USER_POLICY, READ_ONLY_POLICY])
        self.faulty = FaultyKms(self.kms, retry_policy=RetryPolicy(attempts=3, base_delay=0.0, max_delay=0.0),
                                only=("decrypt", "generate_data_key"))
        self.manager = KeyManager(self.faulty)
        cipher = self.manager.create_logstore("p", "s", AES_CONF)
        other = self.manager.create_logstore("p", "other", AES_CONF)
        assert cipher is not None and other is not None
        self.cipher: LogstoreCipher = cipher
        self.other: LogstoreCipher = other
        self.blob = cipher.encrypt(b"hello logs")
        out = io.BytesIO()
        stream.encrypt_stream(cipher, io.BytesIO(b"x" * 100), out, chunk_size=16)
        self.stream = out.getvalue()

    def byok(self, **cmk: str) -> Dict[str, Any]:
        info = {"cmk_key_id": self.cmk, "arn": self.arn, "region_id": "cn-hangzhou"}
        info.update(cmk)
        return {"enable": True, "encrypt_type": "sm4", "user_cmk_info": info}

    def open_stream(self, data: bytes, cipher: Optional[LogstoreCipher] = None) -> Any:
        return stream.decrypt_stream(cipher or self.cipher, io.BytesIO(data), io.BytesIO())


def _flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 1]) + data[index + 1:]


K = os.urandom(32)
N = bytes(12)
FRAME = 4 + 99 + 41 + 16 + 16  # a full frame of the 16-byte-chunk stream above

# (row, call, exception, code or None, a Logstore that must not exist afterwards)
Row = Tuple[str, Callable[[World], Any], Type[BaseException], Optional[str], Optional[str]]
ROWS: List[Row] = [
    # ---- API arguments ----
    ("AEAD key of a wrong size", lambda w: AESGCM(bytes(15)), ValueError, None, None),
    ("SM4 key of 256 bits", lambda w: SM4GCM(bytes(32)), ValueError, None, None),
    ("key not bytes-like", lambda w: AESGCM("k" * 32), TypeError, None, None),
    ("unknown implementation", lambda w: AESGCM(K, impl="nope"), ValueError, None, None),
    ("nonce not 12 bytes", lambda w: AESGCM(K).encrypt(bytes(11), b"x", None), ValueError, None, None),
    ("nonce not bytes-like", lambda w: AESGCM(K).encrypt("n" * 12, b"x", None), TypeError, None, None),
    ("data not bytes-like", lambda w: AESGCM(K).encrypt(N, "text", None), TypeError, None, None),
    ("associated data not bytes-like", lambda w: AESGCM(K).encrypt(N, b"x", 5), TypeError, None, None),
    ("ciphertext shorter than the tag", lambda w: AESGCM(K).decrypt(N, b"short", None), InvalidTag, None, None),
    ("ciphertext altered", lambda w: AESGCM(K).decrypt(N, bytes(20), None), InvalidTag, None, None),
    ("output buffer too small", lambda w: AESGCM(K).encrypt_into(N, b"abc", None, bytearray(5)), ValueError, None, None),
    ("output buffer read-only", lambda w: AESGCM(K).encrypt_into(N, b"abc", None, bytes(19)), TypeError, None, None),
    ("batch call: counts differ", lambda w: AESGCM(K).encrypt_many([N], [b"a", b"b"], None), ValueError, None, None),
    ("batch to seal not bytes-like", lambda w: w.cipher.encrypt("text"), TypeError, None, None),
    # ---- encrypt_conf and names ----
    ("conf not an object", lambda w: w.manager.create_logstore("p", "n", "x"), ConfigError, "LogStoreInfoInvalid", "n"),
    ("conf without enable", lambda w: w.manager.create_logstore("p", "n", {}), ConfigError, "LogStoreInfoInvalid", "n"),
    ("enable not a boolean", lambda w: w.manager.create_logstore("p", "n", {"enable": "true"}),
     ConfigError, "LogStoreInfoInvalid", "n"),
    ("unknown conf field", lambda w: w.manager.create_logstore("p", "n", {"enable": True, "x": 1}),
     ConfigError, "LogStoreInfoInvalid", "n"),
    ("encrypt_type missing", lambda w: w.manager.create_logstore("p", "n", {"enable": True}),
     ConfigError, "LogStoreInfoInvalid", "n"),
    ("unauthenticated mode (aes_cbc)",
     lambda w: w.manager.create_logstore("p", "n", {"enable": True, "encrypt_type": "aes_cbc"}),
     ConfigError, "LogStoreInfoInvalid", "n"),
    ("user_cmk_info without arn",
     lambda w: w.manager.create_logstore("p", "n", {"enable": True, "encrypt_type": "sm4",
                                                    "user_cmk_info": {"cmk_key_id": "k", "region_id": "r"}}),
     ConfigError, "LogStoreInfoInvalid", "n"),
    ("malformed role ARN", lambda w: w.manager.create_logstore("p", "n", w.byok(arn="nope")),
     KeyInvalidError, "InvalidParameter.RoleArn", "n"),
    ("role that does not exist",
     lambda w: w.manager.create_logstore("p", "n", w.byok(arn="acs:ram::1000000000000000:role/none")),
     KeyInvalidError, "EntityNotExist.Role", "n"),
    ("CMK that does not exist", lambda w: w.manager.create_logstore("p", "n", w.byok(cmk_key_id="no-such-key")),
     KeyInvalidError, "Forbidden.KeyNotFound", "n"),
    ("empty, NUL or over-long name", lambda w: w.manager.create_logstore("p\0", "n", AES_CONF),
     ConfigError, "ParameterInvalid", None),
    ("Logstore created twice", lambda w: w.manager.create_logstore("p", "s", AES_CONF),
     ConfigError, "LogStoreAlreadyExist", None),
    ("conf changed after creation",
     lambda w: w.manager.update_logstore("p", "s", {"enable": True, "encrypt_type": "sm4"}),
     ConfigError, "LogStoreInfoInvalid", None),
    ("Logstore that does not exist", lambda w: w.manager.open_logstore("p", "nope"),
     ConfigError, "LogStoreNotExist", None),
    # ---- sealed batches ----
    ("batch not bytes-like", lambda w: w.cipher.decrypt("text"), FormatError, None, None),
    ("batch shorter than header + tag", lambda w: w.cipher.decrypt(w.blob[:114]), FormatError, None, None),
    ("batch with bad magic", lambda w: w.cipher.decrypt(b"XXXX" + w.blob[4:]), FormatError, None, None),
    ("batch of an unknown version", lambda w: w.cipher.decrypt(w.blob[:4] + b"\x07" + w.blob[5:]),
     FormatError, None, None),
    ("batch of an unknown suite", lambda w: w.cipher.decrypt(w.blob[:5] + b"\x09" + w.blob[6:]),
     FormatError, None, None),
    ("batch with reserved flags", lambda w: w.cipher.decrypt(w.blob[:6] + b"\x01" + w.blob[7:]),
     FormatError, None, None),
    ("batch of another Logstore", lambda w: w.other.decrypt(w.blob), InvalidTag, None, None),
    ("batch with altered salt", lambda w: w.cipher.decrypt(_flip(w.blob, 30)), InvalidTag, None, None),
    ("batch with altered nonce", lambda w: w.cipher.decrypt(_flip(w.blob, 60)), InvalidTag, None, None),
    ("batch with altered commitment", lambda w: w.cipher.decrypt(_flip(w.blob, 80)), InvalidTag, None, None),
    ("batch with altered ciphertext", lambda w: w.cipher.decrypt(_flip(w.blob, 100)), InvalidTag, None, None),
    ("batch with altered tag", lambda w: w.cipher.decrypt(_flip(w.blob, len(w.blob) - 1)), InvalidTag, None, None),
    ("one bad batch among many", lambda w: w.cipher.decrypt_many([w.blob, _flip(w.blob, 100)]),
     InvalidTag, None, None),
    # ---- stream files ----
    ("empty file", lambda w: w.open_stream(b""), FormatError, None, None),
    ("a single batch, not a stream", lambda w: w.open_stream(w.blob), FormatError, None, None),
    ("stream with bad magic", lambda w: w.open_stream(b"XXXX" + w.stream[4:]), FormatError, None, None),
    ("stream with chunk size 0", lambda w: w.open_stream(w.stream[:6] + bytes(4) + w.stream[10:]),
     FormatError, None, None),
    ("stream cut inside a frame", lambda w: w.open_stream(w.stream[:-10]), FormatError, None, None),
    ("stream cut at a frame boundary", lambda w: w.open_stream(w.stream[:-(4 + 99 + 41 + 16 + 4)]),
     FormatError, None, None),
    ("data after the final frame", lambda w: w.open_stream(w.stream + b"x"), FormatError, None, None),
    ("frame altered", lambda w: w.open_stream(_flip(w.stream, 200)), InvalidTag, None, None),
    ("frames reordered", lambda w: w.open_stream(
        w.stream[:54] + w.stream[54 + FRAME:54 + 2 * FRAME] + w.stream[54:54 + FRAME] + w.stream[54 + 2 * FRAME:]),
     InvalidTag, None, None),
    ("stream of another Logstore", lambda w: w.open_stream(w.stream, w.other), InvalidTag, None, None),
]


@pytest.fixture(scope="module")
def world() -> World:
    return World()


@pytest.mark.parametrize("row", ROWS, ids=[row[0] for row in ROWS])
def test_bad_input_row(world: World, row: Row) -> None:
    _, call, expected, code, absent = row
    with pytest.raises(expected) as info:
        call(world)
    if code is not None:
        assert getattr(info.value, "code", None) == code
    if absent is not None:  # nothing half-made
        with pytest.raises(ConfigError):
            world.manager.open_logstore("p", absent)


# ---- KMS answers (through FaultyKms) -----------------------------------------------------


@pytest.mark.parametrize("kind, expected, code", [
    ("5xx", KmsUnavailableError, "InternalFailure"),
    ("throttling", KmsUnavailableError, "Throttling"),
    ("timeout", KmsUnavailableError, "Timeout"),
    ("malformed", KmsUnavailableError, "InvalidKmsResponse"),
    ("wrong", KmsUnavailableError, "InvalidKmsResponse"),
    ("refuse", KeyInvalidError, "Rejected.Disabled"),
])
def test_bad_kms_answer_at_creation(kind: str, expected: Type[SlsEnvelopeError], code: str) -> None:
    w = World()
    w.faulty.force(kind, count=3)  # transient kinds: every attempt of the retry budget
    with pytest.raises(expected) as info:
        w.manager.create_logstore("p", "n", AES_CONF)
    assert info.value.code == code
    with pytest.raises(ConfigError):
        w.manager.open_logstore("p", "n")


@pytest.mark.parametrize("change, code", [
    ("disable_key", "Rejected.Disabled"),
    ("schedule_key_deletion", "Rejected.PendingDeletion"),
])
def test_cmk_refused_after_creation(change: str, code: str) -> None:
    w = World()
    manager = KeyManager(w.kms, revalidate_after=0)
    cipher = manager.create_logstore("p", "byok", w.byok())
    assert cipher is not None
    blob = cipher.encrypt(b"x")
    getattr(w.kms, change)(w.cmk)
    for call in (lambda: cipher.encrypt(b"y"), lambda: cipher.decrypt(blob)):
        with pytest.raises(KeyInvalidError) as info:
            call()
        assert info.value.code == code
