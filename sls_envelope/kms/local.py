"""LocalKms: the embedded default KMS, in memory or persisted under a directory.

It emulates what the log service needs of Alibaba Cloud KMS and RAM:

* CMKs with the states of KMS DescribeKey (``Enabled``, ``Disabled``,
  ``PendingDeletion``); a key pending deletion is deleted for good once its window
  passes, and :meth:`LocalKms.cancel_key_deletion` returns it to ``Enabled`` as
  Alibaba Cloud KMS documents.
* Data keys made from ``secrets`` and wrapped with AES-256-GCM under the CMK's 256-bit
  material.  The wrapped blob is versioned and carries the CMK id; its AAD binds the
  CMK id and a canonical encoding of the encryption context, so unwrapping with another
  context fails with code ``InvalidCiphertext`` (as a real KMS refuses it).
* RAM roles: :meth:`LocalKms.create_role` returns ``acs:ram::<account>:role/<name>``.
  :meth:`LocalKms.assume_role` acts for the log service (``log.aliyuncs.com``) and
  succeeds only if the role's trust policy allows ``sts:AssumeRole`` for it; the role
  client it returns may call GenerateDataKey/Decrypt only with
  ``AliyunKMSCryptoUserAccess`` and DescribeKey/ListKeys only with
  ``AliyunKMSReadOnlyAccess`` (``AliyunKMSFullAccess`` and ``AdministratorAccess``
  grant everything).  Policies are evaluated at every call, so detaching one or
  deleting the role takes effect at once.

The :class:`LocalKms` object itself is the account owner: it may do everything.

Persistence: one JSON file ``localkms.json`` under ``path`` (directory mode 0700, file
mode 0600), rewritten atomically (temp file, fsync, ``os.replace``, directory fsync)
after every change.  Several processes may share a directory (``sls-envelope kms
serve`` in one, admin commands in another): every operation holds an exclusive
``flock`` on ``localkms.lock`` and first reloads the file if another process replaced
it, so each sees the others' changes and none loses an update.

Error codes (on :class:`~sls_envelope.exceptions.KeyInvalidError`): ``Rejected.Disabled``,
``Rejected.PendingDeletion``, ``Forbidden.KeyNotFound``, ``Forbidden.NoPermission``,
``InvalidCiphertext``, and for roles ``EntityNotExist.Role``, ``NoPermission``
(trust policy refuses) and ``InvalidParameter.RoleArn``.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import datetime
import json
import logging
import os
import re
import secrets
import struct
import tempfile
import threading
import time
import uuid
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, TypeVar, Union

from ..aead import AESGCM
from ..exceptions import InvalidTag, KeyInvalidError
from .base import DataKey, EncryptionContext, KmsClient, RetryPolicy, TransientKmsError, call_with_retries

__all__ = [
    "LocalKms",
    "DEFAULT_ACCOUNT_ID",
    "LOG_SERVICE",
    "CRYPTO_USER_POLICY",
    "READ_ONLY_POLICY",
    "FULL_ACCESS_POLICY",
    "log_service_trust_policy",
]

log = logging.getLogger("sls_envelope.kms.local")

T = TypeVar("T")

DEFAULT_ACCOUNT_ID = "1000000000000000"
LOG_SERVICE = "log.aliyuncs.com"
CRYPTO_USER_POLICY = "AliyunKMSCryptoUserAccess"
READ_ONLY_POLICY = "AliyunKMSReadOnlyAccess"
FULL_ACCESS_POLICY = "AliyunKMSFullAccess"
_ADMIN_POLICY = "AdministratorAccess"

_CRYPTO = "crypto"
_READ = "read"
_MANAGE = "manage"
_GRANTS = {
    CRYPTO_USER_POLICY: {_CRYPTO},
    READ_ONLY_POLICY: {_READ},
    FULL_ACCESS_POLICY: {_CRYPTO, _READ, _MANAGE},
    _ADMIN_POLICY: {_CRYPTO, _READ, _MANAGE},
}

_FILE_NAME = "localkms.json"
_LOCK_NAME = "localkms.lock"
_FILE_FORMAT = "sls-envelope-localkms/1"
_BLOB_VERSION = 1
_WRAP_LABEL = b"sls-envelope localkms wrap v1"
_NONCE_LEN = 12
_ROLE_NAME = re.compile(r"^[A-Za-z0-9.\-]{1,64}$")
_ROLE_ARN = re.compile(r"^acs:ram::(?P<account>[^:]+):role/(?P<name>.+)$")


def log_service_trust_policy() -> Dict[str, Any]:
    """The RAM trust policy that lets the log service assume a role."""
    return {
        "Statement": [
            {"Action": "sts:AssumeRole", "Effect": "Allow", "Principal": {"Service": [LOG_SERVICE]}}
        ],
        "Version": "1",
    }


def _iso(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _canonical_context(context: EncryptionContext) -> bytes:
    """Sorted, length-prefixed UTF-8 key/value pairs: an injective encoding."""
    if not isinstance(context, Mapping):
        raise ValueError("encryption context must be a mapping of strings")
    parts = [struct.pack(">I", len(context))]
    for key in sorted(context):
        value = context[key]
        if not isinstance(key, str) or not isinstance(value, str):
            raise ValueError("encryption context keys and values must be strings")
        for item in (key.encode("utf-8"), value.encode("utf-8")):
            parts.append(struct.pack(">I", len(item)) + item)
    return b"".join(parts)


def _as_list(value: Any) -> List[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _validate_trust_policy(policy: Union[str, Mapping[str, Any]]) -> Dict[str, Any]:
    if isinstance(policy, str):
        try:
            policy = json.loads(policy)
        except ValueError:
            raise ValueError("trust_policy is not valid JSON") from None
    if not isinstance(policy, Mapping) or not isinstance(policy.get("Statement"), list):
        raise ValueError("trust_policy must be an object with a Statement list")
    for statement in policy["Statement"]:
        if not isinstance(statement, Mapping) or statement.get("Effect") not in ("Allow", "Deny"):
            raise ValueError("every trust_policy statement must be an object with Effect Allow or Deny")
    plain: Dict[str, Any] = json.loads(json.dumps(policy))  # a plain, JSON-able deep copy
    return plain


def _trusts_service(policy: Mapping[str, Any], service: str) -> bool:
    """Allowed if some statement allows sts:AssumeRole for service and none denies it."""
    allowed = False
    for statement in policy.get("Statement", []):
        actions = _as_list(statement.get("Action"))
        if not any(action in ("sts:AssumeRole", "sts:*", "*") for action in actions):
            continue
        principal = statement.get("Principal")
        services = _as_list(principal.get("Service")) if isinstance(principal, Mapping) else []
        # RAM also writes service principals as "<account>@log.aliyuncs.com".
        if not any(s == service or (isinstance(s, str) and s.endswith("@" + service)) for s in services):
            continue
        if statement.get("Effect") == "Deny":
            return False
        allowed = True
    return allowed


class _Store:
    """The state shared by a LocalKms and its role clients: keys, roles, the lock, the file."""

    def __init__(self, path: Optional[str], account_id: Optional[str], region_id: str,
                 clock: Callable[[], float]) -> None:
        self._thread_lock = threading.RLock()
        self._depth = 0  # nesting of `lock` in the thread that holds it
        self._lock_fd: Optional[int] = None
        self._seen: Optional[Tuple[int, int, int]] = None  # (inode, mtime_ns, size) of the file we last read or wrote
        self.clock = clock
        self.region_id = region_id
        self.keys: Dict[str, Dict[str, Any]] = {}
        self.roles: Dict[str, Dict[str, Any]] = {}
        self.dir = os.path.abspath(os.fspath(path)) if path is not None else None
        self.faults: List[str] = []
        if self.dir is not None:
            os.makedirs(self.dir, mode=0o700, exist_ok=True)
            os.chmod(self.dir, 0o700)
        with self.lock:
            stored_account = self._load()
            if stored_account is not None and account_id is not None and account_id != stored_account:
                raise ValueError(f"{self.dir} belongs to account {stored_account}, not {account_id}")
            self.account_id = account_id or stored_account or DEFAULT_ACCOUNT_ID
            if self.dir is not None and stored_account is None:
                self.save()

    @property
    @contextlib.contextmanager
    def lock(self) -> Any:
        """Threads: a re-entrant lock.  Processes sharing the directory: an exclusive
        flock, taken by the outermost holder, which also reloads what another process
        wrote since this one last looked."""
        with self._thread_lock:
            self._depth += 1
            try:
                if self._depth == 1 and self.dir is not None:
                    self._lock_file()
                    try:
                        self._reload_if_changed()
                    except BaseException:
                        self._unlock_file()
                        raise
                try:
                    yield
                except BaseException:
                    # Whatever the failed operation changed in memory but did not save
                    # (a full disk, say) is dropped: memory follows the file.
                    if self._depth == 1 and self.dir is not None:
                        self._load()
                    raise
                finally:
                    if self._depth == 1 and self.dir is not None:
                        self._unlock_file()
            finally:
                self._depth -= 1

    def _lock_file(self) -> None:
        import fcntl

        assert self.dir is not None
        fd = os.open(os.path.join(self.dir, _LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        self._lock_fd = fd

    def _unlock_file(self) -> None:
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            os.close(fd)  # closing releases the flock

    def _signature(self) -> Optional[Tuple[int, int, int]]:
        try:
            info = os.stat(self._file())
        except FileNotFoundError:
            return None
        return (info.st_ino, info.st_mtime_ns, info.st_size)

    def _reload_if_changed(self) -> None:
        if self._seen is not None and self._signature() != self._seen:
            self._load()

    # ---- persistence -----------------------------------------------------------------

    def _file(self) -> str:
        assert self.dir is not None
        return os.path.join(self.dir, _FILE_NAME)

    def _load(self) -> Optional[str]:
        if self.dir is None:
            return None
        try:
            with open(self._file(), "r", encoding="utf-8") as handle:
                os.fchmod(handle.fileno(), 0o600)
                info = os.fstat(handle.fileno())
                state = json.load(handle)
        except FileNotFoundError:
            return None
        self._seen = (info.st_ino, info.st_mtime_ns, info.st_size)
        if not isinstance(state, dict) or state.get("format") != _FILE_FORMAT:
            raise ValueError(f"{self._file()} is not a LocalKms state file")
        self.keys = state["keys"]
        self.roles = state["roles"]
        return str(state["account_id"])

    def save(self) -> None:
        if self.dir is None:
            return
        payload = json.dumps(
            {"format": _FILE_FORMAT, "account_id": self.account_id, "keys": self.keys, "roles": self.roles},
            sort_keys=True,
        ).encode("utf-8")
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".localkms-", suffix=".tmp")  # mode 0600
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self._file())
            self._seen = self._signature()
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        dir_fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    # ---- keys ----------------------------------------------------------------------------

    def key(self, key_id: str) -> Dict[str, Any]:
        """The key record, after purging it if its deletion window has passed."""
        if not isinstance(key_id, str) or not key_id:
            raise KeyInvalidError("a key id must be a non-empty string", code="Forbidden.KeyNotFound")
        record = self.keys.get(key_id)
        if record is not None and record["KeyState"] == "PendingDeletion" and self.clock() >= record["_delete_at"]:
            del self.keys[key_id]
            self.save()
            record = None
        if record is None:
            raise KeyInvalidError(f"the key {key_id!r} is not found", code="Forbidden.KeyNotFound")
        return record

    def usable_key(self, key_id: str) -> Dict[str, Any]:
        record = self.key(key_id)
        state = record["KeyState"]
        if state == "Disabled":
            raise KeyInvalidError(f"the key {key_id!r} is disabled", code="Rejected.Disabled")
        if state == "PendingDeletion":
            raise KeyInvalidError(f"the key {key_id!r} is pending deletion", code="Rejected.PendingDeletion")
        return record

    def fault(self) -> None:
        """Raise an injected transient failure, if any is queued (see LocalKms.inject_faults)."""
        if self.faults:
            raise TransientKmsError("injected transient failure", code=self.faults.pop(0))


class LocalKms(KmsClient):
    """The embedded KMS (see the module docstring).  Thread-safe.

    ``path``: a directory to persist to (created 0700), or None for memory only.
    ``account_id``: the account in role ARNs (defaults to what the directory stores,
    else :data:`DEFAULT_ACCOUNT_ID`).  ``clock``: wall-clock seconds, for deletion
    windows (tests move it).
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
        self._store = _Store(None if path is None else os.fspath(path), account_id, region_id, clock)
        self._service = service
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

    # ---- the KmsClient interface -----------------------------------------------------------

    def generate_data_key(
        self, key_id: str, *, context: EncryptionContext, number_of_bytes: int = 32
    ) -> DataKey:
        return self._call(lambda: _generate(self._store, key_id, context, number_of_bytes), "GenerateDataKey")

    def decrypt(self, ciphertext_blob: bytes, *, context: EncryptionContext) -> bytes:
        return self._call(lambda: _unwrap(self._store, ciphertext_blob, context), "Decrypt")

    def encrypt(self, key_id: str, plaintext: bytes, *, context: EncryptionContext) -> bytes:
        """KMS Encrypt: caller data (up to 6 KiB) sealed under the CMK, in the blob format
        that decrypt opens."""
        return self._call(lambda: _encrypt(self._store, key_id, plaintext, context), "Encrypt")

    def describe_key(self, key_id: str) -> Dict[str, Any]:
        return self._call(lambda: _describe(self._store, key_id), "DescribeKey")

    def assume_role(self, arn: str) -> KmsClient:
        """This KMS acting as the role ``arn`` for the log service; raises
        KeyInvalidError unless the role exists and its trust policy allows the service."""
        with self._store.lock:
            name = self._role_name_from_arn(arn)
            if not _trusts_service(self._store.roles[name]["TrustPolicy"], self._service):
                raise KeyInvalidError(
                    f"the role {arn!r} does not trust {self._service} to assume it", code="NoPermission"
                )
            return _RoleClient(self, name)

    def create_key(self, description: str = "") -> str:
        """A new Enabled CMK with fresh 256-bit material; returns its KeyId."""
        if not isinstance(description, str):
            raise ValueError("description must be a string")
        with self._store.lock:
            key_id = str(uuid.uuid4())
            now = self._store.clock()
            self._store.keys[key_id] = {
                "KeyId": key_id,
                "Arn": f"acs:kms:{self._store.region_id}:{self._store.account_id}:key/{key_id}",
                "Description": description,
                "KeyState": "Enabled",
                "CreationDate": _iso(now),
                "_material": base64.b64encode(secrets.token_bytes(32)).decode("ascii"),
            }
            self._store.save()
            return key_id

    # ---- key administration (the account owner) --------------------------------------------

    def enable_key(self, key_id: str) -> None:
        self._set_state(key_id, "Enabled", allowed_from=("Enabled", "Disabled"))

    def disable_key(self, key_id: str) -> None:
        self._set_state(key_id, "Disabled", allowed_from=("Enabled", "Disabled"))

    def schedule_key_deletion(self, key_id: str, pending_window_days: int = 7) -> None:
        """PendingDeletion now; deleted for good after pending_window_days (7 to 366)."""
        if type(pending_window_days) is not int or not 7 <= pending_window_days <= 366:
            raise ValueError("pending_window_days must be an integer from 7 to 366")
        with self._store.lock:
            record = self._store.key(key_id)
            delete_at = self._store.clock() + pending_window_days * 86400
            record.update(KeyState="PendingDeletion", DeleteDate=_iso(delete_at), _delete_at=delete_at)
            self._store.save()

    def cancel_key_deletion(self, key_id: str) -> None:
        """Back to Enabled (Alibaba Cloud KMS: a cancelled deletion leaves the key enabled)."""
        with self._store.lock:
            record = self._store.key(key_id)
            if record["KeyState"] != "PendingDeletion":
                raise ValueError(f"the key {key_id!r} is not pending deletion")
            record["KeyState"] = "Enabled"
            record.pop("DeleteDate", None)
            record.pop("_delete_at", None)
            self._store.save()

    def list_keys(self) -> List[Dict[str, str]]:
        """Every CMK not yet deleted, as ListKeys shows them: KeyId and KeyArn."""
        with self._store.lock:
            return [{"KeyId": key_id, "KeyArn": self._store.key(key_id)["Arn"]}
                    for key_id in list(self._store.keys) if _exists(self._store, key_id)]

    # ---- RAM ----------------------------------------------------------------------------------

    def create_role(
        self, name: str, *, trust_policy: Union[str, Mapping[str, Any]], policies: Sequence[str] = ()
    ) -> str:
        """A RAM role with the trust policy (dict or JSON) and attached system policies;
        returns its ARN ``acs:ram::<account>:role/<name>``."""
        if not isinstance(name, str) or not _ROLE_NAME.match(name):
            raise ValueError("role name must be 1 to 64 letters, digits, '.' or '-'")
        trust = _validate_trust_policy(trust_policy)
        attached = self._check_policies(policies)
        with self._store.lock:
            if name.lower() in self._store.roles:
                raise ValueError(f"a role named {name!r} already exists")
            arn = f"acs:ram::{self._store.account_id}:role/{name}"
            self._store.roles[name.lower()] = {
                "RoleName": name, "Arn": arn, "TrustPolicy": trust, "Policies": attached,
                "CreateDate": _iso(self._store.clock()),
            }
            self._store.save()
            return arn

    def update_role(
        self, name: str, *, trust_policy: Union[None, str, Mapping[str, Any]] = None,
        policies: Optional[Sequence[str]] = None,
    ) -> None:
        """Replace a role's trust policy and/or its attached policies."""
        with self._store.lock:
            role = self._role(name)
            if trust_policy is not None:
                role["TrustPolicy"] = _validate_trust_policy(trust_policy)
            if policies is not None:
                role["Policies"] = self._check_policies(policies)
            self._store.save()

    def delete_role(self, name: str) -> None:
        with self._store.lock:
            self._role(name)
            del self._store.roles[name.lower()]
            self._store.save()

    def get_role(self, name: str) -> Dict[str, Any]:
        with self._store.lock:
            return copy.deepcopy(self._role(name))

    # ---- testing aid ----------------------------------------------------------------------------

    def inject_faults(self, count: int, code: str = "ServiceUnavailableTemporary") -> None:
        """Make the next ``count`` KMS calls fail transiently (retried, then
        KmsUnavailableError), to exercise outage handling."""
        with self._store.lock:
            self._store.faults.extend([code] * count)

    # ---- internals ---------------------------------------------------------------------------------

    def _call(self, operation: Callable[[], T], what: str) -> T:
        def attempt() -> T:
            with self._store.lock:
                self._store.fault()
            return operation()

        return call_with_retries(attempt, policy=self._retry, what=what)

    def _set_state(self, key_id: str, state: str, *, allowed_from: Sequence[str]) -> None:
        with self._store.lock:
            record = self._store.key(key_id)
            if record["KeyState"] not in allowed_from:
                raise KeyInvalidError(
                    f"the key {key_id!r} is {record['KeyState']}; cancel its deletion first",
                    code=f"Rejected.{record['KeyState']}",
                )
            record["KeyState"] = state
            self._store.save()

    def _role(self, name: str) -> Dict[str, Any]:
        role = self._store.roles.get(name.lower()) if isinstance(name, str) else None
        if role is None:
            raise KeyInvalidError(f"the role {name!r} does not exist", code="EntityNotExist.Role")
        return role

    def _role_name_from_arn(self, arn: str) -> str:
        match = _ROLE_ARN.match(arn) if isinstance(arn, str) else None
        if match is None:
            raise KeyInvalidError("the role ARN must look like acs:ram::<account>:role/<name>",
                                  code="InvalidParameter.RoleArn")
        name = match.group("name").lower()
        if match.group("account") != self._store.account_id or name not in self._store.roles:
            raise KeyInvalidError(f"the role {arn!r} does not exist", code="EntityNotExist.Role")
        return name

    @staticmethod
    def _check_policies(policies: Sequence[str]) -> List[str]:
        if isinstance(policies, str) or not all(isinstance(p, str) and p for p in policies):
            raise ValueError("policies must be a list of policy names")
        return sorted(set(policies))


class _RoleClient(KmsClient):
    """A LocalKms acting as a RAM role: every call checks the role's current policies."""

    def __init__(self, kms: LocalKms, role: str) -> None:
        self._kms = kms
        self._role = role

    def __repr__(self) -> str:
        return f"<LocalKms role {self._role!r} of account {self._kms.account_id}>"

    def _require(self, permission: str) -> None:
        store = self._kms._store
        role = store.roles.get(self._role)
        if role is None:
            raise KeyInvalidError(f"the role {self._role!r} no longer exists", code="EntityNotExist.Role")
        if not any(permission in _GRANTS.get(policy, ()) for policy in role["Policies"]):
            raise KeyInvalidError(
                f"the role {self._role!r} is not permitted to do this ({permission} access needed)",
                code="Forbidden.NoPermission",
            )

    def _as_role(self, permission: str, operation: Callable[[], T], what: str) -> T:
        def run() -> T:
            with self._kms._store.lock:
                self._require(permission)
                return operation()

        return self._kms._call(run, what)

    def generate_data_key(
        self, key_id: str, *, context: EncryptionContext, number_of_bytes: int = 32
    ) -> DataKey:
        store = self._kms._store
        return self._as_role(_CRYPTO, lambda: _generate(store, key_id, context, number_of_bytes),
                             "GenerateDataKey")

    def encrypt(self, key_id: str, plaintext: bytes, *, context: EncryptionContext) -> bytes:
        store = self._kms._store
        return self._as_role(_CRYPTO, lambda: _encrypt(store, key_id, plaintext, context), "Encrypt")

    def decrypt(self, ciphertext_blob: bytes, *, context: EncryptionContext) -> bytes:
        store = self._kms._store
        return self._as_role(_CRYPTO, lambda: _unwrap(store, ciphertext_blob, context),
                             "Decrypt")

    def describe_key(self, key_id: str) -> Dict[str, Any]:
        store = self._kms._store
        return self._as_role(_READ, lambda: _describe(store, key_id), "DescribeKey")

    def assume_role(self, arn: str) -> KmsClient:
        """Role chaining is not emulated: this assumes arn for the log service afresh."""
        return self._kms.assume_role(arn)


# ---- the cryptographic operations (store lock held by the callers where it matters) ----------


def _exists(store: _Store, key_id: str) -> bool:
    try:
        store.key(key_id)
    except KeyInvalidError:
        return False
    return True


def _describe(store: _Store, key_id: str) -> Dict[str, Any]:
    with store.lock:
        record = store.key(key_id)
        meta = {k: v for k, v in record.items() if not k.startswith("_")}
    meta.update(
        Creator=store.account_id, KeySpec="Aliyun_AES_256", KeyUsage="ENCRYPT/DECRYPT",
        Origin="Aliyun_KMS", ProtectionLevel="SOFTWARE", DeletionProtection="Disabled",
    )
    return meta


def _material(record: Mapping[str, Any]) -> bytes:
    return base64.b64decode(record["_material"])


def _aad(key_id: bytes, context: EncryptionContext) -> bytes:
    return _WRAP_LABEL + bytes([len(key_id)]) + key_id + _canonical_context(context)


def _wrap(store: _Store, key_id: str, plaintext: bytes, context: EncryptionContext) -> bytes:
    """plaintext sealed under the CMK: version || id length || id || nonce || AES-GCM."""
    with store.lock:
        record = store.usable_key(key_id)
        wrapper = AESGCM(_material(record))
    raw_id = key_id.encode("utf-8")
    if len(raw_id) > 255:
        raise ValueError("key id too long")
    nonce = secrets.token_bytes(_NONCE_LEN)
    sealed = wrapper.encrypt(nonce, plaintext, _aad(raw_id, context))
    return bytes([_BLOB_VERSION, len(raw_id)]) + raw_id + nonce + sealed


def _generate(store: _Store, key_id: str, context: EncryptionContext, number_of_bytes: int) -> DataKey:
    if type(number_of_bytes) is not int or not 1 <= number_of_bytes <= 1024:
        raise ValueError("number_of_bytes must be an integer from 1 to 1024")
    plaintext = secrets.token_bytes(number_of_bytes)
    return DataKey(key_id=key_id, plaintext=plaintext, ciphertext_blob=_wrap(store, key_id, plaintext, context))


def _encrypt(store: _Store, key_id: str, plaintext: bytes, context: EncryptionContext) -> bytes:
    # KMS Encrypt takes up to 6 KiB of caller data.
    if not isinstance(plaintext, (bytes, bytearray)) or not 1 <= len(plaintext) <= 6144:
        raise ValueError("plaintext must be 1 to 6144 bytes")
    return _wrap(store, key_id, bytes(plaintext), context)


def _unwrap(store: _Store, blob: bytes, context: EncryptionContext) -> bytes:
    if not isinstance(blob, (bytes, bytearray)):
        raise ValueError("ciphertext_blob must be bytes")
    blob = bytes(blob)
    if len(blob) < 2 or blob[0] != _BLOB_VERSION or len(blob) < 2 + blob[1] + _NONCE_LEN + 16 + 1:
        raise KeyInvalidError("the ciphertext blob is malformed", code="InvalidCiphertext")
    id_len = blob[1]
    raw_id = blob[2 : 2 + id_len]
    try:
        key_id = raw_id.decode("utf-8")
    except UnicodeDecodeError:
        raise KeyInvalidError("the ciphertext blob is malformed", code="InvalidCiphertext") from None
    nonce = blob[2 + id_len : 2 + id_len + _NONCE_LEN]
    with store.lock:
        record = store.usable_key(key_id)
        wrapper = AESGCM(_material(record))
    try:
        return wrapper.decrypt(nonce, blob[2 + id_len + _NONCE_LEN :], _aad(raw_id, context))
    except InvalidTag:
        raise KeyInvalidError(
            "the ciphertext blob does not open under its key with this encryption context",
            code="InvalidCiphertext",
        ) from None
