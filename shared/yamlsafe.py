"""The one hardened YAML loader: every file fleetsync reads from Git goes through it.

A fleet spec and a repository's manifests are untrusted input, and every error
about them must point at ``file:line``. PyYAML's ``SafeLoader`` is safe against
code execution but not against an alias bomb, and it turns dates into objects
that JSON cannot carry. This module gives two modes over the same guards:

* node mode (``compose_file``): the file's single document as a node tree whose
  nodes keep their start mark, for the spec loader, which reads typed values out
  of nodes and reports every problem with its line. Anchors are refused too: a
  spec has no use for them.
* data mode (``load_documents``): every document of a text as plain JSON-shaped
  values with the 1-based line its content starts on, for manifests and
  kustomizations. Timestamps and ``!!binary`` stay strings, ``!!set`` becomes a
  mapping, so a render can travel as JSON (Celery results, the render cache).

Limits common to both modes:

* size: the file (node mode) or text (data mode) is refused above a cap before
  it is parsed;
* aliases are refused before anything is expanded: a billion-laughs document
  fails in microseconds with bounded memory. The pure-Python loaders refuse at
  the first alias event; libyaml (about 20x faster, used when PyYAML has it)
  either feeds events to a composer we hook (node mode) or composes the node
  graph itself, where an alias is a node reached twice (data mode);
* nesting: libyaml bounds depth itself; the pure loader's recursion is caught.

Problems are raised as ``YAMLRefused(line, message)``; data mode raises the
render stage's ``RenderError("where:LINE: problem")`` as its callers expect.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, SequenceNode
from yaml.resolver import Resolver

from shared.errors import RenderError

ALIAS_PROBLEM = "YAML aliases are not allowed"
ANCHOR_PROBLEM = "anchors and aliases are not allowed"
MAX_TEXT_CHARS = 16 * 1024 * 1024      # data mode: one text (a file, a kustomize output)


class YAMLRefused(ValueError):
    """A document refused by a limit or a syntax error; ``line`` is 1-based, 0 for none."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


class _AliasRefused(yaml.composer.ComposerError):
    """An alias (or, in node mode, an anchor) that we refuse to expand."""


class _RefuseAliases:
    """Composer mixin: stop at the first alias event, and at an anchor when asked."""

    refuse_anchors = False

    def compose_node(self, parent: Node | None, index: object) -> Node | None:
        event = self.peek_event()  # type: ignore[attr-defined]
        anchored = self.refuse_anchors and getattr(event, "anchor", None) is not None
        if isinstance(event, AliasEvent) or anchored:
            problem = ANCHOR_PROBLEM if self.refuse_anchors else ALIAS_PROBLEM
            raise _AliasRefused(None, None, problem, event.start_mark)
        return super().compose_node(parent, index)  # type: ignore[misc]


class StrictConstructor(SafeConstructor):
    """``SafeConstructor`` whose every value is JSON-serialisable."""

    def as_string(self, node: Node) -> str:
        return str(self.construct_scalar(node))  # type: ignore[arg-type]

    def as_mapping(self, node: Node) -> dict[Any, Any]:
        return self.construct_mapping(node)  # type: ignore[arg-type]


StrictConstructor.add_constructor("tag:yaml.org,2002:timestamp", StrictConstructor.as_string)  # type: ignore[type-var]
StrictConstructor.add_constructor("tag:yaml.org,2002:binary", StrictConstructor.as_string)  # type: ignore[type-var]
StrictConstructor.add_constructor("tag:yaml.org,2002:set", StrictConstructor.as_mapping)  # type: ignore[type-var]


# -- the loader classes: pure Python always, libyaml when PyYAML was built with it --

class _PyNodeLoader(_RefuseAliases, yaml.SafeLoader):
    """Node mode, pure Python."""

    refuse_anchors = True


class _PyDataLoader(_RefuseAliases, yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser,
                    Composer, StrictConstructor, Resolver):
    """Data mode, pure Python: refuses at the first alias event."""

    def __init__(self, stream: str) -> None:
        yaml.reader.Reader.__init__(self, stream)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)
        Composer.__init__(self)
        StrictConstructor.__init__(self)
        Resolver.__init__(self)


NodeLoader: Callable[[Any], Any] = _PyNodeLoader
FastLoader: type | None = None
if getattr(yaml, "__with_libyaml__", False):
    from yaml.cyaml import CParser  # type: ignore[attr-defined]

    class _CNodeLoader(_RefuseAliases, Composer, CParser, Resolver):  # type: ignore[misc]
        """Node mode: libyaml's parser feeding PyYAML's composer, which we can hook."""

        refuse_anchors = True

        def __init__(self, stream: bytes) -> None:
            CParser.__init__(self, stream)
            Composer.__init__(self)
            Resolver.__init__(self)

    class _CDataLoader(CParser, StrictConstructor, Resolver):  # type: ignore[misc]
        """Data mode: libyaml parses and composes; aliases are refused on the node graph."""

        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            StrictConstructor.__init__(self)
            Resolver.__init__(self)

    NodeLoader = _CNodeLoader
    FastLoader = _CDataLoader


# -- node mode ------------------------------------------------------------------

def read_limited(path: str, max_bytes: int) -> bytes:
    """The file's bytes, refused (before reading them) when larger than ``max_bytes``."""
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            data = fh.read(max_bytes + 1) if size <= max_bytes else b""
    except OSError as err:
        raise YAMLRefused(0, f"cannot read: {err.strerror or err}") from err
    if size > max_bytes or len(data) > max_bytes:
        raise YAMLRefused(1, f"the file is larger than {max_bytes} bytes; refusing to parse it")
    return data


def compose_file(path: str, max_bytes: int) -> Node:
    """The file's single document as a node tree; ``YAMLRefused`` says why not."""
    return compose_bytes(read_limited(path, max_bytes))


def compose_bytes(data: bytes) -> Node:
    """The single document in ``data`` as a node tree (anchors and aliases refused)."""
    loader = NodeLoader(data)
    try:
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        what = ", ".join(filter(None, (err.context, err.problem)))
        raise YAMLRefused(mark.line + 1 if mark else 1, f"invalid YAML: {what}") from err
    except yaml.reader.ReaderError as err:
        raise YAMLRefused(1, f"invalid YAML: {err.reason} at byte {err.position}") from err
    except yaml.YAMLError as err:
        raise YAMLRefused(1, f"invalid YAML: {err}") from err
    except RecursionError as err:
        raise YAMLRefused(1, "invalid YAML: nested too deeply") from err
    finally:
        loader.dispose()
    if root is None:
        raise YAMLRefused(1, "the file is empty")
    return root


# -- data mode ------------------------------------------------------------------

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
                raise _AliasRefused(None, None, ALIAS_PROBLEM, mark)
            seen.add(id(child))
        stack.extend(child for child, _ in reversed(children))  # document order: first alias blamed


def _problem(exc: yaml.YAMLError, where: str) -> RenderError:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    line = f":{mark.line + 1}" if mark is not None else ""
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    detail = f"{context}: {problem}" if context and not isinstance(exc, _AliasRefused) else problem
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


def load_documents(text: str, where: str, *, fast: bool = True,
                   max_chars: int = MAX_TEXT_CHARS) -> list[tuple[int, Any]]:
    """Every non-empty document in ``text`` as ``(first line, value)``.

    Raises ``RenderError("where:LINE: problem")`` for malformed YAML, aliases,
    nesting too deep and a text longer than ``max_chars``. ``fast=False``
    forces the pure-Python loader.
    """
    if len(text) > max_chars:
        raise RenderError(f"{where}: {len(text)} characters of YAML, more than the "
                          f"{max_chars} character limit; refusing to parse it")
    use_fast = fast and FastLoader is not None
    loader = FastLoader(text) if use_fast and FastLoader is not None else _PyDataLoader(text)
    try:
        return _documents(loader, check_graph=use_fast)
    except yaml.YAMLError as exc:
        raise _problem(exc, where) from exc
    except RecursionError as exc:
        raise RenderError(f"{where}: nesting too deep to load") from exc
    finally:
        loader.dispose()
