"""`sls-envelope kms serve` as a real process, driven by the unmodified official Alibaba
Cloud SDK: keys, data keys with a context, signature and context refusals, Disable/Enable,
and a BYOK Logstore over AliyunKms that fails closed and recovers."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Iterator, Tuple

import pytest

from .backends import require_module
from .servers import KMS_SERVE_AK, KMS_SERVE_SECRET, start_kms_serve

require_module("alibabacloud_kms20160120", extra="aliyun")

from alibabacloud_kms20160120 import models as kms_models  # noqa: E402
from alibabacloud_kms20160120.client import Client as KmsSdk  # noqa: E402
from alibabacloud_tea_openapi.exceptions import ClientException  # noqa: E402
from alibabacloud_tea_openapi.utils_models import Config  # noqa: E402

from sls_envelope import KeyInvalidError, KeyManager  # noqa: E402
from sls_envelope.kms.aliyun import AliyunKms  # noqa: E402

AK, SECRET = KMS_SERVE_AK, KMS_SERVE_SECRET
CTX = {"project": "p", "logstore": "s"}


def _cli(home: Path, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "sls_envelope", "--home", str(home), *args],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Tuple[Path, str]]:
    """(home, endpoint) of a `kms serve` process on a free loopback port."""
    proc, endpoint, service_line = start_kms_serve(tmp_path)
    try:
        # the log service's own AccessKey id, shown
        assert re.search(r"log\.aliyuncs\.com\) signs as AccessKeyId LTAI\w{20}\b", service_line), service_line
        yield tmp_path, endpoint
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:  # pragma: no cover - only if SIGINT is lost
            proc.kill()
            proc.wait(10)
    assert SECRET not in (proc.stderr.read() if proc.stderr else "")


def _sdk(endpoint: str, secret: str = SECRET) -> KmsSdk:
    return KmsSdk(Config(access_key_id=AK, access_key_secret=secret, endpoint=endpoint, protocol="http",
                         region_id="cn-hangzhou"))


def test_official_sdk_against_kms_serve(served: Tuple[Path, str]) -> None:
    _, endpoint = served
    sdk = _sdk(endpoint)
    key_id = sdk.create_key(kms_models.CreateKeyRequest(description="cmk")).body.key_metadata.key_id
    made = sdk.generate_data_key(kms_models.GenerateDataKeyRequest(key_id=key_id, encryption_context=CTX)).body
    opened = sdk.decrypt(kms_models.DecryptRequest(ciphertext_blob=made.ciphertext_blob, encryption_context=CTX))
    assert opened.body.plaintext == made.plaintext
    with pytest.raises(ClientException) as wrong_secret:
        _sdk(endpoint, "not-the-secret").list_keys(kms_models.ListKeysRequest())
    assert wrong_secret.value.code == "SignatureDoesNotMatch"
    with pytest.raises(ClientException) as wrong_context:
        sdk.decrypt(kms_models.DecryptRequest(ciphertext_blob=made.ciphertext_blob,
                                              encryption_context=dict(CTX, logstore="other")))
    assert wrong_context.value.code == "InvalidCiphertext"
    # Encrypt of caller data, opened by Decrypt with the same context only.
    import base64

    secret_text = base64.b64encode(b"a small secret").decode()
    sealed = sdk.encrypt(kms_models.EncryptRequest(key_id=key_id, plaintext=secret_text,
                                                   encryption_context=CTX)).body
    assert sealed.key_id == key_id and sealed.ciphertext_blob
    back = sdk.decrypt(kms_models.DecryptRequest(ciphertext_blob=sealed.ciphertext_blob, encryption_context=CTX))
    assert back.body.plaintext == secret_text
    sdk.disable_key(kms_models.DisableKeyRequest(key_id=key_id))
    with pytest.raises(ClientException) as disabled:
        sdk.decrypt(kms_models.DecryptRequest(ciphertext_blob=made.ciphertext_blob, encryption_context=CTX))
    assert disabled.value.code == "Rejected.Disabled"
    sdk.enable_key(kms_models.EnableKeyRequest(key_id=key_id))
    again = sdk.decrypt(kms_models.DecryptRequest(ciphertext_blob=made.ciphertext_blob, encryption_context=CTX))
    assert again.body.plaintext == made.plaintext


def test_byok_sm4_logstore_over_kms_serve_fails_closed(served: Tuple[Path, str], tmp_path: Path) -> None:
    home, endpoint = served
    role_arn = _cli(home, "kms", "create-role", "log-byok")
    assert re.fullmatch(r"acs:ram::\d+:role/log-byok", role_arn)
    sdk = _sdk(endpoint)
    key_id = sdk.create_key(kms_models.CreateKeyRequest()).body.key_metadata.key_id
    # The service signs as itself (the credential kms serve made), as docs/KMS.md sets it up;
    # the account's root AccessKey may not assume roles.
    service = json.loads(_cli(home, "kms", "service-credential", "--json"))
    root = AliyunKms("cn-hangzhou", access_key_id=AK, access_key_secret=SECRET, endpoint=endpoint,
                     sts_endpoint=endpoint, protocol="http")
    with pytest.raises(KeyInvalidError) as refused:
        root.assume_role(role_arn).describe_key(key_id)
    assert refused.value.code == "NoPermission"
    aliyun = AliyunKms("cn-hangzhou", access_key_id=service["AccessKeyId"],
                       access_key_secret=service["AccessKeySecret"], endpoint=endpoint,
                       sts_endpoint=endpoint, protocol="http")
    manager = KeyManager(aliyun, tmp_path / "keys.db", revalidate_after=0)
    conf = {"enable": True, "encrypt_type": "sm4",
            "user_cmk_info": {"cmk_key_id": key_id, "arn": role_arn, "region_id": "cn-hangzhou"}}
    cipher = manager.create_logstore("proj", "store", conf)
    assert cipher is not None
    blob = cipher.encrypt(b"log batch")
    sdk.disable_key(kms_models.DisableKeyRequest(key_id=key_id))
    with pytest.raises(KeyInvalidError):
        cipher.decrypt(blob)
    with pytest.raises(KeyInvalidError):
        cipher.encrypt(b"more")
    sdk.enable_key(kms_models.EnableKeyRequest(key_id=key_id))
    assert cipher.decrypt(blob) == b"log batch"
    assert SECRET not in repr(aliyun) and service["AccessKeySecret"] not in repr(aliyun)
