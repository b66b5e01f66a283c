"""atheris harness: encrypt_conf parsing (EncryptConf.from_dict) on arbitrary JSON.

    python tests/fuzz/fuzz_conf.py -max_total_time=30 CORPUS_DIR

Checks: EncryptConf.from_dict raises nothing but ConfigError, whatever JSON value it
is given; an accepted conf survives to_dict/from_dict unchanged.
Seeds: tests/fuzz/corpus_conf/ (tests/fuzz/make_py_seeds.py).
"""

from __future__ import annotations

import json
import sys

import atheris

with atheris.instrument_imports():
    from sls_envelope import ConfigError, EncryptConf


def test_one_input(data: bytes) -> None:
    try:
        value = json.loads(data.decode("utf-8", "surrogatepass"))
    except (ValueError, RecursionError):
        return  # not JSON: not this harness's subject
    try:
        conf = EncryptConf.from_dict(value)
    except ConfigError:
        return
    again = EncryptConf.from_dict(conf.to_dict())
    assert again == conf and again.to_dict() == conf.to_dict()


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
