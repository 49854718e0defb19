"""``fleetsync import argocd|flux PATH... [-o FILE]``: a fleet spec from Argo CD or Flux
manifests (files, directories, ``kubectl get -o yaml`` lists).

The spec goes to ``-o`` (or stdout), the summary of what was skipped or has no
counterpart to stderr. Exit 0 when every object was imported (notes about
fields without a counterpart may still be printed: they are comments in the
output too); exit 1 when an input was skipped: a file that does not parse, a
document that is not a Kubernetes object, an object or generator that could not
be imported. The rest is written either way.
"""

from __future__ import annotations

import argparse
import sys

from scheduler.importers import argocd, flux
from scheduler.importers.common import Import, read_manifests, render

BUILDERS = {"argocd": (argocd.build, "Argo CD"), "flux": (flux.build, "Flux")}


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("import", help="write a fleet spec from Argo CD or Flux manifests")
    parser.add_argument("tool", choices=sorted(BUILDERS), help="whose manifests they are")
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="YAML files or directories (walked; multi-document and kind: List)")
    parser.add_argument("-o", "--output", help="the fleet spec to write (default: stdout)")
    parser.set_defaults(func=run)


def convert(tool: str, paths: list[str]) -> tuple[str, Import]:
    """The spec text and what was imported, skipped and noted."""
    build, origin = BUILDERS[tool]
    result = Import()
    build(read_manifests(paths, result), result)
    return render(result, origin), result


def run(args: argparse.Namespace) -> int:
    text, result = convert(args.tool, args.paths)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            handle.write(text)
    else:
        sys.stdout.write(text)
    for line in result.summary():
        print(line, file=sys.stderr)
    print(f"imported {len(result.sources)} source(s), {len(result.clusters)} cluster(s), "
          f"{len(result.applications)} application(s); {len(result.skipped)} input(s) skipped",
          file=sys.stderr)
    return 1 if result.skipped else 0
