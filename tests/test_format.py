"""The v1 batch format: layout, vectors (checked both ways and independently),
context binding, key commitment, nonce uniqueness, sessions, fork safety, malformed input."""

from __future__ import annotations

import json
import os
import secrets
import struct
import threading
from typing import Any, Dict, List

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM as PycaAESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from gmssl import sm3 as gm_sm3  # a pure-Python SM3, independent of OpenSSL
from hypothesis import given, settings
from hypothesis import strategies as st

import sls_envelope
from sls_envelope import FormatError, InvalidTag, KeyInvalidError, SlsEnvelopeError, session_codec
from sls_envelope import format as fmt
from sls_envelope.records import EACH_FROM, RecordKey, fork_generation
from sls_envelope.session_codec import BatchCodec

from . import reference_gcm

VECTORS = json.load(open(os.path.join(os.path.dirname(__file__), "vectors", "format_v1.json"), encoding="utf-8"))
SUITE_NAMES = ["aes-256-gcm", "sm4-gcm"]


def codec(suite: str = "aes-256-gcm", key: bytes = b"k" * 32, key_ref: bytes = b"r" * 16,
          project: str = "proj", logstore: str = "store", **kw: Any) -> BatchCodec:
    return BatchCodec(suite, key, key_ref, project, logstore, **kw)


# ---- independent reference computations ---------------------------------------------------


def _sm3(data: bytes) -> bytes:
    return bytes.fromhex(gm_sm3.sm3_hash(list(data)))


def _hmac_sm3(key: bytes, data: bytes) -> bytes:
    """HMAC (RFC 2104) over gmssl's pure-Python SM3 (block size 64)."""
    if len(key) > 64:
        key = _sm3(key)
    key = key.ljust(64, b"\0")
    inner = _sm3(bytes(b ^ 0x36 for b in key) + data)
    return _sm3(bytes(b ^ 0x5C for b in key) + inner)


def _hkdf_sm3(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 written out, over the HMAC-SM3 above."""
    prk = _hmac_sm3(salt, ikm)
    okm, block = b"", b""
    for counter in range(1, -(-length // 32) + 1):
        block = _hmac_sm3(prk, block + info + bytes([counter]))
        okm += block
    return okm[:length]


def _reference_seal(vector: Dict[str, Any]) -> bytes:
    """The blob of a vector, computed from docs/FORMAT.md with no sls_envelope code."""
    key, salt, info = (bytes.fromhex(vector[k]) for k in ("data_key", "salt", "hkdf_info"))
    project, logstore = vector["project"].encode(), vector["logstore"].encode()
    expected_info = (b"sls-envelope v1 session" + bytes([vector["suite_id"]]) + bytes.fromhex(vector["key_ref"])
                     + struct.pack(">H", len(project)) + project + struct.pack(">H", len(logstore)) + logstore)
    assert info == expected_info
    if vector["suite"] == "aes-256-gcm":
        okm = HKDF(hashes.SHA256(), 64, salt, info).derive(key)
        session_key, commitment = okm[:32], okm[32:]
    else:
        okm = _hkdf_sm3(key, salt, info, 48)
        session_key, commitment = okm[:16], okm[16:]
    nonce = bytes.fromhex(vector["nonce_prefix"]) + struct.pack(">Q", vector["counter"])
    header = (b"SLSE" + bytes([1, vector["suite_id"], 0]) + bytes.fromhex(vector["key_ref"]) + salt + nonce
              + commitment)
    assert len(header) == 99
    plaintext = bytes.fromhex(vector["plaintext"])
    if vector["suite"] == "aes-256-gcm":
        return header + PycaAESGCM(session_key).encrypt(nonce, plaintext, header)
    # SM4-GCM from SP 800-38D written out over gmssl's SM4: no OpenSSL, no sls_envelope.
    sealed = header + reference_gcm.sm4_gcm_encrypt(session_key, nonce, plaintext, header)
    if not reference_gcm.UNDER_MEMCHECK:  # OpenSSL's tag is undefined to memcheck (reference_gcm.py)
        enc = Cipher(algorithms.SM4(session_key), modes.GCM(nonce)).encryptor()
        enc.authenticate_additional_data(header)
        assert header + enc.update(plaintext) + enc.finalize() + enc.tag == sealed
    return sealed


def test_hkdf_sm3_of_cryptography_matches_an_independent_one() -> None:
    for _ in range(8):
        ikm, salt, info = secrets.token_bytes(32), secrets.token_bytes(32), secrets.token_bytes(40)
        assert HKDF(hashes.SM3(), 48, salt, info).derive(ikm) == _hkdf_sm3(ikm, salt, info, 48)
    # SM3 itself, GB/T 32905-2016 example 1: SM3("abc").
    assert _sm3(b"abc").hex() == "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"


# ---- vectors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda v: v["name"])
def test_vectors_both_ways(vector: Dict[str, Any]) -> None:
    blob = bytes.fromhex(vector["blob"])
    key, key_ref = bytes.fromhex(vector["data_key"]), bytes.fromhex(vector["key_ref"])
    # Sealing with the vector's salt, prefix and counter gives the blob...
    (sealed,) = session_codec._seal_with(
        vector["suite"], key, key_ref, vector["project"], vector["logstore"],
        salt=bytes.fromhex(vector["salt"]), nonce_prefix=bytes.fromhex(vector["nonce_prefix"]),
        counter=vector["counter"], batches=[bytes.fromhex(vector["plaintext"])],
    )
    assert sealed == blob
    # ...an independent implementation of docs/FORMAT.md gives the same blob...
    assert _reference_seal(vector) == blob
    # ...and opening the blob gives the plaintext back.
    opener = BatchCodec(vector["suite"], key, key_ref, vector["project"], vector["logstore"])
    assert opener.open(blob) == bytes.fromhex(vector["plaintext"])
    info = fmt.inspect(blob)
    assert info["version"] == 1 and info["suite"] == vector["suite"]
    assert info["key_ref"] == vector["key_ref"] and info["session"] == vector["salt"]
    assert info["nonce"] == vector["nonce_prefix"] + vector["counter"].to_bytes(8, "big").hex()
    assert info["counter"] == vector["counter"] and info["commitment"] == vector["commitment"]


@pytest.mark.parametrize("vector", VECTORS["vectors"][:2] + VECTORS["vectors"][3:5], ids=lambda v: v["name"])
def test_vectors_refuse_another_context(vector: Dict[str, Any]) -> None:
    blob = bytes.fromhex(vector["blob"])
    key, key_ref = bytes.fromhex(vector["data_key"]), bytes.fromhex(vector["key_ref"])
    for project, logstore in ((vector["project"] + "x", vector["logstore"]),
                              (vector["project"], vector["logstore"] + "x"),
                              (vector["logstore"], vector["project"])):
        with pytest.raises(InvalidTag):
            BatchCodec(vector["suite"], key, key_ref, project, logstore).open(blob)


def test_vectors_file_is_what_the_generator_makes() -> None:
    import importlib.util

    path = os.path.join(os.path.dirname(__file__), "vectors", "make_format_v1.py")
    spec = importlib.util.spec_from_file_location("make_format_v1", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.build() == VECTORS


# ---- layout ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("suite", SUITE_NAMES)
def test_layout(suite: str) -> None:
    c = codec(suite, key_ref=bytes(range(16)))
    blob = c.seal(b"abc")
    assert len(blob) == 99 + 3 + 16
    assert blob[:4] == b"SLSE" and blob[4] == 1 and blob[5] == (1 if suite == "aes-256-gcm" else 2)
    assert blob[6] == 0 and blob[7:23] == bytes(range(16))
    second = c.seal(b"abc")
    assert second[23:55] == blob[23:55]  # same session
    assert int.from_bytes(second[59:67], "big") == int.from_bytes(blob[59:67], "big") + 1
    assert fmt.inspect(blob)["ciphertext_len"] == 3


def test_sm4_suite_uses_sm3_and_aes_suite_sha256() -> None:
    assert fmt.suite_by_name("sm4-gcm").hash is hashes.SM3
    assert fmt.suite_by_name("aes-256-gcm").hash is hashes.SHA256


def test_import_makes_submodules_available() -> None:
    assert sls_envelope.format is fmt
    assert hasattr(sls_envelope.kms, "LocalKms")


# ---- binding and commitment ------------------------------------------------------------------


@pytest.mark.parametrize("suite", SUITE_NAMES)
def test_context_is_bound(suite: str) -> None:
    blob = codec(suite).seal(b"payload")
    assert codec(suite).open(blob) == b"payload"
    for other in (codec(suite, project="proj2"), codec(suite, logstore="store2"),
                  codec(suite, project="projstore", logstore=""), codec(suite, key_ref=b"s" * 16)):
        with pytest.raises(InvalidTag):
            other.open(blob)


def test_other_suite_is_refused() -> None:
    blob = codec("aes-256-gcm").seal(b"payload")
    with pytest.raises(InvalidTag):
        codec("sm4-gcm").open(blob)
    forged = blob[:5] + b"\x02" + blob[6:]
    with pytest.raises(InvalidTag):
        codec("sm4-gcm").open(forged)


def test_key_commitment_refuses_another_key_before_decrypting(monkeypatch: pytest.MonkeyPatch) -> None:
    blob = codec(key=b"A" * 32).seal(b"payload")
    other = codec(key=b"B" * 32)
    opened: List[Any] = []
    monkeypatch.setattr(RecordKey, "open", lambda *a: opened.append(a))
    with pytest.raises(InvalidTag, match="commitment"):
        other.open(blob)
    assert opened == []  # refused by the commitment, the AEAD never ran


def test_commitment_is_checked_even_when_the_session_is_cached() -> None:
    c = codec()
    blob = c.seal(b"payload")
    tampered = blob[:67] + bytes([blob[67] ^ 1]) + blob[68:]
    with pytest.raises(InvalidTag, match="commitment"):
        c.open(tampered)


# ---- malformed input ----------------------------------------------------------------------------


@pytest.mark.parametrize("suite", SUITE_NAMES)
def test_every_single_bit_flip_is_refused(suite: str) -> None:
    c = codec(suite)
    blob = c.seal(b"short")
    for bit in range(8 * len(blob)):
        flipped = bytearray(blob)
        flipped[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises((InvalidTag, FormatError)):
            c.open(bytes(flipped))


def test_every_truncation_and_extension_is_refused() -> None:
    c = codec()
    blob = c.seal(b"some batch")
    for n in range(len(blob)):
        with pytest.raises((FormatError, InvalidTag)):
            c.open(blob[:n])
    with pytest.raises(InvalidTag):
        c.open(blob + b"\0")


@pytest.mark.parametrize("offset, value, message", [
    (0, ord("X"), "magic"), (4, 2, "version"), (4, 0, "version"), (5, 3, "suite"), (5, 0, "suite"),
    (6, 1, "flags"),
])
def test_structural_errors_are_format_errors(offset: int, value: int, message: str) -> None:
    blob = bytearray(codec().seal(b"x"))
    blob[offset] = value
    with pytest.raises(FormatError, match=message):
        codec().open(bytes(blob))
    with pytest.raises(FormatError, match=message):
        fmt.inspect(bytes(blob))


@pytest.mark.parametrize("garbage", ["text", None, 42, [b"SLSE"], object()])
def test_non_bytes_are_format_errors(garbage: Any) -> None:
    with pytest.raises(FormatError):
        codec().open(garbage)
    with pytest.raises(FormatError):
        fmt.inspect(garbage)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_garbage_gives_only_envelope_errors(data: bytes) -> None:
    c = codec()
    with pytest.raises(SlsEnvelopeError) as info:
        c.open(data)
    assert isinstance(info.value, (FormatError, InvalidTag))
    with pytest.raises(SlsEnvelopeError):
        c.open(b"SLSE\x01\x01\x00" + b"r" * 16 + data)


def test_format_error_is_value_error() -> None:
    assert issubclass(FormatError, ValueError) and issubclass(FormatError, SlsEnvelopeError)


def test_bytes_like_inputs() -> None:
    c = codec()
    blob = c.seal(bytearray(b"abc"))
    assert c.open(memoryview(blob)) == b"abc"
    assert c.open(bytearray(blob)) == b"abc"
    assert c.open_many(c.seal_many([memoryview(b"xy"), bytearray(b"z")])) == [b"xy", b"z"]
    with pytest.raises(TypeError):
        c.seal("text")  # type: ignore[arg-type]


# ---- batches, sessions and nonces --------------------------------------------------------------------


@pytest.mark.parametrize("suite", SUITE_NAMES)
def test_seal_many_takes_consecutive_counters(suite: str) -> None:
    c = codec(suite)
    first = c.seal(b"one")
    batches = [os.urandom(n) for n in (0, 1, 16, 17, 1000)]
    blobs = c.seal_many(batches)
    counters = [fmt.inspect(b)["counter"] for b in [first] + blobs]
    assert counters == list(range(counters[0], counters[0] + 6))
    assert c.open_many(blobs) == batches
    assert c.seal_many([]) == [] and c.open_many([]) == []


def test_open_many_names_the_bad_index() -> None:
    c = codec()
    blobs = c.seal_many([b"a", b"b", b"c"])
    blobs[1] = blobs[1][:-1] + bytes([blobs[1][-1] ^ 1])
    with pytest.raises(InvalidTag) as info:
        c.open_many(blobs)
    assert info.value.index == 1
    with pytest.raises(FormatError, match="batch 2"):
        c.open_many([blobs[0], blobs[0], b"junk"])


@pytest.mark.parametrize("suite", SUITE_NAMES)
def test_open_many_one_session_in_one_call(suite: str, monkeypatch: pytest.MonkeyPatch) -> None:
    c = codec(suite)
    batches = [os.urandom(n) for n in (0, 1, 15, 16, 17, 1000, 4096)]
    blobs = c.seal_many(batches)
    calls: List[int] = []
    real = RecordKey.open_many

    def counting(self: Any, *args: Any) -> Any:
        result = real(self, *args)
        calls.append(result is not None)
        return result

    monkeypatch.setattr(RecordKey, "open_many", counting)
    assert c.open_many(blobs) == batches
    assert calls == [True]  # one C call opened them all


@pytest.mark.parametrize("where", [0, 3, 6])
def test_open_many_one_call_fails_whole_at_the_first_bad_tag(where: int) -> None:
    c = codec()
    blobs = c.seal_many([bytes([i]) * 50 for i in range(7)])
    blobs[where] = blobs[where][:-1] + bytes([blobs[where][-1] ^ 0x80])
    if where < 6:
        blobs[6] = blobs[6][:-1] + bytes([blobs[6][-1] ^ 1])  # a later failure is not the one named
    with pytest.raises(InvalidTag, match=f"batch {where}") as info:
        c.open_many(blobs)
    assert info.value.index == where


def test_open_many_across_sessions_and_odd_items_goes_blob_by_blob() -> None:
    a, b = codec(), codec()  # same key and context, different sessions (salts)
    mixed = [a.seal(b"one"), b.seal(b"two"), a.seal(b"three")]
    assert fmt.inspect(mixed[0])["session"] != fmt.inspect(mixed[1])["session"]
    assert a.open_many(mixed) == [b"one", b"two", b"three"]
    blobs = a.seal_many([b"x", b"y", b"z"])
    assert a.open_many([bytearray(blobs[0]), memoryview(blobs[1]), blobs[2]]) == [b"x", b"y", b"z"]
    assert a.open_many([blobs[0], bytearray(blobs[1])]) == [b"x", b"y"]
    # A later header changed outside its nonce (reserved flags): named as the per-blob
    # path names it, not as a tag failure.
    bad_flags = blobs[2][:6] + b"\x01" + blobs[2][7:]
    with pytest.raises(FormatError, match="batch 2.*flags"):
        a.open_many([blobs[0], blobs[1], bad_flags])
    with pytest.raises(FormatError, match="batch 1.*truncated"):
        a.open_many([blobs[0], blobs[1][:50]])
    with pytest.raises(FormatError, match="batch 0"):
        a.open_many([b"junk", blobs[1]])
    with pytest.raises(FormatError, match="batch 1"):
        a.open_many([blobs[0], 42])


# ---- the reading side's fast paths (issue 19) ---------------------------------------------


def _error_of(call: Any) -> Any:
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - the very exception is what is compared
        return type(exc), str(exc), getattr(exc, "index", None)
    return None


def test_open_takes_the_last_session_in_one_call(monkeypatch: pytest.MonkeyPatch) -> None:
    c = codec()
    blobs = c.seal_many([b"one", b"two", b"three"])
    assert c.open(blobs[0]) == b"one"  # full checks, then the session is kept
    monkeypatch.setattr(BatchCodec, "_session_of", lambda *a: pytest.fail("full checks ran"))
    monkeypatch.setattr(RecordKey, "open", lambda *a: pytest.fail("RecordKey.open ran"))
    assert c.open(blobs[1]) == b"two" and c.open(blobs[2]) == b"three"
    assert c.open_many(blobs) == [b"one", b"two", b"three"]  # open_many starts from it too


@pytest.mark.parametrize("suite", SUITE_NAMES)
def test_open_errors_are_the_same_after_a_record_of_the_session(suite: str) -> None:
    """Every header byte changed, truncations, an extension, a flipped tag: the codec that
    holds the session (the one-call path) gives exactly the exception a fresh codec gives."""
    c = codec(suite)
    good, blob = c.seal_many([b"good", b"a batch of records"])
    variants = [blob[:n] for n in (0, 3, 4, 50, fmt.HEADER_LEN, fmt.MIN_BLOB_LEN - 1, fmt.MIN_BLOB_LEN)]
    variants += [blob + b"\0", blob[:-1] + bytes([blob[-1] ^ 1]), blob[:100] + bytes([blob[100] ^ 1]) + blob[101:]]
    for at in range(fmt.HEADER_LEN):
        variants.append(blob[:at] + bytes([blob[at] ^ 0x21]) + blob[at + 1:])
    for variant in variants:
        assert c.open(good) == b"good"  # the session is the one kept
        expected = _error_of(lambda v=variant: codec(suite).open(v))
        assert expected is not None
        assert _error_of(lambda v=variant: c.open(v)) == expected
        assert _error_of(lambda v=variant: c.open(bytearray(v))) == expected
        many = _error_of(lambda v=variant: codec(suite).open_many([v, blob]))
        assert many is not None
        assert _error_of(lambda v=variant: c.open_many([v, blob])) == many
        assert _error_of(lambda v=variant: c.open_many([blob, v])) == _error_of(
            lambda v=variant: codec(suite).open_many([blob, v]))
    assert c.open(blob) == b"a batch of records"


def test_open_moves_between_sessions() -> None:
    a, b = codec(), codec()  # same key and context, two sessions
    reader = codec()
    one, two, three = a.seal(b"one"), b.seal(b"two"), a.seal(b"three")
    assert [reader.open(x) for x in (one, two, three, two, one)] == [b"one", b"two", b"three", b"two", b"one"]
    other = codec(key=b"o" * 32)
    assert other.open(other.seal(b"x")) == b"x"
    with pytest.raises(InvalidTag, match="commitment"):
        other.open(one)  # another key's session: the full checks name it


def test_wipe_stops_the_kept_session() -> None:
    c = codec()
    blob = c.seal(b"x")
    assert c.open(blob) == b"x"
    c.wipe()
    with pytest.raises(KeyInvalidError):
        c.open(blob)


def test_large_batches_are_sealed_and_opened_one_call_each(monkeypatch: pytest.MonkeyPatch) -> None:
    c = codec()
    size = EACH_FROM
    batches = [os.urandom(size + n) for n in (0, 1, 4096)] + [bytearray(os.urandom(size))]
    packed: List[str] = []

    def spy(name: str) -> Any:
        return lambda *a: packed.append(name)

    monkeypatch.setattr(RecordKey, "seal_many", spy("seal_many"))
    monkeypatch.setattr(RecordKey, "open_many", spy("open_many"))
    first = fmt.inspect(c.seal(b"first"))["counter"]
    blobs = c.seal_many(batches)
    assert [fmt.inspect(b)["counter"] for b in blobs] == list(range(first + 1, first + 5))
    assert c.open_many(blobs) == batches
    assert [codec().open(b) for b in blobs] == batches  # what single calls open
    assert packed == []  # neither packed path ran


@pytest.mark.parametrize("suite", SUITE_NAMES)
def test_large_records_are_filled_in_place_as_the_scratch_path_fills_them(
        suite: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Records are opened from cbuffers.FILL_FROM message bytes and sealed from
    records.SEAL_FILL_FROM by C straight into the bytes returned (open_record_into,
    seal_records); what comes out is what the scratch path gives, each way round, and
    a bad tag or header fails the same."""
    from sls_envelope import records

    fill, seal_fill = records.FILL_FROM, records.SEAL_FILL_FROM
    sizes = [fill - 1, fill, fill + 1, seal_fill - 1, seal_fill, seal_fill + 4096 + 7]
    batches = [os.urandom(n) for n in sizes]
    filled = codec(suite)
    blobs = [filled.seal(b) for b in batches]
    assert [codec(suite).open(b) for b in blobs] == batches  # open(), then open_as()
    assert filled.open_many(blobs) == batches
    monkeypatch.setattr(records, "FILL_FROM", 1 << 62)  # every record through scratch
    monkeypatch.setattr(records, "SEAL_FILL_FROM", 1 << 62)
    assert [codec(suite).open(b) for b in blobs] == batches
    scratch = codec(suite)
    scratch_blobs = [scratch.seal(b) for b in batches]
    monkeypatch.setattr(records, "FILL_FROM", fill)
    monkeypatch.setattr(records, "SEAL_FILL_FROM", seal_fill)
    assert [codec(suite).open(b) for b in scratch_blobs] == batches
    reader = codec(suite)
    assert reader.open(blobs[0]) == batches[0]  # the session's header is now known
    for blob in blobs[1:]:
        bad_tag = blob[:-1] + bytes([blob[-1] ^ 1])
        with pytest.raises(InvalidTag):
            reader.open(bad_tag)
        with pytest.raises(InvalidTag):
            codec(suite).open(bad_tag)  # the first record of a session
        with pytest.raises(SlsEnvelopeError):
            reader.open(blob[:23] + bytes([blob[23] ^ 1]) + blob[24:])  # salt: another session
        assert reader.open(blob) == batches[blobs.index(blob)]


def test_large_batches_give_the_packed_paths_errors() -> None:
    c = codec()
    big = b"b" * EACH_FROM
    blobs = c.seal_many([big] * 4)
    for where in (0, 2, 3):
        bad = list(blobs)
        bad[where] = bad[where][:-1] + bytes([bad[where][-1] ^ 1])
        bad[3] = bad[3][:-1] + bytes([bad[3][-1] ^ 4])  # a later failure is not the one named
        with pytest.raises(InvalidTag, match=f"batch {where}: authentication failed") as info:
            c.open_many(bad)
        assert info.value.index == where
    bad_flags = blobs[2][:6] + b"\x01" + blobs[2][7:]
    with pytest.raises(FormatError, match="batch 2.*flags"):
        c.open_many([blobs[0], blobs[1], bad_flags])
    assert c.open_many([blobs[0], bytearray(blobs[1]), memoryview(blobs[2])]) == [big] * 3
    with pytest.raises(FormatError, match="batch 1"):
        c.open_many([blobs[0], 42])
    mixed = [blobs[0], codec().seal(big), blobs[1]]
    assert c.open_many(mixed) == [big] * 3
    small_error = _error_of(lambda: c.seal_many([b"x", "y"]))  # type: ignore[list-item]
    assert small_error is not None and small_error[0] is TypeError
    assert _error_of(lambda: c.seal_many([big, "y" * len(big)])) == small_error  # type: ignore[list-item]


def test_large_batches_start_a_new_session_when_c_sees_a_fork(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fork between seal_many's check and C (or one the check missed): C refuses the
    stale session and the call goes on in a new one, as seal() does."""
    c = codec()
    old = fmt.inspect(c.seal(b"first"))["session"]
    session = c._session
    assert session is not None
    real = fork_generation
    session.fork_gen = real() + 1  # as if the session began in another fork generation
    answers = [session.fork_gen]  # which the Python check is told once
    monkeypatch.setattr(session_codec, "fork_generation", lambda: answers.pop() if answers else real())
    big = [os.urandom(EACH_FROM)] * 3
    blobs = c.seal_many(big)
    assert {fmt.inspect(b)["session"] for b in blobs} != {old}
    assert len({fmt.inspect(b)["session"] for b in blobs}) == 1
    assert c.open_many(blobs) == big


def test_new_session_at_the_batch_limit() -> None:
    c = codec(max_batches=3)
    blobs = [c.seal(bytes([i])) for i in range(7)]
    sessions = [fmt.inspect(b)["session"] for b in blobs]
    assert sessions[0] == sessions[2] != sessions[3] == sessions[5] != sessions[6]
    assert [fmt.inspect(b)["counter"] for b in blobs] == [0, 1, 2, 0, 1, 2, 0]
    many = c.seal_many([bytes([i]) for i in range(8)])
    assert len({fmt.inspect(b)["session"] for b in many}) >= 3
    assert c.open_many(many) == [bytes([i]) for i in range(8)]
    pairs = {(fmt.inspect(b)["session"], fmt.inspect(b)["nonce"]) for b in blobs + many}
    assert len(pairs) == len(blobs + many)


def test_new_session_at_the_byte_limit() -> None:
    c = codec(max_bytes=100)
    blobs = [c.seal(b"x" * 40) for _ in range(5)]
    sessions = [fmt.inspect(b)["session"] for b in blobs]
    assert sessions[0] == sessions[1] != sessions[2] == sessions[3] != sessions[4]
    many = c.seal_many([b"y" * 60] * 4)
    assert len({fmt.inspect(b)["session"] for b in many}) == 4
    assert c.open_many(many) == [b"y" * 60] * 4


def test_default_limits() -> None:
    assert fmt.SESSION_MAX_BATCHES == 2**31 and fmt.SESSION_MAX_BYTES == 2**40
    with pytest.raises(ValueError):
        codec(max_batches=2**32)


def test_sessions_differ_between_codecs_over_the_same_key() -> None:
    # Two processes (or restarts) over one data key: distinct salts, so distinct keys.
    a, b = codec(), codec()
    assert fmt.inspect(a.seal(b""))["session"] != fmt.inspect(b.seal(b""))["session"]


def test_nonces_never_repeat_across_threads() -> None:
    c = codec()
    out: List[bytes] = []
    lock = threading.Lock()

    def work() -> None:
        mine = [c.seal(b"x") for _ in range(200)] + c.seal_many([b"y"] * 200)
        with lock:
            out.extend(mine)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    pairs = {(fmt.inspect(b)["session"], fmt.inspect(b)["nonce"]) for b in out}
    assert len(pairs) == len(out) == 8 * 400


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_starts_its_own_session() -> None:
    c = codec()
    parent_blob = c.seal(b"parent")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: seal and report through the pipe, then leave at once
        try:
            os.write(write, c.seal(b"child"))
        finally:
            os._exit(0)
    os.close(write)
    child_blob = b""
    while chunk := os.read(read, 4096):
        child_blob += chunk
    os.close(read)
    os.waitpid(pid, 0)
    assert fmt.inspect(child_blob)["session"] != fmt.inspect(parent_blob)["session"]
    assert c.open(child_blob) == b"child"
    after = c.seal(b"parent again")  # the parent continues its own session
    assert fmt.inspect(after)["session"] == fmt.inspect(parent_blob)["session"]


def test_fork_check_catches_a_fork_without_the_python_hook() -> None:
    """libc's fork() called directly runs no os.register_at_fork hook; the C fork
    generation (a pthread_atfork handler) still makes the child start a new session."""
    import ctypes

    c = codec()
    first = fmt.inspect(c.seal(b"a"))
    read_end, write_end = os.pipe()
    pid = ctypes.CDLL(None, use_errno=True).fork()
    if pid == 0:  # the child: report the session of its first batch, then leave at once
        try:
            os.write(write_end, fmt.inspect(c.seal(b"b"))["session"].encode())
        finally:
            os._exit(0)
    os.close(write_end)
    child_session = os.read(read_end, 200).decode()
    os.close(read_end)
    os.waitpid(pid, 0)
    assert child_session and child_session != first["session"]
    # The parent goes on with its own session.
    assert fmt.inspect(c.seal(b"c"))["session"] == first["session"]


def test_reading_a_session_derives_once(monkeypatch: pytest.MonkeyPatch) -> None:
    blobs = codec().seal_many([b"x"] * 20)
    calls: List[int] = []
    real = fmt._derive
    monkeypatch.setattr(session_codec, "_derive", lambda *a: calls.append(1) or real(*a))
    reader = codec()
    assert reader.open_many(blobs) == [b"x"] * 20
    assert len(calls) == 1


def test_forged_salts_do_not_fill_the_cache() -> None:
    c = codec()
    blob = c.seal(b"x")
    for _ in range(50):
        forged = blob[:23] + secrets.token_bytes(32) + blob[55:]
        with pytest.raises(InvalidTag):
            c.open(forged)
    assert len(c._cache) == 1


# ---- keys in memory ----------------------------------------------------------------------------------


def test_wipe_zeroes_the_key_and_stops_use() -> None:
    c = codec(key=b"K" * 32)
    blob = c.seal(b"x")
    c.wipe()
    assert c._key == bytearray(32) and c._session is None and not c._cache
    with pytest.raises(KeyInvalidError):
        c.seal(b"y")
    with pytest.raises(KeyInvalidError):
        c.open(blob)


def test_repr_and_pickle_hold_no_key() -> None:
    key = bytes(range(32))
    c = codec(key=key)
    c.seal(b"x")
    text = repr(c) + repr(c._session.key if c._session else None)
    assert key.hex() not in text and repr(key) not in text
    import pickle

    with pytest.raises(TypeError):
        pickle.dumps(c)
