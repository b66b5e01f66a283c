"""Write the seed corpora of the atheris harnesses (tests/fuzz/fuzz_*.py):
corpus_batch_format/, corpus_stream/ and corpus_conf/ under tests/fuzz/.

Blobs and streams are sealed with harness_common's fixed-key ciphers, so they stay
valid; the rest are near misses (truncated, bad magic, wrong version or suite) that
start the fuzzer at each check.  Salts are random, so the bytes differ per run; the
corpora are committed and only need regenerating when the formats change.

    PYTHONPATH=. python tests/fuzz/make_py_seeds.py
"""

from __future__ import annotations

import io
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from harness_common import all_ciphers  # noqa: E402

from sls_envelope import stream  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent


def write(corpus: str, seeds: dict) -> None:
    out = HERE / corpus
    out.mkdir(exist_ok=True)
    for old in out.iterdir():
        old.unlink()
    for name, data in sorted(seeds.items()):
        (out / name).write_bytes(data)
    print(f"{len(seeds)} seeds in {out}")


def main() -> None:
    ciphers = all_ciphers()
    batches = {}
    for suite, cipher in ciphers.items():
        for size in (0, 1, 16, 100, 700):
            blob = cipher.encrypt((b"log line\n" * 80)[:size])
            batches[f"{suite}_len{size}"] = blob
        blob = cipher.encrypt(b"some log batch")
        batches[f"{suite}_truncated"] = blob[:-1]
        batches[f"{suite}_header_only"] = blob[:99]
        batches[f"{suite}_flipped_tag"] = blob[:-1] + bytes([blob[-1] ^ 1])
        batches[f"{suite}_version2"] = blob[:4] + b"\x02" + blob[5:]
        batches[f"{suite}_flags"] = blob[:6] + b"\x01" + blob[7:]
    batches["bad_magic"] = b"SLSX" + bytes(120)
    batches["stream_magic"] = b"SLSS" + bytes(120)
    batches["empty"] = b""
    write("corpus_batch_format", batches)

    streams = {}
    for suite, cipher in ciphers.items():
        for chunk, size in ((7, 0), (7, 5), (7, 21), (64, 150)):
            out = io.BytesIO()
            stream.encrypt_stream(cipher, io.BytesIO(bytes(range(size))), out, chunk_size=chunk)
            streams[f"{suite}_chunk{chunk}_len{size}"] = out.getvalue()
        whole = streams[f"{suite}_chunk7_len21"]
        streams[f"{suite}_cut"] = whole[:-20]
        streams[f"{suite}_trailing"] = whole + b"\0"
    streams["single_batch"] = ciphers["aes-256-gcm"].encrypt(b"not a stream")
    streams["header_only"] = streams["aes-256-gcm_chunk7_len5"][:60]
    write("corpus_stream", streams)

    confs = [
        {"enable": True, "encrypt_type": "default"},
        {"enable": True, "encrypt_type": "sm4"},
        {"enable": True, "encrypt_type": "m4"},
        {"enable": False},
        {"enable": True, "encrypt_type": "sm4",
         "user_cmk_info": {"cmk_key_id": "key-1", "arn": "acs:ram::1234567890:role/sls-byok", "region_id": "cn-hangzhou"}},
        {"enable": True, "encrypt_type": "aes_cbc"},
        {"enable": "true", "encrypt_type": "default"},
        {"enable": True, "encrypt_type": "default", "user_cmk_info": {"cmk_key_id": "", "arn": "x"}},
        {"enable": True, "extra": 1},
        [],
    ]
    write("corpus_conf", {f"conf{i}": json.dumps(c).encode() for i, c in enumerate(confs)})


if __name__ == "__main__":
    main()
