"""Agreement of ``workers.apply.health.check`` with a corpus of expected verdicts.

A corpus is a directory of YAML files. Each file is either one object whose file
name starts with its expected verdict (``degraded_configError.yaml``,
``progressing-noStatus.yaml``; kstatus's words Current/InProgress/Failed/Terminating
are accepted too), or a list of ``{name, expected, object}`` entries. Prints the
agreement per group (built-in kinds vs custom resources) and each disagreement.

    PYTHONPATH=. python bench/health_corpus.py DIR [-q]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Iterator

import yaml

from workers.apply.conditions import BUILTIN_GROUPS, group_of
from workers.apply.health import check

_WORDS = {"healthy": "Healthy", "current": "Healthy", "progressing": "Progressing",
          "inprogress": "Progressing", "terminating": "Progressing", "degraded": "Degraded",
          "failed": "Degraded", "suspended": "Suspended", "unknown": "Unknown"}


def cases(root: Path) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path in sorted(root.rglob("*.y*ml")):
        data = yaml.safe_load(path.read_text())
        if isinstance(data, list):
            for entry in data:
                yield f"{path.name}:{entry['name']}", _WORDS[entry["expected"].lower()], \
                    entry["object"]
            continue
        word = path.stem.replace("-", "_").split("_")[0].lower()
        if word in _WORDS and isinstance(data, dict):
            yield str(path.relative_to(root)), _WORDS[word], data


def main(argv: list[str]) -> int:
    root, quiet = Path(argv[0]), "-q" in argv
    totals: dict[str, list[int]] = {"built-in": [0, 0], "custom": [0, 0]}
    for name, expected, obj in cases(root):
        group = "built-in" if group_of(obj) in BUILTIN_GROUPS else "custom"
        verdict = check(obj)
        ok = verdict[0] == expected
        totals[group][0] += ok
        totals[group][1] += 1
        if not ok and not quiet:
            print(f"  {name}: expected {expected}, got {verdict[0]} ({verdict.rule}: "
                  f"{verdict[1][:80]})")
    for group, (good, count) in totals.items():
        if count:
            print(f"{group}: {good}/{count} = {100 * good / count:.1f}%")
    good, count = (sum(t[i] for t in totals.values()) for i in (0, 1))
    print(f"all: {good}/{count} = {100 * good / max(count, 1):.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
