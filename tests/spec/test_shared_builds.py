"""``Fleet.shares_builds``: whether an application's raw build can serve another unit.

The render cache stores a raw build (and takes a fleet-wide lock to make it once) only
for an application that more than one unit renders from: one that targets several
clusters, or whose source path another application renders too.
"""

from __future__ import annotations

from pathlib import Path

from shared.spec.load import validate_file

FLEET = """\
sources:
  - name: git
    url: https://git.example.com/gitops.git
    branch: main
clusters:
  - name: prod
    labels: {env: prod}
  - name: staging
    labels: {env: staging}
  - name: edge
    labels: {env: prod}
applications:
  - {name: one-by-name, source: git, path: apps/a, clusters: {names: [prod, prod]}}
  - {name: two-by-name, source: git, path: apps/b, clusters: {names: [prod, staging]}}
  - {name: one-by-label, source: git, path: apps/c, clusters: {matchLabels: {env: staging}}}
  - {name: two-by-label, source: git, path: apps/d, clusters: {matchLabels: {env: prod}}}
  - {name: same-path-1, source: git, path: apps/e, clusters: {names: [prod]}}
  - {name: same-path-2, source: git, path: apps/e, clusters: {names: [edge]}}
"""


def test_only_a_build_another_unit_can_use_is_shared(tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text(FLEET)
    fleet, problems, _ = validate_file(str(path))
    assert fleet is not None, problems
    shared = {name: fleet.shares_builds(app) for name, app in fleet.applications.items()}
    assert shared == {"one-by-name": False, "two-by-name": True, "one-by-label": False,
                      "two-by-label": True, "same-path-1": True, "same-path-2": True}
