"""Flux-compatible custom health checks: ``healthCheckExprs`` as a pure kernel.

A fleet spec may declare, per apiVersion and kind, the CEL expressions that
Flux's kustomize-controller accepts in ``.spec.healthCheckExprs`` (RFC-0009).
The spec validator calls :func:`compile_check` once per entry; the health
verdict calls :meth:`CelCheck.evaluate` once per applied object and wraps the
``(status_word, message)`` pair in its own type.

The semantics follow fluxcd/pkg ``runtime/cel`` (``StatusEvaluator``):

- the expressions see the object's top-level fields as variables
  (``metadata``, ``spec``, ``status``...), not a ``self``;
- ``current`` is required, ``inProgress`` and ``failed`` are optional; they are
  parsed, not type-checked, because not every CRD has the five usual fields;
- first the generic generation check: when ``status.observedGeneration`` exists
  and differs from ``metadata.generation`` the object is in progress and no
  expression runs; there is no deletion check on this path;
- then ``inProgress``, ``failed``, ``current`` in this order (Flux's order,
  RFC-0009 and ``status_evaluator.go``); the first true one decides
  (Progressing, Degraded, Healthy); none true is Progressing;
- an evaluation error (a missing field is CEL's "no such key", not false) and
  a result that is not a bool are errors: kstatus then reports the object as
  Unknown and Flux waits until its timeout. Here: ``("Unknown", "cel: ...")``.
- a check matches an object by API group and kind; the version is ignored
  (``schema.FromAPIVersionAndKind(...).GroupKind()`` in Flux).

Where this departs from Flux, on purpose:

- Flux's result carries no message; ours names the deciding expression and
  appends the object's Ready condition message when it has one.
- The runtime is ``common-expression-language`` (cel-rust), chosen by
  measurement over ``cel-python`` (see ``bench/health_kernels_bench.py``). It
  lacks cel-go's optional syntax (``status.?conditions``): such an expression
  fails to compile, named by its field. cel-go's string, set and base64
  extensions that Flux enables come from ``cel.stdlib`` when an expression
  names one of them (a slower path: a context with Python callbacks).

Speed: converting a Python dict into CEL values costs about a microsecond per
string, which dominates a verdict. So the three expressions run as one
program (nested ternaries keep Flux's short-circuit order), and each object is
cut down to what the expressions can reach (:func:`_paths_of`): the field
paths they select and, for lists read only through macros, the element fields
the macro variables read. Only when that program fails are the expressions
run one by one, to name the one that failed. On the bench's Certificate
(``bench/health_kernels_bench.py``) a verdict costs about 55-60 us, of which
about 45 us is cel-rust evaluating three ``filter().all()`` expressions; the
same library on the whole object, three programs, costs about 400 us, and
cel-python about 2,200 us.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import cel
from cel import stdlib as cel_stdlib

from shared.errors import SpecError

Verdict = tuple[str, str]
# Flux's evaluation order, with the status word each expression decides.
_ORDER: tuple[tuple[str, str], ...] = (
    ("inProgress", "Progressing"), ("failed", "Degraded"), ("current", "Healthy"))
# The cel-go extensions kustomize-controller enables: ext.Strings, ext.Sets, ext.Encoders.
_EXTENSIONS: dict[str, Callable[..., Any]] = {
    name: fn for lib in ("strings", "sets", "encoders")
    for name, fn in cel_stdlib.EXTENSIONS[lib].items()}
_EXTENSION_WORDS = frozenset(part for name in _EXTENSIONS for part in name.split("."))


class CelError(SpecError):
    """A health-check expression that does not compile; ``field`` names which one."""

    reason = "SpecInvalid"

    def __init__(self, field: str, message: str) -> None:
        super().__init__([f"{field}: {message}"])
        self.field = field
        self.detail = message


@dataclass(frozen=True)
class CelCheck:
    """The compiled expressions for one group and kind; safe to share across threads."""

    group: str
    kind: str
    sources: Mapping[str, str]          # field name -> expression, in Flux's order
    _combined: Any                      # cel.Program: all expressions as nested ternaries
    _programs: Mapping[str, Any]        # field name -> cel.Program, for naming a failure
    _paths: tuple[Paths, Elements] | None   # what to keep of an object; None: all
    _extensions: bool

    def matches(self, obj: Mapping[str, Any]) -> bool:
        """Flux's rule: same API group and kind; the version does not matter."""
        api_version = obj.get("apiVersion")
        return (isinstance(api_version, str) and obj.get("kind") == self.kind
                and _group(api_version) == self.group)

    def evaluate(self, obj: Mapping[str, Any]) -> Verdict:
        """The verdict for one object; never raises for anything the object holds."""
        stale = _generation_verdict(obj)
        if stale is not None:
            return stale
        data = _reachable(obj, self._paths)
        try:
            decided = self._run(self._combined, data)
        except Exception:                       # noqa: BLE001 - find and name the culprit
            return self._explain_failure(data)
        if not isinstance(decided, str):
            return ("Unknown", f"cel: {self.kind}: unexpected result {decided!r}")
        for name, word in _ORDER:
            if name == decided:
                return (word, _with_ready(obj, f"{name} expression is true"))
        return ("Progressing", _with_ready(obj, "no expression is true yet"))

    def _run(self, program: Any, data: dict[str, Any]) -> Any:
        if not self._extensions:
            return program.execute(data)
        context = cel.Context(variables=data)
        for name, fn in _EXTENSIONS.items():
            context.add_function(name, fn)
        return program.execute(context)

    def _explain_failure(self, data: dict[str, Any]) -> Verdict:
        """Run the expressions one by one, as Flux does, to say which failed and why."""
        for name, _word in _ORDER:
            program = self._programs.get(name)
            if program is None:
                continue
            try:
                result = self._run(program, data)
            except Exception as exc:            # noqa: BLE001 - any library error is a verdict
                return ("Unknown", f"cel: {self.kind}: {name}: {_describe(exc)}")
            if not isinstance(result, bool):
                return ("Unknown", f"cel: {self.kind}: {name}: result {result!r} is "
                                   f"{type(result).__name__}, not bool")
            if result:
                break
        return ("Unknown", f"cel: {self.kind}: evaluation failed")


def compile_check(api_version: str, kind: str, *, current: str, in_progress: str | None = None,
                  failed: str | None = None) -> CelCheck:
    """Compile one ``healthCheckExprs`` entry; :class:`CelError` names the bad field."""
    given = {"inProgress": in_progress, "failed": failed, "current": current}
    if not current or not current.strip():
        raise CelError("current", "expression is required")
    sources = {name: given[name] for name, _ in _ORDER if given[name]}
    programs = {name: _compile(name, src) for name, src in sources.items() if src}
    combined = _compile("current", _nest({k: v for k, v in sources.items() if v}))
    paths = _paths_of([v for v in sources.values() if v])
    words = set()
    for program in programs.values():
        words.update(program.functions())
        words.update(program.variables())
    return CelCheck(group=_group(api_version), kind=kind,
                    sources={k: v for k, v in sources.items() if v},
                    _combined=combined, _programs=programs, _paths=paths,
                    _extensions=bool(words & _EXTENSION_WORDS))


def _compile(field: str, source: str) -> Any:
    try:
        return cel.compile(source)
    except Exception as exc:                    # ValueError, or anything the binding raises
        raise CelError(field, f"does not compile: {exc}") from exc


def _nest(sources: Mapping[str, str]) -> str:
    """One program whose value names the first true expression ('' when none is).

    CEL's ternary evaluates its condition first and only the branch taken, so
    an error or a non-bool in an earlier expression stops it, as in Flux's loop.
    Newlines keep a trailing ``//`` comment inside its own expression.
    """
    text = "''"
    for name, _ in reversed(_ORDER):
        if name in sources:
            text = f"(\n{sources[name]}\n) ? '{name}' : ({text})"
    return text


def _group(api_version: str) -> str:
    return api_version.rpartition("/")[0] if "/" in api_version else ""


def _generation_verdict(obj: Mapping[str, Any]) -> Verdict | None:
    """Flux's check before any expression: a controller that has not seen this generation."""
    status = obj.get("status")
    if not isinstance(status, Mapping) or "observedGeneration" not in status:
        return None
    observed = status["observedGeneration"]
    metadata = obj.get("metadata")
    generation = metadata.get("generation") if isinstance(metadata, Mapping) else None
    if not _is_int(observed) or (generation is not None and not _is_int(generation)):
        return ("Unknown", "cel: generation fields are not integers")
    if generation is not None and observed != generation:
        return ("Progressing", f"status.observedGeneration {observed} is not "
                               f"metadata.generation {generation}")
    return None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _with_ready(obj: Mapping[str, Any], message: str) -> str:
    status = obj.get("status")
    conditions = status.get("conditions") if isinstance(status, Mapping) else None
    for condition in conditions if isinstance(conditions, list) else ():
        if isinstance(condition, Mapping) and condition.get("type") == "Ready":
            if condition.get("message"):
                return f"{message}; Ready: {condition['message']}"
    return message


def _describe(exc: Exception) -> str:
    if isinstance(exc, KeyError):               # cel-rust's missing map key, as cel-go says it
        return f"no such key: {exc.args[0] if exc.args else ''}"
    return str(exc).split("\n")[0] or type(exc).__name__


# --- which parts of an object an expression can reach -----------------------------------

_TOKEN = re.compile(r"""
    (?P<space>\s+|//[^\n]*)
  | (?P<string>[rRbB]{0,2}(?:'''(?:\\.|[^\\])*?'''|\"\"\"(?:\\.|[^\\])*?\"\"\"
                           |'(?:\\.|[^'\\\n])*'|"(?:\\.|[^"\\\n])*"))
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<number>\d[\w.]*)
  | (?P<punct>\.\?|==|!=|<=|>=|&&|\|\||[-+*/%<>!?:.,()\[\]{}])
""", re.VERBOSE | re.DOTALL)


def _tokens(source: str) -> list[str] | None:
    """Identifiers and punctuation (strings and numbers as placeholders); None if unsure."""
    out: list[str] = []
    pos = 0
    while pos < len(source):
        match = _TOKEN.match(source, pos)
        if match is None:
            return None
        pos = match.end()
        kind = match.lastgroup
        if kind == "ident" or kind == "punct":
            out.append(match.group())
        elif kind in ("string", "number"):
            out.append("0")
    return out


Paths = dict[str, tuple[tuple[str, ...], ...]]
Elements = dict[tuple[str, ...], frozenset[str]]
_MACROS = frozenset({"all", "exists", "exists_one", "filter", "map"})


def _paths_of(sources: list[str]) -> tuple[Paths, Elements] | None:
    """Per top-level name, the field paths the expressions select from it.

    A root identifier followed by ``.name`` selections (not a call) reaches only
    that path; anything else that follows (an index, a call on it, an operator)
    needs the value whole, and so does a bare name: then its path is the name
    alone. A longer path never hides a value the expression could read
    otherwise, so pruning to these paths leaves every result unchanged.

    A list reached that way whose every use is a macro (``all``, ``exists``,
    ``filter``...) binding a variable that is only ever read as ``v.field`` needs
    of its elements only those fields (see :func:`_element_fields`).
    """
    paths: dict[str, set[tuple[str, ...]]] = {}
    elements: Elements = {}
    unsafe: set[tuple[str, ...]] = set()
    for source in sources:
        tokens = _tokens(source)
        if tokens is None:
            return None
        spans: dict[tuple[str, ...], list[tuple[int, int]]] = {}
        for start, end, path in _chains(tokens):
            paths.setdefault(path[0], set()).add(path)
            spans.setdefault(path, []).append((start, end))
        safe = _element_fields(tokens, spans)
        for path in spans:
            if path in safe:
                elements[path] = elements.get(path, frozenset()) | safe[path]
            else:
                unsafe.add(path)
    return ({root: tuple(sorted(p)) for root, p in paths.items()},
            {p: f for p, f in elements.items() if p not in unsafe})


def _chains(tokens: list[str]) -> list[tuple[int, int, tuple[str, ...]]]:
    found = []
    for i, token in enumerate(tokens):
        if not _is_ident(token) or (i > 0 and tokens[i - 1] in (".", ".?")):
            continue
        path = [token]
        j = i + 1
        while (j + 1 < len(tokens) and tokens[j] == "." and _is_ident(tokens[j + 1])
               and (j + 2 >= len(tokens) or tokens[j + 2] != "(")):
            path.append(tokens[j + 1])
            j += 2
        if len(path) == 1 and j < len(tokens) and tokens[j] == "(":
            continue                            # a function call, not a variable
        found.append((i, j, tuple(path)))
    return found


def _element_fields(tokens: list[str],
                    spans: dict[tuple[str, ...], list[tuple[int, int]]]) -> Elements:
    """For each list path, the element fields its macros read; absent when unsure."""
    out: Elements = {}
    for path, where in spans.items():
        fields: set[str] = set()
        for start, end in where:
            used = _elements_used(tokens, start, end)
            if used is None:
                break
            fields |= used
        else:
            out[path] = frozenset(fields)
    return out


def _elements_used(tokens: list[str], start: int, end: int) -> set[str] | None:
    if tokens[start - 2:start] in (["has", "("], ["size", "("]) and tokens[end:end + 1] == [")"]:
        return set()
    return _macro_use(tokens, end)


def _macro_use(tokens: list[str], j: int) -> set[str] | None:
    """Fields of the list's elements read by what follows at ``j``; None if not only that."""
    if tokens[j:j + 4] == [".", "size", "(", ")"]:
        return set()
    if not (tokens[j:j + 1] == ["."] and tokens[j + 1:j + 2] and tokens[j + 1] in _MACROS
            and tokens[j + 2:j + 3] == ["("] and tokens[j + 4:j + 5] == [","]
            and _is_ident(tokens[j + 3])):
        return None
    fields = _var_fields(tokens, tokens[j + 3])
    if fields is None or tokens[j + 1] != "filter":
        return fields
    close = _matching(tokens, j + 2)
    rest = None if close is None else _macro_use(tokens, close + 1)
    return None if rest is None else fields | rest


def _var_fields(tokens: list[str], var: str) -> set[str] | None:
    """The fields a macro variable is read through, or None if it is ever used whole."""
    fields = set()
    for k, token in enumerate(tokens):
        if token != var or (k > 0 and tokens[k - 1] in (".", ".?")):
            continue
        if (k >= 3 and tokens[k - 1] == "(" and tokens[k - 2] in _MACROS
                and tokens[k - 3] == "." and tokens[k + 1:k + 2] == [","]):
            continue                            # where it is bound
        if not (tokens[k + 1:k + 2] == ["."] and k + 2 < len(tokens)
                and _is_ident(tokens[k + 2]) and tokens[k + 3:k + 4] != ["("]):
            return None
        fields.add(tokens[k + 2])
    return fields


def _matching(tokens: list[str], open_at: int) -> int | None:
    depth = 0
    for k in range(open_at, len(tokens)):
        depth += {"(": 1, ")": -1}.get(tokens[k], 0)
        if depth == 0:
            return k
    return None


def _is_ident(token: str) -> bool:
    return token[:1].isalpha() or token[:1] == "_"


def _reachable(obj: Mapping[str, Any], spec: tuple[Paths, Elements] | None) -> dict[str, Any]:
    if spec is None:
        return dict(obj)
    paths, elements = spec
    return {root: _prune(obj[root], [p[1:] for p in root_paths], (root,), elements)
            for root, root_paths in paths.items() if root in obj}


def _prune(value: Any, tails: list[tuple[str, ...]], at: tuple[str, ...],
           elements: Elements) -> Any:
    if any(not tail for tail in tails):
        fields = elements.get(at)
        if fields is None or not isinstance(value, list):
            return value
        return [{k: el[k] for k in fields if k in el} if isinstance(el, dict) else el
                for el in value]
    if not isinstance(value, Mapping):
        return value
    heads: dict[str, list[tuple[str, ...]]] = {}
    for tail in tails:
        heads.setdefault(tail[0], []).append(tail[1:])
    return {key: _prune(value[key], rest, at + (key,), elements)
            for key, rest in heads.items() if key in value}
