"""LocalKms: the embedded default KMS, in memory or persisted under a directory.

It emulates what the log service needs of Alibaba Cloud KMS, RAM and STS:

* **CMKs** with the states of KMS DescribeKey (``Enabled``, ``Disabled``,
  ``PendingDeletion``); every action answers each state as Alibaba Cloud KMS's "Impact
  of CMK status on API operations" table says (see :data:`KEY_STATE_RULES`); a key
  pending deletion is deleted for good once its window passes.
* **Data keys** made from ``secrets`` and wrapped with AES-256-GCM under the CMK's 256-bit
  material.  The wrapped blob is versioned and carries the CMK id; its AAD binds the
  CMK id and the encryption context (:func:`~sls_envelope.kms._context.length_prefixed_context`),
  so unwrapping with another context fails with code ``InvalidCiphertext``.
* **Identities** (:mod:`sls_envelope.kms.ram`), as Alibaba Cloud has them:

  - the **account** (the :class:`LocalKms` object itself, and the root AccessKey of
    ``kms serve``): every KMS and RAM action, but it may not assume roles (STS refuses
    root accounts: ``NoPermission``);
  - **RAM users** (:meth:`LocalKms.create_user`, with AccessKeys from
    :meth:`LocalKms.create_access_key` and policies from :meth:`LocalKms.attach_user_policy`):
    what their policies allow; they may assume a role whose trust policy names their
    account or them, if their policies allow ``sts:AssumeRole`` on it;
  - the **log service** (``log.aliyuncs.com``), whose own AccessKey is
    :meth:`LocalKms.service_credential`: the only caller that may assume a role trusting
    ``log.aliyuncs.com``; it may also use (not administer) the account's CMKs, which is
    where its service keys live.  :meth:`LocalKms.assume_role` (the ``KmsClient``
    interface KeyManager calls) acts as it.
  - **roles** assumed: what the role's attached policies allow, evaluated at every call,
    so detaching a policy or deleting the role takes effect at once.

Persistence: one JSON file ``localkms.json`` under ``path`` (directory 0700, file 0600),
validated whole when read (:mod:`sls_envelope.kms._local_state`) and written atomically,
shared by processes under an exclusive lock (:mod:`sls_envelope.kms._store`).

Error codes (on :class:`~sls_envelope.exceptions.KeyInvalidError`): ``Rejected.Disabled``,
``Rejected.PendingDeletion``, ``Rejected.StateModifiedFailed``, ``Forbidden.KeyNotFound``,
``Forbidden.NoPermission``, ``InvalidCiphertext``, and for RAM and STS
``EntityNotExist.Role``, ``EntityNotExist.User``, ``NoPermission`` and
``InvalidParameter.RoleArn``.
"""

from __future__ import annotations

import base64
import copy
import datetime
import os
import re
import secrets
import string
import time
import uuid
from typing import (
    Any,
    Callable,
    Dict,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    TypeVar,
    Union,
)

from ..aead import AESGCM
from ..exceptions import InvalidTag, KeyInvalidError
from . import ram
from ._context import length_prefixed_context
from ._local_state import ACCOUNT_ID, FILE_FORMAT, validate_state
from ._store import JsonFileStore
from .base import (
    DataKey,
    EncryptionContext,
    KmsClient,
    RetryPolicy,
    TransientKmsError,
    call_with_retries,
)

__all__ = [
    "LocalKms",
    "DEFAULT_ACCOUNT_ID",
    "LOG_SERVICE",
    "CRYPTO_USER_POLICY",
    "READ_ONLY_POLICY",
    "FULL_ACCESS_POLICY",
    "ASSUME_ROLE_POLICY",
    "BYOK_ROLE_POLICIES",
    "KEY_STATE_RULES",
    "create_log_service_role",
    "iso_utc",
    "log_service_trust_policy",
]

T = TypeVar("T")

DEFAULT_ACCOUNT_ID = "1000000000000000"
LOG_SERVICE = "log.aliyuncs.com"
CRYPTO_USER_POLICY = "AliyunKMSCryptoUserAccess"
READ_ONLY_POLICY = "AliyunKMSReadOnlyAccess"
FULL_ACCESS_POLICY = "AliyunKMSFullAccess"
ASSUME_ROLE_POLICY = "AliyunSTSAssumeRoleAccess"

#: The system policies a BYOK role for the log service needs (docs/KMS.md).
BYOK_ROLE_POLICIES = (READ_ONLY_POLICY, CRYPTO_USER_POLICY)

#: Alibaba Cloud KMS, "Impact of CMK status on API operations"
#: (https://www.alibabacloud.com/help/en/kms/key-management-service/developer-reference/impact-of-cmk-status-on-api-operations):
#: for each action, the code answered in each state (None: the action proceeds).  Every
#: ``Rejected.*`` answer is HTTP 409.  CreateKey uses no existing key.
KEY_STATE_RULES: Dict[str, Dict[str, Optional[str]]] = {
    "GenerateDataKey": {"Enabled": None, "Disabled": "Rejected.Disabled", "PendingDeletion": "Rejected.PendingDeletion"},
    "Encrypt": {"Enabled": None, "Disabled": "Rejected.Disabled", "PendingDeletion": "Rejected.PendingDeletion"},
    "Decrypt": {"Enabled": None, "Disabled": "Rejected.Disabled", "PendingDeletion": "Rejected.PendingDeletion"},
    "DescribeKey": {"Enabled": None, "Disabled": None, "PendingDeletion": None},
    "ListKeys": {"Enabled": None, "Disabled": None, "PendingDeletion": None},
    "EnableKey": {"Enabled": None, "Disabled": None, "PendingDeletion": "Rejected.StateModifiedFailed"},
    "DisableKey": {"Enabled": None, "Disabled": None, "PendingDeletion": "Rejected.StateModifiedFailed"},
    "ScheduleKeyDeletion": {"Enabled": None, "Disabled": None, "PendingDeletion": "Rejected.StateModifiedFailed"},
    "CancelKeyDeletion": {"Enabled": "Rejected.StateModifiedFailed", "Disabled": "Rejected.StateModifiedFailed",
                          "PendingDeletion": None},
}

_FILE_NAME = "localkms.json"
_LOCK_NAME = "localkms.lock"
_LEGACY_TEMP_PREFIX = ".localkms-"  # temporaries of releases before atomic_output
_BLOB_VERSION = 1
_WRAP_LABEL = b"sls-envelope localkms wrap v1"
_NONCE_LEN = 12
_ROLE_NAME = re.compile(r"^[A-Za-z0-9.\-]{1,64}$")
_USER_NAME = re.compile(r"^[A-Za-z0-9.\-_@]{1,64}$")
_POLICY_NAME = re.compile(r"^[A-Za-z0-9\-]{1,128}$")
_ROLE_ARN = re.compile(r"^acs:ram::(?P<account>[^:]+):role/(?P<name>.+)$")
_KEY_ALPHABET = string.ascii_letters + string.digits


def iso_utc(ts: float) -> str:
    """Seconds since the epoch as ISO 8601 UTC to the second, as Alibaba Cloud APIs show times."""
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def log_service_trust_policy() -> Dict[str, Any]:
    """The RAM trust policy that lets the log service assume a role."""
    return {
        "Statement": [
            {"Action": "sts:AssumeRole", "Effect": "Allow", "Principal": {"Service": [LOG_SERVICE]}}
        ],
        "Version": "1",
    }


def create_log_service_role(kms: "LocalKms", name: str) -> str:
    """The BYOK role of docs/KMS.md: trusted by the log service (log.aliyuncs.com) only,
    with KMS read-only and crypto-user permissions; returns its ARN."""
    return kms.create_role(name, trust_policy=log_service_trust_policy(), policies=BYOK_ROLE_POLICIES)


def _new_access_key() -> Tuple[str, str]:
    """An AccessKey pair shaped as RAM's (``LTAI`` + 20 characters; a 30-character secret)."""
    ident = "LTAI" + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(20))
    secret = "".join(secrets.choice(_KEY_ALPHABET) for _ in range(30))
    return ident, secret


class _State:
    """What a LocalKms and the clients acting for its identities share: keys, RAM, the file."""

    def __init__(self, path: Optional[str], account_id: Optional[str], region_id: str,
                 clock: Callable[[], float]) -> None:
        self.clock = clock
        self.region_id = region_id
        self.account_id = account_id or DEFAULT_ACCOUNT_ID
        self.keys: Dict[str, Dict[str, Any]] = {}
        self.roles: Dict[str, Dict[str, Any]] = {}
        self.users: Dict[str, Dict[str, Any]] = {}
        self.policies: Dict[str, Dict[str, Any]] = {}
        self.service_credential: Optional[Dict[str, str]] = None
        self.faults: List[str] = []
        self._stored_account: Optional[str] = None
        #: key id -> (its material as stored, the AES-GCM context made from it): the round keys
        #: are expanded once per key, not at every GenerateDataKey/Encrypt/Decrypt (issue 15
        #: item 9).  Emptied on every load; an entry goes with its key when the key is purged.
        self._wrappers: Dict[str, Tuple[str, AESGCM]] = {}
        self.file = JsonFileStore(path, file_name=_FILE_NAME, lock_name=_LOCK_NAME,
                                  legacy_temp_prefix=_LEGACY_TEMP_PREFIX, validate=validate_state,
                                  load_into=self._load_into, dump=self._dump)
        with self.lock:
            existed = self.file.open()
            stored = self._stored_account if existed else None
            if stored is not None and account_id is not None and account_id != stored:
                raise ValueError(f"{self.file.dir} belongs to account {stored}, not {account_id}")
            if account_id is not None and not ACCOUNT_ID.match(account_id):
                raise ValueError("account_id must be the account's digits")
            self.account_id = stored or account_id or DEFAULT_ACCOUNT_ID
            if self.file.dir is not None and not existed:
                self.save()

    @property
    def dir(self) -> Optional[str]:
        return self.file.dir

    @property
    def lock(self) -> Any:
        """The store's lock (see JsonFileStore.lock): threads and processes."""
        return self.file.lock

    def _load_into(self, document: Dict[str, Any]) -> None:
        self._wrappers.clear()
        self._stored_account = document["account_id"]
        self.account_id = document["account_id"]
        self.keys = document["keys"]
        self.roles = document["roles"]
        self.users = document.get("users", {})
        self.policies = document.get("policies", {})
        self.service_credential = document.get("service_credential")

    def _dump(self) -> Dict[str, Any]:
        document: Dict[str, Any] = {"format": FILE_FORMAT, "account_id": self.account_id, "keys": self.keys,
                                    "roles": self.roles, "users": self.users, "policies": self.policies}
        if self.service_credential is not None:
            document["service_credential"] = self.service_credential
        return document

    def save(self) -> None:
        self.file.save()

    # ---- keys ----------------------------------------------------------------------------

    def key_arn(self, key_id: str) -> str:
        return f"acs:kms:{self.region_id}:{self.account_id}:key/{key_id}"

    def key(self, key_id: str) -> Dict[str, Any]:
        """The key record, after purging it if its deletion window has passed."""
        if not isinstance(key_id, str) or not key_id:
            raise KeyInvalidError("a key id must be a non-empty string", code="Forbidden.KeyNotFound")
        record = self.keys.get(key_id)
        if record is not None and record["KeyState"] == "PendingDeletion" and self.clock() >= record["_delete_at"]:
            del self.keys[key_id]
            self._wrappers.pop(key_id, None)
            self.save()
            record = None
        if record is None:
            raise KeyInvalidError(f"the key {key_id!r} is not found", code="Forbidden.KeyNotFound")
        return record

    def key_for(self, action: str, key_id: str) -> Dict[str, Any]:
        """The key record if action may proceed in its state (KEY_STATE_RULES), else the
        table's refusal."""
        record = self.key(key_id)
        code = KEY_STATE_RULES[action][record["KeyState"]]
        if code is not None:
            state = record["KeyState"]
            hint = (", not pending deletion" if action == "CancelKeyDeletion"
                    else "; cancel its deletion first" if code == "Rejected.StateModifiedFailed" else "")
            raise KeyInvalidError(f"{action} is refused: the key {key_id!r} is {state}{hint}", code=code)
        return record

    def wrapper(self, key_id: str, record: Mapping[str, Any]) -> AESGCM:
        """The AES-GCM context of the CMK whose record is given (made on first use, and again
        if the material stored for the key id is not the one it was made from)."""
        material = record["_material"]
        cached = self._wrappers.get(key_id)
        if cached is not None and cached[0] == material:
            return cached[1]
        aead = AESGCM(base64.b64decode(material))
        self._wrappers[key_id] = (material, aead)
        return aead

    def fault(self) -> None:
        """Raise an injected transient failure, if any is queued (see LocalKms.inject_faults)."""
        if self.faults:
            raise TransientKmsError("injected transient failure", code=self.faults.pop(0))

    # ---- RAM -----------------------------------------------------------------------------

    def role(self, name: str) -> Dict[str, Any]:
        role = self.roles.get(name.lower()) if isinstance(name, str) else None
        if role is None:
            raise KeyInvalidError(f"the role {name!r} does not exist", code="EntityNotExist.Role")
        return role

    def user(self, name: str) -> Dict[str, Any]:
        user = self.users.get(name.lower()) if isinstance(name, str) else None
        if user is None:
            raise KeyInvalidError(f"the user {name!r} does not exist", code="EntityNotExist.User")
        return user

    def role_from_arn(self, arn: str) -> Dict[str, Any]:
        match = _ROLE_ARN.match(arn) if isinstance(arn, str) else None
        if match is None:
            raise KeyInvalidError("the role ARN must look like acs:ram::<account>:role/<name>",
                                  code="InvalidParameter.RoleArn")
        role = self.roles.get(match.group("name").lower())
        if match.group("account") != self.account_id or role is None:
            raise KeyInvalidError(f"the role {arn!r} does not exist", code="EntityNotExist.Role")
        return role

    def documents(self, principal: ram.Principal) -> List[Mapping[str, Any]]:
        """The policy documents that say what principal may do, as they are now."""
        if principal.kind == "account":
            return [ram.SYSTEM_POLICIES["AdministratorAccess"]]
        if principal.kind == "service":
            return ram.resolve_policies(BYOK_ROLE_POLICIES, {})
        if principal.kind == "user":
            return ram.resolve_policies(self.user(principal.name)["Policies"], self.policies)
        role = self.roles.get(principal.name.lower())
        if role is None:
            raise KeyInvalidError(f"the role {principal.name!r} no longer exists", code="EntityNotExist.Role")
        return ram.resolve_policies(role["Policies"], self.policies)

    def authorized(self, principal: ram.Principal, action: str, resource: str) -> bool:
        if principal.kind == "account":
            return _arn_account(resource) in (self.account_id, "*", "")
        return ram.evaluate(self.documents(principal), action, resource)

    def require(self, principal: ram.Principal, action: str, resource: str) -> None:
        if not self.authorized(principal, action, resource):
            raise KeyInvalidError(f"{principal.arn} is not permitted to do {action} on {resource}",
                                  code="Forbidden.NoPermission")


def _arn_account(arn: str) -> str:
    parts = arn.split(":")
    return parts[3] if len(parts) > 4 and parts[0] == "acs" else ""


class _AuthorizedCaller:
    """A :class:`~sls_envelope.kms.ram.Caller` whose permissions are read from the
    LocalKms at every check (detaching a policy takes effect at once)."""

    def __init__(self, state: _State, principal: ram.Principal) -> None:
        self._state = state
        self.principal = principal

    def __repr__(self) -> str:
        return f"<LocalKms caller {self.arn}>"

    @property
    def arn(self) -> str:
        return self.principal.arn

    def is_authorized(self, action: str, resource: str) -> bool:
        with self._state.lock:
            return self._state.authorized(self.principal, action, resource)


class LocalKms(KmsClient):
    """The embedded KMS (see the module docstring).  Thread-safe.

    ``path``: a directory to persist to (created 0700), or None for memory only.
    ``account_id``: the account in ARNs (defaults to what the directory stores, else
    :data:`DEFAULT_ACCOUNT_ID`).  ``clock``: wall-clock seconds, for deletion windows
    (tests move it).
    """

    def __init__(
        self,
        path: Union[None, str, "os.PathLike[str]"] = None,
        *,
        account_id: Optional[str] = None,
        region_id: str = "cn-hangzhou",
        service: str = LOG_SERVICE,
        clock: Callable[[], float] = time.time,
        retry_policy: Optional[RetryPolicy] = None,
    ) -> None:
        self._store = _State(None if path is None else os.fspath(path), account_id, region_id, clock)
        self._service = ram.Principal("service", self._store.account_id, service)
        self._account = ram.Principal("account", self._store.account_id)
        self._retry = retry_policy or RetryPolicy()

    def __repr__(self) -> str:
        where = self._store.dir or "memory"
        return f"<LocalKms account={self._store.account_id} at {where}: {len(self._store.keys)} keys>"

    @property
    def account_id(self) -> str:
        return self._store.account_id

    @property
    def path(self) -> Optional[str]:
        return self._store.dir

    @property
    def region_id(self) -> str:  # type: ignore[override]  # the base's plain attribute, read-only here
        """The region of this KMS (default ``cn-hangzhou``): BYOK confs name it in
        ``user_cmk_info.region_id``."""
        return self._store.region_id

    # ---- the KmsClient interface (as the account) -----------------------------------------

    def generate_data_key(
        self, key_id: str, *, context: EncryptionContext, number_of_bytes: int = 32
    ) -> DataKey:
        return self._as(self._account).generate_data_key(key_id, context=context, number_of_bytes=number_of_bytes)

    def decrypt(self, ciphertext_blob: bytes, *, context: EncryptionContext) -> bytes:
        return self._as(self._account).decrypt(ciphertext_blob, context=context)

    def decrypt_with_key_id(self, ciphertext_blob: bytes, *, context: EncryptionContext) -> Tuple[str, bytes]:
        """(the CMK's KeyId, the plaintext): what KMS Decrypt answers."""
        return self._as(self._account).decrypt_with_key_id(ciphertext_blob, context=context)

    def encrypt(self, key_id: str, plaintext: bytes, *, context: EncryptionContext) -> bytes:
        """KMS Encrypt: caller data (up to 6 KiB) sealed under the CMK, in the blob format
        that decrypt opens."""
        return self._as(self._account).encrypt(key_id, plaintext, context=context)

    def describe_key(self, key_id: str) -> Dict[str, Any]:
        return self._as(self._account).describe_key(key_id)

    def assume_role(self, arn: str) -> KmsClient:
        """This KMS acting as the role ``arn`` for the log service (what KeyManager calls);
        raises KeyInvalidError unless the role exists and its trust policy allows the service."""
        return self.assume_role_as(self._service, arn)

    # ---- key administration ----------------------------------------------------------------

    def create_key(self, description: str = "") -> str:
        """A new Enabled CMK with fresh 256-bit material; returns its KeyId."""
        return self._as(self._account).create_key(description)

    def enable_key(self, key_id: str) -> None:
        self._as(self._account).enable_key(key_id)

    def disable_key(self, key_id: str) -> None:
        self._as(self._account).disable_key(key_id)

    def schedule_key_deletion(self, key_id: str, pending_window_days: int = 7) -> None:
        """PendingDeletion now; deleted for good after pending_window_days (7 to 366)."""
        self._as(self._account).schedule_key_deletion(key_id, pending_window_days)

    def cancel_key_deletion(self, key_id: str) -> None:
        """Back to Enabled (Alibaba Cloud KMS: a cancelled deletion leaves the key enabled)."""
        self._as(self._account).cancel_key_deletion(key_id)

    def list_keys(self) -> List[Dict[str, str]]:
        """Every CMK not yet deleted, as ListKeys shows them: KeyId and KeyArn."""
        return self._as(self._account).list_keys()

    # ---- identities --------------------------------------------------------------------------

    def account(self) -> _AuthorizedCaller:
        """The account itself as a caller (may pass any of its roles)."""
        return _AuthorizedCaller(self._store, self._account)

    def user(self, name: str) -> _AuthorizedCaller:
        """The RAM user ``name`` as a caller (KeyManager's ``caller=``)."""
        with self._store.lock:
            user = self._store.user(name)
            return _AuthorizedCaller(self._store, ram.Principal("user", self._store.account_id, user["UserName"]))

    def service_credential(self) -> Tuple[str, str]:
        """The log service's own AccessKey (id, secret), made on first use and kept in the
        state file; ``kms serve`` accepts it as log.aliyuncs.com."""
        with self._store.lock:
            if self._store.service_credential is None:
                ident, secret = _new_access_key()
                self._store.service_credential = {"AccessKeyId": ident, "AccessKeySecret": secret}
                self._store.save()
            credential = self._store.service_credential
            return credential["AccessKeyId"], credential["AccessKeySecret"]

    def access_key(self, access_key_id: str) -> Optional[Tuple[ram.Principal, str]]:
        """(who, secret) for a RAM user's or the log service's AccessKey id, else None."""
        with self._store.lock:
            credential = self._store.service_credential
            if credential is not None and credential["AccessKeyId"] == access_key_id:
                return self._service, credential["AccessKeySecret"]
            for user in self._store.users.values():
                for pair in user["AccessKeys"]:
                    if pair["AccessKeyId"] == access_key_id:
                        return ram.Principal("user", self._store.account_id, user["UserName"]), pair["AccessKeySecret"]
        return None

    def client_for(self, principal: ram.Principal) -> "_PrincipalClient":
        """This KMS acting as principal: every call checks its policies as they are then."""
        return self._as(principal)

    def assume_role_as(self, principal: ram.Principal, arn: str) -> "_PrincipalClient":
        """STS AssumeRole by principal: a client acting as the role.  Refused (``NoPermission``)
        for the account's root, for role sessions (no chaining), and unless the role's trust
        policy names principal (and, for a RAM user, its policies allow sts:AssumeRole on it)."""
        with self._store.lock:
            if principal.kind == "account":
                raise KeyInvalidError("Roles may not be assumed by root accounts.", code="NoPermission")
            if principal.kind == "role":
                raise KeyInvalidError("role chaining is not emulated: assume roles as a RAM user or the service",
                                      code="NoPermission")
            role = self._store.role_from_arn(arn)
            if principal.kind == "user" and not self._store.authorized(principal, "sts:AssumeRole", role["Arn"]):
                raise KeyInvalidError(f"{principal.arn} is not permitted to do sts:AssumeRole on {role['Arn']}",
                                      code="NoPermission")
            if not ram.trusts(role["TrustPolicy"], principal):
                raise KeyInvalidError(f"the role {arn!r} does not trust {principal.arn} to assume it",
                                      code="NoPermission")
            return self._as(ram.Principal("role", self._store.account_id, role["RoleName"]))

    # ---- RAM administration (the account) -----------------------------------------------------------

    def create_role(
        self, name: str, *, trust_policy: Union[str, Mapping[str, Any]], policies: Sequence[str] = ()
    ) -> str:
        """A RAM role with the trust policy (dict or JSON) and attached policies (system or
        the account's own); returns its ARN ``acs:ram::<account>:role/<name>``."""
        if not isinstance(name, str) or not _ROLE_NAME.match(name):
            raise ValueError("role name must be 1 to 64 letters, digits, '.' or '-'")
        trust = ram.check_trust_policy(trust_policy)
        with self._store.lock:
            attached = self._check_policies(policies)
            if name.lower() in self._store.roles:
                raise ValueError(f"a role named {name!r} already exists")
            arn = f"acs:ram::{self._store.account_id}:role/{name}"
            self._store.roles[name.lower()] = {
                "RoleName": name, "Arn": arn, "TrustPolicy": trust, "Policies": attached,
                "CreateDate": iso_utc(self._store.clock()),
            }
            self._store.save()
            return arn

    def update_role(
        self, name: str, *, trust_policy: Union[None, str, Mapping[str, Any]] = None,
        policies: Optional[Sequence[str]] = None,
    ) -> None:
        """Replace a role's trust policy and/or its attached policies."""
        with self._store.lock:
            role = self._store.role(name)
            if trust_policy is not None:
                role["TrustPolicy"] = ram.check_trust_policy(trust_policy)
            if policies is not None:
                role["Policies"] = self._check_policies(policies)
            self._store.save()

    def delete_role(self, name: str) -> None:
        with self._store.lock:
            self._store.role(name)
            del self._store.roles[name.lower()]
            self._store.save()

    def get_role(self, name: str) -> Dict[str, Any]:
        with self._store.lock:
            return copy.deepcopy(self._store.role(name))

    def create_user(self, name: str) -> str:
        """A RAM user with no policies and no AccessKey; returns its ARN."""
        if not isinstance(name, str) or not _USER_NAME.match(name):
            raise ValueError("user name must be 1 to 64 letters, digits, '.', '-', '_' or '@'")
        with self._store.lock:
            if name.lower() in self._store.users:
                raise ValueError(f"a user named {name!r} already exists")
            arn = f"acs:ram::{self._store.account_id}:user/{name}"
            self._store.users[name.lower()] = {"UserName": name, "Arn": arn, "Policies": [], "AccessKeys": [],
                                               "CreateDate": iso_utc(self._store.clock())}
            self._store.save()
            return arn

    def create_access_key(self, user: str) -> Tuple[str, str]:
        """A new AccessKey (id, secret) for the user; the secret is shown only here."""
        with self._store.lock:
            record = self._store.user(user)
            ident, secret = _new_access_key()
            record["AccessKeys"].append({"AccessKeyId": ident, "AccessKeySecret": secret,
                                         "CreateDate": iso_utc(self._store.clock())})
            self._store.save()
            return ident, secret

    def attach_user_policy(self, user: str, policy: str) -> None:
        """Attach a system policy or one of the account's (create_policy) to the user."""
        with self._store.lock:
            record = self._store.user(user)
            record["Policies"] = sorted(set(record["Policies"]) | set(self._check_policies([policy])))
            self._store.save()

    def detach_user_policy(self, user: str, policy: str) -> None:
        with self._store.lock:
            record = self._store.user(user)
            if policy not in record["Policies"]:
                raise ValueError(f"the policy {policy!r} is not attached to {user!r}")
            record["Policies"].remove(policy)
            self._store.save()

    def delete_user(self, name: str) -> None:
        with self._store.lock:
            self._store.user(name)
            del self._store.users[name.lower()]
            self._store.save()

    def get_user(self, name: str) -> Dict[str, Any]:
        """The user's record, AccessKey secrets left out."""
        with self._store.lock:
            record = copy.deepcopy(self._store.user(name))
        record["AccessKeys"] = [{k: v for k, v in pair.items() if k != "AccessKeySecret"}
                                for pair in record["AccessKeys"]]
        return record

    def create_policy(self, name: str, document: Union[str, Mapping[str, Any]]) -> None:
        """A custom permission policy of the account (RAM CreatePolicy)."""
        if not isinstance(name, str) or not _POLICY_NAME.match(name) or name in ram.SYSTEM_POLICIES:
            raise ValueError("policy name must be 1 to 128 letters, digits or '-', and not a system policy's")
        checked = ram.check_policy_document(document)
        with self._store.lock:
            if name in self._store.policies:
                raise ValueError(f"a policy named {name!r} already exists")
            self._store.policies[name] = {"PolicyName": name, "PolicyDocument": checked,
                                          "CreateDate": iso_utc(self._store.clock())}
            self._store.save()

    # ---- testing aid ----------------------------------------------------------------------------

    def inject_faults(self, count: int, code: str = "ServiceUnavailableTemporary") -> None:
        """Make the next ``count`` KMS calls fail transiently (retried, then
        KmsUnavailableError), to exercise outage handling."""
        with self._store.lock:
            self._store.faults.extend([code] * count)

    # ---- internals ---------------------------------------------------------------------------------

    def _as(self, principal: ram.Principal) -> "_PrincipalClient":
        return _PrincipalClient(self, principal)

    def _call(self, operation: Callable[[], T], what: str) -> T:
        def attempt() -> T:
            # One outermost hold of the lock (its flock and reload check) for the fault check
            # and the operation, which takes the lock again re-entrantly at no cost.
            with self._store.lock:
                self._store.fault()
                return operation()

        return call_with_retries(attempt, policy=self._retry, what=what)

    def _check_policies(self, policies: Sequence[str]) -> List[str]:
        if isinstance(policies, str) or not all(isinstance(p, str) and p for p in policies):
            raise ValueError("policies must be a list of policy names")
        for name in policies:
            if name not in ram.SYSTEM_POLICIES and name not in self._store.policies:
                raise ValueError(f"no policy named {name!r} (system policies: {', '.join(sorted(ram.SYSTEM_POLICIES))})")
        return sorted(set(policies))


class _PrincipalClient(KmsClient):
    """A LocalKms acting for one identity: every call first checks, under the lock, that
    its policies (as they are now) allow the action on the key, then the key's state."""

    def __init__(self, kms: LocalKms, principal: ram.Principal) -> None:
        self._kms = kms
        self.principal = principal

    def __repr__(self) -> str:
        return f"<LocalKms acting as {self.principal.arn}>"

    def _run(self, action: str, key_id: Optional[str], operation: Callable[[_State], T]) -> T:
        state = self._kms._store

        def run() -> T:
            with state.lock:
                resource = state.key_arn(key_id) if key_id is not None else state.key_arn("*")
                state.require(self.principal, f"kms:{action}", resource)
                return operation(state)

        return self._kms._call(run, action)

    def generate_data_key(
        self, key_id: str, *, context: EncryptionContext, number_of_bytes: int = 32
    ) -> DataKey:
        if type(number_of_bytes) is not int or not 1 <= number_of_bytes <= 1024:
            raise ValueError("number_of_bytes must be an integer from 1 to 1024")
        plaintext = secrets.token_bytes(number_of_bytes)
        blob = self._run("GenerateDataKey", _checked_id(key_id),
                         lambda s: _wrap(s, "GenerateDataKey", key_id, plaintext, context))
        return DataKey(key_id=key_id, plaintext=plaintext, ciphertext_blob=blob)

    def encrypt(self, key_id: str, plaintext: bytes, *, context: EncryptionContext) -> bytes:
        # KMS Encrypt takes up to 6 KiB of caller data.
        if not isinstance(plaintext, (bytes, bytearray)) or not 1 <= len(plaintext) <= 6144:
            raise ValueError("plaintext must be 1 to 6144 bytes")
        data = bytes(plaintext)
        return self._run("Encrypt", _checked_id(key_id), lambda s: _wrap(s, "Encrypt", key_id, data, context))

    def decrypt(self, ciphertext_blob: bytes, *, context: EncryptionContext) -> bytes:
        return self.decrypt_with_key_id(ciphertext_blob, context=context)[1]

    def decrypt_with_key_id(self, ciphertext_blob: bytes, *, context: EncryptionContext) -> Tuple[str, bytes]:
        key_id, raw_id, nonce, sealed = _parse_blob(ciphertext_blob)
        aad = _aad(raw_id, length_prefixed_context(context))  # bad contexts are refused before anything else
        plaintext = self._run("Decrypt", key_id, lambda s: _unwrap(s, key_id, nonce, sealed, aad))
        return key_id, plaintext

    def describe_key(self, key_id: str) -> Dict[str, Any]:
        return self._run("DescribeKey", _checked_id(key_id), lambda s: _describe(s, key_id))

    def list_keys(self) -> List[Dict[str, str]]:
        def listing(state: _State) -> List[Dict[str, str]]:
            return [{"KeyId": key_id, "KeyArn": state.key(key_id)["Arn"]}
                    for key_id in list(state.keys) if _exists(state, key_id)]

        return self._run("ListKeys", None, listing)

    def create_key(self, description: str = "") -> str:
        if not isinstance(description, str):
            raise ValueError("description must be a string")

        def create(state: _State) -> str:
            key_id = str(uuid.uuid4())
            state.keys[key_id] = {
                "KeyId": key_id, "Arn": state.key_arn(key_id), "Description": description,
                "KeyState": "Enabled", "CreationDate": iso_utc(state.clock()),
                "_material": base64.b64encode(secrets.token_bytes(32)).decode("ascii"),
            }
            state.save()
            return key_id

        return self._run("CreateKey", None, create)

    def enable_key(self, key_id: str) -> None:
        self._run("EnableKey", _checked_id(key_id), lambda s: _set_state(s, "EnableKey", key_id, "Enabled"))

    def disable_key(self, key_id: str) -> None:
        self._run("DisableKey", _checked_id(key_id), lambda s: _set_state(s, "DisableKey", key_id, "Disabled"))

    def schedule_key_deletion(self, key_id: str, pending_window_days: int = 7) -> None:
        if type(pending_window_days) is not int or not 7 <= pending_window_days <= 366:
            raise ValueError("pending_window_days must be an integer from 7 to 366")

        def schedule(state: _State) -> None:
            record = state.key_for("ScheduleKeyDeletion", key_id)
            delete_at = state.clock() + pending_window_days * 86400
            record.update(KeyState="PendingDeletion", DeleteDate=iso_utc(delete_at), _delete_at=delete_at)
            state.save()

        self._run("ScheduleKeyDeletion", _checked_id(key_id), schedule)

    def cancel_key_deletion(self, key_id: str) -> None:
        def cancel(state: _State) -> None:
            record = state.key_for("CancelKeyDeletion", key_id)
            record["KeyState"] = "Enabled"
            record.pop("DeleteDate", None)
            record.pop("_delete_at", None)
            state.save()

        self._run("CancelKeyDeletion", _checked_id(key_id), cancel)

    def assume_role(self, arn: str) -> KmsClient:
        """Role chaining is not emulated: this assumes arn for the log service afresh."""
        return self._kms.assume_role(arn)


# ---- the operations (state lock held by the callers) ------------------------------------------------


def _checked_id(key_id: Any) -> str:
    if not isinstance(key_id, str) or not key_id:
        raise KeyInvalidError("a key id must be a non-empty string", code="Forbidden.KeyNotFound")
    return key_id


def _exists(state: _State, key_id: str) -> bool:
    try:
        state.key(key_id)
    except KeyInvalidError:
        return False
    return True


def _set_state(state: _State, action: str, key_id: str, new_state: str) -> None:
    record = state.key_for(action, key_id)
    record["KeyState"] = new_state
    state.save()


def _describe(state: _State, key_id: str) -> Dict[str, Any]:
    record = state.key_for("DescribeKey", key_id)
    meta = {k: v for k, v in record.items() if not k.startswith("_")}
    meta.update(
        Creator=state.account_id, KeySpec="Aliyun_AES_256", KeyUsage="ENCRYPT/DECRYPT",
        Origin="Aliyun_KMS", ProtectionLevel="SOFTWARE", DeletionProtection="Disabled",
    )
    return meta


def _aad(raw_id: bytes, encoded_context: bytes) -> bytes:
    """The AAD of a wrapped blob; encoded_context is length_prefixed_context's, computed once
    per call by the caller (which refuses a bad context with it before anything else)."""
    return _WRAP_LABEL + bytes([len(raw_id)]) + raw_id + encoded_context


def _wrap(state: _State, action: str, key_id: str, plaintext: bytes, context: EncryptionContext) -> bytes:
    """plaintext sealed under the CMK: version || id length || id || nonce || AES-GCM."""
    encoded_context = length_prefixed_context(context)  # a bad context is refused before the key is looked at
    raw_id = key_id.encode("utf-8")
    if len(raw_id) > 255:
        raise ValueError("key id too long")
    aad = _aad(raw_id, encoded_context)
    wrapper = state.wrapper(key_id, state.key_for(action, key_id))
    nonce = secrets.token_bytes(_NONCE_LEN)
    sealed = wrapper.encrypt(nonce, plaintext, aad)
    return bytes([_BLOB_VERSION, len(raw_id)]) + raw_id + nonce + sealed


def _parse_blob(blob: Any) -> Tuple[str, bytes, bytes, bytes]:
    if not isinstance(blob, (bytes, bytearray)):
        raise ValueError("ciphertext_blob must be bytes")
    blob = bytes(blob)
    if len(blob) < 2 or blob[0] != _BLOB_VERSION or len(blob) < 2 + blob[1] + _NONCE_LEN + 16 + 1:
        raise KeyInvalidError("the ciphertext blob is malformed", code="InvalidCiphertext")
    id_len = blob[1]
    raw_id = blob[2: 2 + id_len]
    try:
        key_id = raw_id.decode("utf-8")
    except UnicodeDecodeError:
        raise KeyInvalidError("the ciphertext blob is malformed", code="InvalidCiphertext") from None
    if not key_id:
        raise KeyInvalidError("the ciphertext blob is malformed", code="InvalidCiphertext")
    nonce = blob[2 + id_len: 2 + id_len + _NONCE_LEN]
    return key_id, raw_id, nonce, blob[2 + id_len + _NONCE_LEN:]


def _unwrap(state: _State, key_id: str, nonce: bytes, sealed: bytes, aad: bytes) -> bytes:
    wrapper = state.wrapper(key_id, state.key_for("Decrypt", key_id))
    try:
        return wrapper.decrypt(nonce, sealed, aad)
    except InvalidTag:
        raise KeyInvalidError(
            "the ciphertext blob does not open under its key with this encryption context",
            code="InvalidCiphertext",
        ) from None
