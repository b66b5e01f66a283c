"""The sls-envelope home directory: where the embedded KMS and the key records live.

Layout::

    HOME/               mode 0700 when created here
        kms/            the embedded LocalKms (localkms.json, mode 0600)
        keys.sqlite     the Logstore key records (SqliteKeyStore, mode 0600)

HOME is, in order: an explicit path, ``$SLS_ENVELOPE_HOME``, or the per-user data
directory (``$XDG_DATA_HOME/sls-envelope``, else ``~/.local/share/sls-envelope``;
``~/Library/Application Support/sls-envelope`` on macOS; ``%LOCALAPPDATA%\\sls-envelope``
on Windows).  Nothing here holds a plaintext key: the KMS file holds the CMK material
(as a real KMS would, hence 0600), the store only wrapped data keys.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Optional, Union

from .keys import KeyManager
from .keystore import KeyStore
from .kms.base import KmsClient
from .kms.local import LocalKms

__all__ = ["ENV_VAR", "Home", "default_home"]

ENV_VAR = "SLS_ENVELOPE_HOME"
_APP = "sls-envelope"

PathLike = Union[str, "os.PathLike[str]"]


def default_home() -> str:
    """``$SLS_ENVELOPE_HOME`` if set, else the per-user data directory."""
    explicit = os.environ.get(ENV_VAR)
    if explicit:
        return os.path.abspath(os.path.expanduser(explicit))
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or os.path.expanduser(r"~\AppData\Local")
    elif sys.platform == "darwin":
        base = os.path.expanduser("~/Library/Application Support")
    else:
        base = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return os.path.join(base, _APP)


class Home:
    """One home directory.  Nothing is created until :meth:`ensure` (or an open_* call)."""

    def __init__(self, path: Optional[PathLike] = None) -> None:
        if path is not None and not os.fspath(path):
            # abspath('') is the current directory: never a home by accident.
            raise ValueError("the home directory path is empty")
        self.path = os.path.abspath(os.path.expanduser(os.fspath(path))) if path is not None else default_home()

    def __repr__(self) -> str:
        return f"<Home {self.path!r}>"

    @property
    def kms_dir(self) -> str:
        return os.path.join(self.path, "kms")

    @property
    def store_path(self) -> str:
        return os.path.join(self.path, "keys.sqlite")

    def ensure(self) -> str:
        """Create the directory (0700) if it does not exist; returns its path.

        An existing directory keeps its mode (it may be one the user shares on purpose);
        what goes inside is created owner-only all the same."""
        if not os.path.isdir(self.path):
            os.makedirs(self.path, mode=0o700, exist_ok=True)
            os.chmod(self.path, 0o700)  # makedirs' mode is filtered by the umask
        return self.path

    def open_kms(self, **kwargs: Any) -> LocalKms:
        """The embedded KMS of this home (created on first use)."""
        self.ensure()
        return LocalKms(self.kms_dir, **kwargs)

    def open_manager(self, kms: Optional[KmsClient] = None, store: Optional[KeyStore] = None,
                     **kwargs: Any) -> KeyManager:
        """A KeyManager over this home's KMS (or ``kms``) and its key-record store (or
        ``store``, e.g. a PostgresKeyStore shared by a fleet)."""
        self.ensure()
        return KeyManager(kms if kms is not None else self.open_kms(),
                          store if store is not None else self.store_path, **kwargs)
