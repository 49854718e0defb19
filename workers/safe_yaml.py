"""Loading untrusted YAML from a repository: safe, alias-free, JSON-shaped.

Everything a render produces travels as JSON (Celery results, the Redis render
cache, the apply stage), and every error must point at ``file:line``. So the
loaders here differ from ``yaml.SafeLoader`` in three ways:

* aliases (``*name``) are refused before anything is constructed: a
  billion-laughs document fails in microseconds with bounded memory instead of
  expanding. The pure-Python loader refuses at the first alias event; the
  libyaml loader (eight times faster, used when PyYAML has it) composes the
  node graph, where an alias is a node reached twice, and refuses on that;
* timestamps and ``!!binary`` stay strings and ``!!set`` becomes a mapping, so
  every loaded value is JSON-serialisable;
* each document comes back with the 1-based line its content starts on.

libyaml bounds nesting depth itself; the pure loader's recursion is caught.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, SequenceNode
from yaml.resolver import Resolver

from shared.errors import RenderError

ALIAS_PROBLEM = "YAML aliases are not allowed"


class AliasRefused(yaml.composer.ComposerError):
    """An alias in a document that we refuse to expand."""


class StrictConstructor(SafeConstructor):
    """``SafeConstructor`` whose every value is JSON-serialisable."""

    def as_string(self, node: Node) -> str:
        return str(self.construct_scalar(node))  # type: ignore[arg-type]

    def as_mapping(self, node: Node) -> dict[Any, Any]:
        return self.construct_mapping(node)  # type: ignore[arg-type]


StrictConstructor.add_constructor("tag:yaml.org,2002:timestamp", StrictConstructor.as_string)  # type: ignore[type-var]
StrictConstructor.add_constructor("tag:yaml.org,2002:binary", StrictConstructor.as_string)  # type: ignore[type-var]
StrictConstructor.add_constructor("tag:yaml.org,2002:set", StrictConstructor.as_mapping)  # type: ignore[type-var]


class StrictLoader(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser,
                   yaml.composer.Composer, StrictConstructor, Resolver):
    """The pure-Python loader: refuses at the first alias event."""

    def __init__(self, stream: str) -> None:
        yaml.reader.Reader.__init__(self, stream)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)
        yaml.composer.Composer.__init__(self)
        StrictConstructor.__init__(self)
        Resolver.__init__(self)

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(AliasEvent):
            raise AliasRefused(None, None, ALIAS_PROBLEM, self.peek_event().start_mark)
        return super().compose_node(parent, index)


FastLoader: type | None = None
if getattr(yaml, "__with_libyaml__", False):
    from yaml.cyaml import CParser  # type: ignore[attr-defined]

    class _CStrictLoader(CParser, StrictConstructor, Resolver):  # type: ignore[misc]
        """libyaml parses and composes; aliases are refused on the node graph."""

        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            StrictConstructor.__init__(self)
            Resolver.__init__(self)

    FastLoader = _CStrictLoader


def _children(node: Node) -> list[tuple[Node, Any]]:
    """Each child node with the mark to blame if it turns out to be an alias."""
    if isinstance(node, SequenceNode):
        return [(child, node.start_mark) for child in node.value]
    if isinstance(node, MappingNode):
        return [pair for key, value in node.value for pair in ((key, key.start_mark), (value, key.start_mark))]
    return []


def refuse_aliases(root: Node) -> None:
    """Refuse a composed document in which any node is reached twice (an alias).

    Linear in the number of distinct nodes: shared nodes are never walked twice.
    Parents are expanded in document order, so the first alias is the one named.
    """
    seen, stack = {id(root)}, [root]
    while stack:
        children = _children(stack.pop())
        for child, mark in children:
            if id(child) in seen:
                raise AliasRefused(None, None, ALIAS_PROBLEM, mark)
            seen.add(id(child))
        stack.extend(child for child, _ in reversed(children))  # document order: first alias blamed


def _problem(exc: yaml.YAMLError, where: str) -> RenderError:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    line = f":{mark.line + 1}" if mark is not None else ""
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    detail = f"{context}: {problem}" if context and not isinstance(exc, AliasRefused) else problem
    return RenderError(f"{where}{line}: {detail}")


def _documents(loader: Any, check_graph: bool) -> list[tuple[int, Any]]:
    docs: list[tuple[int, Any]] = []
    while loader.check_node():
        node = loader.get_node()  # composed first: its mark is the content's first line
        if check_graph:
            refuse_aliases(node)
        value = loader.construct_document(node)
        if value is not None:
            docs.append((node.start_mark.line + 1, value))
    return docs


def load_documents(text: str, where: str, *, fast: bool = True) -> list[tuple[int, Any]]:
    """Every non-empty document in ``text`` as ``(first line, value)``.

    Raises ``RenderError("where:LINE: problem")`` for malformed YAML, aliases
    and nesting too deep. ``fast=False`` forces the pure-Python loader.
    """
    use_fast = fast and FastLoader is not None
    loader = FastLoader(text) if use_fast and FastLoader is not None else StrictLoader(text)
    try:
        return _documents(loader, check_graph=use_fast)
    except yaml.YAMLError as exc:
        raise _problem(exc, where) from exc
    except RecursionError as exc:
        raise RenderError(f"{where}: nesting too deep to load") from exc
    finally:
        loader.dispose()
