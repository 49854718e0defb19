"""Plain directories as people lay them out, rendered from real Git checkouts.

Each test writes a repository like one found in the wild (an ``all-in-one/``
variant beside the split files, non-Kubernetes YAML under ``files/``, a Flux
cluster directory with a ``flux-system/`` kustomization, an application
rewritten into Jsonnet), commits it, fetches it through ``SourceCache`` and
renders the read-only checkout, as a worker does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shared.errors import RenderError
from shared.spec.model import Application, Cluster, Directory, Selector
from tests.support.gitrender import Repo
from workers.render import kustomize
from workers.render.engine import render, render_unit
from workers.render.cache import RenderCache


def cm(name: str, **data: str) -> str:
    body = "".join(f"\n  {k}: '{v}'" for k, v in data.items())
    return f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:{body or ' {}'}\n"


def svc(name: str) -> str:
    return (f"apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n"
            f"  selector: {{app: {name}}}\n  ports: [{{port: 80}}]\n")


def app(path: str, **kw: Any) -> Application:
    return Application(name="shop", source="gitops", path=path, clusters=Selector(names=("c",)), **kw)


def names(objects: list[dict[str, Any]]) -> list[str]:
    return [f"{o['kind']}/{o['metadata'].get('namespace', '')}/{o['metadata']['name']}" for o in objects]


@pytest.fixture()
def repo(tmp_path: Path) -> Repo:
    return Repo(tmp_path)


def needs_kustomize() -> None:
    try:
        kustomize.command()
    except RenderError as exc:
        pytest.skip(str(exc))


# --- which files: the directory's own by default, recurse/include/exclude for the rest -----

MICROSERVICES = {      # the split files, and the same objects again in one file
    "deploy/frontend.yaml": svc("frontend"),
    "deploy/cart.yaml": svc("cart"),
    "deploy/all-in-one/complete-demo.yaml": svc("frontend") + "---\n" + svc("cart"),
}


def test_an_all_in_one_variant_beside_split_files_is_not_read_by_default(repo: Repo) -> None:
    tree = repo.write(MICROSERVICES).tree()
    assert names(render(app("deploy"), Cluster("c"), tree)) == ["Service//cart", "Service//frontend"]


def test_recurse_reads_sub_directories_and_exclude_leaves_one_out(repo: Repo) -> None:
    tree = repo.write(MICROSERVICES).tree()
    with pytest.raises(RenderError, match=r"Service cart is defined twice: in "
                                          r"deploy/all-in-one/complete-demo\.yaml:9 and in deploy/cart\.yaml:1"):
        render(app("deploy", directory=Directory(recurse=True)), Cluster("c"), tree)
    for exclude in ("all-in-one", "all-in-one/*", "*/complete-demo.yaml"):
        options = Directory(recurse=True, exclude=(exclude,))
        assert names(render(app("deploy", directory=options), Cluster("c"), tree)) == [
            "Service//cart", "Service//frontend"], exclude


def test_include_picks_files_by_name_or_path(repo: Repo) -> None:
    tree = repo.write({"deploy/a.yaml": cm("a"), "deploy/b.yml": cm("b"), "deploy/c.json": "{}",
                       "deploy/x/d.yaml": cm("d"), "deploy/x/e.yaml": cm("e")}).tree()
    only_yaml = Directory(recurse=True, include=("*.yaml",))
    assert names(render(app("deploy", directory=only_yaml), Cluster("c"), tree)) == [
        "ConfigMap//a", "ConfigMap//d", "ConfigMap//e"]
    by_path = Directory(recurse=True, include=("x/d.yaml", "b.yml"))
    assert names(render(app("deploy", directory=by_path), Cluster("c"), tree)) == [
        "ConfigMap//b", "ConfigMap//d"]


def test_yaml_that_is_not_kubernetes_is_skipped_with_a_warning(repo: Repo) -> None:
    tree = repo.write({
        "chart/templates/cm.yaml": cm("settings"),
        "chart/files/config.yaml": "log_level: debug\nlisteners: [80, 443]\n",
        "chart/files/list.yaml": "- one\n- two\n",
        "chart/values.json": '{"replicas": 3}',
    }).tree()
    rendered = render_unit(app("chart", directory=Directory(recurse=True)), Cluster("c"), tree,
                           None, "")
    assert names(rendered.objects) == ["ConfigMap//settings"]
    assert rendered.warnings == (
        "chart/files/config.yaml:1: skipped, not a Kubernetes object (no apiVersion and no kind)",
        "chart/files/list.yaml:1: skipped, not a Kubernetes object (a list, not a mapping)",
        "chart/values.json:1: skipped, not a Kubernetes object (no apiVersion and no kind)")


def test_half_an_object_is_refused(repo: Repo) -> None:
    tree = repo.write({"deploy/ok.yaml": cm("ok"),
                       "deploy/half.yaml": "kind: ConfigMap\nmetadata: {name: half}\n"}).tree()
    with pytest.raises(RenderError, match=r"deploy/half\.yaml:1: object has no apiVersion"):
        render(app("deploy"), Cluster("c"), tree)


def test_warnings_survive_the_render_cache(repo: Repo, redis_client) -> None:
    tree = repo.write({"deploy/cm.yaml": cm("a") + "---\nnot: kubernetes\n"}).tree()
    cache = RenderCache(redis_client, 60)
    first = render_unit(app("deploy"), Cluster("c"), tree, cache, "rev1")
    again = render_unit(app("deploy"), Cluster("c"), tree, cache, "rev1")
    assert first.warnings == again.warnings == (
        "deploy/cm.yaml:7: skipped, not a Kubernetes object (no apiVersion and no kind)",)
    assert again.hit and again.key == first.key and again.objects == first.objects


def test_directory_options_are_part_of_the_cache_key(repo: Repo, redis_client) -> None:
    tree = repo.write(MICROSERVICES).tree()
    cache = RenderCache(redis_client, 60)
    flat = render_unit(app("deploy"), Cluster("c"), tree, cache, "rev1")
    options = Directory(recurse=True, exclude=("*/complete-demo.yaml",), include=("*.yaml",))
    deep = render_unit(app("deploy", directory=options), Cluster("c"), tree, cache, "rev1")
    assert flat.key != deep.key and not deep.hit


# --- the Flux layout: plain files plus a sub-directory that is a kustomization -----------

def test_a_sub_directory_with_a_kustomization_is_built_with_kustomize(repo: Repo) -> None:
    needs_kustomize()
    tree = repo.write({
        "clusters/prod/namespace.yaml": "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n",
        "clusters/prod/settings.yaml": cm("settings", env="prod"),
        "clusters/prod/flux-system/kustomization.yaml":
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
            "namespace: flux-system\nresources: [gotk.yaml]\ncommonLabels: {part-of: flux}\n",
        "clusters/prod/flux-system/gotk.yaml": cm("gotk-sync"),
        "clusters/prod/notes/README.yaml": "title: not read, not a kustomization\n",
    }).tree()
    objects = render(app("clusters/prod", namespace="shop"), Cluster("c"), tree)
    assert names(objects) == ["Namespace//shop", "ConfigMap/flux-system/gotk-sync",
                              "ConfigMap/shop/settings"]
    assert objects[1]["metadata"]["labels"] == {"part-of": "flux"}


def test_an_error_in_a_sub_kustomization_names_it(repo: Repo) -> None:
    needs_kustomize()
    tree = repo.write({"clusters/prod/a.yaml": cm("a"),
                       "clusters/prod/infra/kustomization.yaml": "resources: [missing.yaml]\n"}).tree()
    with pytest.raises(RenderError, match=r"clusters/prod/infra: kustomize build failed"):
        render(app("clusters/prod"), Cluster("c"), tree)


# --- formats fleetsync does not render: refused by name, never rendered to nothing -------

@pytest.mark.parametrize("rel, text, why", [
    ("app/main.jsonnet", "{}", "Jsonnet is not rendered"),
    ("app/lib/util.libsonnet", "{}", "Jsonnet is not rendered"),
    ("app/app.cue", "package app\n", "CUE is not rendered"),
])
def test_an_app_rewritten_into_an_unsupported_format_fails_naming_the_file(
        repo: Repo, rel: str, text: str, why: str) -> None:
    tree = repo.write({rel: text, "app/README.md": "moved to jsonnet\n"}).tree()
    options = Directory(recurse=True)
    with pytest.raises(RenderError) as err:
        render(app("app", directory=options), Cluster("c"), tree)
    assert err.value.message.startswith(f"{rel}: not supported: {why}")
    assert "directory.exclude" in err.value.message
    excluded = Directory(recurse=True, exclude=("*.jsonnet", "*.libsonnet", "*.cue"))
    assert render(app("app", directory=excluded), Cluster("c"), tree) == []


def test_a_helm_chart_below_a_plain_directory_is_not_supported(repo: Repo) -> None:
    # (an application whose path is the chart's directory renders it with helm: test_helm_*)
    tree = repo.write({"charts/web/Chart.yaml": "apiVersion: v2\nname: web\nversion: 1.0.0\n",
                       "charts/web/templates/deployment.yaml": "{{- if .Values.enabled }}\nkind: x\n",
                       "charts/web/values.yaml": "enabled: true\n"}).tree()
    with pytest.raises(RenderError, match=r"charts/web/Chart\.yaml: not supported"):
        render(app("charts", directory=Directory(recurse=True)), Cluster("c"), tree)
    assert render(app("charts"), Cluster("c"), tree) == []       # not read without recurse


# --- objects fleetsync cannot manage by name -------------------------------------------

def test_generate_name_is_refused_with_what_to_do(repo: Repo) -> None:
    tree = repo.write({"jobs/migrate.yaml": "apiVersion: batch/v1\nkind: Job\n"
                                            "metadata: {generateName: migrate-}\nspec: {}\n"}).tree()
    with pytest.raises(RenderError) as err:
        render(app("jobs"), Cluster("c"), tree)
    assert err.value.message.startswith("jobs/migrate.yaml:1: Job migrate- has metadata.generateName")
    assert "give it a fixed metadata.name" in err.value.message


def test_a_helm_hook_outside_a_chart_is_refused_with_what_to_do(repo: Repo) -> None:
    tree = repo.write({"jobs/migrate.yaml": "apiVersion: batch/v1\nkind: Job\nmetadata:\n"
                                            "  name: migrate\n  annotations:\n"
                                            "    helm.sh/hook: pre-install\nspec: {}\n"}).tree()
    with pytest.raises(RenderError) as err:
        render(app("jobs"), Cluster("c"), tree)
    assert err.value.message.startswith(
        "jobs/migrate.yaml:1: Job migrate is a Helm hook outside a chart ")
    assert "remove the annotation" in err.value.message
    assert "argocd.argoproj.io/hook" in err.value.message


def hook_job(meta: str) -> str:
    return f"apiVersion: batch/v1\nkind: Job\nmetadata:\n{meta}spec: {{}}\n"


def test_argo_cd_hooks_and_waves_are_kept_for_the_apply_engine(repo: Repo) -> None:
    tree = repo.write({
        "app/migrate.yaml": hook_job("  generateName: migrate-\n  annotations:\n"
                                     "    argocd.argoproj.io/hook: PreSync,PostSync\n"
                                     "    argocd.argoproj.io/hook-delete-policy: HookSucceeded\n"),
        "app/notify.yaml": hook_job("  name: notify\n  annotations:\n"
                                    "    argocd.argoproj.io/hook: PostSync\n"
                                    "    argocd.argoproj.io/sync-wave: '-2'\n"),
        "app/cm.yaml": cm("settings").replace(
            "  name: settings\n", "  name: settings\n  annotations:\n"
                                  "    argocd.argoproj.io/sync-wave: '3'\n")}).tree()
    objects = render(app("app", namespace="web"), Cluster("c"), tree)
    by_kind = sorted((o["kind"], o["metadata"].get("name") or o["metadata"]["generateName"])
                     for o in objects)
    assert by_kind == [("ConfigMap", "settings"), ("Job", "migrate-"), ("Job", "notify")]
    generated = next(o for o in objects if "generateName" in o["metadata"])
    assert "name" not in generated["metadata"]                 # the apply engine names it
    assert generated["metadata"]["namespace"] == "web"


@pytest.mark.parametrize("annotation, error", [
    ("argocd.argoproj.io/sync-wave: soon", "argocd.argoproj.io/sync-wave: 'soon' is not an integer"),
    ("argocd.argoproj.io/sync-wave: '1.5'", "argocd.argoproj.io/sync-wave: '1.5' is not an integer"),
    ("argocd.argoproj.io/hook: PreSynk", "argocd.argoproj.io/hook: 'PreSynk' is not a hook"),
    ("argocd.argoproj.io/hook: PostDelete", "argocd.argoproj.io/hook: 'PostDelete' is not a hook"),
    ("argocd.argoproj.io/hook: ''", "argocd.argoproj.io/hook: nothing is not a hook"),
    ("argocd.argoproj.io/hook: PreSync\n    argocd.argoproj.io/hook-delete-policy: Never",
     "argocd.argoproj.io/hook-delete-policy: 'Never' is not a delete policy"),
])
def test_bad_argo_cd_annotations_fail_naming_file_line_and_object(repo: Repo, annotation: str,
                                                                  error: str) -> None:
    tree = repo.write({"jobs/migrate.yaml": "---\n" + hook_job(
        f"  name: migrate\n  annotations:\n    {annotation}\n")}).tree()
    with pytest.raises(RenderError) as err:
        render(app("jobs"), Cluster("c"), tree)
    assert err.value.message.startswith(f"jobs/migrate.yaml:2: Job migrate: {error}")


def test_generate_name_outside_an_argo_cd_hook_is_still_refused(repo: Repo) -> None:
    tree = repo.write({"jobs/migrate.yaml": hook_job(
        "  generateName: migrate-\n  annotations:\n    argocd.argoproj.io/sync-wave: '1'\n")
    }).tree()
    with pytest.raises(RenderError, match="has metadata.generateName and no metadata.name"):
        render(app("jobs"), Cluster("c"), tree)
