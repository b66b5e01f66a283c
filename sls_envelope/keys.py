"""KeyManager and LogstoreCipher: a key per Logstore, from its encrypt_conf, through a KMS.

Key hierarchy (docs/SECURITY.md):

* service key (no ``user_cmk_info``): an independent 256-bit data key per Logstore,
  made by the KMS under a service CMK that the manager creates on first use (or is
  given as ``service_key_id``) and keeps in its store;
* BYOK (``user_cmk_info``): the manager assumes the RAM role ``arn`` and has the KMS
  make the data key under the customer's ``cmk_key_id``.

The encryption context ``{"project": ..., "logstore": ...}`` is bound to the wrapped
data key, and the same names are bound into every batch (sls_envelope.format).  Only
the wrapped key is stored; the plaintext is unwrapped when the Logstore is first used.

Fail closed: a BYOK cipher re-checks its CMK by unwrapping its data key again (so the
role, its trust and its permissions are checked too) when the last check is older than
``revalidate_after`` seconds.  When the KMS refuses, the plaintext key is wiped and
every call raises KeyInvalidError until a later check (no sooner than
``revalidate_after`` after the failure) succeeds.  Service-key Logstores never depend
on customer CMKs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import math
import os
import secrets
import threading
import time
import weakref
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from .aead import Buffer
from .conf import SUITE_NAMES, EncryptConf, enable_only
from .exceptions import ConfigError, EncryptionDisabledError, KeyInvalidError, KmsUnavailableError
from .session_codec import BatchCodec
from .keystore import KeyRecord, KeyStore, MemoryKeyStore, SqliteKeyStore
from .kms.base import KmsClient
from .kms.ram import Caller
from .names import check_logstore_name, check_project_name

__all__ = ["KeyManager", "LogstoreCipher", "KmsByRegion", "encryption_context"]

#: What KeyManager takes as its KMS: one client (every region), or one per region as a
#: mapping from region id, or a callable region id -> client (None: no KMS there).
KmsByRegion = Union[KmsClient, Mapping[str, KmsClient], Callable[[str], Optional[KmsClient]]]

_SERVICE_CMK_SETTING = "service_cmk_id"
_DATA_KEY_BYTES = 32  # HKDF input for both suites: 256 bits, also under SM4's 128-bit session keys


def _check_pass_role(caller: Optional[Caller], role_arn: str) -> None:
    """The log service's step 5 of BYOK: whoever configures the Logstore passes the role to
    the service, so needs ram:PassRole on it (evaluated as RAM does: Deny wins).  The real
    service's answer is undocumented: SLS's permission-denied code, Unauthorized, with 403
    as for other RAM denials (docs/LOGSTORE.md)."""
    if caller is not None and not caller.is_authorized("ram:PassRole", role_arn):
        raise KeyInvalidError(f"{caller.arn} is not authorized to pass the role {role_arn} to the log "
                              "service (ram:PassRole)", code="Unauthorized", http_status=403)


def _checked_data_key(value: Any) -> bytes:
    """A data key as the KMS returned it.  An answer that is not exactly the bytes of a
    data key is never used as one: the KMS is treated as unavailable (fail closed; the
    next call asks again)."""
    if type(value) is not bytes or len(value) != _DATA_KEY_BYTES:
        raise KmsUnavailableError("the KMS returned a malformed data key", code="InvalidKmsResponse")
    return value


def _key_check(data_key: bytes, key_ref: bytes) -> bytes:
    """A check value of a Logstore's data key: HMAC-SHA256 keyed by the key itself, so it
    says nothing usable about the key but tells a later unwrap whether the KMS gave back
    the same key (a confused or hostile KMS could answer with another one)."""
    return hmac.new(data_key, b"sls-envelope data key check\x00" + key_ref, hashlib.sha256).digest()


def encryption_context(project: str, logstore: str) -> Dict[str, str]:
    """The KMS encryption context of a Logstore's data key."""
    return {"project": project, "logstore": logstore}


class _KeySource:
    """Unwraps one Logstore's data key through the KMS (of the CMK's region), as the
    service or as the role."""

    __slots__ = ("_kms", "_record")

    def __init__(self, kms: Callable[[], KmsClient], record: KeyRecord) -> None:
        self._kms = kms  # resolved at each unwrap: KmsUnavailableError if the region has none
        self._record = record

    def unwrap(self) -> bytes:
        record = self._record
        assert record.ciphertext_blob is not None
        client = self._kms()
        if record.key_type == "byok":
            conf = EncryptConf.from_dict(json.loads(record.conf))
            assert conf.user_cmk_info is not None
            client = client.assume_role(conf.user_cmk_info.arn)
        return _checked_data_key(
            client.decrypt(record.ciphertext_blob, context=encryption_context(record.project, record.logstore))
        )


#: Seconds between probes of an unreachable KMS within the outage grace.
_OUTAGE_PROBE_INTERVAL = 1.0

_LIVE_CIPHERS: "weakref.WeakSet[LogstoreCipher]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for cipher in list(_LIVE_CIPHERS):
        cipher._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class LogstoreCipher:
    """Encrypts and decrypts one Logstore's batches (the v1 format).  Thread-safe.

    Obtained from :meth:`KeyManager.create_logstore` or :meth:`KeyManager.open_logstore`.
    Every call first makes sure the key may be used (see the module docstring); the
    sealing itself never calls the KMS.
    """

    def __init__(
        self,
        record: KeyRecord,
        source: _KeySource,
        *,
        revalidate_after: Optional[float],
        clock: Callable[[], float],
        data_key: Optional[bytes] = None,
        outage_grace: float = 0.0,
    ) -> None:
        assert record.suite is not None and record.key_ref is not None
        self._record = record
        self._source = source
        self._revalidate_after = revalidate_after  # None: never (service keys)
        # A KMS outage is not a revoked key (docs/SECURITY.md): a key verified at _verified_at
        # keeps working while the KMS cannot be reached, until _verified_at +
        # revalidate_after + outage_grace; never once the KMS refused it.
        self._outage_grace = outage_grace
        self._verified_at = -math.inf
        self._clock = clock
        self._lock = threading.Lock()
        self._codec: Optional[BatchCodec] = None
        self._failure: Optional[KeyInvalidError] = None
        self._deadline = -math.inf  # the next call checks with the KMS
        self._closed: Optional[str] = None
        # enable false (switched off by update_logstore): encrypt refuses, decrypt works.
        self._enabled = EncryptConf.from_dict(json.loads(record.conf)).enable
        # The check value stored with the record at creation (the key the KMS made, verified
        # to unwrap from its blob); records from before it existed learn it from the first
        # key installed.  Every unwrap must match it.
        self._key_check: Optional[bytes] = record.key_check
        if data_key is not None:
            self._install(data_key)
            self._verified_at = clock()
            self._deadline = self._next_deadline(self._verified_at)
        _LIVE_CIPHERS.add(self)

    # ---- description ----------------------------------------------------------------

    @property
    def project(self) -> str:
        return self._record.project

    @property
    def logstore(self) -> str:
        return self._record.logstore

    @property
    def suite(self) -> str:
        """``"aes-256-gcm"`` or ``"sm4-gcm"``."""
        assert self._record.suite is not None
        return self._record.suite

    @property
    def key_type(self) -> str:
        """``"service"`` or ``"byok"``."""
        assert self._record.key_type is not None
        return self._record.key_type

    @property
    def key_ref(self) -> str:
        """The key record id written into every batch header (hex; not secret)."""
        assert self._record.key_ref is not None
        return self._record.key_ref.hex()

    @property
    def encrypt_conf(self) -> EncryptConf:
        return EncryptConf.from_dict(json.loads(self._record.conf))

    def __repr__(self) -> str:
        return (
            f"<LogstoreCipher project={self.project!r} logstore={self.logstore!r} suite={self.suite} "
            f"key_type={self.key_type} key_ref={self.key_ref}>"
        )

    def __reduce__(self) -> Any:
        raise TypeError("LogstoreCipher objects hold key material and cannot be pickled")

    # ---- the hot path -----------------------------------------------------------------

    def encrypt(self, batch: Buffer) -> bytes:
        """Seal one batch (bytes-like) as a v1 blob.  EncryptionDisabledError while the
        Logstore's encryption is switched off (``enable`` false)."""
        if not self._enabled:
            self._refuse_disabled()
        codec = self._codec
        # Service keys never revalidate (deadline +inf): no clock read on their hot path.
        if codec is None or (self._revalidate_after is not None and self._clock() >= self._deadline):
            codec = self._ready()
        return codec.seal(batch)

    def encrypt_many(self, batches: Sequence[Buffer]) -> List[bytes]:
        """Seal many batches in one C call (EncryptionDisabledError as for encrypt)."""
        if not self._enabled:
            self._refuse_disabled()
        codec = self._codec
        if codec is None or (self._revalidate_after is not None and self._clock() >= self._deadline):
            codec = self._ready()
        return codec.seal_many(batches)

    def decrypt(self, blob: Buffer) -> bytes:
        """Open one v1 blob: FormatError if malformed, InvalidTag if not sealed for this
        Logstore (key, project and Logstore name) or altered."""
        codec = self._codec
        if codec is None or (self._revalidate_after is not None and self._clock() >= self._deadline):
            codec = self._ready()
        return codec.open(blob)

    def decrypt_many(self, blobs: Sequence[Buffer]) -> List[bytes]:
        """Open every blob or none; the error names the first bad index."""
        codec = self._codec
        if codec is None or (self._revalidate_after is not None and self._clock() >= self._deadline):
            codec = self._ready()
        return codec.open_many(blobs)

    @property
    def enabled(self) -> bool:
        """False while the Logstore's encryption is switched off: encrypt refuses, decrypt
        still opens what was written before."""
        return self._enabled

    def _refuse_disabled(self) -> None:
        raise EncryptionDisabledError(
            f"encryption of Logstore {self.project}/{self.logstore} is switched off (encrypt_conf.enable is "
            "false): its batches are stored unencrypted until it is switched on again; earlier batches "
            "still decrypt"
        )

    def _set_record(self, record: KeyRecord) -> None:
        """The Logstore's record after update_logstore (same key; enable may differ)."""
        with self._lock:
            self._record = record
            self._enabled = EncryptConf.from_dict(json.loads(record.conf)).enable

    # ---- key checks ---------------------------------------------------------------------

    def _next_deadline(self, now: float) -> float:
        return math.inf if self._revalidate_after is None else now + self._revalidate_after

    def _install(self, data_key: bytes) -> None:
        assert self._record.suite is not None and self._record.key_ref is not None
        if self._key_check is None:
            self._key_check = _key_check(data_key, self._record.key_ref)
        self._codec = BatchCodec(
            self._record.suite, data_key, self._record.key_ref, self._record.project, self._record.logstore
        )

    def _in_grace(self, now: float) -> bool:
        return self._outage_grace > 0 and self._codec is not None and self._revalidate_after is not None \
            and now < self._verified_at + self._revalidate_after + self._outage_grace

    def _ready(self) -> BatchCodec:
        """The codec after the check that is due (lock held while asking the KMS).

        Within the outage grace, a caller that finds another already asking the KMS does not
        wait for it: the key was verified recently and nothing has refused it since."""
        if self._in_grace(self._clock()):
            if not self._lock.acquire(blocking=False):
                codec = self._codec
                if codec is not None and self._closed is None:
                    return codec
                self._lock.acquire()
            try:
                return self._ready_locked()
            finally:
                self._lock.release()
        with self._lock:
            return self._ready_locked()

    def _ready_locked(self) -> BatchCodec:
        if self._closed is not None:
            raise KeyInvalidError(self._closed, code="LogStoreNotExist")
        now = self._clock()
        if now < self._deadline:
            if self._codec is not None:
                return self._codec
            if self._failure is not None:  # a refusal is remembered until the deadline
                raise KeyInvalidError(str(self._failure), code=self._failure.code)
        try:
            data_key = self._source.unwrap()
        except KmsUnavailableError as exc:
            # Only a KMS that cannot be reached is graced; an answer that made no sense
            # (502, InvalidKmsResponse) fails closed as before.
            if exc.http_status != 502 and self._in_grace(now) and self._codec is not None:
                # The KMS cannot be asked: keep the verified key; probe again after a
                # short pause (one caller at a time; the others do not wait, see _ready).
                assert self._revalidate_after is not None
                grace_end = self._verified_at + self._revalidate_after + self._outage_grace
                self._deadline = min(self._clock() + _OUTAGE_PROBE_INTERVAL, grace_end)
                return self._codec
            raise
        except KeyInvalidError as exc:
            self._wipe_locked()
            self._failure = KeyInvalidError(
                f"the key of Logstore {self.project}/{self.logstore} cannot be used: {exc}", code=exc.code
            )
            self._deadline = now + (self._revalidate_after or 0.0)
            raise KeyInvalidError(str(self._failure), code=exc.code) from None
        # KmsUnavailableError propagates: nothing is sealed or opened without a
        # successful check, and the next call asks again.  So does a key that is not
        # the one this cipher first verified (a wrong KMS answer is not a check).
        assert self._record.key_ref is not None
        if self._key_check is not None and not hmac.compare_digest(
            _key_check(data_key, self._record.key_ref), self._key_check
        ):
            del data_key
            raise KmsUnavailableError(
                f"the KMS returned a data key that is not the key of Logstore {self.project}/{self.logstore}",
                code="InvalidKmsResponse",
            )
        if self._codec is None:
            self._install(data_key)
        del data_key
        self._failure = None
        self._verified_at = now
        self._deadline = self._next_deadline(now)
        assert self._codec is not None
        return self._codec

    def _wipe_locked(self) -> None:
        if self._codec is not None:
            self._codec.wipe()
            self._codec = None

    def wipe(self) -> None:
        """Drop the plaintext key now; the next call unwraps it again through the KMS."""
        with self._lock:
            self._wipe_locked()
            self._deadline = -math.inf

    def _close(self, reason: str) -> None:
        """Wipe the key and refuse every later call (the Logstore was deleted or its
        manager closed)."""
        with self._lock:
            self._wipe_locked()
            self._closed = reason
            self._deadline = -math.inf


class KeyManager:
    """Makes and keeps the key of every encrypted Logstore.  Thread-safe.

    ``kms``: a :class:`~sls_envelope.kms.KmsClient` (e.g. :class:`~sls_envelope.kms.LocalKms`)
    for every region, or one per region (:data:`KmsByRegion`: a mapping from region id or a
    callable).  A BYOK Logstore's data-key calls go to the KMS of its
    ``user_cmk_info.region_id``, as the log service calls KMS in the CMK's region;
    creation refuses a region with no KMS, or whose KMS says (``KmsClient.region_id``)
    it serves another region.  A callable is asked at each creation and each unwrap (not
    on the hot path): return the same client for a region each time.  ``region_id``:
    the region of the log service itself, whose KMS makes service keys (needed only
    when ``kms`` is per region).
    ``store``: a path (an SQLite key-record file), a ``postgresql://`` URL (a
    :class:`~sls_envelope.keystore_postgres.PostgresKeyStore` shared by many nodes, the
    ``postgres`` extra), a :class:`~sls_envelope.keystore.KeyStore`, or None (memory).  ``revalidate_after``: seconds between CMK checks of a BYOK
    Logstore (0 = every call).  ``outage_grace`` (default: ``revalidate_after``; 0 = none):
    how long past a due check a BYOK key verified earlier keeps working while the KMS
    cannot be reached (never once the KMS refused it; docs/SECURITY.md).  ``service_key_id``: the service CMK to use instead of
    one the manager creates.  ``clock``: monotonic seconds (tests move it).
    """

    def __init__(
        self,
        kms: KmsByRegion,
        store: Union[None, str, "os.PathLike[str]", KeyStore] = None,
        *,
        region_id: Optional[str] = None,
        revalidate_after: float = 60.0,
        outage_grace: Optional[float] = None,
        service_key_id: Optional[str] = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._regions = _region_resolver(kms)
        if region_id is not None and (not isinstance(region_id, str) or not region_id):
            raise ValueError("region_id must be a non-empty str")
        if isinstance(kms, KmsClient):
            if region_id is not None and kms.region_id is not None and kms.region_id != region_id:
                raise ValueError(f"region_id {region_id!r} is not the region of the KMS ({kms.region_id!r})")
            self._service_kms: Optional[KmsClient] = kms
        elif region_id is not None:
            self._service_kms = self._regions(region_id)
            if self._service_kms is None:
                raise ValueError(f"no KMS is given for the service region {region_id!r}")
        else:
            self._service_kms = None  # BYOK only, until a region is named for service keys
        if isinstance(revalidate_after, bool) or not isinstance(revalidate_after, (int, float)) \
                or not 0 <= revalidate_after < math.inf:
            raise ValueError("revalidate_after must be a finite number of seconds >= 0")
        if store is None:
            self._store: KeyStore = MemoryKeyStore()
        elif isinstance(store, KeyStore):
            self._store = store
        elif isinstance(store, str) and store.startswith(("postgresql://", "postgres://")):
            from .keystore_postgres import PostgresKeyStore

            self._store = PostgresKeyStore(store)
        elif isinstance(store, (str, os.PathLike)):
            self._store = SqliteKeyStore(store)
        else:
            raise TypeError("store must be None, a path or a KeyStore")
        self._kms_spec = kms
        self._revalidate_after = float(revalidate_after)
        grace = self._revalidate_after if outage_grace is None else outage_grace
        if isinstance(grace, bool) or not isinstance(grace, (int, float)) or not 0 <= grace < math.inf:
            raise ValueError("outage_grace must be a finite number of seconds >= 0")
        self._outage_grace = float(grace)
        self._service_key_id = service_key_id
        self._clock = clock
        self._lock = threading.RLock()
        self._ciphers: Dict[Tuple[str, str], LogstoreCipher] = {}

    def __repr__(self) -> str:
        return f"<KeyManager kms={self._kms_spec!r} store={self._store!r} revalidate_after={self._revalidate_after}>"

    @property
    def kms(self) -> KmsClient:
        """The KMS of the service keys (the one given, or that of ``region_id``)."""
        if self._service_kms is None:
            raise ConfigError(
                "this KeyManager has a KMS per region and no service region: pass KeyManager(region_id=...) "
                "to make service keys", code="ServiceKeyUnavailable",
            )
        return self._service_kms

    # ---- Logstores ------------------------------------------------------------------------

    def create_logstore(
        self, project: str, logstore: str, encrypt_conf: Union[EncryptConf, Mapping[str, Any]],
        *, caller: Optional[Caller] = None,
    ) -> Optional[LogstoreCipher]:
        """Make the Logstore's key from its encrypt_conf; None if it is unencrypted.

        The conf is kept as sent (:meth:`get_encrypt_conf` echoes it).  ``caller``: who
        asks (e.g. ``LocalKms.user(name)``); for a BYOK conf it must hold ``ram:PassRole``
        on the role ARN, as the log service requires of a RAM user, else KeyInvalidError
        code ``Unauthorized`` (403).  None: the account itself, which may pass any of its
        roles.

        ConfigError (LogStoreInfoInvalid) for a bad conf or a region without a KMS,
        (LogStoreAlreadyExist) for an existing Logstore, (ParameterInvalid) for a bad
        name; KeyInvalidError if the role cannot be assumed or the CMK cannot be used;
        KmsUnavailableError if the KMS is down.
        """
        conf = EncryptConf.from_dict(encrypt_conf)
        check_project_name(project)  # SLS's naming rules (names.py): no "/", no control character
        check_logstore_name(logstore)
        with self._lock:
            if self._store.get(project, logstore) is not None:
                raise _already_exists(logstore)
            conf_json = json.dumps(conf.to_dict(), sort_keys=True)
            if not conf.enable:
                self._add(KeyRecord(project, logstore, conf_json, created_at=time.time()))
                return None
            context = encryption_context(project, logstore)
            if conf.user_cmk_info is not None:
                _check_pass_role(caller, conf.user_cmk_info.arn)
                client = self._byok_kms(conf.user_cmk_info.region_id).assume_role(conf.user_cmk_info.arn)
                cmk_key_id = conf.user_cmk_info.cmk_key_id
            else:
                client = self.kms
                cmk_key_id = self._service_cmk()
            data_key = client.generate_data_key(cmk_key_id, context=context, number_of_bytes=_DATA_KEY_BYTES)
            plaintext = _checked_data_key(data_key.plaintext)
            blob = data_key.ciphertext_blob
            if type(blob) is not bytes or not blob:
                raise KmsUnavailableError("the KMS returned a malformed wrapped data key", code="InvalidKmsResponse")
            key_ref = secrets.token_bytes(16)
            record = KeyRecord(
                project=project, logstore=logstore, conf=conf_json, key_ref=key_ref,
                suite=conf.suite, key_type=conf.key_type, cmk_key_id=cmk_key_id,
                ciphertext_blob=blob, created_at=time.time(), key_check=_key_check(plaintext, key_ref),
            )
            source = self._source(record)
            # Before anything is stored or sealed: the wrapped key must unwrap, the way
            # every later read will, to the key the KMS gave us.  Otherwise batches would
            # be sealed under a key nobody can recover.
            if not hmac.compare_digest(source.unwrap(), plaintext):
                raise KmsUnavailableError(
                    "the KMS returned a data key that its own wrapped blob does not unwrap to",
                    code="InvalidKmsResponse",
                )
            self._add(record)
            cipher = LogstoreCipher(
                record, source, revalidate_after=self._revalidation(record), outage_grace=self._outage_grace,
                clock=self._clock, data_key=plaintext,
            )
            del data_key, plaintext
            self._ciphers[(project, logstore)] = cipher
            return cipher

    def open_logstore(self, project: str, logstore: str) -> Optional[LogstoreCipher]:
        """The Logstore's cipher (None if unencrypted); ConfigError if there is no such
        Logstore.  The key is unwrapped through the KMS at first use, not here.  A
        Logstore created encrypted whose encryption is switched off has a cipher that
        decrypts and refuses to encrypt."""
        with self._lock:
            cipher = self._ciphers.get((project, logstore))
            if cipher is not None:
                return cipher
            record = self._record(project, logstore)
            if not record.encrypted:
                return None
            cipher = LogstoreCipher(
                record, self._source(record), revalidate_after=self._revalidation(record), outage_grace=self._outage_grace,
                clock=self._clock,
            )
            self._ciphers[(project, logstore)] = cipher
            return cipher

    def update_logstore(
        self, project: str, logstore: str, encrypt_conf: Union[EncryptConf, Mapping[str, Any]]
    ) -> None:
        """Apply an UpdateLogstore encrypt_conf (or an UpdateLogStoreEncryption body).

        The rules (docs/LOGSTORE.md): encryption is configured when the Logstore is
        created and its algorithm and key never change.  The same conf (``m4`` and
        ``sm4`` are one algorithm) is a no-op; ``enable`` may be switched off and on
        again on a Logstore created encrypted (the key stays: earlier batches stay
        readable); any change of ``encrypt_type`` or ``user_cmk_info``, or enabling
        encryption on a Logstore created without it, is ConfigError
        (LogStoreInfoInvalid) citing the rule.  The conf as created is kept; only its
        ``enable`` changes.
        """
        toggle = enable_only(encrypt_conf)
        new = None if toggle is not None else EncryptConf.from_dict(encrypt_conf)
        with self._lock:
            while True:
                record = self._record(project, logstore)
                current = EncryptConf.from_dict(json.loads(record.conf))
                enable = toggle if new is None else new.enable
                if new is not None:
                    problem = _describe_change(record, current, new)
                    if problem is not None:
                        raise ConfigError.invalid_encrypt_conf(
                            f"{problem} (Logstore {logstore}): {_UPDATE_RULE}"
                        )
                elif enable and not record.encrypted:
                    raise ConfigError.invalid_encrypt_conf(
                        f"encryption cannot be enabled on a Logstore created without it (Logstore {logstore}): "
                        f"{_UPDATE_RULE}"
                    )
                assert enable is not None
                if enable == current.enable or not record.encrypted:
                    return  # nothing to change (a disabled unencrypted Logstore stays so)
                updated = json.dumps(current.with_enable(enable).to_dict(), sort_keys=True)
                if self._store.replace_conf(project, logstore, record.conf, updated):
                    break
                # Another manager sharing the store changed it meanwhile: judge again.
            cipher = self._ciphers.get((project, logstore))
            if cipher is not None:
                cipher._set_record(dataclasses.replace(record, conf=updated))

    def get_encrypt_conf(self, project: str, logstore: str) -> EncryptConf:
        """The Logstore's conf as created (spelt as sent), with its current ``enable``."""
        return EncryptConf.from_dict(json.loads(self._record(project, logstore).conf))

    def describe_logstore(self, project: str, logstore: str) -> KeyRecord:
        """The Logstore's key record (no plaintext key: the data key only as wrapped by
        the KMS); ConfigError if there is no such Logstore."""
        return self._record(project, logstore)

    def list_logstores(self, project: Optional[str] = None) -> List[KeyRecord]:
        """The key records of every Logstore (of one project, if given), sorted."""
        return self._store.records(project)

    def delete_logstore(self, project: str, logstore: str) -> None:
        """Forget the Logstore and wipe its key; its batches can no longer be read."""
        with self._lock:
            if not self._store.remove(project, logstore):
                raise _not_exist(logstore)
            cipher = self._ciphers.pop((project, logstore), None)
            if cipher is not None:
                cipher._close(f"Logstore {project}/{logstore} was deleted")

    def close(self) -> None:
        """Wipe every cached key and close the store."""
        with self._lock:
            for cipher in self._ciphers.values():
                cipher._close("the KeyManager was closed")
            self._ciphers.clear()
            self._store.close()

    # ---- internals ----------------------------------------------------------------------------

    def _record(self, project: str, logstore: str) -> KeyRecord:
        record = self._store.get(project, logstore)
        if record is None:
            raise _not_exist(logstore)
        return record

    def _add(self, record: KeyRecord) -> None:
        if not self._store.add(record):
            raise _already_exists(record.logstore)

    def _revalidation(self, record: KeyRecord) -> Optional[float]:
        return self._revalidate_after if record.key_type == "byok" else None

    def _byok_kms(self, region_id: str) -> KmsClient:
        """The (account's) KMS of a CMK's region, checked; ConfigError (LogStoreInfoInvalid)
        if there is none or it serves another region."""
        kms = self._regions(region_id)
        if kms is None:
            raise ConfigError.invalid_encrypt_conf(
                f"user_cmk_info.region_id {region_id!r} names a region with no KMS here"
            )
        if kms.region_id is not None and kms.region_id != region_id:
            raise ConfigError.invalid_encrypt_conf(
                f"user_cmk_info.region_id {region_id!r} is not the region of the KMS ({kms.region_id!r}): "
                "the CMK must be in the region named"
            )
        return kms

    def _source(self, record: KeyRecord) -> _KeySource:
        """How the record's data key is unwrapped: through the KMS of its CMK's region
        (BYOK) or the service KMS, looked up at each unwrap."""
        if record.key_type != "byok":
            return _KeySource(lambda: self._unwrap_kms(None), record)
        cmk = EncryptConf.from_dict(json.loads(record.conf)).user_cmk_info
        assert cmk is not None
        region = cmk.region_id
        return _KeySource(lambda: self._unwrap_kms(region), record)

    def _unwrap_kms(self, region_id: Optional[str]) -> KmsClient:
        """The KMS to unwrap with; KmsUnavailableError (the next call asks again) if the
        manager no longer has one for the region."""
        try:
            return self.kms if region_id is None else self._byok_kms(region_id)
        except ConfigError as exc:
            raise KmsUnavailableError(f"cannot unwrap: {exc}", code="ServiceUnavailable") from None

    def _service_cmk(self) -> str:
        """The service CMK: given, stored, or created now (once) and stored."""
        if self._service_key_id is not None:
            return self._service_key_id
        stored = self._store.get_setting(_SERVICE_CMK_SETTING)
        if stored is not None:
            return stored

        def create() -> str:
            try:
                return self.kms.create_key("sls-envelope service master key")
            except NotImplementedError:
                raise ConfigError(
                    "this KMS cannot create the service master key; pass KeyManager(service_key_id=...)",
                    code="ServiceKeyUnavailable",
                ) from None

        # One CMK even when several processes open a fresh store at once (the store runs
        # create() in one of them; the others reuse its key).
        return self._store.setting_or_create(_SERVICE_CMK_SETTING, create)


#: Cited by every refused update (SLS API reference, UpdateLogStoreEncryption, "Limits").
_UPDATE_RULE = (
    "encryption is configured when the Logstore is created; its encrypt_type and user_cmk_info cannot be "
    "changed afterwards, only enable can be switched"
)


def _region_resolver(kms: Any) -> Callable[[str], Optional[KmsClient]]:
    """KeyManager's ``kms`` argument as region id -> KMS (None: no KMS for that region)."""
    if isinstance(kms, KmsClient):
        return lambda region_id: kms
    if isinstance(kms, Mapping):
        table: Dict[str, KmsClient] = {}
        for region_id, client in kms.items():
            if not isinstance(region_id, str) or not region_id or not isinstance(client, KmsClient):
                raise TypeError("a kms mapping must map region ids (str) to sls_envelope.kms.KmsClient")
            if client.region_id is not None and client.region_id != region_id:
                raise ValueError(f"the KMS given for region {region_id!r} serves {client.region_id!r}")
            table[region_id] = client
        return table.get
    if callable(kms):
        def lookup(region_id: str) -> Optional[KmsClient]:
            client = kms(region_id)
            if client is not None and not isinstance(client, KmsClient):
                raise TypeError("the kms callable must return a sls_envelope.kms.KmsClient or None")
            return client
        return lookup
    raise TypeError("kms must be a sls_envelope.kms.KmsClient, a mapping of region id to one, or a callable")


def _already_exists(logstore: str) -> ConfigError:
    # The real service's words (the Java SDK's function test): "logstore <name> already exists".
    return ConfigError(f"logstore {logstore} already exists", code="LogStoreAlreadyExist")


def _not_exist(logstore: str) -> ConfigError:
    # SLS API reference, error codes: LogStoreNotExist, 404, "logstore <name> does not exist".
    return ConfigError(f"logstore {logstore} does not exist", code="LogStoreNotExist")


def _describe_change(record: KeyRecord, current: EncryptConf, new: EncryptConf) -> Optional[str]:
    """What in new breaks the update rules for the Logstore of record (created with the
    conf current, which may since have been switched off), or None if it may be applied.

    With ``enable`` true the conf says everything (encrypt_type required; no
    user_cmk_info means a service key) and must match what was created.  With ``enable``
    false only what it names is compared: Go's zero value ``{"enable": false,
    "encrypt_type": ""}`` just switches encryption off."""
    if not record.encrypted:
        if new.enable:
            return "encryption cannot be enabled on a Logstore created without it"
        return None
    assert record.suite is not None
    created = next(name for name, suite in SUITE_NAMES.items() if suite == record.suite)
    algorithm = new.algorithm
    if algorithm is not None and algorithm != created:
        return f"encrypt_type cannot be changed ({current.encrypt_type} -> {new.encrypt_type})"
    if new.user_cmk_info is None:
        if new.enable and record.key_type == "byok":
            return "user_cmk_info cannot be removed (the key type cannot change from BYOK to a service key)"
        return None
    if record.key_type != "byok":
        return "user_cmk_info cannot be added (the key type cannot change from a service key to BYOK)"
    assert current.user_cmk_info is not None
    fields = [name for name in ("cmk_key_id", "arn", "region_id")
              if getattr(current.user_cmk_info, name) != getattr(new.user_cmk_info, name)]
    if fields:
        return "user_cmk_info cannot be changed (" + ", ".join(fields) + ")"
    return None
