"""Project and Logstore names as Simple Log Service allows them.

SLS's naming rules (SLS developer reference, "Project" and "Logstore" resources:
https://www.alibabacloud.com/help/en/sls/developer-reference/logstores):

* a project name: lowercase letters, digits and hyphens (-); starts and ends with a
  lowercase letter or a digit; 3 to 63 characters;
* a Logstore name: lowercase letters, digits, hyphens (-) and underscores (_); starts and
  ends with a lowercase letter or a digit; 3 to 63 characters.

What SLS refuses is refused here with its code for an invalid parameter,
``ParameterInvalid`` (400).  Consequences: no name holds ``/`` (so ``project/logstore``
names one Logstore only: ``a`` + ``b/c`` and ``a/b`` + ``c`` cannot both exist), and no
name holds a control character (a name is printed as it is, never an escape sequence).

The minimum length: what users name goes through SLS's 3 (``SLS_MIN_NAME``: the command
line and ``sls-envelope serve`` pass ``min_length=SLS_MIN_NAME``); the library's own
``KeyManager`` accepts 1, so that key records made before the rules and embedders' short
names (``p/l`` in the test suite) stay valid.  A refused name's message quotes it with
``repr`` so that a control character is never printed raw.
"""

from __future__ import annotations

import re
from typing import Any

from .exceptions import ConfigError

__all__ = ["MAX_NAME", "SLS_MIN_NAME", "check_logstore_name", "check_project_name", "is_logstore_name",
           "is_project_name"]

#: Longest project or Logstore name SLS accepts (characters; every allowed one is ASCII).
MAX_NAME = 63
#: Shortest project or Logstore name SLS accepts.
SLS_MIN_NAME = 3

_PROJECT = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")
_LOGSTORE = re.compile(r"[a-z0-9](?:[a-z0-9_-]*[a-z0-9])?")

_PROJECT_RULE = ("lowercase letters, digits and hyphens, starting and ending with a letter or digit, "
                 "{min} to {max} characters")
_LOGSTORE_RULE = ("lowercase letters, digits, hyphens and underscores, starting and ending with a letter "
                  "or digit, {min} to {max} characters")


def _valid(name: Any, pattern: "re.Pattern[str]", min_length: int) -> bool:
    return isinstance(name, str) and min_length <= len(name) <= MAX_NAME and pattern.fullmatch(name) is not None


def is_project_name(name: Any, min_length: int = 1) -> bool:
    """True if SLS allows ``name`` as a project name (``min_length``: see the module's docstring)."""
    return _valid(name, _PROJECT, min_length)


def is_logstore_name(name: Any, min_length: int = 1) -> bool:
    """True if SLS allows ``name`` as a Logstore name (``min_length``: see the module's docstring)."""
    return _valid(name, _LOGSTORE, min_length)


def _check(what: str, name: Any, pattern: "re.Pattern[str]", rule: str, min_length: int) -> str:
    if not _valid(name, pattern, min_length):
        shown = repr(name) if isinstance(name, str) else type(name).__name__
        raise ConfigError(f"{what} name {shown[:80]} is invalid: {rule.format(min=min_length, max=MAX_NAME)}",
                          code="ParameterInvalid")
    return str(name)


def check_project_name(name: Any, min_length: int = 1) -> str:
    """``name`` if SLS allows it as a project name, else ConfigError (ParameterInvalid)."""
    return _check("project", name, _PROJECT, _PROJECT_RULE, min_length)


def check_logstore_name(name: Any, min_length: int = 1) -> str:
    """``name`` if SLS allows it as a Logstore name, else ConfigError (ParameterInvalid)."""
    return _check("logstore", name, _LOGSTORE, _LOGSTORE_RULE, min_length)
