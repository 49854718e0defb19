"""Is this a branch or tag name that a fetch can follow? ``git check-ref-format``, as a pure function.

A source names a branch or a tag; the fetcher asks the remote for
``refs/heads/<branch>`` or ``refs/tags/<tag>``. A name that git would refuse, a
symbolic ref such as ``HEAD`` (there is no ``refs/heads/HEAD``), or a full ref
name such as ``refs/heads/main`` (which becomes ``refs/heads/refs/heads/main``)
passes YAML and fails on every fetch. The spec loader calls ``ref_name_problem``
so that ``fleetsync validate`` names the field instead, and the fetcher calls it
again for sources built by other means. ``branch: HEAD`` is told about
``defaultBranch: true``, which follows the remote's HEAD branch.

The rules are those of ``git check-ref-format --branch`` (see its manual): no
component starts with ``.`` or ends with ``.lock``; no ``..``, ``@{``, control
characters, space, ``~ ^ : ? * [ \\``; no leading, trailing or doubled ``/``;
no trailing ``.``; not ``@``; not starting with ``-``.
"""

from __future__ import annotations

import re

# Pseudo-refs that git resolves in the repository itself: HEAD, FETCH_HEAD, ORIG_HEAD, ...
_SYMBOLIC = re.compile(r"@|[A-Z_]*HEAD")
_FULL_PREFIX = {"branch": "refs/heads/", "tag": "refs/tags/"}
_EXAMPLE = {"branch": "main", "tag": "v1.2.0"}
_FORBIDDEN_CHARS = {" ": "a space", "~": "'~'", "^": "'^'", ":": "':'", "?": "'?'",
                    "*": "'*'", "[": "'['", "\\": "'\\'"}


def ref_name_problem(kind: str, name: str) -> str | None:
    """Why ``name`` cannot be followed as a ``kind`` ("branch" or "tag"), or None if it can."""
    if name == "HEAD" and kind == "branch":
        return ("'HEAD' is a symbolic ref, not a branch; to follow the remote's default "
                "branch, give defaultBranch: true instead of branch (or name the branch, "
                "for example main)")
    if _SYMBOLIC.fullmatch(name):
        return (f"{name!r} is a symbolic ref, not a {kind}; "
                f"name the {kind} (for example {_EXAMPLE[kind]})")
    if name.startswith("refs/"):
        short = name.removeprefix(_FULL_PREFIX[kind])
        hint = f" ({short!r})" if short != name and short else ""
        return f"{name!r} is a full ref name; give the {kind} name alone{hint}"
    reason = _format_problem(name)
    return f"{name!r} is not a valid Git {kind} name: {reason}" if reason else None


def _format_problem(name: str) -> str | None:
    """The first ``git check-ref-format`` rule that ``name`` breaks, in words."""
    if not name:
        return "it is empty"
    for char in name:
        if ord(char) < 0x20 or ord(char) == 0x7F:
            return "it contains a control character"
        if char in _FORBIDDEN_CHARS:
            return f"it contains {_FORBIDDEN_CHARS[char]}"
    for bad in ("..", "@{", "//"):
        if bad in name:
            return f"it contains {bad!r}"
    if name.startswith("-"):
        return "it starts with '-'"
    if name.startswith("/") or name.endswith("/"):
        return "it starts or ends with '/'"
    if name.endswith("."):
        return "it ends with '.'"
    for component in name.split("/"):
        if component.startswith("."):
            return f"the part {component!r} starts with '.'"
        if component.endswith(".lock"):
            return f"the part {component!r} ends with '.lock'"
    return None
