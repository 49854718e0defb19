"""The pure parts of image automation's pass, its beat entries, its names for people."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from scheduler.beat import entries, image_entries
from scheduler.commands.images import scan_text, status_table
from scheduler.images_view import tag_of
from shared import tasks_api
from shared.spec.images import ImagePolicy, ImageUpdates
from shared.spec.load import load
from workers.images import readmarkers
from workers.images.automation import _without_userinfo, chosen_tags, unchanged

SPEC = """\
sources:
  - name: fleet
    url: file:///srv/fleet.git
    branch: main
    interval: 2m
  - name: other
    url: file:///srv/other.git
    branch: main
clusters:
  - {name: a, labels: {env: prod}}
applications:
  - {name: web, source: fleet, path: apps, clusters: {names: [a]}}
"""


def _fleet(tmp_path: Path):
    spec = tmp_path / "fleet.yaml"
    spec.write_text(SPEC)
    fleet = load(str(spec), allow_local=True)
    policies = (ImagePolicy("podinfo", "reg.example/apps/podinfo", "semver", "^1", interval=60),
                ImagePolicy("nginx", "reg.example/nginx", "semver", "^1", interval=60),
                ImagePolicy("slow", "reg.example/slow", "numerical", "asc", interval=600))
    sources = dict(fleet.sources)
    sources["fleet"] = replace(sources["fleet"], image_updates=ImageUpdates(interval=120))
    return replace(fleet, images=policies, sources=sources)


def test_beat_groups_policies_of_one_interval_and_adds_one_entry_per_image_source(tmp_path):
    found = image_entries(_fleet(tmp_path))
    assert set(found) == {"images:60s", "images:600s", "image-updates:fleet"}
    assert found["images:60s"]["args"] == [["podinfo", "nginx"]]
    assert found["images:60s"]["task"] == tasks_api.SCAN_IMAGES
    assert found["images:600s"]["schedule"].total_seconds() == 600
    assert found["image-updates:fleet"]["args"] == [[]]
    assert found["image-updates:fleet"]["kwargs"] == {"sources": ["fleet"], "trigger": "beat"}
    assert found["image-updates:fleet"]["schedule"].total_seconds() == 120
    assert found["images:60s"]["options"]["argsrepr"] == "scan images podinfo, nginx (beat)"
    assert set(found) <= set(entries(_fleet(tmp_path)))


def test_flower_names_the_policies_of_a_scan():
    assert tasks_api.describe(tasks_api.SCAN_IMAGES, [["podinfo", "nginx"]],
                              {"force": True}) == "scan images podinfo, nginx (forced)"
    assert tasks_api.describe(tasks_api.SCAN_IMAGES, [[]], {"sources": ["fleet"],
                                                            "trigger": "beat"}) \
        == "image updates for fleet (beat)"
    assert tasks_api.route(tasks_api.SCAN_IMAGES, [["a"]]) == "fetch"


def test_policies_without_a_good_record_are_left_out_and_named():
    policies = [ImagePolicy(n, f"reg.example/{n}", "semver", "^1") for n in ("a", "b", "c")]
    records = {"a": {"tag": "1.1.0", "error": ""}, "b": {"tag": "1.0.0", "error": "registry down"}}
    chosen, left_out = chosen_tags(policies, records)
    assert chosen == {"a": "1.1.0"}
    assert left_out == ["b: registry down", "c: not scanned yet"]


def test_a_source_is_left_alone_only_when_its_last_pass_set_the_same_tags_lately():
    now = time.time()
    last = {"chosen": {"a": "1.1.0"}, "at": now - 5, "problems": [], "error": None}
    assert unchanged(last, {"a": "1.1.0"}, 60)
    assert not unchanged(last, {"a": "1.2.0"}, 60)
    assert not unchanged(last, {"a": "1.1.0"}, 1)
    assert not unchanged({**last, "problems": ["x.yaml:1: bad"]}, {"a": "1.1.0"}, 60)
    assert not unchanged({**last, "error": "push refused"}, {"a": "1.1.0"}, 60)
    assert not unchanged(None, {}, 60)


def test_markers_are_read_with_their_file_line_and_value(tmp_path):
    (tmp_path / "apps").mkdir()
    (tmp_path / "apps" / "web.yaml").write_text(
        "spec:\n  containers:\n"
        '    - image: reg.example/apps/podinfo:1.0.0 # {"$imagepolicy": "flux-system:podinfo"}\n'
        "      name: web\n")
    (tmp_path / "apps" / "values.yaml").write_text(
        'image:\n  repository: reg.example/nginx # {"$imagepolicy": "nginx:name"}\n'
        '  tag: "1.25.0" # {"$imagepolicy": "nginx:tag"}\n')
    (tmp_path / "apps" / "notes.txt").write_text('x: y # {"$imagepolicy": "nginx"}\n')
    (tmp_path / "outside.yaml").write_text('image: a:1 # {"$imagepolicy": "podinfo"}\n')
    found = readmarkers.markers(tmp_path, "apps")
    assert found == [
        {"file": "apps/values.yaml", "line": 2, "policy": "nginx", "part": "name",
         "value": "reg.example/nginx"},
        {"file": "apps/values.yaml", "line": 3, "policy": "nginx", "part": "tag",
         "value": "1.25.0"},
        {"file": "apps/web.yaml", "line": 3, "policy": "podinfo", "part": "image",
         "value": "reg.example/apps/podinfo:1.0.0"}]
    assert [tag_of(m) for m in found] == ["", "1.25.0", "1.0.0"]
    assert readmarkers.markers(tmp_path, "../..") == []


def test_repository_lock_keys_never_carry_credentials():
    assert _without_userinfo("https://bot:tok@git.example/fleet.git") \
        == "https://git.example/fleet.git"
    assert _without_userinfo("git@git.example:fleet.git") == "git@git.example:fleet.git"


def test_what_a_scan_chose_and_committed_reads_as_lines():
    result = {"unknown": ["nope"],
              "policies": [{"policy": "podinfo", "tag": "1.1.0", "previous": "1.0.0",
                            "digest": "sha256:" + "a" * 64, "why": "1.1.0 > 1.0.0 by semver ^1"},
                           {"policy": "gone", "error": "registry unreachable"}],
              "sources": [{"source": "fleet", "commit": "c0ffee" * 6, "branch": "main",
                           "changes": [{"file": "apps/web.yaml", "line": 3, "policy": "podinfo",
                                        "old": "r:1.0.0", "new": "r:1.1.0"}],
                           "problems": [], "left_out": ["gone: registry unreachable"]}]}
    assert scan_text(result).splitlines() == [
        "unknown policy: nope",
        "podinfo: 1.1.0 (was 1.0.0) sha256:aaaaaaaaaaaa 1.1.0 > 1.0.0 by semver ^1",
        "gone: error: registry unreachable",
        "fleet: commit c0ffeec0ffee pushed to main",
        "  apps/web.yaml:3 podinfo: r:1.0.0 -> r:1.1.0",
        "  left out: gone: registry unreachable"]


def test_status_table_shows_latest_git_and_clusters():
    found = {"policies": [{"name": "podinfo", "repository": "reg.example/podinfo",
                           "tag": "1.1.0", "digest": "sha256:abc", "why": "1.1.0 > 1.0.0",
                           "error": "", "at": 100.0,
                           "git": [{"source": "fleet", "revision": "abcdef0123", "file": "a.yaml",
                                    "line": 3, "value": "reg.example/podinfo:1.1.0"}],
                           "clusters": [{"cluster": "prod", "tag": "1.0.0", "phase": "Ready"},
                                        {"cluster": "stage", "tag": "1.1.0", "phase": "Ready"}]}],
             "sources": [{"name": "fleet", "push_branch": "main", "at": 100.0,
                          "commit": "abcdef0123", "changes": [{}], "subject": "Update images",
                          "problems": [], "left_out": [], "error": None}]}
    lines = status_table(found, 130.0).splitlines()
    assert lines[1].split()[:4] == ["podinfo", "reg.example/podinfo", "1.1.0", "sha256:abc"]
    assert "30s ago" in lines[1]
    assert "  git fleet@abcdef0: a.yaml:3 = reg.example/podinfo:1.1.0" in lines
    assert "  clusters at 1.0.0: prod (Ready)" in lines
    assert "  clusters at 1.1.0: stage (Ready)" in lines
    assert lines[-1].startswith("source fleet (push to main): commit abcdef0123")


def test_flower_cannot_start_a_scan_unless_listed_beat_and_the_cli_can():
    from scheduler.app import allowed

    assert tasks_api.SCAN_IMAGES not in allowed("flower")
    assert tasks_api.SCAN_IMAGES in allowed("flower", tasks_api.SCAN_IMAGES)
    assert tasks_api.SCAN_IMAGES in allowed("beat") and tasks_api.SCAN_IMAGES in allowed("")
