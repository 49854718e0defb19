"""``${var}`` substitution in application paths and rendered YAML text.

Rendering is split so that the expensive part (kustomize, reading files) is
shared by every cluster at one revision, and only this cheap, pure step differs
per cluster. The grammar is deliberately small:

* ``${name}``            the cluster variable ``name``; undefined is an error
* ``${name:=default}``   ``default`` when ``name`` is undefined (default may be empty)
* ``$${...}``            an escape: produces the literal text ``${...}``

Names are ``[A-Za-z_][A-Za-z0-9_]*``. Anything else that starts with ``${``
(``${1}``, ``${a-b}``, shell's ``${HOME:-x}``) is left untouched, so scripts
embedded in ConfigMaps survive; write ``$${HOME}`` to protect a valid name.
"""

from __future__ import annotations

import re
from typing import Mapping

from shared.errors import RenderError

NAME = r"[A-Za-z_][A-Za-z0-9_]*"

# One left-to-right scan: an escape is consumed before it can look like a reference.
_TOKEN = re.compile(r"\$\$\{|\$\{(" + NAME + r")(?::=([^}\n]*))?\}")


def line_of(text: str, offset: int) -> int:
    """The 1-based line number of ``offset`` in ``text``."""
    return text.count("\n", 0, offset) + 1


def _undefined(name: str, text: str, offset: int, where: str) -> RenderError:
    place = f"{where}:{line_of(text, offset)}" if where else f"line {line_of(text, offset)}"
    return RenderError(f"{place}: undefined variable ${{{name}}} "
                       f"(define it in the cluster's vars or write ${{{name}:=default}})")


def substitute(text: str, variables: Mapping[str, str], *, where: str = "") -> str:
    """Replace every ``${name}`` / ``${name:=default}`` in ``text``; undo ``$${`` escapes.

    ``where`` names the text in errors (a file relative to the checkout).
    Raises ``RenderError`` naming the variable, ``where`` and the line.
    """
    if "${" not in text:  # the common case: nothing to do, no scan
        return text

    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name is None:
            return "${"
        if name in variables:
            return str(variables[name])
        if default is not None:
            return default
        raise _undefined(name, text, match.start(), where)

    return _TOKEN.sub(replace, text)


def referenced(text: str) -> set[str]:
    """Names of the variables that ``text`` refers to (escapes excluded).

    The render cache keys the final objects on the values of exactly these, so
    clusters that differ only in unreferenced variables share one entry.
    """
    if "${" not in text:
        return set()
    return {m.group(1) for m in _TOKEN.finditer(text) if m.group(1) is not None}
