"""EncryptConf: what CreateLogstore accepts, the echo of what was sent, the algorithm it
names, and ConfigError (LogStoreInfoInvalid) naming the field."""

from __future__ import annotations

from typing import Any, Dict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sls_envelope import ConfigError, EncryptConf, SlsEnvelopeError

CMK = {"cmk_key_id": "key-1", "arn": "acs:ram::1000000000000000:role/slsrole", "region_id": "cn-hangzhou"}


@pytest.mark.parametrize(
    "given, canonical, suite",
    [
        ("default", "default", "aes-256-gcm"),
        ("aes_gcm", "default", "aes-256-gcm"),
        ("sm4", "sm4", "sm4-gcm"),
        ("m4", "sm4", "sm4-gcm"),
        ("sm4_gcm", "sm4", "sm4-gcm"),
        ("SM4", "sm4", "sm4-gcm"),
    ],
)
def test_encrypt_types_name_an_algorithm_and_echo_as_sent(given: str, canonical: str, suite: str) -> None:
    conf = EncryptConf.from_dict({"enable": True, "encrypt_type": given})
    assert conf.encrypt_type == given
    assert conf.algorithm == canonical
    assert conf.suite == suite
    assert conf.key_type == "service"
    assert conf.to_dict() == {"enable": True, "encrypt_type": given}


def test_byok_round_trip() -> None:
    d = {"enable": True, "encrypt_type": "m4", "user_cmk_info": dict(CMK)}
    conf = EncryptConf.from_dict(d)
    assert conf.key_type == "byok"
    assert conf.to_dict() == d
    assert conf.algorithm == "sm4"
    assert EncryptConf.from_dict(conf.to_dict()) == conf


def test_disabled_conf() -> None:
    conf = EncryptConf.from_dict({"enable": False})
    assert conf.to_dict() == {"enable": False}
    assert conf.suite is None and conf.key_type is None
    # encrypt_type is optional when disabled, but still validated when given.
    assert EncryptConf.from_dict({"enable": False, "encrypt_type": "m4"}).algorithm == "sm4"
    with pytest.raises(ConfigError, match="encrypt_type"):
        EncryptConf.from_dict({"enable": False, "encrypt_type": "aes_cbc"})


@pytest.mark.parametrize("mode", ["aes_cbc", "aes_ecb", "aes_cfb", "aes_ofb", "sm4_ecb", "sm4_cbc"])
def test_unauthenticated_modes_are_refused_with_the_reason(mode: str) -> None:
    with pytest.raises(ConfigError, match="unauthenticated") as info:
        EncryptConf.from_dict({"enable": True, "encrypt_type": mode})
    assert "encrypt_type" in str(info.value)


BAD: Dict[str, Any] = {
    "not a dict": (["enable"], "encrypt_conf"),
    "missing enable": ({"encrypt_type": "default"}, "enable"),
    "enable as string": ({"enable": "true", "encrypt_type": "default"}, "enable"),
    "enable as int": ({"enable": 1, "encrypt_type": "default"}, "enable"),
    "enable None": ({"enable": None}, "enable"),
    "missing type": ({"enable": True}, "encrypt_type"),
    "type None": ({"enable": True, "encrypt_type": None}, "encrypt_type"),
    "type not str": ({"enable": True, "encrypt_type": 1}, "encrypt_type"),
    "unknown type": ({"enable": True, "encrypt_type": "chacha20"}, "encrypt_type"),
    "empty type": ({"enable": True, "encrypt_type": ""}, "encrypt_type"),
    "unknown field": ({"enable": True, "encrypt_type": "default", "extra": 1}, "extra"),
    "cmk not dict": ({"enable": True, "encrypt_type": "default", "user_cmk_info": "key"}, "user_cmk_info"),
    "cmk empty": ({"enable": True, "encrypt_type": "default", "user_cmk_info": {}}, "user_cmk_info.cmk_key_id"),
    "cmk unknown field": (
        {"enable": True, "encrypt_type": "default", "user_cmk_info": dict(CMK, extra="x")}, "extra"),
}
for _field in ("cmk_key_id", "arn", "region_id"):
    BAD[f"cmk missing {_field}"] = (
        {"enable": True, "encrypt_type": "default",
         "user_cmk_info": {k: v for k, v in CMK.items() if k != _field}},
        f"user_cmk_info.{_field}",
    )
    BAD[f"cmk empty {_field}"] = (
        {"enable": True, "encrypt_type": "default", "user_cmk_info": dict(CMK, **{_field: ""})},
        f"user_cmk_info.{_field}",
    )
    BAD[f"cmk non-string {_field}"] = (
        {"enable": True, "encrypt_type": "default", "user_cmk_info": dict(CMK, **{_field: 7})},
        f"user_cmk_info.{_field}",
    )


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_confs_are_config_errors_naming_the_field(name: str) -> None:
    conf, field = BAD[name]
    with pytest.raises(ConfigError) as info:
        EncryptConf.from_dict(conf)
    assert field in str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, SlsEnvelopeError)
    assert info.value.code == "LogStoreInfoInvalid" and info.value.http_status == 400
    assert str(info.value).startswith("The encrypt_conf is invalid, ")


def test_direct_construction_is_checked() -> None:
    with pytest.raises(ConfigError):
        EncryptConf(enable=True)
    with pytest.raises(ConfigError):
        EncryptConf(enable=True, encrypt_type="chacha20")
    assert EncryptConf(enable=True, encrypt_type="m4").to_dict() == {"enable": True, "encrypt_type": "m4"}
    with pytest.raises(ConfigError):
        EncryptConf(enable="yes")  # type: ignore[arg-type]


def test_effective_settings_ignore_what_disabled_confs_do_not_use() -> None:
    assert EncryptConf.from_dict({"enable": False}).effective() == \
        EncryptConf.from_dict({"enable": False, "encrypt_type": "sm4"}).effective()
    assert EncryptConf.from_dict({"enable": True, "encrypt_type": "m4"}).effective() == \
        EncryptConf.from_dict({"enable": True, "encrypt_type": "sm4"}).effective()


# ---- the echo: any accepted conf renders back exactly as sent (docs/LOGSTORE.md) ----------------------

_SPELLINGS = ["default", "aes_gcm", "sm4", "m4", "sm4_gcm", "SM4", "M4", "Default", "", "typex", "aes_cbc"]
_CMKS = st.fixed_dictionaries({"cmk_key_id": st.sampled_from(["key-1", "f5136b95-2420-ab31"]),
                               "arn": st.just(CMK["arn"]), "region_id": st.sampled_from(["cn-hangzhou", "cn-shanghai"])})


@settings(max_examples=200, deadline=None)
@given(enable=st.booleans(), encrypt_type=st.one_of(st.none(), st.sampled_from(_SPELLINGS)),
       cmk=st.one_of(st.none(), _CMKS), camel=st.booleans())
def test_accepted_confs_echo_exactly(enable: bool, encrypt_type: Any, cmk: Any, camel: bool) -> None:
    sent: Dict[str, Any] = {"enable": enable}
    if encrypt_type is not None:
        sent["encrypt_type"] = encrypt_type
    if cmk is not None:
        sent["user_cmk_info"] = cmk
    if camel:  # the UpdateLogStoreEncryption body of the same conf
        sent = {"enable": enable, **({"encryptType": encrypt_type} if encrypt_type is not None else {}),
                **({"userCmkInfo": {"keyId": cmk["cmk_key_id"], "roleArn": cmk["arn"],
                                    "regionId": cmk["region_id"]}} if cmk is not None else {})}
    known = encrypt_type is not None and encrypt_type.lower() in ("default", "aes_gcm", "sm4", "m4", "sm4_gcm")
    if encrypt_type in ("typex", "aes_cbc") or (enable and not known):
        with pytest.raises(ConfigError) as info:
            EncryptConf.from_dict(sent)
        assert info.value.code == "LogStoreInfoInvalid"
        return
    conf = EncryptConf.from_dict(sent)
    assert (conf.to_encryption_body() if camel else conf.to_dict()) == sent
    assert conf.algorithm == (None if not known else ("default" if encrypt_type.lower() in ("default", "aes_gcm")
                                                      else "sm4"))
    assert EncryptConf.from_dict(conf.to_dict()) == conf
