"""The setter markers on strings and on a directory: only the marked scalars change."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest

from shared.spec.images import ImagePolicy
from workers.images.setters import MAX_FILE, Change, set_images, set_text

REPO = "registry.example.com/apps/podinfo"
POLICIES = (ImagePolicy(name="podinfo", repository=REPO, kind="semver", value="^1",
                        namespace="flux-system"),
            ImagePolicy(name="web", repository="registry.example.com/web", kind="semver",
                        value="^2"))
FULL = '# {"$imagepolicy": "flux-system:podinfo"}'
TAG = '# {"$imagepolicy": "flux-system:podinfo:tag"}'
NAME = '# {"$imagepolicy": "flux-system:podinfo:name"}'


def run(text: str, chosen: dict[str, str] | None = None) -> tuple[str, list[Change], list[str]]:
    return set_text(text, "f.yaml", POLICIES, {"podinfo": "1.1.0"} if chosen is None else chosen)


def changed_lines(before: str, after: str) -> list[int]:
    """1-based numbers of the lines of ``before`` that differ in ``after`` (same line count)."""
    old, new = before.splitlines(keepends=True), after.splitlines(keepends=True)
    assert len(old) == len(new)
    return [i + 1 for i, (a, b) in enumerate(zip(old, new)) if a != b]


@pytest.mark.parametrize("line, expected", [
    (f"image: {REPO}:1.0.0 {FULL}", f"image: {REPO}:1.1.0 {FULL}"),
    (f"image: '{REPO}:1.0.0' {FULL}", f"image: '{REPO}:1.1.0' {FULL}"),
    (f'image: "{REPO}:1.0.0" {FULL}', f'image: "{REPO}:1.1.0" {FULL}'),
    (f"image: other.io/x:0.1   {FULL}", f"image: {REPO}:1.1.0   {FULL}"),
    (f"newTag: 1.0.0 {TAG}", f"newTag: 1.1.0 {TAG}"),
    (f'newTag: "1.0.0"{TAG.replace("# ", "#")}', f'newTag: "1.1.0"{TAG.replace("# ", "#")}'),
    (f"newName: old.io/podinfo {NAME}", f"newName: {REPO} {NAME}"),
    (f"tag: &t 1.0.0 {TAG}\nsame: *t", f"tag: &t 1.1.0 {TAG}\nsame: *t"),
    (f"tag: !!str 1.0.0 {TAG}", f"tag: !!str 1.1.0 {TAG}"),
    (f"tag: 1.0.0 {TAG}   ", f"tag: 1.1.0 {TAG}   "),
    (f"app: {{name: a, tag: 1.0.0}} {TAG}", f"app: {{name: a, tag: 1.1.0}} {TAG}"),
    (f"tags: [a, 1.0.0] {TAG}", f"tags: [a, 1.1.0] {TAG}"),
    (f"list:\n- {REPO}:1.0.0 {FULL}", f"list:\n- {REPO}:1.1.0 {FULL}"),
    (f'tag: 1.0.0 # {{"$imagepolicy":"flux-system:podinfo:tag"}}',
     f'tag: 1.1.0 # {{"$imagepolicy":"flux-system:podinfo:tag"}}'),
])
def test_one_marked_line(line: str, expected: str) -> None:
    text = f"# head\nother: 1.0.0  # not a marker\n{line}\nlast: x\n"
    new, changes, problems = run(text)
    assert problems == []
    assert new == f"# head\nother: 1.0.0  # not a marker\n{expected}\nlast: x\n"
    assert [c.line for c in changes] == [3 + line.startswith("list:")]


def test_a_plain_value_that_would_read_as_a_number_is_quoted() -> None:
    new, changes, _ = run(f"tag: 1.0.0 {TAG}\n", {"podinfo": "1.10"})
    assert new == f'tag: "1.10" {TAG}\n'
    assert changes[0].new == "1.10"


def test_single_quotes_inside_a_single_quoted_value_are_doubled() -> None:
    new, _, _ = run(f"tag: 'x' {TAG}\n", {"podinfo": "it's"})
    assert new == f"tag: 'it''s' {TAG}\n"


def test_windows_line_endings_stay() -> None:
    text = f"a: 1\r\nimage: {REPO}:1.0.0 {FULL}\r\n# c\r\nb: 2\r\n"
    new, changes, problems = run(text)
    assert problems == [] and len(changes) == 1
    assert new == text.replace("1.0.0", "1.1.0")


def test_a_byte_order_mark_stays() -> None:
    text = f"\ufeffa: 1\ntag: 1.0.0 {TAG}\n"
    new, changes, _ = run(text)
    assert new == text.replace("1.0.0", "1.1.0") and [c.line for c in changes] == [2]


def test_non_ascii_text_before_a_marker_keeps_the_offsets() -> None:
    text = f"# déjà vu 🚀\nname: café\ntags: {{a: ü, b: 1.0.0}} {TAG}\n"
    new, _, problems = run(text)
    assert problems == [] and new == text.replace("1.0.0", "1.1.0")


def test_name_colon_tag_without_namespace_when_no_policy_is_named_tag() -> None:
    text = 'tag: 2.0.0 # {"$imagepolicy": "web:tag"}\nrepo: x # {"$imagepolicy": "web:name"}\n'
    new, changes, problems = run(text, {"web": "2.1.0"})
    assert problems == []
    assert new == text.replace("2.0.0", "2.1.0").replace("repo: x", "repo: registry.example.com/web")


def test_every_document_of_a_multi_document_file() -> None:
    text = (f"---\nkind: A\nimage: {REPO}:1.0.0 {FULL}\n---\n# between\n"
            f"kind: B\nspec:\n  tag: 1.0.0 {TAG}\n...\n---\nkind: C\n")
    new, changes, problems = run(text)
    assert problems == []
    assert [c.line for c in changes] == [3, 8]
    assert changed_lines(text, new) == [3, 8]


def test_the_chosen_tag_already_there_changes_nothing() -> None:
    text = f"image: {REPO}:1.1.0 {FULL}\ntag: 1.1.0 {TAG}\n"
    assert run(text) == (text, [], [])


def test_a_policy_with_nothing_chosen_leaves_its_markers() -> None:
    text = f"tag: 1.0.0 {TAG}\n"
    assert run(text, {}) == (text, [], [])


def test_a_bare_name_and_a_policy_without_namespace() -> None:
    text = ('a: registry.example.com/web:2.0.0 # {"$imagepolicy": "web"}\n'
            'b: 2.0.0 # {"$imagepolicy": "any-ns:web:tag"}\n')
    new, changes, problems = run(text, {"web": "2.1.0"})
    assert problems == []
    assert new == text.replace("2.0.0", "2.1.0")
    assert {c.policy for c in changes} == {"web"}


@pytest.mark.parametrize("marker, problem", [
    ('{"$imagepolicy": "flux-system:nope"}', "marker names policy 'flux-system:nope', "
                                             "which is not in images:"),
    ('{"$imagepolicy": "other-ns:podinfo"}', "marker names policy 'other-ns:podinfo'"),
    ('{"$imagepolicy": "flux-system:podinfo:digest"}', ":digest marker is not supported"),
    ('{"$imagepolicy": "flux-system:podinfo:size"}', "attribute 'size' is not one of"),
    ('{"$imagepolicy": "a:b:c:d"}', "is not NAMESPACE:NAME[:tag|:name]"),
    ('{"$imagepolicy": 3}', 'must be {"$imagepolicy": "NAMESPACE:NAME"}'),
    ('{"$imagepolicy": "x", }', "is not a JSON object"),
])
def test_bad_markers_are_named_with_file_and_line(marker: str, problem: str) -> None:
    text = f"ok: {REPO}:1.0.0 {FULL}\nimage: {REPO}:1.0.0 # {marker}\n"
    _, _, problems = run(text)
    assert len(problems) == 1
    assert problems[0].startswith("f.yaml:2: ") and problem in problems[0]


def test_a_marker_after_no_value_is_named() -> None:
    _, _, problems = run(f"containers: {FULL}\n  - image: x\n")
    assert problems == ["f.yaml:1: an $imagepolicy marker with no value before it on its line "
                        "(a marker follows the value it sets)"]


def test_a_file_that_is_not_yaml_is_named() -> None:
    _, _, problems = run(f"a: [1, 2\nimage: {REPO}:1.0.0 {FULL}\n")
    assert len(problems) == 1 and problems[0].startswith("f.yaml:") and "not valid YAML" in problems[0]


def test_a_marker_text_inside_a_quoted_value_is_not_a_marker() -> None:
    text = 'note: "# {\\"$imagepolicy\\": \\"x\\"}"\n'
    assert run(text) == (text, [], [])


def write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_a_directory_only_yaml_files_below_the_path(tmp_path: Path) -> None:
    marked = f"image: {REPO}:1.0.0 {FULL}\n"
    for rel in ("clusters/a/app.yaml", "clusters/b.yml", "clusters/notes.txt", "other/c.yaml"):
        write(tmp_path, rel, marked)
    result = set_images(tmp_path, POLICIES, {"podinfo": "1.1.0"}, below="clusters")
    assert [(c.file, c.line) for c in result.changes] == [("clusters/b.yml", 1),
                                                          ("clusters/a/app.yaml", 1)]
    assert (tmp_path / "clusters/a/app.yaml").read_text() == marked.replace("1.0.0", "1.1.0")
    assert (tmp_path / "clusters/notes.txt").read_text() == marked
    assert (tmp_path / "other/c.yaml").read_text() == marked


def test_symlinks_and_large_files_are_skipped_and_named(tmp_path: Path) -> None:
    outside = write(tmp_path, "outside/secret.yaml", f"image: {REPO}:1.0.0 {FULL}\n")
    root = tmp_path / "repo"
    write(root, "apps/big.yaml", f"image: {REPO}:1.0.0 {FULL}\n" + "#" * MAX_FILE)
    (root / "apps/link.yaml").symlink_to(outside)
    (root / "linked").symlink_to(outside.parent)
    result = set_images(root, POLICIES, {"podinfo": "1.1.0"})
    assert result.changes == () and result.problems == ()
    assert sorted(result.skipped) == sorted((f"apps/big.yaml: larger than {MAX_FILE} bytes",
                              f"apps/link.yaml: a symlink (to {str(outside)!r}), not followed",
                              "linked: a symlinked directory, not followed"))
    assert outside.read_text() == f"image: {REPO}:1.0.0 {FULL}\n"


def test_a_file_name_with_a_newline_is_skipped(tmp_path: Path) -> None:
    write(tmp_path, "a\n- evil.yaml", f"image: {REPO}:1.0.0 {FULL}\n")
    result = set_images(tmp_path, POLICIES, {"podinfo": "1.1.0"})
    assert result.changes == ()
    assert result.skipped == ("a\n- evil.yaml: a name with control characters "
                              "(it would go into the message)",)


@pytest.mark.parametrize("below", ["../", "/etc", "a/../../x", "missing", "link"])
def test_a_path_outside_the_tree_is_refused(tmp_path: Path, below: str) -> None:
    (tmp_path / "link").symlink_to("/etc")
    result = set_images(tmp_path, POLICIES, {"podinfo": "1.1.0"}, below=below)
    assert result.changes == () and len(result.problems) == 1
    assert result.problems[0].startswith(f"imageUpdates.path {below!r}")


def test_a_file_with_a_problem_is_not_written(tmp_path: Path) -> None:
    text = f"image: {REPO}:1.0.0 {FULL}\nother: x # {{\"$imagepolicy\": \"nope\"}}\n"
    path = write(tmp_path, "app.yaml", text)
    result = set_images(tmp_path, POLICIES, {"podinfo": "1.1.0"})
    assert result.changes == ()
    assert result.problems == ("app.yaml:2: marker names policy 'nope', which is not in images:",)
    assert path.read_text() == text


def test_only_the_marked_lines_differ_in_a_realistic_file(tmp_path: Path) -> None:
    text = ("# A Deployment, hand-written\napiVersion: apps/v1\nkind: Deployment\n"
            "metadata:\n  name: podinfo   # the app\n  labels: {app: podinfo, tier: \"web\"}\n"
            "spec:\n\n  template:\n    spec:\n      containers:\n"
            f"        - name: app\n          image: {REPO}:1.0.0 {FULL}\n"
            "          args: ['--port', \"9898\"]\n"
            f"        - name: side\n          image: 'registry.example.com/web:2.0.0' "
            '# {"$imagepolicy": "web"}\n'
            "          resources:\n            limits: {cpu: 100m}\n")
    path = write(tmp_path, "deploy.yaml", text)
    result = set_images(tmp_path, POLICIES, {"podinfo": "1.1.0", "web": "2.3.1"})
    after = path.read_text()
    assert changed_lines(text, after) == [13, 16]
    diff = [ln for ln in difflib.unified_diff(text.splitlines(), after.splitlines(), lineterm="")
            if ln[:1] in "+-" and ln[:3] not in ("+++", "---")]
    assert sorted(diff) == sorted([
        f"-          image: {REPO}:1.0.0 {FULL}",
        "-          image: 'registry.example.com/web:2.0.0' # {\"$imagepolicy\": \"web\"}",
        f"+          image: {REPO}:1.1.0 {FULL}",
        "+          image: 'registry.example.com/web:2.3.1' # {\"$imagepolicy\": \"web\"}"])
    assert [(c.line, c.old, c.new) for c in result.changes] == [
        (13, f"{REPO}:1.0.0", f"{REPO}:1.1.0"),
        (16, "registry.example.com/web:2.0.0", "registry.example.com/web:2.3.1")]
