"""``ignoreDifferences``: fields fleetsync leaves to someone else. Pure.

A field taken out of the desired object is neither compared (no drift) nor
applied, so server-side apply stops fighting its other owner: an HPA's
``spec.replicas``, a mutating webhook's injected sidecar, a controller's
defaults. Rules name fields by JSON pointer (``/spec/replicas``) on the objects
of a kind (and group, and name), or by field manager: every field that manager
owns in the live object's ``managedFields`` (``kube-controller-manager``).
The object's identity (apiVersion, kind, name, namespace, fleetsync's label) is
never taken out.
"""

from __future__ import annotations

import copy
import json
from typing import Any, Iterable, Mapping

from shared.spec.model import IgnoreRule
from workers.apply.refs import APP_LABEL, ObjectRef, ref_of

_KEPT = {("apiVersion",), ("kind",), ("metadata", "name"), ("metadata", "namespace"),
         ("metadata", "labels", APP_LABEL)}


def selects(rule: IgnoreRule, ref: ObjectRef) -> bool:
    if rule.kind and rule.kind != ref.kind:
        return False
    if rule.group is not None and rule.group != ref.group:
        return False
    return rule.name is None or rule.name == ref.name


def strip(desired: dict, live: Mapping[str, Any] | None, rules: Iterable[IgnoreRule]) -> dict:
    """``desired`` without the fields the rules leave alone (a copy when any is taken)."""
    ref, out = ref_of(desired), None
    for rule in rules:
        if not selects(rule, ref):
            continue
        out = out if out is not None else copy.deepcopy(desired)
        for pointer in rule.json_pointers:
            _remove(out, [t.replace("~1", "/").replace("~0", "~") for t in pointer.split("/")[1:]])
        if rule.managers and live:
            for entry in (live.get("metadata") or {}).get("managedFields") or []:
                if entry.get("manager") in rule.managers and isinstance(entry.get("fieldsV1"), dict):
                    _remove_owned(out, entry["fieldsV1"], ())
    return desired if out is None else out


def _remove(node: Any, tokens: list[str], path: tuple[str, ...] = ()) -> None:
    if not tokens:
        return
    head, rest = tokens[0], tokens[1:]
    here = path + (head,)
    if isinstance(node, dict) and head in node:
        if rest:
            _remove(node[head], rest, here)
        elif here not in _KEPT:
            del node[head]
    elif isinstance(node, list) and head.isdigit() and int(head) < len(node):
        if rest:
            _remove(node[int(head)], rest, here)
        else:
            del node[int(head)]


def _leaf(fields: Mapping[str, Any]) -> bool:
    return all(key == "." for key in fields)


def _remove_owned(node: Any, fields: Mapping[str, Any], path: tuple[str, ...]) -> None:
    for key, sub in fields.items():
        if key == "." or not isinstance(sub, Mapping):
            continue
        if key.startswith("f:") and isinstance(node, dict) and key[2:] in node:
            name = key[2:]
            if _leaf(sub):
                if path + (name,) not in _KEPT:
                    del node[name]
            else:
                _remove_owned(node[name], sub, path + (name,))
        elif key.startswith("k:") and isinstance(node, list):
            try:
                wanted = json.loads(key[2:])
            except ValueError:
                continue
            for index, item in enumerate(node):
                if isinstance(item, dict) and all(item.get(k) == v for k, v in wanted.items()):
                    if _leaf(sub):
                        del node[index]
                    else:
                        _remove_owned(item, sub, path + (str(index),))
                    break
        elif key.startswith("v:") and isinstance(node, list):
            try:
                value = json.loads(key[2:])
            except ValueError:
                continue
            if value in node:
                node.remove(value)
