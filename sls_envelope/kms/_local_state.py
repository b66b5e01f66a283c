"""The shape of LocalKms's state file ``localkms.json``, checked whole whenever it is read.

A file of the wrong shape (``account_id`` an object, ``keys`` a list, a key state that is
none of the three, material that is not 32 bytes, an unknown field...) is refused with one
line naming the file and the place, and left as it is: the store never rewrites what it
could not read (issue: wrong types used to surface later as KeyError/TypeError, or be
accepted silently).  Files written before users, policies and the service credential
existed have none of those fields and are accepted.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any, Dict, Mapping, Sequence

from . import ram

__all__ = ["ACCOUNT_ID", "FILE_FORMAT", "KEY_STATES", "validate_state"]

FILE_FORMAT = "sls-envelope-localkms/1"
KEY_STATES = ("Enabled", "Disabled", "PendingDeletion")
ACCOUNT_ID = re.compile(r"^[0-9]{1,32}$")


class _Shape:
    """Collects the first thing wrong with a state document, naming where it is."""

    def __init__(self, path: str) -> None:
        self.path = path

    def fail(self, where: str, what: str) -> None:
        raise ValueError(f"{self.path}: {where} {what}; the file is left as it is")

    def obj(self, value: Any, where: str) -> Dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(where, f"must be an object, not {_json_type(value)}")
        return value  # type: ignore[no-any-return]

    def text(self, record: Mapping[str, Any], field: str, where: str, *, optional: bool = False) -> None:
        if field not in record:
            if not optional:
                self.fail(where, f"lacks {field}")
            return
        if not isinstance(record[field], str):
            self.fail(f"{where}.{field}", f"must be a string, not {_json_type(record[field])}")

    def text_list(self, record: Mapping[str, Any], field: str, where: str) -> None:
        value = record.get(field)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.fail(f"{where}.{field}", "must be a list of strings")

    def exact_keys(self, record: Mapping[str, Any], allowed: Sequence[str], where: str) -> None:
        extra = sorted(set(record) - set(allowed))
        if extra:
            self.fail(where, f"has unknown field {extra[0]!r}")


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return {dict: "an object", list: "a list", str: "a string", int: "a number", float: "a number"}.get(
        type(value), type(value).__name__)


def _check_ram_entity(shape: _Shape, entity: Any, name: str, where: str, name_field: str, own_field: str) -> None:
    """What a role and a user record share: their fields (the kind's own one besides), text
    name, Arn and CreateDate, the name matching the entry's (lower-cased) key, and Policies."""
    shape.obj(entity, where)
    shape.exact_keys(entity, (name_field, "Arn", own_field, "Policies", "CreateDate"), where)
    for field in (name_field, "Arn", "CreateDate"):
        shape.text(entity, field, where)
    if entity[name_field].lower() != name:
        shape.fail(f"{where}.{name_field}", "differs from its entry's name")
    shape.text_list(entity, "Policies", where)


def validate_state(document: Any, path: str) -> None:
    """Check a parsed localkms.json whole; ValueError naming the file and the first thing wrong."""
    shape = _Shape(path)
    top = shape.obj(document, "the state")
    if top.get("format") != FILE_FORMAT:
        shape.fail("the state", f"is not a LocalKms state file (format {FILE_FORMAT!r} expected)")
    shape.exact_keys(top, ("format", "account_id", "keys", "roles", "users", "policies", "service_credential"),
                     "the state")
    shape.text(top, "account_id", "the state")
    if not ACCOUNT_ID.match(top["account_id"]):
        shape.fail("account_id", "must be the account's digits")
    for key_id, record in shape.obj(top.get("keys"), "keys").items():
        where = f"keys[{key_id!r}]"
        shape.obj(record, where)
        shape.exact_keys(record, ("KeyId", "Arn", "Description", "KeyState", "CreationDate", "DeleteDate",
                                  "_delete_at", "_material"), where)
        for field in ("KeyId", "Arn", "Description", "KeyState", "CreationDate", "_material"):
            shape.text(record, field, where)
        if record["KeyId"] != key_id:
            shape.fail(f"{where}.KeyId", "differs from its entry's name")
        if record["KeyState"] not in KEY_STATES:
            shape.fail(f"{where}.KeyState", f"must be one of {', '.join(KEY_STATES)}")
        try:
            material = base64.b64decode(record["_material"], validate=True)
        except (binascii.Error, ValueError):
            material = b""
        if len(material) != 32:
            shape.fail(f"{where}._material", "must be 32 bytes in base64")
        if record["KeyState"] == "PendingDeletion":
            shape.text(record, "DeleteDate", where)
            at = record.get("_delete_at")
            if isinstance(at, bool) or not isinstance(at, (int, float)):
                shape.fail(f"{where}._delete_at", "must be a number of seconds")
    for name, role in shape.obj(top.get("roles"), "roles").items():
        where = f"roles[{name!r}]"
        _check_ram_entity(shape, role, name, where, "RoleName", "TrustPolicy")
        try:
            ram.check_trust_policy(shape.obj(role.get("TrustPolicy"), f"{where}.TrustPolicy"))
        except ValueError as exc:
            shape.fail(f"{where}.TrustPolicy", f"is invalid ({exc})")
    for name, user in shape.obj(top.get("users", {}), "users").items():
        where = f"users[{name!r}]"
        _check_ram_entity(shape, user, name, where, "UserName", "AccessKeys")
        keys = user.get("AccessKeys")
        if not isinstance(keys, list):
            shape.fail(f"{where}.AccessKeys", "must be a list")
        for n, pair in enumerate(keys):
            shape.obj(pair, f"{where}.AccessKeys[{n}]")
            shape.exact_keys(pair, ("AccessKeyId", "AccessKeySecret", "CreateDate"), f"{where}.AccessKeys[{n}]")
            for field in ("AccessKeyId", "AccessKeySecret", "CreateDate"):
                shape.text(pair, field, f"{where}.AccessKeys[{n}]")
    for name, policy in shape.obj(top.get("policies", {}), "policies").items():
        where = f"policies[{name!r}]"
        shape.obj(policy, where)
        shape.exact_keys(policy, ("PolicyName", "PolicyDocument", "CreateDate"), where)
        for field in ("PolicyName", "CreateDate"):
            shape.text(policy, field, where)
        try:
            ram.check_policy_document(shape.obj(policy.get("PolicyDocument"), f"{where}.PolicyDocument"))
        except ValueError as exc:
            shape.fail(f"{where}.PolicyDocument", f"is invalid ({exc})")
    if "service_credential" in top:
        credential = shape.obj(top["service_credential"], "service_credential")
        shape.exact_keys(credential, ("AccessKeyId", "AccessKeySecret"), "service_credential")
        for field in ("AccessKeyId", "AccessKeySecret"):
            shape.text(credential, field, "service_credential")
