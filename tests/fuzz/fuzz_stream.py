"""atheris harness: the framed-stream decoder (sls_envelope.stream) on arbitrary bytes.

    python tests/fuzz/fuzz_stream.py -max_total_time=30 CORPUS_DIR

Checks, for every input:
  * stream.read_header raises nothing but FormatError;
  * stream.decrypt_stream (both suites) raises nothing but SlsEnvelopeError subclasses,
    and when it returns, its statistics match what it wrote and the input it consumed
    (a stream is only accepted whole).
Seeds: tests/fuzz/corpus_stream/ (tests/fuzz/make_py_seeds.py).
"""

from __future__ import annotations

import io
import sys

import atheris

with atheris.instrument_imports():
    from sls_envelope import FormatError, SlsEnvelopeError
    from sls_envelope import stream

from harness_common import all_ciphers

CIPHERS = all_ciphers()


def test_one_input(data: bytes) -> None:
    try:
        stream.read_header(io.BytesIO(data))
    except FormatError:
        pass
    for cipher in CIPHERS.values():
        out = io.BytesIO()
        try:
            stats = stream.decrypt_stream(cipher, io.BytesIO(data), out)
        except SlsEnvelopeError:
            continue
        assert stats.plaintext_bytes == len(out.getvalue())
        assert stats.stream_bytes == len(data), "accepted a stream with bytes after its end"
        assert stats.frames >= 1


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
