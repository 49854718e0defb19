"""Reading typed values out of YAML nodes that remember their line, for the spec loader.

``load`` knows the fleet rules; ``shared.yamlsafe`` gets a YAML file into
a node tree safely (size limit, no anchors or aliases, bounded nesting); this
module reads typed values out of the nodes while collecting problems as
``file:line: field.path: message`` instead of stopping at the first one.

Each reader takes ``(node, field, report)``, reports what is wrong and returns
``None``; the caller substitutes a default so that the walk goes on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Collection, Mapping, Sequence, TypeVar

from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from shared.yamlsafe import YAMLRefused, compose_file

STR, BOOL, NULL = (f"tag:yaml.org,2002:{t}" for t in ("str", "bool", "null"))
_KINDS = {STR: "a string", "tag:yaml.org,2002:int": "a number", "tag:yaml.org,2002:float": "a number",
          BOOL: "a boolean", NULL: "empty", "tag:yaml.org,2002:timestamp": "a date",
          "tag:yaml.org,2002:merge": "a merge key '<<'"}

T = TypeVar("T")
Reader = Callable[[Node, str, "Report"], "T | None"]


class Report:
    """Problems and warnings, kept with their line so that they come out in file order."""

    def __init__(self, file: str) -> None:
        self.file = file
        self._problems: list[tuple[int, str]] = []
        self._warnings: list[tuple[int, str]] = []

    def error(self, node: Node, field: str, message: str) -> None:
        self._problems.append(self._entry(line(node), field, message))

    def error_at(self, line_no: int, message: str) -> None:
        """A problem with the file itself; line 0 leaves the line out."""
        self._problems.append(self._entry(line_no, "", message))

    def warn(self, node: Node, field: str, message: str) -> None:
        self._warnings.append(self._entry(line(node), field, message))

    def problems(self) -> list[str]:
        return [text for _, text in sorted(self._problems, key=lambda p: p[0])]

    def warnings(self) -> list[str]:
        return [text for _, text in sorted(self._warnings, key=lambda p: p[0])]

    def _entry(self, line_no: int, field: str, message: str) -> tuple[int, str]:
        where = f"{self.file}:{line_no}" if line_no else self.file
        return line_no, f"{where}: {field}: {message}" if field else f"{where}: {message}"


@dataclass(frozen=True)
class Map:
    """A mapping node's accepted entries (key -> value node) and its field path."""

    node: MappingNode
    field: str
    values: dict[str, Node]

    def at(self, key: str) -> str:
        return f"{self.field}.{key}" if self.field else key

    def read(self, key: str, reader: Reader[T], report: Report, default: T) -> T:
        """The value under ``key`` read by ``reader``; ``default`` if absent or invalid."""
        node = self.values.get(key)
        value = reader(node, self.at(key), report) if node is not None else None
        return default if value is None else value


def line(node: Node) -> int:
    """1-based line where the node starts."""
    return int(node.start_mark.line) + 1


def kind(node: Node) -> str:
    """What the node is, for messages: 'a list', 'a number', ..."""
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    return _KINDS.get(node.tag, str(node.tag))


# -- from file to node tree -------------------------------------------------

def compose(path: str, report: Report, max_bytes: int) -> Node | None:
    """The file's single document as a node tree, or None after reporting why not.

    The loading itself (size cap, anchors and aliases refused, nesting bounded)
    is ``shared.yamlsafe``'s node mode.
    """
    try:
        return compose_file(path, max_bytes)
    except YAMLRefused as err:
        report.error_at(err.line, err.message)
        return None


# -- readers: node + field path -> value, or None after a report ------------

def mapping(node: Node, field: str, report: Report, allowed: Sequence[str],
            required: Sequence[str] = (), hints: Mapping[str, str] | None = None) -> Map | None:
    """Check a mapping's keys (strings, unique, known, required present) and wrap it.

    ``hints`` maps keys that are refused on purpose to the message that says why.
    """
    if not isinstance(node, MappingNode):
        report.error(node, field, f"must be a mapping, not {kind(node)}")
        return None
    m = Map(node, field, {})
    for key, key_node, value_node in entries(node, field, report):
        if hints and key in hints:
            report.error(key_node, m.at(key), hints[key])
        elif key not in allowed:
            expected = ", ".join(allowed)
            report.error(key_node, field or key, f"unknown key {key!r} (expected one of: {expected})")
        else:
            m.values[key] = value_node
    for key in required:
        if key not in m.values:
            report.error(node, m.at(key), "is required")
    return m


def entries(node: MappingNode, field: str, report: Report) -> list[tuple[str, Node, Node]]:
    """(key, key node, value node) for each string key, reporting other keys and duplicates."""
    seen: dict[str, int] = {}
    out: list[tuple[str, Node, Node]] = []
    for key_node, value_node in node.value:
        if not (isinstance(key_node, ScalarNode) and key_node.tag == STR):
            report.error(key_node, field or "(top level)", f"keys must be strings, not {kind(key_node)}")
        elif key_node.value in seen:
            report.error(key_node, field or key_node.value,
                         f"duplicate key {key_node.value!r} (first at line {seen[key_node.value]})")
        else:
            seen[key_node.value] = line(key_node)
            out.append((str(key_node.value), key_node, value_node))
    return out


def sequence(node: Node, field: str, report: Report) -> list[Node] | None:
    if isinstance(node, SequenceNode):
        return list(node.value)
    report.error(node, field, f"must be a list, not {kind(node)}")
    return None


def string(node: Node, field: str, report: Report, allow_empty: bool = False) -> str | None:
    """A string scalar; a number or boolean is refused with advice to quote it."""
    if isinstance(node, ScalarNode) and node.tag == STR:
        if node.value or allow_empty:
            return str(node.value)
        report.error(node, field, "must not be empty")
        return None
    hint = ", quote it" if isinstance(node, ScalarNode) and node.tag != NULL else f", not {kind(node)}"
    report.error(node, field, f"must be a string{hint}")
    return None


def checked(node: Node, field: str, report: Report, check: Callable[[str], str | None]) -> str | None:
    """A string that ``check`` accepts; ``check`` returns a complaint or None."""
    text = string(node, field, report)
    complaint = check(text) if text is not None else None
    if complaint:
        report.error(node, field, complaint)
        return None
    return text


def checked_list(node: Node, field: str, report: Report,
                 check: Callable[[str], str | None]) -> tuple[str, ...] | None:
    """A list of strings, each one that ``check`` accepts (the others are reported)."""
    items = sequence(node, field, report)
    if items is None:
        return None
    found = [checked(item, f"{field}[{i}]", report, check) for i, item in enumerate(items)]
    return tuple(text for text in found if text is not None)


def boolean(node: Node, field: str, report: Report) -> bool | None:
    """A real YAML boolean (as the safe loader resolves it); the string "true" is refused."""
    if isinstance(node, ScalarNode) and node.tag == BOOL:
        return bool(SafeConstructor.bool_values[node.value.lower()])
    report.error(node, field, f"must be true or false, not {kind(node)}")
    return None


def string_map(node: Node, field: str, report: Report,
               check_key: Callable[[str], str | None] = lambda _: None) -> dict[str, str] | None:
    """A mapping of strings to strings (labels, vars); numbers must be quoted."""
    if not isinstance(node, MappingNode):
        report.error(node, field, f"must be a mapping, not {kind(node)}")
        return None
    out: dict[str, str] = {}
    for key, key_node, value_node in entries(node, field, report):
        complaint = check_key(key)
        if complaint:
            report.error(key_node, f"{field}.{key}", complaint)
        value = string(value_node, f"{field}.{key}", report, allow_empty=True)
        if value is not None and not complaint:
            out[key] = value
    return out


def names(node: Node, field: str, report: Report, known: Collection[str] | None,
          what: str) -> tuple[str, ...] | None:
    """A list of names, each checked against ``known`` (when given) as a ``what``."""
    items = sequence(node, field, report)
    if items is None:
        return None
    out = []
    for i, item in enumerate(items):
        name = string(item, f"{field}[{i}]", report)
        if name is not None and known is not None and name not in known:
            report.error(item, f"{field}[{i}]", f"no {what} named {name!r}")
        elif name is not None:
            out.append(name)
    return tuple(out)
