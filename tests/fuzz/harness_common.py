"""Shared by the atheris harnesses (tests/fuzz/fuzz_*.py) and their seed generator.

Ciphers with a fixed data key, so that blobs and streams sealed once (the committed
seed corpora) stay valid inputs for every later run.  The key is a test constant, not
a secret.  The check every harness makes: only SlsEnvelopeError subclasses may escape.
"""

from __future__ import annotations

import json
import time
from typing import Callable, Dict

from sls_envelope import LogstoreCipher, SlsEnvelopeError
from sls_envelope.keys import _KeySource
from sls_envelope.keystore import KeyRecord
from sls_envelope.kms import LocalKms

FIXED_DATA_KEY = bytes(range(100, 132))
FIXED_KEY_REF = bytes(range(16))
PROJECT = "fuzz-project"
LOGSTORES = {"aes-256-gcm": ("store-aes", "default"), "sm4-gcm": ("store-sm4", "sm4")}


def fixed_cipher(suite: str) -> LogstoreCipher:
    """A service-key LogstoreCipher over FIXED_DATA_KEY (no KMS call is ever made)."""
    logstore, encrypt_type = LOGSTORES[suite]
    record = KeyRecord(
        project=PROJECT, logstore=logstore,
        conf=json.dumps({"enable": True, "encrypt_type": encrypt_type}, sort_keys=True),
        key_ref=FIXED_KEY_REF, suite=suite, key_type="service", cmk_key_id="fuzz-cmk",
        ciphertext_blob=b"unused", created_at=0.0,
    )
    return LogstoreCipher(record, _KeySource(LocalKms(None), record), revalidate_after=None,
                          clock=time.monotonic, data_key=FIXED_DATA_KEY)


def all_ciphers() -> Dict[str, LogstoreCipher]:
    return {suite: fixed_cipher(suite) for suite in LOGSTORES}


def only_library_errors(call: Callable[[], object]) -> bool:
    """Run call; True if it returned, False if it raised an SlsEnvelopeError.  Anything
    else propagates, and atheris reports it as a finding."""
    try:
        call()
    except SlsEnvelopeError:
        return False
    return True
