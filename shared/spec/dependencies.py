"""The fleet spec's ``dependsOn`` graph: every entry names an application, none loops.

Checked once all applications are read (a dependency may be listed after the
application that names it), so ``load`` calls ``check_dependencies`` with the
built applications and their mappings; problems point at the ``dependsOn``
entry or key of the file. ``find_cycles`` is the pure graph search (iterative,
tested on its own).
"""

from __future__ import annotations

from typing import Mapping, Sequence

from yaml.nodes import SequenceNode

from shared.spec import yaml as y
from shared.spec.application import Built
from shared.spec.model import Application
from shared.spec.yaml import Report


def check_dependencies(apps: Mapping[str, Built[Application]], report: Report) -> None:
    """Every dependsOn entry names an application, and no chain of them loops."""
    for app, m in apps.values():
        node = m.values.get("dependsOn")
        for i, item in enumerate(node.value if isinstance(node, SequenceNode) else []):
            if item.tag == y.STR and item.value not in apps:
                report.error(item, f"{m.at('dependsOn')}[{i}]", f"no application named {item.value!r}")
    graph = {name: [d for d in app.depends_on if d in apps] for name, (app, _) in apps.items()}
    for cycle in find_cycles(graph):
        m = apps[cycle[0]][1]
        report.error(m.values["dependsOn"], m.at("dependsOn"), f"dependency cycle {' -> '.join(cycle)}")


def find_cycles(graph: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """Cycles in a dependency graph, each as ``[a, b, a]``, found in the graph's order.

    Iterative depth-first search, so a long chain of applications cannot exhaust
    the interpreter's stack. Edges to names missing from the graph are ignored.
    """
    state: dict[str, str] = {}
    cycles: list[list[str]] = []
    for root in graph:
        if root in state:
            continue
        path, stack = [root], [iter(graph[root])]
        state[root] = "open"
        while stack:
            dep = next(stack[-1], None)
            if dep is None:
                state[path.pop()] = "done"
                stack.pop()
            elif state.get(dep) == "open":
                cycles.append(path[path.index(dep):] + [dep])
            elif dep not in state and dep in graph:
                state[dep] = "open"
                path.append(dep)
                stack.append(iter(graph[dep]))
    return cycles
