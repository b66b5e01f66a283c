"""RAM as LocalKms emulates it: policy documents, how they are evaluated, and who calls.

Policy evaluation follows Alibaba Cloud RAM ("Policy evaluation process",
https://www.alibabacloud.com/help/en/ram/user-guide/policy-evaluation-process):

* a request is allowed only if some statement of the caller's policies allows it and no
  statement denies it -- an explicit ``Deny`` wins over any ``Allow``, and nothing
  allowed is an implicit deny;
* a statement applies when one of its ``Action`` patterns matches the action (RAM
  compares actions case-insensitively) and one of its ``Resource`` patterns matches the
  resource ARN; ``*`` matches any run of characters and ``?`` one character;
* ``Condition`` blocks are not emulated: a policy that has one is refused when created
  rather than evaluated as if it had none (which would allow more than RAM does).

The system policies the log service's setup uses are given as the documents they stand
for.  ``AliyunKMSCryptoUserAccess`` is kept to the cryptographic actions and
``AliyunKMSReadOnlyAccess`` to the reading ones, so a role with only one of them can do
only that half (the documented BYOK setup attaches both).

Trust policies (who may assume a role) are checked by :func:`trusts`: a ``Service``
principal names a cloud service (``log.aliyuncs.com``, also written
``<account>@log.aliyuncs.com``), a ``RAM`` principal an account (``acs:ram::<id>:root``,
or the bare id) or one RAM user (``acs:ram::<id>:user/<name>``).
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import (
    Any,
    Callable,
    Dict,
    List,
    Mapping,
    Optional,
    Protocol,
    Sequence,
    Union,
)

__all__ = [
    "Caller",
    "Principal",
    "SYSTEM_POLICIES",
    "check_policy_document",
    "check_trust_policy",
    "evaluate",
    "resolve_policies",
    "trusts",
]

#: The system policies emulated, as the statements they grant.
SYSTEM_POLICIES: Dict[str, Dict[str, Any]] = {
    "AdministratorAccess": {"Version": "1", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]},
    "AliyunKMSFullAccess": {"Version": "1", "Statement": [{"Effect": "Allow", "Action": "kms:*", "Resource": "*"}]},
    "AliyunKMSReadOnlyAccess": {"Version": "1", "Statement": [
        {"Effect": "Allow", "Action": ["kms:List*", "kms:Describe*", "kms:Get*"], "Resource": "*"}]},
    "AliyunKMSCryptoUserAccess": {"Version": "1", "Statement": [
        {"Effect": "Allow", "Action": ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey*"], "Resource": "*"}]},
    "AliyunSTSAssumeRoleAccess": {"Version": "1", "Statement": [
        {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}]},
    "AliyunRAMFullAccess": {"Version": "1", "Statement": [{"Effect": "Allow", "Action": "ram:*", "Resource": "*"}]},
}


class Caller(Protocol):
    """Who makes a request, as a service checks it (what KeyManager needs for PassRole)."""

    @property
    def arn(self) -> str: ...

    def is_authorized(self, action: str, resource: str) -> bool: ...


@dataclasses.dataclass(frozen=True)
class Principal:
    """An identity of an account: ``kind`` is ``account`` (the root AccessKey), ``user``
    (a RAM user, ``name`` set), ``service`` (a cloud service acting for itself, ``name``
    its principal, e.g. ``log.aliyuncs.com``) or ``role`` (an STS session, ``name`` the
    role)."""

    kind: str
    account_id: str
    name: str = ""

    @property
    def arn(self) -> str:
        if self.kind == "account":
            return f"acs:ram::{self.account_id}:root"
        if self.kind == "user":
            return f"acs:ram::{self.account_id}:user/{self.name}"
        if self.kind == "role":
            return f"acs:ram::{self.account_id}:role/{self.name}"
        return self.name


def _as_list(value: Any) -> List[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _pattern(text: str, *, ignore_case: bool) -> "re.Pattern[str]":
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in text)
    return re.compile(f"^{body}$", re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL)


def _matches(patterns: Sequence[Any], value: str, *, ignore_case: bool) -> bool:
    return any(isinstance(p, str) and _pattern(p, ignore_case=ignore_case).match(value) for p in patterns)


def _as_document(policy: Union[str, Mapping[str, Any]], what: str) -> Dict[str, Any]:
    if isinstance(policy, str):
        try:
            policy = json.loads(policy)
        except ValueError:
            raise ValueError(f"{what} is not valid JSON") from None
    if not isinstance(policy, Mapping) or not isinstance(policy.get("Statement"), list):
        raise ValueError(f"{what} must be an object with a Statement list")
    for statement in policy["Statement"]:
        if not isinstance(statement, Mapping) or statement.get("Effect") not in ("Allow", "Deny"):
            raise ValueError(f"every {what} statement must be an object with Effect Allow or Deny")
        if "Condition" in statement:
            raise ValueError(f"{what}: Condition is not emulated")
        if not all(isinstance(a, str) for a in _as_list(statement.get("Action"))) or not statement.get("Action"):
            raise ValueError(f"every {what} statement needs Action: a string or a list of strings")
    plain: Dict[str, Any] = json.loads(json.dumps(policy))  # a plain, JSON-able deep copy
    return plain


def check_policy_document(policy: Union[str, Mapping[str, Any]]) -> Dict[str, Any]:
    """A permission policy (dict or JSON) as a plain dict; ValueError if malformed."""
    document = _as_document(policy, "policy document")
    for statement in document["Statement"]:
        resources = _as_list(statement.get("Resource"))
        if not resources or not all(isinstance(r, str) for r in resources):
            raise ValueError("every policy document statement needs Resource: a string or a list of strings")
    return document


def check_trust_policy(policy: Union[str, Mapping[str, Any]]) -> Dict[str, Any]:
    """A trust policy (dict or JSON) as a plain dict; ValueError if malformed."""
    return _as_document(policy, "trust_policy")


def evaluate(documents: Sequence[Mapping[str, Any]], action: str, resource: str) -> bool:
    """Whether the documents allow action on resource: an Allow matches, no Deny does."""
    allowed = False
    for document in documents:
        for statement in document.get("Statement", []):
            if not _matches(_as_list(statement.get("Action")), action, ignore_case=True):
                continue
            if not _matches(_as_list(statement.get("Resource")), resource, ignore_case=False):
                continue
            if statement.get("Effect") == "Deny":
                return False
            allowed = True
    return allowed


def _names(principal: Principal) -> Callable[[Mapping[str, Any]], bool]:
    """Whether a statement's Principal block names this principal."""

    def named(block: Mapping[str, Any]) -> bool:
        if principal.kind == "service":
            services = _as_list(block.get("Service"))
            return any(isinstance(s, str) and (s == principal.name or s.endswith("@" + principal.name))
                       for s in services)
        if principal.kind != "user":
            return False
        for entry in _as_list(block.get("RAM")):
            if not isinstance(entry, str):
                continue
            if entry in (principal.account_id, f"acs:ram::{principal.account_id}:root"):
                return True
            if entry == principal.arn:
                return True
        return False

    return named


def trusts(policy: Mapping[str, Any], principal: Principal) -> bool:
    """Whether a role's trust policy lets principal assume it (sts:AssumeRole allowed to a
    Principal naming it, and no such statement denying it)."""
    named = _names(principal)
    allowed = False
    for statement in policy.get("Statement", []):
        if not _matches(_as_list(statement.get("Action")), "sts:AssumeRole", ignore_case=True):
            continue
        block = statement.get("Principal")
        if not isinstance(block, Mapping) or not named(block):
            continue
        if statement.get("Effect") == "Deny":
            return False
        allowed = True
    return allowed


def resolve_policies(names: Sequence[str], custom: Mapping[str, Mapping[str, Any]]) -> List[Mapping[str, Any]]:
    """The documents for attached policy names: system policies, then the account's own."""
    documents: List[Mapping[str, Any]] = []
    for name in names:
        document: Optional[Mapping[str, Any]] = SYSTEM_POLICIES.get(name)
        if document is None:
            entry = custom.get(name)
            document = entry.get("PolicyDocument") if entry is not None else None
        if document is not None:
            documents.append(document)
    return documents
