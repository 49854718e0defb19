"""Agreement of ``workers.apply.health.check`` with a corpus of expected verdicts.

A corpus is a directory of YAML files. Each file is either one object whose file
name starts with its expected verdict (``degraded_configError.yaml``,
``progressing-noStatus.yaml``), or a list of ``{name, expected, object}`` entries.
Expected words may be ours or a peer's: kstatus's Current/InProgress/Failed/
Terminating and Argo CD's Missing are mapped onto ours. Files in a subdirectory
count towards that source (``argocd/``, ``kstatus/``...). Prints the agreement per
source and group (built-in kinds vs custom resources) and each disagreement.

    PYTHONPATH=. python bench/health_corpus.py DIR [-q] [--time] [--lua-dir DIR]

``--lua-dir DIR`` judges every case with the rules a worker builds from
``HealthSettings(lua_dir=DIR)`` (Argo CD's ``resource_customizations`` tree, say),
and also counts, per source, the cases whose script failed (Unknown with a
message starting ``lua:``): those are runtime or corpus problems, not verdicts.

The corpus is not in the repository (the cases are the peers' test data). One is
built from: Argo CD's ``resource_customizations/<group>/<kind>/testdata/*.yaml`` with
the status that ``health_test.yaml`` expects per file; gitops-engine's (now
argo-cd's ``gitops-engine/``) ``pkg/health/testdata/*.yaml`` with the status
``health_test.go`` asserts; kstatus's inline manifests in
``pkg/kstatus/status/*_test.go``. Keep each source in a subdirectory (``argocd/``,
``gitops-engine/``, ``kstatus/``), and a set of kinds not looked at while tuning in one
of its own, to see how the readings carry over.
"""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterator

import yaml

from shared.spec.model import HealthSettings
from workers.apply.checks import build
from workers.apply.conditions import BUILTIN_GROUPS, group_of
from workers.apply.health import check
from workers.apply.verdict import DEFAULT_RULES, HealthRules

_WORDS = {"healthy": "Healthy", "current": "Healthy", "progressing": "Progressing",
          "inprogress": "Progressing", "terminating": "Progressing", "missing": "Progressing",
          "degraded": "Degraded", "failed": "Degraded", "suspended": "Suspended",
          "unknown": "Unknown"}


def cases(root: Path) -> Iterator[tuple[str, str, str, dict[str, Any]]]:
    """(source, name, expected, object) for every case under ``root``."""
    for path in sorted(root.rglob("*.y*ml")):
        rel = path.relative_to(root)
        source = rel.parts[0] if len(rel.parts) > 1 else "."
        data = yaml.safe_load(path.read_text())
        if isinstance(data, list):
            for entry in data:
                yield source, f"{rel}:{entry['name']}", _WORDS[entry["expected"].lower()], \
                    entry["object"]
            continue
        word = path.stem.replace("-", "_").split("_")[0].lower()
        if word in _WORDS and isinstance(data, dict):
            yield source, str(rel), _WORDS[word], data


def main(argv: list[str]) -> int:
    root, quiet = Path(argv[0]), "-q" in argv
    rules = DEFAULT_RULES
    if "--lua-dir" in argv:
        rules = build(HealthSettings(lua_dir=argv[argv.index("--lua-dir") + 1]))
    totals: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    failed: dict[str, int] = defaultdict(int)
    objects = []
    for source, name, expected, obj in cases(root):
        group = "built-in" if group_of(obj) in BUILTIN_GROUPS else "custom"
        objects.append(obj)
        verdict = check(obj, rules)
        ok = verdict[0] == expected
        errored = verdict[0] == "Unknown" and verdict[1].startswith("lua:")
        failed[source] += errored
        for key in ((source, group), (source, "all"), ("all", group), ("all", "all")):
            totals[key][0] += ok
            totals[key][1] += 1
        if not ok and not quiet:
            print(f"  {name}: expected {expected}, got {verdict[0]} ({verdict.rule}: "
                  f"{verdict[1][:80]})")
        elif errored and not quiet:
            print(f"  {name}: script failed, expected Unknown anyway ({verdict[1][:80]})")
    for (source, group), (good, count) in sorted(totals.items()):
        print(f"{source:>10} {group:>9}: {good}/{count} = {100 * good / count:.1f}%")
    if "--lua-dir" in argv:
        for source, count in sorted(failed.items()):
            print(f"{source:>10} lua script errors: {count}")
    if "--time" in argv:
        for group in ("built-in", "custom"):
            _time(group, [o for o in objects if (group_of(o) in BUILTIN_GROUPS) is
                          (group == "built-in")], rules)
    return 0


def _time(group: str, objects: list[dict[str, Any]], rules: HealthRules = DEFAULT_RULES) -> None:
    """The best of three runs of about 10,000 checks (a shared machine is noisy)."""
    if not objects:
        return
    rounds, best = max(1, 10_000 // len(objects)), float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(rounds):
            for obj in objects:
                check(obj, rules)
        best = min(best, (time.perf_counter() - start) / (rounds * len(objects)))
    print(f"check() on {group}: {best * 1e6:.1f} µs per object "
          f"(best of 3 x {rounds * len(objects)} checks)")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
