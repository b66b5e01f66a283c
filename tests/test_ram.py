"""RAM as LocalKms emulates it: policy evaluation (Allow, Deny wins, wildcards), the three
identities (account, RAM users, the log service) and who may assume which role, and
PassRole when a RAM user creates a BYOK Logstore (Python API and command line)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict

import pytest

from sls_envelope import KeyInvalidError, KeyManager
from sls_envelope.kms.local import (
    ASSUME_ROLE_POLICY,
    LocalKms,
    create_log_service_role,
    log_service_trust_policy,
)
from sls_envelope.kms.ram import Principal, evaluate, trusts

CTX = {"project": "p", "logstore": "l"}


def _policy(*statements: Dict[str, Any]) -> Dict[str, Any]:
    return {"Version": "1", "Statement": list(statements)}


def _code(call: Any) -> str:
    with pytest.raises(KeyInvalidError) as info:
        call()
    return info.value.code


# ---- evaluation ---------------------------------------------------------------------------------------------


ROLE = "acs:ram::1000000000000000:role/sls-byok"


@pytest.mark.parametrize("documents,allowed", [
    ([], False),  # nothing allows: implicit deny
    ([_policy({"Effect": "Allow", "Action": "ram:PassRole", "Resource": "acs:ram::*"})], True),
    ([_policy({"Effect": "Allow", "Action": "ram:PassRole", "Resource": ROLE})], True),
    ([_policy({"Effect": "Allow", "Action": "ram:PassRole", "Resource": "acs:ram::*:role/sls-*"})], True),
    ([_policy({"Effect": "Allow", "Action": "ram:PassRole", "Resource": "acs:ram::*:role/other"})], False),
    ([_policy({"Effect": "Allow", "Action": "ram:*", "Resource": "*"})], True),
    ([_policy({"Effect": "Allow", "Action": "RAM:passrole", "Resource": "*"})], True),  # actions ignore case
    ([_policy({"Effect": "Allow", "Action": "ram:PassRol?", "Resource": "*"})], True),
    ([_policy({"Effect": "Allow", "Action": "ram:Pass", "Resource": "*"})], False),  # no prefix match
    ([_policy({"Effect": "Allow", "Action": ["kms:*", "ram:PassRole"], "Resource": ["x", ROLE]})], True),
    ([_policy({"Effect": "Allow", "Action": "ram:PassRole", "Resource": "ACS:RAM::*"})], False),  # resources keep case
    ([_policy({"Effect": "Allow", "Action": "*", "Resource": "*"}),
      _policy({"Effect": "Deny", "Action": "ram:PassRole", "Resource": ROLE})], False),  # Deny wins
    ([_policy({"Effect": "Deny", "Action": "ram:PassRole", "Resource": "acs:ram::*:role/x"},
              {"Effect": "Allow", "Action": "ram:PassRole", "Resource": "*"})], True),  # Deny elsewhere
])
def test_evaluation(documents: Any, allowed: bool) -> None:
    assert evaluate(documents, "ram:PassRole", ROLE) is allowed


def test_trust_policies_name_principals() -> None:
    account = "1000000000000000"
    alice = Principal("user", account, "alice")
    service = Principal("service", account, "log.aliyuncs.com")
    root = Principal("account", account)

    def trust(principal: Dict[str, Any], effect: str = "Allow") -> Dict[str, Any]:
        return _policy({"Effect": effect, "Action": "sts:AssumeRole", "Principal": principal})

    assert trusts(trust({"Service": ["log.aliyuncs.com"]}), service)
    assert trusts(trust({"Service": [f"{account}@log.aliyuncs.com"]}), service)
    assert not trusts(trust({"Service": ["log.aliyuncs.com"]}), alice)  # users cannot act as a service
    assert trusts(trust({"RAM": [f"acs:ram::{account}:root"]}), alice)
    assert trusts(trust({"RAM": [account]}), alice)
    assert trusts(trust({"RAM": f"acs:ram::{account}:user/alice"}), alice)
    assert not trusts(trust({"RAM": f"acs:ram::{account}:user/bob"}), alice)
    assert not trusts(trust({"RAM": ["acs:ram::2:root"]}), alice)
    assert not trusts(trust({"RAM": [f"acs:ram::{account}:root"]}), service)
    assert not trusts(trust({"RAM": [f"acs:ram::{account}:root"]}), root)
    both = _policy({"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"RAM": [account]}},
                   {"Effect": "Deny", "Action": "sts:AssumeRole", "Principal": {"RAM": [alice.arn]}})
    assert not trusts(both, alice)


def test_condition_blocks_are_refused_not_ignored() -> None:
    kms = LocalKms()
    with pytest.raises(ValueError, match="Condition"):
        kms.create_policy("c", _policy({"Effect": "Allow", "Action": "ram:PassRole", "Resource": "*",
                                        "Condition": {"StringEquals": {"acs:Service": "log.aliyuncs.com"}}}))


# ---- identities and AssumeRole --------------------------------------------------------------------------------


def test_the_account_may_not_assume_roles() -> None:
    kms = LocalKms()
    arn = kms.create_role("by-account", trust_policy=_policy(
        {"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"RAM": [f"acs:ram::{kms.account_id}:root"]}}),
        policies=["AliyunKMSCryptoUserAccess"])
    with pytest.raises(KeyInvalidError) as info:
        kms.assume_role_as(Principal("account", kms.account_id), arn)
    assert info.value.code == "NoPermission" and str(info.value) == "Roles may not be assumed by root accounts."


def test_users_assume_roles_trusting_their_account_with_sts_permission() -> None:
    kms = LocalKms()
    key = kms.create_key()
    by_account = kms.create_role("by-account", trust_policy=_policy(
        {"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"RAM": [f"acs:ram::{kms.account_id}:root"]}}),
        policies=["AliyunKMSCryptoUserAccess"])
    byok = create_log_service_role(kms, "sls-byok")
    kms.create_user("alice")
    alice = Principal("user", kms.account_id, "alice")
    assert _code(lambda: kms.assume_role_as(alice, by_account)) == "NoPermission"  # no sts:AssumeRole yet
    kms.attach_user_policy("alice", ASSUME_ROLE_POLICY)
    role = kms.assume_role_as(alice, by_account)
    data_key = role.generate_data_key(key, context=CTX)
    assert kms.decrypt(data_key.ciphertext_blob, context=CTX) == data_key.plaintext
    # A role trusting only the log service: not for a user, whatever its permissions.
    kms.attach_user_policy("alice", "AdministratorAccess")
    assert _code(lambda: kms.assume_role_as(alice, byok)) == "NoPermission"
    # ... but for the service, which is what LocalKms.assume_role acts as.
    assert kms.assume_role(byok).describe_key(key)["KeyId"] == key
    assert _code(lambda: kms.assume_role(by_account)) == "NoPermission"


def test_a_deny_on_sts_assume_role_wins() -> None:
    kms = LocalKms()
    arn = kms.create_role("r", trust_policy=_policy(
        {"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"RAM": [kms.account_id]}}), policies=[])
    kms.create_user("bob")
    kms.create_policy("no-r", _policy({"Effect": "Deny", "Action": "sts:AssumeRole", "Resource": arn}))
    kms.attach_user_policy("bob", "AdministratorAccess")
    kms.attach_user_policy("bob", "no-r")
    assert _code(lambda: kms.assume_role_as(Principal("user", kms.account_id, "bob"), arn)) == "NoPermission"


def test_user_kms_calls_follow_their_policies() -> None:
    kms = LocalKms()
    key = kms.create_key()
    kms.create_user("carol")
    carol = kms.client_for(Principal("user", kms.account_id, "carol"))
    assert _code(lambda: carol.describe_key(key)) == "Forbidden.NoPermission"
    kms.attach_user_policy("carol", "AliyunKMSReadOnlyAccess")
    assert carol.describe_key(key)["KeyId"] == key
    assert _code(lambda: carol.generate_data_key(key, context=CTX)) == "Forbidden.NoPermission"
    assert _code(lambda: carol.disable_key(key)) == "Forbidden.NoPermission"
    kms.detach_user_policy("carol", "AliyunKMSReadOnlyAccess")
    assert _code(lambda: carol.describe_key(key)) == "Forbidden.NoPermission"  # at once


def test_access_keys_and_the_service_credential(tmp_path: Path) -> None:
    kms = LocalKms(tmp_path)
    kms.create_user("dave")
    ident, secret = kms.create_access_key("dave")
    assert ident.startswith("LTAI") and len(ident) == 24 and len(secret) == 30
    assert kms.access_key(ident) == (Principal("user", kms.account_id, "dave"), secret)
    assert secret not in json.dumps(kms.get_user("dave"))
    service = kms.service_credential()
    assert LocalKms(tmp_path).service_credential() == service  # kept under the home, made once
    found = kms.access_key(service[0])
    assert found is not None and found[0].kind == "service" and found[0].name == "log.aliyuncs.com"
    assert kms.access_key("LTAInobody") is None


# ---- PassRole: a RAM user creating a BYOK Logstore -------------------------------------------------------------


def _byok_conf(key: str, arn: str) -> Dict[str, Any]:
    return {"enable": True, "encrypt_type": "sm4",
            "user_cmk_info": {"cmk_key_id": key, "arn": arn, "region_id": "cn-hangzhou"}}


def test_pass_role_is_needed_to_create_a_byok_logstore(tmp_path: Path) -> None:
    kms = LocalKms()
    key = kms.create_key()
    arn = create_log_service_role(kms, "sls-byok")
    kms.create_user("erin")
    manager = KeyManager(kms, tmp_path / "keys.db")
    with pytest.raises(KeyInvalidError) as refused:
        manager.create_logstore("p", "s1", _byok_conf(key, arn), caller=kms.user("erin"))
    assert refused.value.code == "Unauthorized" and refused.value.http_status == 403 and "ram:PassRole" in str(refused.value)
    assert manager.list_logstores() == []  # nothing half-made
    # The policy: ram:PassRole on acs:ram::*.
    kms.create_policy("pass-any", _policy({"Effect": "Allow", "Action": "ram:PassRole", "Resource": "acs:ram::*"}))
    kms.attach_user_policy("erin", "pass-any")
    assert manager.create_logstore("p", "s1", _byok_conf(key, arn), caller=kms.user("erin")) is not None
    # Deny wins over that Allow.
    kms.create_policy("no-byok", _policy({"Effect": "Deny", "Action": "ram:PassRole", "Resource": arn}))
    kms.attach_user_policy("erin", "no-byok")
    assert _code(lambda: manager.create_logstore("p", "s2", _byok_conf(key, arn),
                                                 caller=kms.user("erin"))) == "Unauthorized"
    # Service-key Logstores pass no role; the account passes any of its roles.
    assert manager.create_logstore("p", "s3", {"enable": True, "encrypt_type": "default"},
                                   caller=kms.user("erin")) is not None
    assert manager.create_logstore("p", "s4", _byok_conf(key, arn), caller=kms.account()) is not None
    assert manager.create_logstore("p", "s5", _byok_conf(key, arn)) is not None
    manager.close()


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess:  # type: ignore[type-arg]
    return subprocess.run([sys.executable, "-m", "sls_envelope", "--home", str(home), *args],
                          capture_output=True, text=True, timeout=120)


def test_command_line_users_and_pass_role(tmp_path: Path) -> None:
    home = tmp_path / "home"
    key = _cli(home, "kms", "create-key").stdout.strip()
    arn = _cli(home, "kms", "create-role", "sls-byok").stdout.strip()
    made = _cli(home, "kms", "create-user", "frank")
    assert made.returncode == 0 and made.stdout.strip().endswith(":user/frank"), made.stderr
    access = _cli(home, "kms", "create-access-key", "frank", "--json")
    assert json.loads(access.stdout)["AccessKeyId"].startswith("LTAI")
    conf = json.dumps(_byok_conf(key, arn))
    refused = _cli(home, "logstore", "create", "prj/s01", "--encrypt-conf", conf, "--as-user", "frank")
    assert refused.returncode == 1 and "[Unauthorized]" in refused.stderr and "ram:PassRole" in refused.stderr
    assert refused.stderr.count("\n") == 1
    document = json.dumps(_policy({"Effect": "Allow", "Action": "ram:PassRole", "Resource": "acs:ram::*"}))
    assert _cli(home, "kms", "create-policy", "pass", "--document", document).returncode == 0
    assert _cli(home, "kms", "attach-user-policy", "frank", "pass").returncode == 0
    done = _cli(home, "logstore", "create", "prj/s01", "--encrypt-conf", conf, "--as-user", "frank")
    assert done.returncode == 0, done.stderr
    unknown = _cli(home, "logstore", "create", "prj/s02", "--encrypt-conf", conf, "--as-user", "nobody")
    assert unknown.returncode == 1 and "EntityNotExist.User" in unknown.stderr
    service = json.loads(_cli(home, "kms", "service-credential", "--json").stdout)
    assert json.loads(_cli(home, "kms", "service-credential", "--json").stdout) == service


def test_log_service_trust_policy_is_what_docs_show() -> None:
    assert log_service_trust_policy() == _policy(
        {"Action": "sts:AssumeRole", "Effect": "Allow", "Principal": {"Service": ["log.aliyuncs.com"]}})
