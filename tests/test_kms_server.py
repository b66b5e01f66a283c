"""The KMS/STS server's request signatures and answers, without any SDK (one test compares
our signer with the official SDK's when it is installed)."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import time
import uuid
from typing import Dict, Mapping, Optional, Tuple
from urllib.parse import parse_qsl, urlencode

import pytest

from sls_envelope.kms.acs_signature import (
    acs3_authorization,
    format_timestamp,
    parse_acs3_authorization,
    rpc_signature,
    SignatureError,
)
from sls_envelope.kms.local import LocalKms, create_log_service_role
from sls_envelope.kms.server import Fault, KmsApi, Response

AK, SECRET = "LTAI5tRootKey", "root-secret-value-123"
KMS_V, STS_V = "2016-01-20", "2015-04-01"


def acs3_request(
    action: str, params: Mapping[str, str], *, version: str = KMS_V, ak: str = AK, secret: str = SECRET,
    token: Optional[str] = None, date: Optional[str] = None, nonce: Optional[str] = None,
    body: bytes = b"", signed_headers: Optional[Tuple[str, ...]] = None,
) -> Tuple[str, Dict[str, str], bytes]:
    """(target, headers, body) signed as the current SDK signs."""
    headers = {
        "host": "127.0.0.1:1", "x-acs-version": version, "x-acs-action": action,
        "x-acs-date": date or format_timestamp(time.time()), "x-acs-signature-nonce": nonce or uuid.uuid4().hex,
        "accept": "application/json", "content-type": "application/x-www-form-urlencoded",
        "x-acs-content-sha256": hashlib.sha256(body).hexdigest(),
    }
    if token is not None:
        headers["x-acs-accesskey-id"] = ak
        headers["x-acs-security-token"] = token
    query = sorted(params.items())
    to_sign = headers if signed_headers is None else {k: v for k, v in headers.items() if k in signed_headers}
    headers["authorization"] = acs3_authorization(ak, secret, "POST", "/", query, to_sign, body)
    return "/?" + urlencode(query), headers, body


def rpc_request(
    action: str, params: Mapping[str, str], *, version: str = KMS_V, ak: str = AK, secret: str = SECRET,
    token: Optional[str] = None, nonce: Optional[str] = None,
) -> Tuple[str, Dict[str, str], bytes]:
    """(target, headers, body) signed with HMAC-SHA1, as older SDKs sign."""
    query = {"Action": action, "Format": "json", "Version": version, "Timestamp": format_timestamp(time.time()),
             "SignatureNonce": nonce or uuid.uuid4().hex, "SignatureMethod": "HMAC-SHA1",
             "SignatureVersion": "1.0", "AccessKeyId": ak, **params}
    if token is not None:
        query["SecurityToken"] = token
    query["Signature"] = rpc_signature(secret, "POST", query)
    return "/?" + urlencode(query), {"host": "127.0.0.1:1"}, b""


def call(api: KmsApi, request: Tuple[str, Dict[str, str], bytes]) -> Tuple[int, dict]:
    target, headers, body = request
    response: Response = api.handle("POST", target, headers, body)
    return response.status, json.loads(response.body)


@pytest.fixture
def kms() -> LocalKms:
    return LocalKms()


@pytest.fixture
def api(kms: LocalKms) -> KmsApi:
    return KmsApi(kms, AK, SECRET)


@pytest.fixture
def key_id(kms: LocalKms) -> str:
    return kms.create_key("test")


# -- signer agrees with the official SDK ----------------------------------------------------------


def test_our_signers_match_the_official_sdk() -> None:
    utils = pytest.importorskip("alibabacloud_tea_openapi.utils").Utils
    from darabonba.request import DaraRequest

    request = DaraRequest()
    request.method, request.pathname = "POST", "/"
    request.query = {"KeyId": "k 1+/~*", "EncryptionContext": '{"a":"b é"}'}
    request.headers = {"host": "h:1", "x-acs-action": "Decrypt", "x-acs-date": "2024-01-01T00:00:00Z",
                       "x-acs-content-sha256": hashlib.sha256(b"").hexdigest()}
    sdk = utils.get_authorization(request, "ACS3-HMAC-SHA256", request.headers["x-acs-content-sha256"], AK, SECRET)
    ours = acs3_authorization(AK, SECRET, "POST", "/", sorted(request.query.items()), request.headers)
    assert ours == sdk
    params = {"Action": "Decrypt", "Timestamp": "2024-01-01T00:00:00Z", "KeyId": "k 1+/~*"}
    assert rpc_signature(SECRET, "POST", params) == utils.get_rpcsignature(params, "POST", SECRET)


# -- ACS3 -------------------------------------------------------------------------------------------


def test_acs3_good_request_is_served(api: KmsApi, key_id: str) -> None:
    status, body = call(api, acs3_request("DescribeKey", {"KeyId": key_id}))
    assert status == 200
    assert body["KeyMetadata"]["KeyId"] == key_id and body["KeyMetadata"]["KeyState"] == "Enabled"
    assert body["RequestId"]


def test_request_ids_are_upper_case_version_4_uuids(api: KmsApi, key_id: str) -> None:
    ids = []
    for request in (acs3_request("DescribeKey", {"KeyId": key_id}), acs3_request("DescribeKey", {"KeyId": "nope"})):
        target, headers, body = request
        response = api.handle("POST", target, headers, body)
        ids.append(json.loads(response.body)["RequestId"])
        assert response.headers["x-acs-request-id"] == ids[-1]
    for text in ids:
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant, str(parsed).upper()) == (4, uuid.RFC_4122, text)
    assert ids[0] != ids[1]


def test_acs3_wrong_secret_is_refused(api: KmsApi, key_id: str) -> None:
    status, body = call(api, acs3_request("DescribeKey", {"KeyId": key_id}, secret="not-the-secret"))
    assert (status, body["Code"]) == (400, "SignatureDoesNotMatch")
    assert set(body) >= {"RequestId", "Code", "Message"}


def test_acs3_unknown_access_key_is_refused(api: KmsApi, key_id: str) -> None:
    status, body = call(api, acs3_request("DescribeKey", {"KeyId": key_id}, ak="LTAIunknown"))
    assert (status, body["Code"]) == (404, "InvalidAccessKeyId.NotFound")


def test_acs3_tampered_body_is_refused(api: KmsApi, key_id: str) -> None:
    target, headers, body = acs3_request("DescribeKey", {"KeyId": key_id}, body=b"Description=a")
    assert call(api, (target, headers, b"Description=b"))[1]["Code"] == "SignatureDoesNotMatch"
    # even with the body hash header recomputed: that header is signed
    headers = dict(headers, **{"x-acs-content-sha256": hashlib.sha256(b"Description=b").hexdigest()})
    assert call(api, (target, headers, b"Description=b"))[1]["Code"] == "SignatureDoesNotMatch"


def test_acs3_tampered_header_or_query_is_refused(api: KmsApi, key_id: str, kms: LocalKms) -> None:
    target, headers, body = acs3_request("DescribeKey", {"KeyId": key_id})
    status, answer = call(api, (target, dict(headers, **{"x-acs-action": "DisableKey"}), body))
    assert (status, answer["Code"]) == (400, "SignatureDoesNotMatch")
    other = kms.create_key("other")
    status, answer = call(api, ("/?" + urlencode({"KeyId": other}), headers, body))
    assert (status, answer["Code"]) == (400, "SignatureDoesNotMatch")
    assert kms.describe_key(key_id)["KeyState"] == "Enabled"


def test_acs3_replayed_nonce_is_refused(api: KmsApi, key_id: str) -> None:
    request = acs3_request("DescribeKey", {"KeyId": key_id})
    assert call(api, request)[0] == 200
    status, body = call(api, request)
    assert (status, body["Code"]) == (400, "SignatureNonceUsed")


def test_acs3_stale_timestamp_is_refused(api: KmsApi, key_id: str) -> None:
    stale = format_timestamp(time.time() - 16 * 60)
    status, body = call(api, acs3_request("DescribeKey", {"KeyId": key_id}, date=stale))
    assert (status, body["Code"]) == (400, "InvalidTimeStamp.Expired")
    fine = format_timestamp(time.time() - 10 * 60)
    assert call(api, acs3_request("DescribeKey", {"KeyId": key_id}, date=fine))[0] == 200


def test_acs3_must_sign_action_date_nonce_and_body_hash(api: KmsApi, key_id: str) -> None:
    partial = ("host", "x-acs-action", "x-acs-version", "x-acs-content-sha256", "x-acs-signature-nonce")
    status, body = call(api, acs3_request("DescribeKey", {"KeyId": key_id}, signed_headers=partial))
    assert (status, body["Code"]) == (400, "IncompleteSignature")
    assert "x-acs-date" in body["Message"]


def test_unsigned_and_malformed_requests_are_refused(api: KmsApi, key_id: str) -> None:
    status, body = call(api, ("/?KeyId=" + key_id, {"x-acs-action": "DescribeKey", "x-acs-version": KMS_V}, b""))
    assert (status, body["Code"]) == (400, "IncompleteSignature")
    with pytest.raises(SignatureError):
        parse_acs3_authorization("ACS3-HMAC-SHA256 Credential=a,Signature=b")
    with pytest.raises(SignatureError):
        parse_acs3_authorization("ACS4-HMAC-SHA256 Credential=a,SignedHeaders=host,Signature=b")


# -- HMAC-SHA1 RPC --------------------------------------------------------------------------------


def test_rpc_good_wrong_secret_tampered_and_replayed(api: KmsApi, key_id: str) -> None:
    request = rpc_request("DescribeKey", {"KeyId": key_id})
    status, body = call(api, request)
    assert status == 200 and body["KeyMetadata"]["KeyId"] == key_id
    assert call(api, request)[1]["Code"] == "SignatureNonceUsed"
    assert call(api, rpc_request("DescribeKey", {"KeyId": key_id}, secret="wrong"))[1]["Code"] == "SignatureDoesNotMatch"
    target, headers, raw = rpc_request("DescribeKey", {"KeyId": key_id})
    tampered = target.replace("Action=DescribeKey", "Action=DisableKey")
    assert call(api, (tampered, headers, raw))[1]["Code"] == "SignatureDoesNotMatch"


# -- answers ----------------------------------------------------------------------------------------


def test_key_lifecycle_and_error_statuses(api: KmsApi, key_id: str) -> None:
    ctx = json.dumps({"logstore": "s1"})
    status, made = call(api, acs3_request("GenerateDataKey", {"KeyId": key_id, "EncryptionContext": ctx}))
    assert status == 200 and len(base64.b64decode(made["Plaintext"])) == 32
    status, opened = call(api, rpc_request("Decrypt", {"CiphertextBlob": made["CiphertextBlob"], "EncryptionContext": ctx}))
    assert status == 200 and opened["Plaintext"] == made["Plaintext"]
    status, body = call(api, acs3_request("Decrypt", {"CiphertextBlob": made["CiphertextBlob"],
                                                      "EncryptionContext": json.dumps({"logstore": "s2"})}))
    assert (status, body["Code"]) == (400, "InvalidCiphertext")
    assert call(api, acs3_request("DisableKey", {"KeyId": key_id}))[0] == 200
    status, body = call(api, acs3_request("GenerateDataKey", {"KeyId": key_id}))
    assert (status, body["Code"]) == (409, "Rejected.Disabled")
    assert call(api, acs3_request("EnableKey", {"KeyId": key_id}))[0] == 200
    assert call(api, acs3_request("ScheduleKeyDeletion", {"KeyId": key_id, "PendingWindowInDays": "7"}))[0] == 200
    status, body = call(api, acs3_request("Decrypt", {"CiphertextBlob": made["CiphertextBlob"], "EncryptionContext": ctx}))
    assert (status, body["Code"]) == (409, "Rejected.PendingDeletion")
    assert call(api, acs3_request("CancelKeyDeletion", {"KeyId": key_id}))[0] == 200
    status, body = call(api, acs3_request("DescribeKey", {"KeyId": "no-such-key"}))
    assert (status, body["Code"]) == (404, "Forbidden.KeyNotFound")
    status, body = call(api, acs3_request("ScheduleKeyDeletion", {"KeyId": key_id, "PendingWindowInDays": "3"}))
    assert (status, body["Code"]) == (400, "InvalidParameter")
    status, body = call(api, acs3_request("GenerateDataKey", {"KeyId": key_id, "EncryptionContext": "[1]"}))
    assert (status, body["Code"]) == (400, "InvalidParameter")
    status, body = call(api, acs3_request("NoSuchAction", {}))
    assert (status, body["Code"]) == (404, "InvalidAction.NotFound")


def test_list_keys_pages(api: KmsApi, kms: LocalKms) -> None:
    ids = {kms.create_key(str(i)) for i in range(3)}
    status, body = call(api, acs3_request("ListKeys", {"PageSize": "2", "PageNumber": "2"}))
    assert status == 200 and body["TotalCount"] == 3 and len(body["Keys"]["Key"]) == 1
    assert body["Keys"]["Key"][0]["KeyId"] in ids


def _assume(api: KmsApi, arn: str) -> Dict[str, str]:
    """AssumeRole as the log service, with its own AccessKey (the root's may not)."""
    service_id, service_secret = api.kms.service_credential()  # type: ignore[attr-defined]
    status, body = call(api, acs3_request("AssumeRole", {"RoleArn": arn, "RoleSessionName": "t1"}, version=STS_V,
                                          ak=service_id, secret=service_secret))
    assert status == 200, body
    return body["Credentials"]


def test_sts_credentials_act_as_the_role(api: KmsApi, kms: LocalKms, key_id: str) -> None:
    arn = create_log_service_role(kms, "byok")
    creds = _assume(api, arn)
    assert creds["AccessKeyId"].startswith("STS.") and creds["Expiration"].endswith("Z")
    as_role = dict(ak=creds["AccessKeyId"], secret=creds["AccessKeySecret"], token=creds["SecurityToken"])
    status, made = call(api, acs3_request("GenerateDataKey", {"KeyId": key_id}, **as_role))
    assert status == 200
    assert call(api, rpc_request("DescribeKey", {"KeyId": key_id}, **as_role))[0] == 200
    # the role may use the key but not administer it
    status, body = call(api, acs3_request("DisableKey", {"KeyId": key_id}, **as_role))
    assert (status, body["Code"]) == (403, "Forbidden.NoPermission")
    # the token must go with its access key
    status, body = call(api, acs3_request("DescribeKey", {"KeyId": key_id}, **dict(as_role, token="CAISforged")))
    assert (status, body["Code"]) == (400, "InvalidSecurityToken.MismatchWithAccessKey")
    # a role without crypto permission is refused by RAM
    weak = kms.create_role("weak", trust_policy=_log_trust(), policies=["AliyunKMSReadOnlyAccess"])
    weak_creds = _assume(api, weak)
    status, body = call(api, acs3_request("GenerateDataKey", {"KeyId": key_id}, ak=weak_creds["AccessKeyId"],
                                          secret=weak_creds["AccessKeySecret"], token=weak_creds["SecurityToken"]))
    assert (status, body["Code"]) == (403, "Forbidden.NoPermission")


def _log_trust() -> dict:
    from sls_envelope.kms.local import log_service_trust_policy

    return log_service_trust_policy()


def test_sts_credentials_expire(kms: LocalKms, key_id: str) -> None:
    now = [time.time()]
    api = KmsApi(kms, AK, SECRET, clock=lambda: now[0])
    creds = _assume(api, create_log_service_role(kms, "byok"))
    now[0] += 3601
    status, body = call(api, acs3_request("DescribeKey", {"KeyId": key_id}, ak=creds["AccessKeyId"],
                                          secret=creds["AccessKeySecret"], token=creds["SecurityToken"],
                                          date=format_timestamp(now[0])))
    assert (status, body["Code"]) == (400, "InvalidSecurityToken.Expired")


def test_assume_role_errors(api: KmsApi, kms: LocalKms) -> None:
    service_id, service_secret = kms.service_credential()
    as_service = dict(ak=service_id, secret=service_secret)
    status, body = call(api, acs3_request("AssumeRole", {"RoleArn": f"acs:ram::{kms.account_id}:role/nobody",
                                                         "RoleSessionName": "t1"}, version=STS_V, **as_service))
    assert (status, body["Code"]) == (404, "EntityNotExist.Role")
    untrusting = kms.create_role("mine", trust_policy={"Statement": [{"Action": "sts:AssumeRole", "Effect": "Allow",
                                                                    "Principal": {"RAM": ["acs:ram::1:root"]}}],
                                                      "Version": "1"}, policies=[])
    status, body = call(api, acs3_request("AssumeRole", {"RoleArn": untrusting, "RoleSessionName": "t1"},
                                          version=STS_V, **as_service))
    assert (status, body["Code"]) == (403, "NoPermission")


def test_injected_faults_have_the_sdk_shape(kms: LocalKms, key_id: str) -> None:
    api = KmsApi(kms, AK, SECRET, fault_injector=lambda action: Fault(400, "Throttling", retry_after=2))
    target, headers, body = acs3_request("DescribeKey", {"KeyId": key_id})
    response = api.handle("POST", target, headers, body)
    assert response.status == 400 and response.headers["x-acs-retry-after"] == "2"
    assert json.loads(response.body)["Code"] == "Throttling"


def test_nothing_secret_is_logged(api: KmsApi, kms: LocalKms, key_id: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    creds = _assume(api, create_log_service_role(kms, "byok"))
    signed = acs3_request("GenerateDataKey", {"KeyId": key_id}, ak=creds["AccessKeyId"],
                          secret=creds["AccessKeySecret"], token=creds["SecurityToken"])
    status, made = call(api, signed)
    call(api, rpc_request("DescribeKey", {"KeyId": key_id}, secret="wrong"))
    assert status == 200 and caplog.records
    signature = parse_acs3_authorization(signed[1]["authorization"])[2]
    for secret in (SECRET, creds["AccessKeySecret"], creds["SecurityToken"], made["Plaintext"], signature):
        assert secret not in caplog.text
        assert secret not in repr(api)


# -- issue 15 items 5-7, issue 18 item 10 -----------------------------------------------------------


def test_rpc_action_and_version_come_only_from_signed_params(api: KmsApi, key_id: str, kms: LocalKms) -> None:
    target, headers, body = rpc_request("DescribeKey", {"KeyId": key_id})
    forged = dict(headers, **{"x-acs-action": "DisableKey"})
    status, answer = call(api, (target, forged, body))
    assert (status, answer["Code"]) == (400, "InvalidParameter")
    assert kms.describe_key(key_id)["KeyState"] == "Enabled"
    target, headers, body = rpc_request("DescribeKey", {"KeyId": key_id})
    status, answer = call(api, (target, dict(headers, **{"x-acs-version": STS_V}), body))
    assert (status, answer["Code"]) == (400, "InvalidParameter")
    # agreeing headers are harmless
    target, headers, body = rpc_request("DescribeKey", {"KeyId": key_id})
    agreeing = dict(headers, **{"x-acs-action": "DescribeKey", "x-acs-version": KMS_V})
    assert call(api, (target, agreeing, body))[0] == 200


def test_acs3_action_param_disagreeing_with_the_header_is_refused(api: KmsApi, key_id: str, kms: LocalKms) -> None:
    status, answer = call(api, acs3_request("DisableKey", {"KeyId": key_id, "Action": "DescribeKey"}))
    assert (status, answer["Code"]) == (400, "InvalidParameter")
    assert kms.describe_key(key_id)["KeyState"] == "Enabled"


@pytest.mark.parametrize("bad", ["é" * 64, "\u00ff", "Ω"])
def test_non_ascii_signature_is_a_400(api: KmsApi, key_id: str, bad: str) -> None:
    target, headers, body = acs3_request("DescribeKey", {"KeyId": key_id})
    auth = headers["authorization"].rsplit("Signature=", 1)[0] + "Signature=" + bad
    status, answer = call(api, (target, dict(headers, authorization=auth), body))
    assert (status, answer["Code"]) == (400, "SignatureDoesNotMatch")
    target, headers, body = acs3_request("DescribeKey", {"KeyId": key_id})
    status, answer = call(api, (target, dict(headers, **{"x-acs-content-sha256": bad}), body))
    assert (status, answer["Code"]) == (400, "SignatureDoesNotMatch")
    target, headers, body = rpc_request("DescribeKey", {"KeyId": key_id})
    forged = target.split("&Signature=")[0] + "&" + urlencode({"Signature": bad})
    status, answer = call(api, (forged, headers, body))
    assert (status, answer["Code"]) == (400, "SignatureDoesNotMatch")


def _other_char(c: str, alphabet: str) -> str:
    return next(a for a in alphabet if a != c)


@pytest.mark.parametrize("change", ["last", "truncated", "one-short", "extended"])
def test_acs3_signature_wrong_only_in_its_tail(api: KmsApi, key_id: str, change: str) -> None:
    target, headers, body = acs3_request("DescribeKey", {"KeyId": key_id})
    head, signature = headers["authorization"].rsplit("Signature=", 1)
    assert len(signature) == 64
    forged = {"last": signature[:-1] + _other_char(signature[-1], "0123456789abcdef"),
              "truncated": signature[:8], "one-short": signature[:-1], "extended": signature + "0"}[change]
    status, answer = call(api, (target, dict(headers, authorization=head + "Signature=" + forged), body))
    assert (status, answer["Code"]) == (400, "SignatureDoesNotMatch")
    assert call(api, (target, headers, body))[0] == 200  # the untouched request is good (nonce unused)


@pytest.mark.parametrize("change", ["last", "truncated", "one-short"])
def test_rpc_signature_wrong_only_in_its_tail(api: KmsApi, key_id: str, change: str) -> None:
    target, headers, body = rpc_request("DescribeKey", {"KeyId": key_id})
    query = dict(parse_qsl(target[2:]))
    signature = query["Signature"]
    # the last base64 character before the "=" padding, changed within the alphabet
    core = signature.rstrip("=")
    pad = signature[len(core):]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    forged = {"last": core[:-1] + _other_char(core[-1], alphabet) + pad,
              "truncated": signature[:8], "one-short": signature[:-1]}[change]
    status, answer = call(api, ("/?" + urlencode(dict(query, Signature=forged)), headers, body))
    assert (status, answer["Code"]) == (400, "SignatureDoesNotMatch")
    assert call(api, (target, headers, body))[0] == 200


def test_nonce_cache_never_forgets_an_unexpired_nonce() -> None:
    from sls_envelope.kms.acs_signature import NonceCache

    cache = NonceCache(900, max_per_key=3, max_keys=2)
    assert cache.check_and_add("victim", "n1", 0.0)
    for i in range(3):  # another credential holder fills its share...
        assert cache.check_and_add("attacker", f"a{i}", 1.0)
    with pytest.raises(SignatureError) as info:  # ... and is throttled, not flushing anything
        cache.check_and_add("attacker", "a3", 2.0)
    assert (info.value.code, info.value.status) == ("Throttling", 400)
    assert not cache.check_and_add("victim", "n1", 3.0)  # the victim's nonce is still a replay
    with pytest.raises(SignatureError):  # a third key when the keys are full of live nonces
        cache.check_and_add("third", "x", 4.0)
    assert cache.check_and_add("attacker", "a3", 1801.0)  # once expired (2 windows), room again
    assert cache.check_and_add("victim", "n1", 1801.0)
