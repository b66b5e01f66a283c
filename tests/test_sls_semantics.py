"""Logstore semantics as the official SLS SDKs see them (issue 14, docs/LOGSTORE.md).

The official Python SDK (``aliyun.log.LogClient``) builds, signs and sends each request
and parses each answer with its own classes; only its transport (``_getHttpResponse``)
is replaced, by :class:`SlsOverKeyManager`, which hands the exact body to a KeyManager
and answers with what the library returns: the echo, or ``exc.http_status`` and
``exc.error_body()``.  No network.  The UpdateLogStoreEncryption shape comes from the
2020-12-30 SDK's own request model (``alibabacloud_sls20201230``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import urlparse

import pytest
from aliyun.log import LogClient, LogException
from aliyun.log.logstore_config_response import GetLogStoreResponse
from alibabacloud_sls20201230 import models as sls_models

from sls_envelope import ConfigError, EncryptConf, KeyManager, SlsEnvelopeError
from sls_envelope.exceptions import EncryptionDisabledError, KeyInvalidError
from sls_envelope.kms import LocalKms, RetryPolicy
from sls_envelope.kms.local import CRYPTO_USER_POLICY, READ_ONLY_POLICY, log_service_trust_policy

ROOT = Path(__file__).resolve().parents[1]
BOTH = [CRYPTO_USER_POLICY, READ_ONLY_POLICY]

# The top-level keys the Python SDK's create_logstore / update_logstore send
# (aliyun/log/logclient.py); any other is "redundant" to this test's service.
_KNOWN_BODY_KEYS = {
    "logstoreName", "ttl", "shardCount", "enable_tracking", "autoSplit", "maxSplitShard", "appendMeta",
    "telemetryType", "encrypt_conf", "hot_ttl", "mode", "infrequentAccessTTL", "enableModify",
}


class SlsOverKeyManager:
    """The HTTP transport of a LogClient, answering from a KeyManager."""

    def __init__(self, manager: KeyManager) -> None:
        self.manager = manager
        self.requests: List[Tuple[str, str, Any]] = []
        self.meta: Dict[Tuple[str, str], Dict[str, Any]] = {}
        self.reject_first_with: Optional[SlsEnvelopeError] = None

    def client(self) -> LogClient:
        client = LogClient("cn-hangzhou.log.aliyuncs.com", "test-access-key-id", "test-access-key-secret")
        client._getHttpResponse = self.handle  # type: ignore[method-assign]
        return client

    def handle(self, method: str, url: str, params: Any, body: Any, headers: Dict[str, str]) -> Tuple[int, bytes, Dict[str, str]]:
        project = headers["Host"].split(".")[0]
        path = urlparse(url).path
        sent = json.loads(body) if body else None
        self.requests.append((method, path, sent))
        reply = {"x-log-requestid": f"req-{len(self.requests)}", "Content-Type": "application/json"}
        try:
            if self.reject_first_with is not None:
                exc, self.reject_first_with = self.reject_first_with, None
                raise exc
            return 200, json.dumps(self.route(method, project, path, sent)).encode(), reply
        except SlsEnvelopeError as exc:
            return exc.http_status, json.dumps(exc.error_body()).encode(), reply

    def route(self, method: str, project: str, path: str, body: Any) -> Any:
        parts = path.strip("/").split("/")
        if method == "POST" and parts == ["logstores"]:
            if set(body) - _KNOWN_BODY_KEYS:
                raise ConfigError.redundant_key()
            name = body["logstoreName"]
            self.manager.create_logstore(project, name, body.get("encrypt_conf", {"enable": False}))
            self.meta[(project, name)] = {k: v for k, v in body.items() if k != "encrypt_conf"}
            self.meta[(project, name)]["_has_conf"] = "encrypt_conf" in body
            return {}
        if method == "GET" and len(parts) == 2 and parts[0] == "logstores":
            conf = self.manager.get_encrypt_conf(project, parts[1])
            meta = dict(self.meta[(project, parts[1])])
            out = {"logstoreName": parts[1], "ttl": 30, "shardCount": 2, "enable_tracking": False,
                   "appendMeta": False, "autoSplit": True, "maxSplitShard": 64}
            out.update({k: v for k, v in meta.items() if not k.startswith("_")})
            if meta["_has_conf"]:
                out["encrypt_conf"] = conf.to_dict()
            return out
        if method == "PUT" and len(parts) == 2 and parts[0] == "logstores":
            if "encrypt_conf" in body:
                self.manager.update_logstore(project, parts[1], body["encrypt_conf"])
                self.meta[(project, parts[1])]["_has_conf"] = True
            return {}
        if method == "PUT" and len(parts) == 3 and parts[2] == "encryption":
            self.manager.update_logstore(project, parts[1], body)
            return {}
        raise AssertionError(f"unexpected request {method} {path}")


class World:
    """Two LocalKms regions, each with a customer CMK and a role the log service may assume."""

    def __init__(self) -> None:
        policy = RetryPolicy(attempts=1, base_delay=0.001, max_delay=0.001)
        self.kms = LocalKms(retry_policy=policy)  # cn-hangzhou, the default
        self.shanghai = LocalKms(region_id="cn-shanghai", retry_policy=policy)
        self.cmk = self.kms.create_key("customer key")
        self.arn = self.kms.create_role("sls-byok", trust_policy=log_service_trust_policy(), policies=BOTH)
        self.manager = KeyManager(self.kms)
        self.service = SlsOverKeyManager(self.manager)
        self.client = self.service.client()

    def byok(self, encrypt_type: str = "sm4", **cmk: str) -> Dict[str, Any]:
        info = {"cmk_key_id": self.cmk, "arn": self.arn, "region_id": "cn-hangzhou"}
        info.update(cmk)
        return {"enable": True, "encrypt_type": encrypt_type, "user_cmk_info": info}

    def sent_conf(self) -> Any:
        method, _, body = self.service.requests[-1]
        return body.get("encrypt_conf")


@pytest.fixture
def world() -> World:
    return World()


def sdk_error(call: Any) -> LogException:
    with pytest.raises(LogException) as info:
        call()
    return info.value


# ---- 1. echo what was sent, for every shape the SDKs send ---------------------------------------------------

def _java(enable: bool, encrypt_type: str = "default", cmk: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    """What the Java SDK's EncryptConf.ToJsonObject() sends (aliyun-log-java-sdk, common/EncryptConf.java:
    encrypt_type defaults to "default" and is always written; user_cmk_info only when set)."""
    out: Dict[str, Any] = {"enable": enable, "encrypt_type": encrypt_type}
    if cmk is not None:
        out["user_cmk_info"] = cmk
    return out


def _shapes(w: World) -> Dict[str, Tuple[Dict[str, Any], Optional[str]]]:
    """name -> (encrypt_conf as the SDK sends it, suite of the Logstore or None)."""
    cmk = {"cmk_key_id": w.cmk, "arn": w.arn, "region_id": "cn-hangzhou"}
    model = sls_models.EncryptConf(
        enable=True, encrypt_type="m4",
        user_cmk_info=sls_models.EncryptUserCmkConf(cmk_key_id=w.cmk, arn=w.arn, region_id="cn-hangzhou"))
    return {
        "service default": ({"enable": True, "encrypt_type": "default"}, "aes-256-gcm"),
        "service sm4": ({"enable": True, "encrypt_type": "sm4"}, "sm4-gcm"),
        "service m4": ({"enable": True, "encrypt_type": "m4"}, "sm4-gcm"),
        "service aes_gcm": ({"enable": True, "encrypt_type": "aes_gcm"}, "aes-256-gcm"),
        "service sm4_gcm": ({"enable": True, "encrypt_type": "sm4_gcm"}, "sm4-gcm"),
        "byok default": (w.byok("default"), "aes-256-gcm"),
        "byok sm4": (w.byok("sm4"), "sm4-gcm"),
        "byok m4 (the Go SDK's end-to-end test)": (w.byok("m4"), "sm4-gcm"),
        # Go: EncryptConf{Enable: false} marshals encrypt_type without omitempty (log_store.go).
        "Go zero value": ({"enable": False, "encrypt_type": ""}, None),
        "Java EncryptConf(true)": (_java(True), "aes-256-gcm"),
        "Java EncryptConf(false)": (_java(False), None),
        "Java EncryptConf(true, m4, cmk)": (_java(True, "m4", cmk), "sm4-gcm"),
        "2020-12-30 SDK EncryptConf model": (model.to_map(), "sm4-gcm"),
        "2020-12-30 SDK zero model": (sls_models.EncryptConf(enable=False, encrypt_type="").to_map(), None),
        "enable false only": ({"enable": False}, None),
    }


SHAPE_NAMES = sorted([  # the keys of _shapes, listed for parametrize (checked below)
    "service default", "service sm4", "service m4", "service aes_gcm", "service sm4_gcm", "byok default",
    "byok sm4", "byok m4 (the Go SDK's end-to-end test)", "Go zero value", "Java EncryptConf(true)",
    "Java EncryptConf(false)", "Java EncryptConf(true, m4, cmk)", "2020-12-30 SDK EncryptConf model",
    "2020-12-30 SDK zero model", "enable false only",
])


def test_shape_names_cover_every_shape(world: World) -> None:
    assert sorted(_shapes(world)) == SHAPE_NAMES


@pytest.mark.parametrize("shape", SHAPE_NAMES)
def test_get_logstore_echoes_what_create_logstore_sent(world: World, shape: str) -> None:
    conf, suite = _shapes(world)[shape]
    world.client.create_logstore("proj", "store", encrypt_conf=conf)
    sent = world.sent_conf()
    assert sent == conf  # the exact body the official SDK sent ...
    response = world.client.get_logstore("proj", "store")
    assert isinstance(response, GetLogStoreResponse)
    assert response.get_encrypt_conf() == sent  # ... comes back through its own response class
    # and through the 2020-12-30 SDK's model of a Logstore.
    parsed = sls_models.Logstore().from_map(world.service.route("GET", "proj", "/logstores/store", None))
    assert parsed.encrypt_conf.to_map() == sent
    cipher = world.manager.open_logstore("proj", "store")
    if suite is None:
        assert cipher is None
    else:
        assert cipher is not None and cipher.suite == suite
        assert cipher.decrypt(cipher.encrypt(b"log batch")) == b"log batch"
        assert world.manager.get_encrypt_conf("proj", "store").algorithm == ("default" if suite == "aes-256-gcm"
                                                                             else "sm4")


# ---- 3. error codes, statuses and bodies through the SDK ---------------------------------------------------

def test_invalid_encrypt_type_is_logstore_info_invalid_400(world: World) -> None:
    # The Java SDK's function test against the real service: "typex" gives exactly this.
    exc = sdk_error(lambda: world.client.create_logstore("proj", "store", encrypt_conf={
        "enable": True, "encrypt_type": "typex"}))
    assert (exc.get_error_code(), exc.resp_status) == ("LogStoreInfoInvalid", 400)
    assert exc.get_error_message() == "The encrypt_conf is invalid, [encrypt_type] key is missing or not supported"
    exc = sdk_error(lambda: world.client.create_logstore("proj", "store", encrypt_conf={"enable": True}))
    assert exc.get_error_message() == "The encrypt_conf is invalid, [encrypt_type] key is missing or not supported"
    exc = sdk_error(lambda: world.client.create_logstore("proj", "store", encrypt_conf={
        "enable": True, "encrypt_type": "aes_cbc"}))
    assert exc.get_error_code() == "LogStoreInfoInvalid" and "unauthenticated" in exc.get_error_message()
    assert exc.get_error_message().startswith("The encrypt_conf is invalid, ")


def test_unknown_key_inside_encrypt_conf_is_not_retried_without_encryption(world: World) -> None:
    # "redundant key exist in json" would make the SDK retry with basic parameters only,
    # i.e. create the Logstore unencrypted: an unknown key in encrypt_conf must not say it.
    exc = sdk_error(lambda: world.client.create_logstore("proj", "store", encrypt_conf={
        "enable": True, "encrypt_type": "default", "key_rotation": True}))
    assert (exc.get_error_code(), exc.resp_status) == ("LogStoreInfoInvalid", 400)
    assert exc.get_error_message().startswith("The encrypt_conf is invalid, ") and "key_rotation" in exc.get_error_message()
    assert [m for m, _, _ in world.service.requests] == ["POST"]
    with pytest.raises(ConfigError):
        world.manager.describe_logstore("proj", "store")


def test_redundant_key_pair_is_the_one_the_sdk_retries_on(world: World) -> None:
    world.service.reject_first_with = ConfigError.redundant_key()
    world.client.create_logstore("proj", "store", ttl=7, encrypt_conf={"enable": True, "encrypt_type": "default"})
    (m1, _, first), (m2, _, second) = world.service.requests
    assert (m1, m2) == ("POST", "POST")
    assert "encrypt_conf" in first and "encrypt_conf" not in second  # the SDK dropped it: see REDUNDANT_KEY_MESSAGE
    assert sorted(second) == ["enable_tracking", "logstoreName", "shardCount", "ttl"]


def test_duplicate_missing_and_bad_name(world: World) -> None:
    world.client.create_logstore("proj", "store", encrypt_conf={"enable": True, "encrypt_type": "sm4"})
    exc = sdk_error(lambda: world.client.create_logstore("proj", "store", encrypt_conf={"enable": False}))
    assert (exc.get_error_code(), exc.resp_status) == ("LogStoreAlreadyExist", 400)
    assert exc.get_error_message() == "logstore store already exists"  # the Java SDK's function test
    exc = sdk_error(lambda: world.client.get_logstore("proj", "nope"))
    assert (exc.get_error_code(), exc.resp_status) == ("LogStoreNotExist", 404)
    assert exc.get_error_message() == "logstore nope does not exist"
    exc = sdk_error(lambda: world.client.create_logstore("proj", "x" * 300, encrypt_conf={"enable": False}))
    assert (exc.get_error_code(), exc.resp_status) == ("ParameterInvalid", 400)


def test_kms_refusals_keep_their_kms_code_and_documented_status(world: World) -> None:
    world.kms.disable_key(world.cmk)
    exc = sdk_error(lambda: world.client.create_logstore("proj", "store", encrypt_conf=world.byok()))
    assert (exc.get_error_code(), exc.resp_status) == ("Rejected.Disabled", 409)
    exc = sdk_error(lambda: world.client.create_logstore("proj", "store", encrypt_conf=world.byok(
        cmk_key_id="no-such-key")))
    assert (exc.get_error_code(), exc.resp_status) == ("Forbidden.KeyNotFound", 404)
    exc = sdk_error(lambda: world.client.create_logstore("proj", "store", encrypt_conf=world.byok(
        arn="acs:ram::1000000000000000:role/none")))
    assert (exc.get_error_code(), exc.resp_status) == ("EntityNotExist.Role", 404)


# ---- 4. update rules ------------------------------------------------------------------------------------

def test_same_conf_is_a_no_op_and_the_echo_stays_as_created(world: World) -> None:
    world.client.create_logstore("proj", "store", encrypt_conf=world.byok("m4"))
    world.client.update_logstore("proj", "store", encrypt_conf=world.byok("sm4"))  # one algorithm
    world.client.update_logstore("proj", "store", encrypt_conf=world.byok("m4"))
    assert world.client.get_logstore("proj", "store").get_encrypt_conf() == world.byok("m4")


@pytest.mark.parametrize("switch_off", ["update_logstore", "update_logstore Go zero value", "UpdateLogStoreEncryption"])
def test_enable_switches_off_and_on_and_old_batches_stay_readable(world: World, switch_off: str) -> None:
    conf = world.byok("m4")
    world.client.create_logstore("proj", "store", encrypt_conf=conf)
    cipher = world.manager.open_logstore("proj", "store")
    assert cipher is not None
    before = cipher.encrypt(b"written while on")
    if switch_off == "update_logstore":
        world.client.update_logstore("proj", "store", encrypt_conf=dict(conf, enable=False))
    elif switch_off == "update_logstore Go zero value":
        world.client.update_logstore("proj", "store", encrypt_conf={"enable": False, "encrypt_type": ""})
    else:
        body = sls_models.UpdateLogStoreEncryptionRequest(enable=False).to_map()
        assert body == {"enable": False}
        world.service.route("PUT", "proj", "/logstores/store/encryption", body)
    echoed = world.client.get_logstore("proj", "store").get_encrypt_conf()
    assert echoed == dict(conf, enable=False)  # as created, switched off
    with pytest.raises(EncryptionDisabledError) as info:
        cipher.encrypt(b"refused")
    assert (info.value.code, info.value.http_status) == ("EncryptionDisabled", 409)
    with pytest.raises(EncryptionDisabledError):
        cipher.encrypt_many([b"refused"])
    assert cipher.decrypt(before) == b"written while on"
    # A manager that opens it afresh (e.g. after a restart) sees it switched off too.
    reopened = KeyManager(world.kms, world.manager._store).open_logstore("proj", "store")
    assert reopened is not None and not reopened.enabled and reopened.decrypt(before) == b"written while on"
    # Switched on again: same key, old batches still open.
    world.client.update_logstore("proj", "store", encrypt_conf=conf)
    assert world.client.get_logstore("proj", "store").get_encrypt_conf() == conf
    assert cipher.enabled and cipher.decrypt(cipher.encrypt(b"again")) == b"again"
    assert cipher.decrypt(before) == b"written while on"


def test_update_logstore_encryption_body_is_accepted_and_rendered_back(world: World) -> None:
    request = sls_models.UpdateLogStoreEncryptionRequest(
        enable=True, encrypt_type="m4",
        user_cmk_info=sls_models.UpdateLogStoreEncryptionRequestUserCmkInfo(
            key_id=world.cmk, role_arn=world.arn, region_id="cn-hangzhou"))
    body = request.to_map()
    conf = EncryptConf.from_dict(body)
    assert conf.to_dict() == world.byok("m4")
    assert conf.to_encryption_body() == body
    world.client.create_logstore("proj", "store", encrypt_conf=world.byok("m4"))
    world.service.route("PUT", "proj", "/logstores/store/encryption", body)  # the same: a no-op
    changed = sls_models.UpdateLogStoreEncryptionRequest(enable=True, encrypt_type="default",
                                                         user_cmk_info=request.user_cmk_info).to_map()
    with pytest.raises(ConfigError) as info:
        world.manager.update_logstore("proj", "store", changed)
    assert info.value.code == "LogStoreInfoInvalid" and "encrypt_type cannot be changed" in str(info.value)


def _refused(world: World, logstore: str, conf: Any) -> LogException:
    exc = sdk_error(lambda: world.client.update_logstore("proj", logstore, encrypt_conf=conf))
    assert (exc.get_error_code(), exc.resp_status) == ("LogStoreInfoInvalid", 400)
    assert exc.get_error_message().startswith("The encrypt_conf is invalid, ")
    assert "encryption is configured when the Logstore is created" in exc.get_error_message()  # the rule
    return exc


def test_changes_of_type_or_key_are_refused_citing_the_rule(world: World) -> None:
    other_cmk = world.kms.create_key()
    other_arn = world.kms.create_role("other", trust_policy=log_service_trust_policy(), policies=BOTH)
    world.client.create_logstore("proj", "service", encrypt_conf={"enable": True, "encrypt_type": "default"})
    world.client.create_logstore("proj", "byok", encrypt_conf=world.byok("sm4"))
    world.client.create_logstore("proj", "plain", encrypt_conf={"enable": False, "encrypt_type": ""})
    assert "encrypt_type cannot be changed" in _refused(
        world, "service", {"enable": True, "encrypt_type": "sm4"}).get_error_message()
    assert "encrypt_type cannot be changed" in _refused(
        world, "service", {"enable": False, "encrypt_type": "m4"}).get_error_message()
    assert "user_cmk_info cannot be added" in _refused(world, "service", world.byok("default")).get_error_message()
    assert "user_cmk_info cannot be removed" in _refused(
        world, "byok", {"enable": True, "encrypt_type": "sm4"}).get_error_message()
    for field, value in (("cmk_key_id", other_cmk), ("arn", other_arn), ("region_id", "cn-shanghai")):
        message = _refused(world, "byok", world.byok("sm4", **{field: value})).get_error_message()
        assert f"user_cmk_info cannot be changed ({field})" in message
    assert "cannot be enabled on a Logstore created without it" in _refused(
        world, "plain", {"enable": True, "encrypt_type": "default"}).get_error_message()
    with pytest.raises(ConfigError) as info:
        world.manager.update_logstore("proj", "plain", {"enable": True})
    assert info.value.code == "LogStoreInfoInvalid"
    # Nothing refused changed anything.
    assert world.client.get_logstore("proj", "byok").get_encrypt_conf() == world.byok("sm4")
    world.manager.update_logstore("proj", "plain", {"enable": False})  # stays off: a no-op
    exc = sdk_error(lambda: world.client.update_logstore("proj", "nope", encrypt_conf={"enable": False}))
    assert (exc.get_error_code(), exc.resp_status) == ("LogStoreNotExist", 404)


# ---- 5. regions ---------------------------------------------------------------------------------------

def _shanghai_byok(world: World) -> Dict[str, Any]:
    cmk = world.shanghai.create_key("customer key in Shanghai")
    arn = world.shanghai.create_role("sls-byok", trust_policy=log_service_trust_policy(), policies=BOTH)
    return {"enable": True, "encrypt_type": "default",
            "user_cmk_info": {"cmk_key_id": cmk, "arn": arn, "region_id": "cn-shanghai"}}


@pytest.mark.parametrize("form", ["mapping", "callable"])
def test_byok_calls_go_to_the_kms_of_region_id(world: World, form: str, tmp_path: Path) -> None:
    regions = {"cn-hangzhou": world.kms, "cn-shanghai": world.shanghai}
    kms: Any = regions if form == "mapping" else regions.get
    store = str(tmp_path / "keys.sqlite")
    manager = KeyManager(kms, store, region_id="cn-hangzhou")
    conf = _shanghai_byok(world)
    cipher = manager.create_logstore("proj", "shanghai", conf)  # the CMK exists only in cn-shanghai
    here = manager.create_logstore("proj", "hangzhou", world.byok())
    service = manager.create_logstore("proj", "service", {"enable": True, "encrypt_type": "sm4"})
    assert cipher is not None and here is not None and service is not None
    blobs = [c.encrypt(b"batch") for c in (cipher, here, service)]
    assert len(world.shanghai.list_keys()) == 1  # the service CMK was made in the service region
    manager.close()
    # After a restart the unwraps go to the same regions.
    again = KeyManager(kms, store, region_id="cn-hangzhou")
    for name, blob in zip(("shanghai", "hangzhou", "service"), blobs):
        reopened = again.open_logstore("proj", name)
        assert reopened is not None and reopened.decrypt(blob) == b"batch"
    with pytest.raises(ConfigError) as info:
        again.create_logstore("proj", "beijing", world.byok(region_id="cn-beijing"))
    assert info.value.code == "LogStoreInfoInvalid" and "cn-beijing" in str(info.value)
    assert "no KMS" in str(info.value)
    again.close()


def test_a_kms_of_another_region_is_refused(world: World) -> None:
    conf = world.byok(region_id="cn-shanghai")
    exc = sdk_error(lambda: world.client.create_logstore("proj", "store", encrypt_conf=conf))
    assert (exc.get_error_code(), exc.resp_status) == ("LogStoreInfoInvalid", 400)
    assert "'cn-shanghai' is not the region of the KMS ('cn-hangzhou')" in exc.get_error_message()
    with pytest.raises(ValueError, match="serves 'cn-hangzhou'"):
        KeyManager({"cn-shanghai": world.kms})
    with pytest.raises(ValueError, match="not the region"):
        KeyManager(world.kms, region_id="cn-shanghai")
    assert world.kms.region_id == "cn-hangzhou" and world.shanghai.region_id == "cn-shanghai"


def test_per_region_manager_without_service_region_makes_only_byok(world: World) -> None:
    manager = KeyManager({"cn-hangzhou": world.kms})
    assert manager.create_logstore("proj", "byok", world.byok()) is not None
    with pytest.raises(ConfigError) as info:
        manager.create_logstore("proj", "service", {"enable": True, "encrypt_type": "default"})
    assert info.value.code == "ServiceKeyUnavailable" and "region_id" in str(info.value)


def test_backends_without_regions_take_any_region_id(world: World) -> None:
    class Regionless(LocalKms):
        region_id = None  # type: ignore[assignment]  # as OpenBao, PKCS#11 and AWS say

    kms = Regionless()
    cmk = kms.create_key()
    arn = kms.create_role("r", trust_policy=log_service_trust_policy(), policies=BOTH)
    manager = KeyManager(kms)
    conf = {"enable": True, "encrypt_type": "sm4",
            "user_cmk_info": {"cmk_key_id": cmk, "arn": arn, "region_id": "ap-southeast-1"}}
    assert manager.create_logstore("proj", "store", conf) is not None


# ---- the command line ---------------------------------------------------------------------------------

def _cli(home: Path, *args: str) -> "subprocess.CompletedProcess[str]":
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    env.pop("SLS_ENVELOPE_HOME", None)
    return subprocess.run([sys.executable, "-m", "sls_envelope", "--home", str(home), *args],
                          capture_output=True, text=True, env=env, timeout=300)


def _error_line(result: "subprocess.CompletedProcess[str]") -> str:
    assert result.returncode == 1, result.stderr
    (line,) = result.stderr.splitlines()
    return line


def test_command_line_echo_update_rules_and_codes(tmp_path: Path) -> None:
    home = tmp_path / "home"
    created = json.loads(_cli(home, "logstore", "create", "proj/store", "--json",
                              "--encrypt-conf", '{"enable": true, "encrypt_type": "m4"}').stdout)
    assert created["encrypt_conf"] == {"enable": True, "encrypt_type": "m4"}
    line = _error_line(_cli(home, "logstore", "create", "proj/bad", "--encrypt-conf",
                            '{"enable": true, "encrypt_type": "typex"}'))
    assert "The encrypt_conf is invalid, [encrypt_type] key is missing or not supported" in line
    assert "[LogStoreInfoInvalid]" in line
    assert "[LogStoreAlreadyExist]" in _error_line(_cli(home, "logstore", "create", "proj/store"))
    assert "[LogStoreNotExist]" in _error_line(_cli(home, "logstore", "show", "proj/nope"))
    line = _error_line(_cli(home, "logstore", "update", "proj/store", "--encrypt-conf",
                            '{"enable": true, "encrypt_type": "default"}'))
    assert "[LogStoreInfoInvalid]" in line and "encrypt_type cannot be changed" in line
    assert "encryption off" in _cli(home, "logstore", "update", "proj/store", "--encrypt-conf", '{"enable": false}').stdout
    shown = json.loads(_cli(home, "logstore", "show", "proj/store", "--json").stdout)
    assert shown["encrypt_conf"] == {"enable": False, "encrypt_type": "m4"}
    (tmp_path / "in").write_bytes(b"x")
    line = _error_line(_cli(home, "encrypt", "proj/store", str(tmp_path / "in"), str(tmp_path / "out")))
    assert "[EncryptionDisabled]" in line
    assert "encryption on" in _cli(home, "logstore", "update", "proj/store", "--encrypt-conf",
                                   '{"enable": true, "encrypt_type": "sm4"}').stdout


def test_every_error_a_client_can_see_has_code_status_and_body() -> None:
    for exc in (ConfigError.invalid_encrypt_conf("x"), KeyInvalidError("x", code="Rejected.Disabled"),
                EncryptionDisabledError("x")):
        body = exc.error_body()
        assert set(body) == {"errorCode", "errorMessage"} and body["errorCode"] == exc.code
        assert 400 <= exc.http_status < 600


def test_the_documented_error_table_is_what_the_exceptions_say() -> None:
    """docs/LOGSTORE.md's error table: each code's status is the one its exception carries."""
    import re

    import sls_envelope.exceptions as errors

    text = (ROOT / "docs" / "LOGSTORE.md").read_text(encoding="utf-8").split("## Errors", 1)[1]
    checked = 0
    for row in re.findall(r"^\| (.+) \|$", text, flags=re.M):
        cells = [c.strip() for c in row.split(" | ")]
        if len(cells) != 5 or not cells[1].isdigit():
            continue
        codes = re.findall(r"`([A-Za-z.]+)`", cells[0].split('"')[0])
        classes = [getattr(errors, name) for name in re.findall(r"`([A-Za-z]+)", cells[2])]
        for index, code in enumerate(codes):
            cls = classes[index] if len(classes) == len(codes) else classes[0]
            exc = cls("x") if code == cls.default_code else cls("x", code=code)
            assert (code, exc.code, exc.http_status) == (code, code, int(cells[1]))
            checked += 1
    assert checked >= 15
