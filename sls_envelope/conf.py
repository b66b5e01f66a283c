"""``encrypt_conf``: the encryption settings a Logstore is created with.

The dict that CreateLogstore / UpdateLogstore take (SLS API reference, "EncryptConf")::

    {"enable": True,
     "encrypt_type": "default" | "sm4" | "m4",   # default = AES-256-GCM; sm4 and m4 = SM4-GCM
     "user_cmk_info": {"cmk_key_id": "...", "arn": "acs:ram::<account>:role/<name>",
                       "region_id": "cn-hangzhou"}}       # optional: BYOK

and the body of UpdateLogStoreEncryption (API version 2020-12-30), the same settings
under other names::

    {"enable": True, "encryptType": "default",
     "userCmkInfo": {"keyId": "...", "roleArn": "...", "regionId": "cn-hangzhou"}}

:meth:`EncryptConf.from_dict` takes either and validates it strictly;
:meth:`EncryptConf.to_dict` gives back the first shape with ``encrypt_type`` spelt as it
was sent (GetLogstore on the real service echoes it: the Go SDK's end-to-end test
creates with ``"m4"`` and expects ``"m4"`` back), and :meth:`EncryptConf.to_encryption_body`
the second.  The algorithm itself is :attr:`EncryptConf.algorithm` (``"default"`` or
``"sm4"``) and :attr:`EncryptConf.suite`.

``encrypt_type`` is required only when ``enable`` is true: the Go SDK's zero value
``{"enable": false, "encrypt_type": ""}`` is an unencrypted Logstore.

Every problem is a :class:`~sls_envelope.exceptions.ConfigError` with the service's code
``LogStoreInfoInvalid`` (HTTP 400) and a message that begins "The encrypt_conf is
invalid" and names the field.  Only authenticated modes are accepted: the
unauthenticated ones that some documents list (CBC, ECB, CFB, OFB) are refused, because
a log batch encrypted without authentication can be altered undetected and, for ECB,
leaks equal blocks.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Mapping, Optional, Tuple

from .exceptions import ConfigError

__all__ = ["EncryptConf", "UserCmkInfo", "SUITE_NAMES", "ENCRYPT_TYPES"]

#: Algorithm (canonical encrypt_type) -> the AEAD suite name used by the batch format.
SUITE_NAMES = {"default": "aes-256-gcm", "sm4": "sm4-gcm"}

#: Accepted encrypt_type spellings (compared case-insensitively) -> algorithm.  "default"
#: and "sm4" are the EncryptConf page's names; "m4" is the data-encryption guide's and the
#: Go SDK's name of SM4; "aes_gcm" and "sm4_gcm" are UpdateLogStoreEncryption's.
ENCRYPT_TYPES = {
    "default": "default",
    "aes_gcm": "default",
    "sm4": "sm4",
    "m4": "sm4",
    "sm4_gcm": "sm4",
}

_UNAUTHENTICATED = frozenset({"aes_cbc", "aes_ecb", "aes_cfb", "aes_ofb", "sm4_ecb", "sm4_cbc"})

# (enable, encrypt_type, user_cmk_info) and (cmk_key_id, arn, region_id) in each shape.
_CONF_FIELDS = ("enable", "encrypt_type", "user_cmk_info")
_CMK_FIELDS = ("cmk_key_id", "arn", "region_id")
_BODY_FIELDS = ("enable", "encryptType", "userCmkInfo")
_BODY_CMK_FIELDS = ("keyId", "roleArn", "regionId")

_TYPE_MISSING = "[encrypt_type] key is missing or not supported"  # the real service's words


def _invalid(detail: str) -> ConfigError:
    return ConfigError.invalid_encrypt_conf(detail)


@dataclasses.dataclass(frozen=True)
class UserCmkInfo:
    """The customer's CMK for BYOK, the RAM role the log service assumes to use it, and
    the region of the CMK (where the service calls KMS)."""

    cmk_key_id: str
    arn: str
    region_id: str

    @classmethod
    def from_dict(cls, value: Any) -> "UserCmkInfo":
        """From ``{"cmk_key_id", "arn", "region_id"}`` or UpdateLogStoreEncryption's
        ``{"keyId", "roleArn", "regionId"}``."""
        if not isinstance(value, Mapping):
            raise _invalid("user_cmk_info must be an object with cmk_key_id, arn and region_id")
        names = _BODY_CMK_FIELDS if any(k in value for k in _BODY_CMK_FIELDS) else _CMK_FIELDS
        where = "userCmkInfo" if names is _BODY_CMK_FIELDS else "user_cmk_info"
        unknown = sorted(str(k) for k in value if k not in names)
        if unknown:
            raise _invalid(f"{where} has unknown field(s): {', '.join(unknown)}")
        fields = []
        for name in names:
            item = value.get(name)
            if not isinstance(item, str) or not item.strip():
                raise _invalid(f"{where}.{name} is required and must be a non-empty string")
            fields.append(item)
        return cls(*fields)

    def to_dict(self) -> Dict[str, str]:
        return {"cmk_key_id": self.cmk_key_id, "arn": self.arn, "region_id": self.region_id}

    def to_encryption_body(self) -> Dict[str, str]:
        """UpdateLogStoreEncryption's names."""
        return {"keyId": self.cmk_key_id, "roleArn": self.arn, "regionId": self.region_id}


def algorithm_of(encrypt_type: Any, *, required: bool) -> Optional[str]:
    """The algorithm (``"default"``/``"sm4"``) an encrypt_type names; None when it is
    absent or empty and not required.  ConfigError (LogStoreInfoInvalid) otherwise."""
    if encrypt_type is None or encrypt_type == "":
        if required:
            raise _invalid(_TYPE_MISSING)  # exactly the real service's message
        return None
    if not isinstance(encrypt_type, str):
        raise _invalid(f"{_TYPE_MISSING}: encrypt_type must be a string, \"default\" (AES-256-GCM) or \"sm4\"")
    name = encrypt_type.strip().lower()
    if name in _UNAUTHENTICATED:
        raise _invalid(
            f"{_TYPE_MISSING}: encrypt_type {encrypt_type!r} is an unauthenticated mode and is refused: "
            "without authentication a stored batch can be altered undetected (and ECB also leaks "
            "repeated blocks); use \"default\" (AES-256-GCM) or \"sm4\" (SM4-GCM)"
        )
    algorithm = ENCRYPT_TYPES.get(name)
    if algorithm is None:
        raise _invalid(_TYPE_MISSING)  # exactly the real service's message
    return algorithm


@dataclasses.dataclass(frozen=True)
class EncryptConf:
    """A validated ``encrypt_conf``.

    ``encrypt_type`` is kept as it was sent (``"m4"``, ``"default"``, ``""``...) or None
    when absent; it may be absent or empty only with ``enable`` false.
    ``user_cmk_info`` None means a service key.  Two confs that encrypt alike but are
    spelt differently are unequal as objects (they echo differently) and have equal
    :meth:`effective`.
    """

    enable: bool
    encrypt_type: Optional[str] = None
    user_cmk_info: Optional[UserCmkInfo] = None

    def __post_init__(self) -> None:
        # Direct construction gets the same checks as from_dict.
        if type(self.enable) is not bool:
            raise _invalid("enable is required and must be a boolean")
        algorithm_of(self.encrypt_type, required=self.enable)
        if self.user_cmk_info is not None and not isinstance(self.user_cmk_info, UserCmkInfo):
            raise _invalid("user_cmk_info must be a UserCmkInfo")

    @classmethod
    def from_dict(cls, d: Any) -> "EncryptConf":
        """Validate an encrypt_conf (or an UpdateLogStoreEncryption body); raises
        ConfigError (LogStoreInfoInvalid) naming the field."""
        if isinstance(d, EncryptConf):
            return d
        if not isinstance(d, Mapping):
            raise _invalid("encrypt_conf must be an object (dict)")
        names, where = _shape_of(d)
        unknown = sorted(str(k) for k in d if k not in names)
        if unknown:
            raise _invalid(f"{where} has unknown field(s): {', '.join(unknown)}")
        enable_name, type_name, cmk_name = names
        if enable_name not in d:
            raise _invalid("enable is required")
        enable = d[enable_name]
        if type(enable) is not bool:
            raise _invalid("enable must be a boolean (true or false)")
        encrypt_type = d.get(type_name)
        if encrypt_type is not None and not isinstance(encrypt_type, str):
            raise _invalid(f"{_TYPE_MISSING}: {type_name} must be a string, \"default\" (AES-256-GCM) or \"sm4\"")
        raw_cmk = d.get(cmk_name)
        cmk = None if raw_cmk is None else UserCmkInfo.from_dict(raw_cmk)
        return cls(enable=enable, encrypt_type=encrypt_type, user_cmk_info=cmk)

    def to_dict(self) -> Dict[str, Any]:
        """The conf as GetLogstore shows it: the encrypt_conf shape, with the values sent
        (``encrypt_type`` spelt as given, ``""`` kept)."""
        out: Dict[str, Any] = {"enable": self.enable}
        if self.encrypt_type is not None:
            out["encrypt_type"] = self.encrypt_type
        if self.user_cmk_info is not None:
            out["user_cmk_info"] = self.user_cmk_info.to_dict()
        return out

    def to_encryption_body(self) -> Dict[str, Any]:
        """The conf in UpdateLogStoreEncryption's shape (``enable``, ``encryptType``,
        ``userCmkInfo`` with ``keyId``, ``roleArn``, ``regionId``)."""
        out: Dict[str, Any] = {"enable": self.enable}
        if self.encrypt_type is not None:
            out["encryptType"] = self.encrypt_type
        if self.user_cmk_info is not None:
            out["userCmkInfo"] = self.user_cmk_info.to_encryption_body()
        return out

    def with_enable(self, enable: bool) -> "EncryptConf":
        """The same conf switched on or off (what UpdateLogStoreEncryption's ``enable``
        alone changes)."""
        return dataclasses.replace(self, enable=enable)

    @property
    def algorithm(self) -> Optional[str]:
        """The algorithm the encrypt_type names, canonical: ``"default"`` (AES-256-GCM)
        or ``"sm4"`` (for ``"sm4"``, ``"m4"``, ``"sm4_gcm"``); None if none is named.
        Given whether or not ``enable`` is true."""
        return algorithm_of(self.encrypt_type, required=False)

    @property
    def suite(self) -> Optional[str]:
        """``"aes-256-gcm"`` or ``"sm4-gcm"`` when encryption is enabled, else None."""
        algorithm = self.algorithm
        return SUITE_NAMES[algorithm] if self.enable and algorithm else None

    @property
    def key_type(self) -> Optional[str]:
        """``"service"`` or ``"byok"`` when encryption is enabled, else None."""
        if not self.enable:
            return None
        return "byok" if self.user_cmk_info is not None else "service"

    def effective(self) -> Tuple[Any, ...]:
        """What is fixed at creation: equal for confs that encrypt the same way
        (``"m4"`` and ``"sm4"`` alike)."""
        if not self.enable:
            return (False,)
        return (True, self.algorithm, self.user_cmk_info)


def enable_only(d: Any) -> Optional[bool]:
    """The ``enable`` of an UpdateLogStoreEncryption body that sets nothing else
    (``{"enable": false}``: switch encryption off, keeping type and key), else None."""
    if isinstance(d, Mapping) and set(d) == {"enable"} and type(d["enable"]) is bool:
        return bool(d["enable"])
    return None


def _shape_of(d: Mapping[Any, Any]) -> Tuple[Tuple[str, str, str], str]:
    """Which shape d is in: the encrypt_conf names or UpdateLogStoreEncryption's."""
    if any(k in d for k in _BODY_FIELDS[1:]) and not any(k in d for k in _CONF_FIELDS[1:]):
        return _BODY_FIELDS, "the UpdateLogStoreEncryption body"
    return _CONF_FIELDS, "encrypt_conf"
