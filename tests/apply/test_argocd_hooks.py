"""Argo CD hooks in the apply engine, with hook Jobs that really run (controllers and kwok).

PreSync Jobs complete before anything of the main set is written, and a failing one
leaves every object as it was; PostSync runs once the main set is healthy; SyncFail
runs when the sync fails; BeforeHookCreation replaces a finished hook; a generateName
hook gets one stable name per revision and phase; a pass at the same revision runs
none. (kwok: a Job whose image is ``fail`` fails, any other completes; a Deployment
whose image is ``broken`` never becomes available: ``devtools/kwok_stages.yaml``.)
"""

from __future__ import annotations

from datetime import datetime

import pytest

from workers.apply import inventory as inv
from workers.apply.engine import apply_unit
from workers.apply.hooks import HookFailed, short
from workers.apply.policy import PolicyError
from workers.apply.testing import application, configmap, deployment, namespace, unique

pytestmark = pytest.mark.k8s

R1, R2 = "1111111" + "a" * 33, "2222222" + "b" * 33


@pytest.fixture(scope="module")
def kube(work_kube):
    return work_kube


def hook(name: str, ns: str, phase: str, image: str = "busybox:1.36", policy: str = "",
         generate: bool = False) -> dict:
    notes = {"argocd.argoproj.io/hook": phase}
    if policy:
        notes["argocd.argoproj.io/hook-delete-policy"] = policy
    meta = {"generateName" if generate else "name": name, "namespace": ns, "annotations": notes}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta,
            "spec": {"backoffLimit": 0, "template": {"spec": {
                "restartPolicy": "Never", "containers": [{"name": "run", "image": image}]}}}}


def jobs(kube, ns: str) -> dict[str, dict]:
    return {j["metadata"]["name"]: j
            for j in kube.list_items(f"/apis/batch/v1/namespaces/{ns}/jobs")}


DONE = ("SuccessCriteriaMet", "Complete")      # the first comes first (Kubernetes 1.31+)


def done_since(job: dict) -> list[datetime]:
    return [stamp_of(c["lastTransitionTime"])
            for c in (job.get("status") or {}).get("conditions") or []
            if c["type"] in DONE and c["status"] == "True"]


def complete(job: dict) -> bool:
    return bool(done_since(job))


def stamp_of(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def available_since(dep: dict) -> datetime:
    (cond,) = [c for c in dep["status"]["conditions"] if c["type"] == "Available"]
    assert cond["status"] == "True"
    return stamp_of(cond["lastTransitionTime"])


def test_presync_postsync_before_hook_creation_and_a_pass_at_the_same_revision(kube):
    ns, app = unique("argo"), application(unique("argo"), timeout=90)
    kube.create("/api/v1/namespaces", namespace(ns))
    main = [configmap("settings", ns, v="1"), deployment("web", ns, replicas=1)]
    migrate = hook("migrate-", ns, "PreSync", generate=True)
    notify = hook("notify", ns, "PostSync")                     # BeforeHookCreation by default
    page = hook("page", ns, "SyncFail")
    first = apply_unit(kube, app=app, objects=main + [migrate, notify, page], revision=R1,
                       token=1)
    generated = f"migrate-{short(R1)}-presync"
    assert first.hooks == (f"PreSync Job/{ns}/{generated}", f"PostSync Job/{ns}/notify")
    assert first.to_dict()["hooks"] == list(first.hooks) and first.healthy
    found = jobs(kube, ns)
    assert set(found) == {generated, "notify"} and all(map(complete, found.values()))
    web = kube.get(f"/apis/apps/v1/namespaces/{ns}/deployments/web")
    settings = kube.get(f"/api/v1/namespaces/{ns}/configmaps/settings")
    # PreSync ran before the main set was written; PostSync once the Deployment was available
    assert min(done_since(found[generated])) <= stamp_of(
        settings["metadata"]["creationTimestamp"])
    assert available_since(web) <= stamp_of(found["notify"]["metadata"]["creationTimestamp"])
    assert sorted(r.kind for r in inv.read(kube, app.name).refs) == ["ConfigMap", "Deployment"]

    again = apply_unit(kube, app=app, objects=main + [migrate, notify, page], revision=R1,
                       token=2)
    assert again.hooks == () and again.writes == 0           # the same revision: no hook
    assert set(jobs(kube, ns)) == {generated, "notify"}

    old_uid = found["notify"]["metadata"]["uid"]
    moved = [configmap("settings", ns, v="2"), deployment("web", ns, replicas=1)]
    second = apply_unit(kube, app=app, objects=moved + [migrate, notify, page], revision=R2,
                        token=3)
    assert second.hooks == (f"PreSync Job/{ns}/migrate-{short(R2)}-presync",
                            f"PostSync Job/{ns}/notify")
    replaced = jobs(kube, ns)["notify"]
    assert replaced["metadata"]["uid"] != old_uid and complete(replaced)   # a new one, done
    assert "page" not in jobs(kube, ns)                      # nothing failed: no SyncFail


def test_a_failing_presync_leaves_everything_as_it_was_and_syncfail_runs(kube):
    ns, app = unique("argofail"), application(unique("argo"), timeout=60)
    kube.create("/api/v1/namespaces", namespace(ns))
    main = [configmap("settings", ns, v="1"), deployment("web", ns, replicas=0)]
    apply_unit(kube, app=app, objects=main, revision=R1, token=1)
    paths = (f"/api/v1/namespaces/{ns}/configmaps/settings",
             f"/apis/apps/v1/namespaces/{ns}/deployments/web")

    def written() -> list:          # what a write would change (a controller writes status)
        found = [kube.get(path) for path in paths]
        return [found[0]["metadata"]["resourceVersion"], found[0]["data"],
                found[1]["metadata"]["generation"], found[1]["spec"]["replicas"]]
    before = written()

    changed = [configmap("settings", ns, v="2"), deployment("web", ns, replicas=2),
               configmap("extra", ns)]
    failing = hook("migrate-", ns, "PreSync", image="fail", generate=True)
    page = hook("page", ns, "SyncFail", policy="HookSucceeded")
    for token in (2, 3):                                      # a retry makes no second Job
        with pytest.raises(HookFailed) as err:
            apply_unit(kube, app=app, objects=changed + [failing, page], revision=R2,
                       token=token)
        generated = f"migrate-{short(R2)}-presync"
        assert f"PreSync hook Job/{ns}/{generated} failed" in err.value.message
        assert f"SyncFail hooks run: Job/{ns}/page" in err.value.message
        assert [n for n in jobs(kube, ns) if n.startswith("migrate-")] == [generated]
    assert written() == before                               # not one object of it changed
    assert kube.get_or_none(f"/api/v1/namespaces/{ns}/configmaps/extra") is None
    assert inv.read(kube, app.name).revision == R1
    assert "page" not in jobs(kube, ns)                       # ran, succeeded, deleted


def test_syncfail_runs_when_the_main_set_is_not_healthy_for_postsync(kube):
    ns, app = unique("argohealth"), application(unique("argo"), timeout=90)
    kube.create("/api/v1/namespaces", namespace(ns))
    web = deployment("web", ns, replicas=1, image="nginx:broken")
    web["spec"]["progressDeadlineSeconds"] = 2           # Degraded soon: the wait ends there
    objects = [web, hook("notify", ns, "PostSync"), hook("page", ns, "SyncFail")]
    with pytest.raises(HookFailed, match="PostSync hooks not run") as err:
        apply_unit(kube, app=app, objects=objects, revision=R1, token=1)
    assert f"Deployment/{ns}/web" in err.value.message
    assert f"SyncFail hooks run: Job/{ns}/page" in err.value.message
    found = jobs(kube, ns)
    assert "notify" not in found and complete(found["page"])
    assert kube.get_or_none(f"/apis/apps/v1/namespaces/{ns}/deployments/web")  # applied


def test_a_hook_never_replaces_what_is_not_the_applications_nor_leaves_its_namespaces(kube):
    ns, app = unique("argoown"), application(unique("argo"), timeout=60)
    kube.create("/api/v1/namespaces", namespace(ns))
    kube.create(f"/api/v1/namespaces/{ns}/configmaps", configmap("taken", ns, owner="other"))
    taken = configmap("taken", ns, v="hook")
    taken["metadata"]["annotations"] = {"argocd.argoproj.io/hook": "PreSync"}
    with pytest.raises(HookFailed, match=f"PreSync hook ConfigMap/{ns}/taken: an object of that "
                                         "name exists and is not labelled"):
        apply_unit(kube, app=app, objects=[configmap("c", ns), taken], revision=R1, token=1)
    assert kube.get(f"/api/v1/namespaces/{ns}/configmaps/taken")["data"] == {"owner": "other"}
    assert kube.get_or_none(f"/api/v1/namespaces/{ns}/configmaps/c") is None

    fenced = application(unique("argo"), timeout=60, allowed_namespaces=(ns,))
    elsewhere = hook("escape", "kube-system", "PostSync")
    with pytest.raises(PolicyError, match="Job/kube-system/escape"):
        apply_unit(kube, app=fenced, objects=[configmap("c", ns), elsewhere], revision=R1,
                   token=1)
    assert kube.get_or_none(f"/api/v1/namespaces/{ns}/configmaps/c") is None
