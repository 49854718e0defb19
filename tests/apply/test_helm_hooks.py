"""Helm hooks in the apply engine, with hook Jobs that really run (controllers and kwok Nodes).

A pre-install/pre-upgrade Job must complete before the main set is written; a
failing one stops the upgrade with nothing else written; post hooks run once the
main set is healthy; hook-delete-policy is honoured; hooks never enter the
inventory and a no-op pass runs none.
"""

from __future__ import annotations

import pytest

from workers.apply import inventory as inv
from workers.apply.engine import apply_unit
from workers.apply.hooks import HookFailed
from workers.apply.testing import application, configmap, namespace, unique

pytestmark = pytest.mark.k8s


@pytest.fixture(scope="module")
def kube(work_kube):
    return work_kube


def job(name: str, ns: str, image: str, events: str, policy: str = "", weight: str = "0") -> dict:
    notes = {"helm.sh/hook": events, "helm.sh/hook-weight": weight}
    if policy:
        notes["helm.sh/hook-delete-policy"] = policy
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "namespace": ns, "annotations": notes},
            "spec": {"backoffLimit": 0, "template": {"spec": {
                "restartPolicy": "Never", "containers": [{"name": "run", "image": image}]}}}}


def test_pre_hooks_run_first_a_failing_one_stops_the_upgrade_and_post_hooks_follow(kube):
    ns, app = unique("hooks"), application(unique("chart"), timeout=60)
    kube.create("/api/v1/namespaces", namespace(ns))
    migrate = job("migrate", ns, "busybox:1.36", "pre-install,pre-upgrade")
    notify = job("notify", ns, "busybox:1.36", "post-install,post-upgrade",
                 policy="hook-succeeded")
    first = apply_unit(kube, app=app, objects=[configmap("settings", ns, v="1"), migrate, notify],
                       revision="r1", token=1)
    assert first.hooks == (f"pre-install Job/{ns}/migrate", f"post-install Job/{ns}/notify")
    done = kube.get(f"/apis/batch/v1/namespaces/{ns}/jobs/migrate")
    # the Job controller sets SuccessCriteriaMet before Complete; either says it is done
    assert any(c["type"] in ("SuccessCriteriaMet", "Complete")
               for c in done["status"]["conditions"])
    assert kube.get_or_none(f"/apis/batch/v1/namespaces/{ns}/jobs/notify") is None  # succeeded
    stored = inv.read(kube, app.name)
    assert [r.kind for r in stored.refs] == ["ConfigMap"]           # hooks are not desired state

    again = apply_unit(kube, app=app, objects=[configmap("settings", ns, v="1"), migrate, notify],
                       revision="r1", token=2)
    assert again.hooks == () and again.writes == 0                 # a no-op pass runs none

    broken = job("migrate", ns, "fail", "pre-install,pre-upgrade", weight="-1")
    with pytest.raises(HookFailed, match=f"pre-upgrade hook Job/{ns}/migrate failed"):
        apply_unit(kube, app=app, objects=[configmap("settings", ns, v="2"), broken, notify],
                   revision="r2", token=3)
    assert kube.get(f"/api/v1/namespaces/{ns}/configmaps/settings")["data"] == {"v": "1"}
    assert inv.read(kube, app.name).revision == "r1"               # nothing else written

    fixed = apply_unit(kube, app=app, objects=[configmap("settings", ns, v="2"), migrate, notify],
                       revision="r3", token=4)
    assert fixed.hooks == (f"pre-upgrade Job/{ns}/migrate", f"post-upgrade Job/{ns}/notify")
    assert kube.get(f"/api/v1/namespaces/{ns}/configmaps/settings")["data"] == {"v": "2"}


def test_a_pre_install_hook_in_the_charts_own_new_namespace(kube):
    ns, app = unique("hookns"), application(unique("chart"), timeout=60)
    migrate = job("migrate", ns, "busybox:1.36", "pre-install")
    result = apply_unit(kube, app=app, objects=[namespace(ns), configmap("c", ns), migrate],
                        revision="r1", token=1)
    assert result.hooks == (f"pre-install Job/{ns}/migrate",)
    assert kube.get(f"/api/v1/namespaces/{ns}/configmaps/c")
