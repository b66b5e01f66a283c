"""``encrypt_conf``: the encryption settings a Logstore is created with.

The dict that CreateLogstore takes::

    {"enable": True,
     "encrypt_type": "default" | "sm4",     # default = AES-256-GCM; "m4" = legacy alias of sm4
     "user_cmk_info": {"cmk_key_id": "...", "arn": "acs:ram::<account>:role/<name>",
                       "region_id": "cn-hangzhou"}}       # optional: BYOK

:meth:`EncryptConf.from_dict` validates it strictly and :meth:`EncryptConf.to_dict`
gives it back with canonical names.  Every problem is a
:class:`~sls_envelope.exceptions.ConfigError` whose message names the field.  Only
authenticated modes are accepted: the unauthenticated ones that some documents list
(CBC, ECB, CFB, OFB) are refused, because a log batch encrypted without authentication
can be altered undetected and, for ECB, leaks equal blocks.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Mapping, Optional

from .exceptions import ConfigError

__all__ = ["EncryptConf", "UserCmkInfo", "SUITE_NAMES"]

#: Canonical encrypt_type -> the AEAD suite name used by the batch format.
SUITE_NAMES = {"default": "aes-256-gcm", "sm4": "sm4-gcm"}

# Accepted spellings -> canonical encrypt_type.
_ALIASES = {
    "default": "default",
    "aes_gcm": "default",
    "sm4": "sm4",
    "m4": "sm4",  # legacy spelling in older log-service documents
    "sm4_gcm": "sm4",
}

_UNAUTHENTICATED = frozenset({"aes_cbc", "aes_ecb", "aes_cfb", "aes_ofb", "sm4_ecb", "sm4_cbc"})

_CONF_FIELDS = ("enable", "encrypt_type", "user_cmk_info")
_CMK_FIELDS = ("cmk_key_id", "arn", "region_id")


@dataclasses.dataclass(frozen=True)
class UserCmkInfo:
    """The customer's CMK for BYOK and the RAM role the log service assumes to use it."""

    cmk_key_id: str
    arn: str
    region_id: str

    @classmethod
    def from_dict(cls, value: Any) -> "UserCmkInfo":
        if not isinstance(value, Mapping):
            raise ConfigError("encrypt_conf.user_cmk_info must be an object with cmk_key_id, arn and region_id")
        unknown = sorted(str(k) for k in value if k not in _CMK_FIELDS)
        if unknown:
            raise ConfigError(f"encrypt_conf.user_cmk_info has unknown field(s): {', '.join(unknown)}")
        fields: Dict[str, str] = {}
        for name in _CMK_FIELDS:
            item = value.get(name)
            if not isinstance(item, str) or not item.strip():
                raise ConfigError(f"encrypt_conf.user_cmk_info.{name} is required and must be a non-empty string")
            fields[name] = item
        return cls(**fields)

    def to_dict(self) -> Dict[str, str]:
        return {"cmk_key_id": self.cmk_key_id, "arn": self.arn, "region_id": self.region_id}


@dataclasses.dataclass(frozen=True)
class EncryptConf:
    """A validated ``encrypt_conf``.

    ``encrypt_type`` is canonical (``"default"`` or ``"sm4"``) or None when not given
    (allowed only with ``enable`` false).  ``user_cmk_info`` None means a service key.
    """

    enable: bool
    encrypt_type: Optional[str] = None
    user_cmk_info: Optional[UserCmkInfo] = None

    def __post_init__(self) -> None:
        # Direct construction gets the same checks as from_dict.
        if type(self.enable) is not bool:
            raise ConfigError("encrypt_conf.enable is required and must be a boolean")
        if self.encrypt_type is not None and self.encrypt_type not in SUITE_NAMES:
            raise ConfigError(f"encrypt_conf.encrypt_type must be one of {sorted(SUITE_NAMES)} here")
        if self.enable and self.encrypt_type is None:
            raise ConfigError("encrypt_conf.encrypt_type is required when enable is true")
        if self.user_cmk_info is not None and not isinstance(self.user_cmk_info, UserCmkInfo):
            raise ConfigError("encrypt_conf.user_cmk_info must be a UserCmkInfo")

    @classmethod
    def from_dict(cls, d: Any) -> "EncryptConf":
        """Validate the dict CreateLogstore takes; raises ConfigError naming the field."""
        if isinstance(d, EncryptConf):
            return d
        if not isinstance(d, Mapping):
            raise ConfigError("encrypt_conf must be an object (dict)")
        unknown = sorted(str(k) for k in d if k not in _CONF_FIELDS)
        if unknown:
            raise ConfigError(f"encrypt_conf has unknown field(s): {', '.join(unknown)}")
        if "enable" not in d:
            raise ConfigError("encrypt_conf.enable is required")
        enable = d["enable"]
        if type(enable) is not bool:
            raise ConfigError("encrypt_conf.enable must be a boolean (true or false)")
        encrypt_type = _canonical_type(d.get("encrypt_type"), required=enable)
        raw_cmk = d.get("user_cmk_info")
        cmk = None if raw_cmk is None else UserCmkInfo.from_dict(raw_cmk)
        return cls(enable=enable, encrypt_type=encrypt_type, user_cmk_info=cmk)

    def to_dict(self) -> Dict[str, Any]:
        """The conf with canonical names (``default``/``sm4``), as GetLogstore shows it."""
        out: Dict[str, Any] = {"enable": self.enable}
        if self.encrypt_type is not None:
            out["encrypt_type"] = self.encrypt_type
        if self.user_cmk_info is not None:
            out["user_cmk_info"] = self.user_cmk_info.to_dict()
        return out

    @property
    def suite(self) -> Optional[str]:
        """``"aes-256-gcm"`` or ``"sm4-gcm"`` when encryption is enabled, else None."""
        return SUITE_NAMES[self.encrypt_type] if self.enable and self.encrypt_type else None

    @property
    def key_type(self) -> Optional[str]:
        """``"service"`` or ``"byok"`` when encryption is enabled, else None."""
        if not self.enable:
            return None
        return "byok" if self.user_cmk_info is not None else "service"

    def effective(self) -> Any:
        """What is fixed at creation: equal for confs that encrypt the same way."""
        if not self.enable:
            return (False,)
        return (True, self.encrypt_type, self.user_cmk_info)


def _canonical_type(value: Any, *, required: bool) -> Optional[str]:
    if value is None:
        if required:
            raise ConfigError("encrypt_conf.encrypt_type is required when enable is true")
        return None
    if not isinstance(value, str):
        raise ConfigError("encrypt_conf.encrypt_type must be a string: \"default\" (AES-256-GCM) or \"sm4\"")
    name = value.strip().lower()
    if name in _UNAUTHENTICATED:
        raise ConfigError(
            f"encrypt_conf.encrypt_type {value!r} is an unauthenticated mode and is refused: "
            "without authentication a stored batch can be altered undetected (and ECB also leaks "
            "repeated blocks); use \"default\" (AES-256-GCM) or \"sm4\" (SM4-GCM)"
        )
    canonical = _ALIASES.get(name)
    if canonical is None:
        raise ConfigError(
            f"encrypt_conf.encrypt_type {value!r} is not supported; use \"default\" (AES-256-GCM) or \"sm4\" (SM4-GCM)"
        )
    return canonical
