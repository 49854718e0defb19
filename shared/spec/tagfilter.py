"""The ``extract`` template of an image policy's ``filterTags``: Flux's form, one grammar.

``pattern`` is a regular expression searched in each tag; ``extract`` says what of a
matching tag the policy orders, with references to the pattern's groups as Go's
``Regexp.Expand`` reads them (Flux's controller calls it): ``$name`` (the longest run of
letters, digits and ``_``, so ``$1x`` is the group ``1x``), ``${name}``, ``$1``; ``$$`` is a
``$``; a ``$`` that starts no reference is kept as it is. The spec loader checks with
``references`` that every group named exists (where Go would quietly expand an unknown
one to nothing), and the policy expands a match with ``expand``; both read the template
the same way because both call ``_parts``.
"""

from __future__ import annotations

import re
from typing import Iterator

_REFERENCE = re.compile(r"\$(?:\{(\w+)\}|(\w+)|(\$))", re.ASCII)


def _parts(template: str) -> Iterator[tuple[str, str | None]]:
    """(literal text, group reference or None) pairs, in order."""
    at = 0
    for found in _REFERENCE.finditer(template):
        literal = template[at:found.start()]
        if found.group(3):
            yield literal + "$", None
        else:
            yield literal, found.group(1) or found.group(2)
        at = found.end()
    yield template[at:], None


def references(template: str) -> list[str]:
    """The group names and numbers ``template`` refers to, in order."""
    return [ref for _, ref in _parts(template) if ref is not None]


def missing(template: str, pattern: re.Pattern[str]) -> list[str]:
    """The references of ``template`` that ``pattern`` has no group for."""
    return [ref for ref in references(template)
            if not (ref.isdigit() and int(ref) <= pattern.groups) and ref not in pattern.groupindex]


def expand(template: str, match: re.Match[str]) -> str:
    """``template`` with each reference replaced by what its group matched ("" if none)."""
    out = []
    for literal, ref in _parts(template):
        out.append(literal)
        if ref is not None:
            out.append(_group(match, ref))
    return "".join(out)


def _group(match: re.Match[str], ref: str) -> str:
    try:                        # a group the pattern lacks raises IndexError: Go gives ""
        value = match.group(int(ref) if ref.isdigit() else ref)
    except IndexError:
        return ""
    return value or ""
