"""Drift: which fields that Git sets differ in the live object. Pure.

Server-side apply only changes the fields in the applied configuration, so an
object has drifted exactly when some field of the desired object has another
value live: a recursive "desired is a subset of live" comparison. Live fields
that Git does not set (defaults, status, other managers' fields) are not drift.

Lists of maps are matched by their ``name`` key when every item has one
(containers, env, volumes), else by index. Quantities under resource maps
compare by value (``cpu: 0.5`` is live ``500m``), and a Secret's ``stringData``
is compared as the base64 ``data`` the server stores. Each difference is one
line, ``spec.replicas: 5 -> 3`` (live -> desired), and who changed it when the
live object says (``(by kubectl-scale at 10:42:07)``: ``workers.apply.attribution``).

Values stay in the cluster: lines go to results, history and logs, so by
default a value is shown only when it cannot carry a secret: numbers, booleans,
absent, and container images; any other string is ``path: changed``. With
``values=True`` (``fleetsync diff``, run by someone who can read the cluster)
every value is shown except a Secret's, which never is.
"""

from __future__ import annotations

import base64
import json
import re
from decimal import Decimal, InvalidOperation
from typing import Any

from workers.apply.attribution import changed_by

# Written by the API server, never by Git: a render that carries them (e.g.
# ``creationTimestamp: null`` from some generators) is not asking to change them.
SERVER_METADATA = frozenset({
    "uid", "resourceVersion", "generation", "creationTimestamp", "deletionTimestamp",
    "deletionGracePeriodSeconds", "managedFields", "selfLink", "ownerReferences", "finalizers",
})
QUANTITY_PARENTS = frozenset({"limits", "requests", "capacity", "hard", "allocatable"})
ABSENT = "<absent>"
_SUFFIX: dict[str, Decimal | int] = {"": 1, "m": Decimal("0.001"), "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
           "P": 10**15, "E": 10**18, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40,
           "Pi": 2**50, "Ei": 2**60}
_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")


def parse_quantity(value: Any) -> Decimal | None:
    """A Kubernetes quantity (``500m``, ``1Gi``, ``2``) as a number, or None."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    match = _QUANTITY.match(str(value).strip())
    if not match:
        return None
    try:
        return Decimal(match.group(1)) * _SUFFIX[match.group(2) or ""]
    except InvalidOperation:
        return None


def drift(desired: dict, live: dict, *, values: bool = False) -> list[str]:
    """Every ``path: live -> desired`` line where ``live`` differs from what ``desired`` sets."""
    secret = desired.get("kind") == "Secret" and desired.get("apiVersion") == "v1"
    want = comparable(desired)
    lines: list[str] = []
    managed = (live.get("metadata") or {}).get("managedFields") if isinstance(live, dict) else None
    _compare(want, live, "", lines, _Show(secret, values, managed))
    return lines


class _Show:
    """How a line shows values: a Secret's never, others all or only the harmless ones."""

    def __init__(self, secret: bool, values: bool, managed: Any = None) -> None:
        self.secret, self.values, self.managed = secret, values, managed

    def line(self, path: str, have: Any, want: Any) -> str:
        who = changed_by(self.managed, path)
        return self._line(path, have, want) + (f" ({who})" if who else "")

    def _line(self, path: str, have: Any, want: Any) -> str:
        if self.secret and path.split(".")[0] in ("data", "stringData"):
            return f"{path}: (secret value changed)"
        if not self.values and not (_harmless(have) and _harmless(want)
                                    or path.rsplit(".", 1)[-1] == "image"):
            return f"{path}: changed"
        # quote strings when the other side is not one, so "1" -> 1 does not read as 1 -> 1
        quote = have is not None and isinstance(have, str) != isinstance(want, str)
        return f"{path}: {_show(have, quote)} -> {_show(want, quote)}"


def _harmless(value: Any) -> bool:
    """A value that cannot carry a secret: a number, a boolean, nothing."""
    return value is None or isinstance(value, (bool, int, float))


def comparable(desired: dict) -> dict:
    """``desired`` without what the server owns (status, server metadata) and with a
    Secret's ``stringData`` folded into ``data`` as the server stores it."""
    out = {k: v for k, v in desired.items() if k != "status"}
    meta = out.get("metadata")
    if isinstance(meta, dict):
        out["metadata"] = {k: v for k, v in meta.items() if k not in SERVER_METADATA}
    if out.get("kind") == "Secret" and isinstance(out.get("stringData"), dict):
        encoded = {k: base64.b64encode(str(v).encode()).decode()
                   for k, v in out.pop("stringData").items()}
        out["data"] = {**(out.get("data") or {}), **encoded}
    return out


def _compare(want: Any, have: Any, path: str, lines: list[str], show: _Show) -> None:
    if want is None or _empty(want) and have in (None, {}, []):
        return
    if isinstance(want, dict):
        _compare_maps(want, have, path, lines, show)
    elif isinstance(want, list):
        _compare_lists(want, have, path, lines, show)
    elif not _same_scalar(want, have, path):
        lines.append(show.line(path, have, want))


def _compare_maps(want: dict, have: Any, path: str, lines: list[str], show: _Show) -> None:
    if not isinstance(have, dict):
        lines.append(show.line(path, have, want))
        return
    for key, value in want.items():
        _compare(value, have.get(key), _join(path, key), lines, show)


def _compare_lists(want: list, have: Any, path: str, lines: list[str], show: _Show) -> None:
    if not isinstance(have, list):
        lines.append(show.line(path, have, want))
        return
    if _keyed(want) and _keyed(have):
        by_name = {item["name"]: item for item in have}
        for item in want:
            _compare(item, by_name.get(item["name"]), f"{path}[{item['name']}]", lines, show)
        return
    if len(want) != len(have) and not all(isinstance(i, dict) for i in want + have):
        lines.append(show.line(path, have, want))
        return
    for index, item in enumerate(want):
        _compare(item, have[index] if index < len(have) else None, f"{path}[{index}]", lines,
                 show)
    if len(have) > len(want):
        lines.append(f"{path}: {len(have)} items -> {len(want)} items")


def _keyed(items: list) -> bool:
    return bool(items) and all(isinstance(i, dict) and isinstance(i.get("name"), str)
                               for i in items)


def _empty(value: Any) -> bool:
    return isinstance(value, (dict, list)) and not value


def _same_scalar(want: Any, have: Any, path: str) -> bool:
    if want == have and type(want) is type(have) or _numbers_equal(want, have):
        return True
    if _is_quantity_path(path):
        a, b = parse_quantity(want), parse_quantity(have)
        return a is not None and a == b
    return False


def _numbers_equal(a: Any, b: Any) -> bool:
    numbers = (int, float)
    return (isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool)
            and not isinstance(b, bool) and a == b)


def _is_quantity_path(path: str) -> bool:
    """Resource maps (``resources.limits.cpu``, ``spec.hard``, ``capacity.storage``): the
    server stores their values in canonical form, so ``1`` and ``"1"`` are the same."""
    segments = re.split(r"[.\[]", path)
    return any(segment in QUANTITY_PARENTS for segment in segments[:-1])


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _show(value: Any, quote: bool = False, limit: int = 60) -> str:
    if value is None:
        return ABSENT
    text = value if isinstance(value, str) and not quote else json.dumps(value, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 3] + "..."

