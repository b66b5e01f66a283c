"""The AEAD API's contract: sizes, types, errors, zero-copy variants, batches, dispatch."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import threading
from typing import Any, Callable

import cryptography.exceptions
import pytest

import sls_envelope
from sls_envelope import AESGCM, SM4GCM, InvalidTag, SlsEnvelopeError
from sls_envelope._native import ffi, lib

NONCE = bytes(range(12))


@pytest.mark.parametrize("size", [0, 8, 15, 17, 31, 33, 64])
def test_aes_rejects_bad_key_sizes(size: int) -> None:
    with pytest.raises(ValueError, match="128, 192 or 256 bits"):
        AESGCM(bytes(size))


@pytest.mark.parametrize("size", [0, 15, 17, 24, 32])
def test_sm4_rejects_bad_key_sizes(size: int) -> None:
    with pytest.raises(ValueError, match="128 bits"):
        SM4GCM(bytes(size))


def test_key_must_be_bytes_like() -> None:
    with pytest.raises(TypeError):
        AESGCM("k" * 16)  # type: ignore[arg-type]


def test_keys_from_bytearray_and_memoryview_work() -> None:
    key = os.urandom(32)
    sealed = AESGCM(key).encrypt(NONCE, b"x", None)
    assert AESGCM(bytearray(key)).decrypt(NONCE, sealed, None) == b"x"
    assert AESGCM(memoryview(key)).decrypt(NONCE, sealed, None) == b"x"


def test_generate_key() -> None:
    assert len(AESGCM.generate_key()) == 32
    assert len(AESGCM.generate_key(128)) == 16
    assert len(SM4GCM.generate_key()) == 16
    assert AESGCM.generate_key() != AESGCM.generate_key()
    with pytest.raises(ValueError):
        AESGCM.generate_key(512)


@pytest.mark.parametrize("nonce_size", [0, 1, 8, 11, 13, 16, 32])
def test_nonce_must_be_12_bytes(aead_factory: Callable[[bytes], Any], nonce_size: int) -> None:
    aead = aead_factory(bytes(16))
    nonce = bytes(nonce_size)
    sealed = aead.encrypt(NONCE, b"data", None)
    with pytest.raises(ValueError, match="12 bytes"):
        aead.encrypt(nonce, b"data", None)
    with pytest.raises(ValueError, match="12 bytes"):
        aead.decrypt(nonce, sealed, None)
    with pytest.raises(ValueError, match="12 bytes"):
        aead.encrypt_into(nonce, b"data", None, bytearray(64))
    with pytest.raises(ValueError, match="12 bytes"):
        aead.decrypt_into(nonce, sealed, None, bytearray(64))
    with pytest.raises(ValueError, match="12 bytes"):
        aead.encrypt_many([NONCE, nonce], [b"a", b"b"])
    with pytest.raises(ValueError, match="12 bytes"):
        aead.decrypt_many([nonce], [sealed])


def test_nonce_as_bytearray_and_memoryview(aead_factory: Callable[[bytes], Any]) -> None:
    aead = aead_factory(bytes(16))
    sealed = aead.encrypt(NONCE, b"data", b"aad")
    assert aead.encrypt(bytearray(NONCE), b"data", b"aad") == sealed
    assert aead.decrypt(memoryview(NONCE), sealed, b"aad") == b"data"


@pytest.mark.parametrize("size", range(16))
def test_short_ciphertext_is_invalid_tag(aead_factory: Callable[[bytes], Any], size: int) -> None:
    aead = aead_factory(bytes(16))
    with pytest.raises(InvalidTag):
        aead.decrypt(NONCE, bytes(size), None)
    with pytest.raises(InvalidTag):
        aead.decrypt_into(NONCE, bytes(size), None, bytearray(16))
    with pytest.raises(InvalidTag) as info:
        aead.decrypt_many([NONCE, NONCE], [aead.encrypt(NONCE, b"", None), bytes(size)])
    assert info.value.index == 1


def test_none_aad_equals_empty(aead_factory: Callable[[bytes], Any]) -> None:
    aead = aead_factory(bytes(16))
    assert aead.encrypt(NONCE, b"m", None) == aead.encrypt(NONCE, b"m", b"")
    assert aead.encrypt_many([NONCE], [b"m"], None) == aead.encrypt_many([NONCE], [b"m"], b"")


def test_empty_message_and_aad(aead_factory: Callable[[bytes], Any]) -> None:
    aead = aead_factory(bytes(16))
    sealed = aead.encrypt(NONCE, b"", None)
    assert len(sealed) == 16
    assert aead.decrypt(NONCE, sealed, None) == b""
    assert aead.encrypt_into(NONCE, b"", None, bytearray(16)) == 16
    assert aead.decrypt_into(NONCE, sealed, None, bytearray()) == 0


def test_invalid_tag_is_pyca_compatible() -> None:
    assert issubclass(InvalidTag, cryptography.exceptions.InvalidTag)
    assert issubclass(InvalidTag, SlsEnvelopeError)
    aead = AESGCM(bytes(16))
    with pytest.raises(cryptography.exceptions.InvalidTag):
        aead.decrypt(NONCE, bytes(20), None)


def test_encrypt_into_checks_its_buffer() -> None:
    aead = AESGCM(bytes(16))
    with pytest.raises(ValueError, match="at least 21 bytes"):
        aead.encrypt_into(NONCE, b"hello", None, bytearray(20))
    with pytest.raises(TypeError, match="writable"):
        aead.encrypt_into(NONCE, b"hello", None, bytes(64))
    with pytest.raises(ValueError, match="at least 5 bytes"):
        aead.decrypt_into(NONCE, aead.encrypt(NONCE, b"hello", None), None, bytearray(4))


def test_encrypt_into_in_place_and_overlap() -> None:
    aead = AESGCM(bytes(16))
    buf = bytearray(b"hello world" + bytes(16))
    expected = aead.encrypt(NONCE, b"hello world", b"a")
    assert aead.encrypt_into(NONCE, memoryview(buf)[:11], b"a", buf) == 27
    assert bytes(buf) == expected
    assert aead.decrypt_into(NONCE, memoryview(buf), b"a", buf) == 11
    assert bytes(buf[:11]) == b"hello world"
    shifted = bytearray(64)
    with pytest.raises(ValueError, match="overlaps"):
        aead.encrypt_into(NONCE, memoryview(shifted)[:20], None, memoryview(shifted)[4:])


def test_non_byte_views_count_bytes() -> None:
    import array

    aead = AESGCM(bytes(16))
    words = array.array("I", [1, 2, 3, 4])
    assert aead.encrypt(NONCE, words, None) == aead.encrypt(NONCE, words.tobytes(), None)
    assert aead.encrypt_many([NONCE], [words]) == [aead.encrypt(NONCE, words.tobytes(), None)]
    with pytest.raises(ValueError, match="contiguous"):
        aead.encrypt(NONCE, memoryview(bytes(32))[::2], None)


def test_batch_argument_errors() -> None:
    aead = AESGCM(bytes(16))
    assert aead.encrypt_many([], []) == []
    assert aead.decrypt_many([], []) == []
    with pytest.raises(ValueError, match="2 nonces for 1 messages"):
        aead.encrypt_many([NONCE, NONCE], [b"a"])
    with pytest.raises(ValueError, match="associated data"):
        aead.encrypt_many([NONCE, NONCE], [b"a", b"b"], [b"x"])
    with pytest.raises(TypeError):
        aead.encrypt_many([NONCE], ["text"])  # type: ignore[list-item]


def _outcome(call: Callable[[], Any]) -> Any:
    try:
        return "ok", call()
    except Exception as exc:  # noqa: BLE001 - the very exception is what is compared
        return type(exc), str(exc), getattr(exc, "index", None)


@pytest.mark.parametrize("cls", [AESGCM, SM4GCM])
@pytest.mark.parametrize("aad_mode", ["none", "shared", "each"])
def test_large_batches_go_one_call_each_with_the_packed_results(
        cls: Any, aad_mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches of large messages (cbuffers.EACH_FROM) go one C call per message; results
    and errors are the packed path's, which a huge EACH_FROM forces."""
    from sls_envelope import aead as aead_module

    aead = cls(bytes(16))
    each = aead_module.EACH_FROM
    nonces = [os.urandom(12) for _ in range(4)]
    messages = [os.urandom(each + n) for n in (0, 1, 100, 5000)]
    aads: Any = {"none": None, "shared": b"shared", "each": [os.urandom(n) for n in (0, 1, 20, 3)]}[aad_mode]
    sealed = aead.encrypt_many(nonces, messages, aads)
    shared = aads if not isinstance(aads, list) else None
    assert sealed == [aead.encrypt(n, m, aads[i] if isinstance(aads, list) else shared)
                      for i, (n, m) in enumerate(zip(nonces, messages))]
    tampered = [bytearray(x) for x in sealed]
    tampered[2][-1] ^= 1
    tampered[3][0] ^= 1  # a later failure is not the one named
    cases: list[Callable[[], Any]] = [
        lambda: aead.decrypt_many(nonces, sealed, aads),
        lambda: aead.decrypt_many(nonces, [bytes(x) for x in tampered], aads),
        lambda: aead.decrypt_many(nonces, sealed[:3] + [sealed[3][:15]], aads),
        lambda: aead.decrypt_many(nonces, sealed[:3] + [bytearray(sealed[3])], aads),
        lambda: aead.decrypt_many(nonces[:3] + [b"short"], sealed, aads),
        lambda: aead.decrypt_many(nonces[:3], sealed, aads),
        lambda: aead.encrypt_many(nonces, messages[:3] + ["text" * each], aads),
        lambda: aead.encrypt_many(nonces, messages, [b"a"]),
        lambda: aead.encrypt_many(nonces, messages, 42),
    ]
    expected = []
    for case in cases:
        monkeypatch.setattr(aead_module, "EACH_FROM", 1 << 62)  # the packed path
        expected.append(_outcome(case))
        monkeypatch.setattr(aead_module, "EACH_FROM", each)
        assert _outcome(case) == expected[-1]
    assert expected[0] == ("ok", messages)
    assert expected[1][0] is InvalidTag and expected[1][2] == 2
    calls: list[str] = []
    for name in ("_decrypt_scratch", "_decrypt"):  # into scratch, or into the result (FILL_FROM)
        def counting(*args: Any, real: Any = getattr(aead_module, name), name: str = name) -> Any:
            calls.append(name)
            return real(*args)

        monkeypatch.setattr(aead_module, name, counting)
    assert aead.decrypt_many(nonces, sealed, aads) == messages and len(calls) == 4  # one call each


@pytest.mark.parametrize("cls", [AESGCM, SM4GCM])
def test_large_results_are_filled_in_new_bytes(cls: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Results of cbuffers.FILL_FROM bytes or more are written by C into the bytes object
    returned: each call's result is a new object, later calls leave earlier results as
    they were, a failed tag raises, and every result equals the scratch path's."""
    from sls_envelope import aead as aead_module
    from sls_envelope import cbuffers

    assert cbuffers.FILL_FROM == 1024  # CPython: the probe found that writes reach the bytes
    key = os.urandom(16)
    aead = cls(key)
    fill = cbuffers.FILL_FROM
    sizes = [fill - 17, fill - 16, fill - 1, fill, fill + 1, fill + 17, 1 << 20]
    messages = [os.urandom(n) for n in sizes]
    nonces = [os.urandom(12) for _ in sizes]
    sealed = [aead.encrypt(n, m, b"aad") for n, m in zip(nonces, messages)]
    again = [aead.encrypt(n, m, b"aad") for n, m in zip(nonces, messages)]
    opened = [aead.decrypt(n, c, b"aad") for n, c in zip(nonces, sealed)]
    assert all(a is not b for a, b in zip(sealed, again)) and sealed == again
    assert opened == messages and len({id(x) for x in opened}) == len(opened)
    many = aead.encrypt_many(nonces[-3:], messages[-3:], b"aad")
    assert many == sealed[-3:] and aead.decrypt_many(nonces[-3:], many, b"aad") == messages[-3:]
    for i in (3, 6):
        bad = bytearray(sealed[i])
        bad[-1] ^= 1
        with pytest.raises(InvalidTag):
            aead.decrypt(nonces[i], bytes(bad), b"aad")
        with pytest.raises(InvalidTag):
            aead.decrypt(nonces[i], sealed[i], b"other")
    monkeypatch.setattr(aead_module, "FILL_FROM", 1 << 62)  # every result through scratch
    assert [aead.encrypt(n, m, b"aad") for n, m in zip(nonces, messages)] == sealed
    assert [aead.decrypt(n, c, b"aad") for n, c in zip(nonces, sealed)] == messages
    assert aead.decrypt_many(nonces[-3:], many, b"aad") == messages[-3:]
    if cls is AESGCM:  # and OpenSSL's
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM as OpenSslAesGcm

        assert sealed[-1] == OpenSslAesGcm(key).encrypt(nonces[-1], messages[-1], b"aad")


def test_too_long_is_refused_in_c_before_reading() -> None:
    aead = AESGCM(bytes(16))
    out = ffi.new("uint8_t[64]")
    too_long = (2**32 - 2) * 16 + 1
    rc = lib.sls_env_aead_encrypt(aead._ctx, NONCE, ffi.NULL, 0, out, too_long, out)
    assert rc == lib.SLS_ENV_ERR_TOO_LONG
    rc = lib.sls_env_aead_decrypt(aead._ctx, NONCE, ffi.NULL, 0, out, too_long + 16, out)
    assert rc == lib.SLS_ENV_ERR_TOO_LONG
    assert lib.sls_env_aead_encrypt(ffi.NULL, NONCE, ffi.NULL, 0, out, 1, out) == lib.SLS_ENV_ERR_ARG


def test_repr_and_pickle_hold_no_key() -> None:
    key = bytes(range(32))
    aead = AESGCM(key)
    text = repr(aead)
    assert "AESGCM" in text and "256" in text
    assert key.hex() not in text and str(key) not in text
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(aead)


def test_available_implementations_shape() -> None:
    impls = sls_envelope.available_implementations()
    assert set(impls) == {"aes-gcm", "sm4-gcm"}
    for names in impls.values():
        assert names and names[-1] == "portable" and len(set(names)) == len(names)
    # The default is the fastest, unless SLS_ENVELOPE_IMPL forces one.
    forced = sls_envelope.aead._FORCED
    assert AESGCM(bytes(16)).implementation == forced.get("aes-gcm", impls["aes-gcm"][0])
    assert SM4GCM(bytes(16)).implementation == forced.get("sm4-gcm", impls["sm4-gcm"][0])


def test_unknown_impl_is_value_error() -> None:
    with pytest.raises(ValueError, match="unknown"):
        AESGCM(bytes(16), impl="no-such-impl")


def _run(code: str, **env: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


def test_disable_all_leaves_portable_and_refuses_the_rest() -> None:
    code = (
        "import sls_envelope as s\n"
        "print(s.available_implementations())\n"
        "from sls_envelope._native import ffi, lib\n"
        "names = [ffi.string(lib.sls_env_impl_name_all(1, i)).decode() for i in range(lib.sls_env_impl_count_all(1))]\n"
        "for n in names:\n"
        "    if n != 'portable':\n"
        "        try:\n"
        "            s.AESGCM(bytes(16), impl=n)\n"
        "        except ValueError as e:\n"
        "            assert 'not available on this CPU' in str(e), e\n"
        "        else:\n"
        "            raise SystemExit('accepted ' + n)\n"
    )
    out = _run(code, SLS_ENVELOPE_DISABLE="all")
    assert out == "{'aes-gcm': ['portable'], 'sm4-gcm': ['portable']}"


def test_impl_switch_forces_the_default() -> None:
    code = "import sls_envelope as s; print(s.AESGCM(bytes(16)).implementation, s.SM4GCM(bytes(16)).implementation)"
    assert _run(code, SLS_ENVELOPE_IMPL="portable") == "portable portable"
    with pytest.raises(subprocess.CalledProcessError):
        _run(code, SLS_ENVELOPE_IMPL="aes-gcm=no-such-impl")


def test_threads_share_one_key(aead_factory: Callable[[bytes], Any]) -> None:
    aead = aead_factory(os.urandom(16))
    messages = [os.urandom(n) for n in (0, 1, 17, 4096, 65537)]
    expected = [aead.encrypt(NONCE, m, b"t") for m in messages]
    errors: list = []

    def work() -> None:
        try:
            for _ in range(20):
                assert [aead.encrypt(NONCE, m, b"t") for m in messages] == expected
                assert aead.decrypt_many([NONCE] * len(messages), expected, b"t") == messages
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
