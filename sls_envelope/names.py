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

One deliberate difference: the minimum length enforced is 1, not 3, so that key records
and the short names in the test-suite (``p/l``) stay valid; a refused name's message
quotes it with ``repr`` so that a control character is never printed raw.
"""

from __future__ import annotations

import re
from typing import Any

from .exceptions import ConfigError

__all__ = ["MAX_NAME", "check_logstore_name", "check_project_name"]

#: Longest project or Logstore name SLS accepts (characters; every allowed one is ASCII).
MAX_NAME = 63

_PROJECT = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")
_LOGSTORE = re.compile(r"[a-z0-9](?:[a-z0-9_-]*[a-z0-9])?")

_PROJECT_RULE = ("lowercase letters, digits and hyphens, starting and ending with a letter or digit, "
                 f"at most {MAX_NAME} characters")
_LOGSTORE_RULE = ("lowercase letters, digits, hyphens and underscores, starting and ending with a letter "
                  f"or digit, at most {MAX_NAME} characters")


def _check(what: str, name: Any, pattern: "re.Pattern[str]", rule: str) -> str:
    if not isinstance(name, str) or len(name) > MAX_NAME or pattern.fullmatch(name) is None:
        shown = repr(name) if isinstance(name, str) else type(name).__name__
        raise ConfigError(f"{what} name {shown[:80]} is invalid: {rule}", code="ParameterInvalid")
    return name


def check_project_name(name: Any) -> str:
    """``name`` if SLS allows it as a project name, else ConfigError (ParameterInvalid)."""
    return _check("project", name, _PROJECT, _PROJECT_RULE)


def check_logstore_name(name: Any) -> str:
    """``name`` if SLS allows it as a Logstore name, else ConfigError (ParameterInvalid)."""
    return _check("logstore", name, _LOGSTORE, _LOGSTORE_RULE)
