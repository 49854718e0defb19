"""Pure decisions of the pipeline: which clusters a source feeds, what identifies a unit's spec."""

from __future__ import annotations

from dataclasses import replace

from shared.spec.model import Application, Cluster, Fleet, Selector, Source
from workers.run.stages import clusters_using, unit_spec_hash


def fleet(suspend: bool = False, replicas: str = "3") -> Fleet:
    sources = {n: Source(n, f"file:///srv/{n}.git", "branch", "main", 60) for n in ("a", "b")}
    clusters = {n: Cluster(n, labels={"env": n}, vars={"replicas": replicas})
                for n in ("prod", "stage", "dev")}
    apps = {
        "web": Application("web", "a", "web", Selector(names=("prod", "stage"))),
        "ops": Application("ops", "b", "ops", Selector(match_labels={"env": "dev"}), suspend=suspend),
    }
    return Fleet(sources, clusters, apps)


def test_clusters_using_a_source():
    assert clusters_using(fleet(), "a") == ["prod", "stage"]
    assert clusters_using(fleet(), "b") == ["dev"]
    assert clusters_using(fleet(suspend=True), "b") == []


def test_spec_hash_follows_the_unit_spec_only():
    f = fleet()
    web, prod = f.applications["web"], f.clusters["prod"]
    assert unit_spec_hash(f, web, prod) == unit_spec_hash(fleet(), web, prod)
    changed = fleet(replicas="5")
    assert unit_spec_hash(changed, web, changed.clusters["prod"]) != unit_spec_hash(f, web, prod)
    assert unit_spec_hash(f, replace(web, prune=False), prod) != unit_spec_hash(f, web, prod)
