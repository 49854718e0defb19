"""Immutable fields: one line naming the field without ``force``; replaced with it.

A Job whose pod template changes in Git is the classic case. The local control
planes run no Job controller, but the API server's refusal (422, "field is
immutable") is the same, and that is the path under test.
"""

from __future__ import annotations

import pytest

from shared.errors import ApplyError
from tests.support.gitrender import Repo
from workers.apply.engine import apply_unit
from workers.apply.immutable import immutable_fields, refusal
from workers.apply.inventory import read as read_inventory
from workers.apply.kube import Kube
from workers.apply.refs import ObjectRef
from workers.apply.testing import application, unique

pytestmark = pytest.mark.k8s


@pytest.fixture()
def kube(kube_clients) -> Kube:
    return Kube(kube_clients["dev-1"], name="dev-1")


def job(ns: str, image: str) -> str:
    return f"""\
apiVersion: v1
kind: Namespace
metadata: {{name: {ns}}}
---
apiVersion: batch/v1
kind: Job
metadata: {{name: migrate, namespace: {ns}}}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: migrate
          image: {image}
          command: [migrate, up]
"""


def job_path(ns: str) -> str:
    return f"/apis/batch/v1/namespaces/{ns}/jobs/migrate"


def image(kube: Kube, ns: str) -> str:
    return kube.get(job_path(ns))["spec"]["template"]["spec"]["containers"][0]["image"]


def test_immutable_fields_are_read_from_the_servers_message() -> None:
    message = ('Job.batch "m" is invalid: [spec.selector: Invalid value: {"a": "b: c"}: field is '
               'immutable, spec.template: Invalid value: core.PodTemplateSpec{ObjectMeta: x}: '
               'field is immutable]')
    assert immutable_fields(message) == ["spec.selector", "spec.template"]
    assert refusal(message).startswith("spec.selector, spec.template are immutable")
    assert "force: true" in refusal("field is immutable")


def test_a_changed_job_template_without_force_is_one_line_naming_the_field(kube, tmp_path):
    name, ns = unique("force"), unique("force")
    repo = Repo(tmp_path).write({"jobs/migrate.yaml": job(ns, "migrate:1.0")})
    app = application(name, path="jobs")
    apply_unit(kube, app=app, objects=repo.render(app), revision="r1", token=1)
    uid = kube.get(job_path(ns))["metadata"]["uid"]

    repo.write({"jobs/migrate.yaml": job(ns, "migrate:1.1")})
    with pytest.raises(ApplyError) as caught:
        apply_unit(kube, app=app, objects=repo.render(app), revision="r2", token=2)
    (line,) = [line.strip() for line in caught.value.message.splitlines()[1:]]
    assert line == (f"Job/{ns}/migrate: spec.template is immutable and changed in Git; set "
                    "force: true on the application to delete and re-create the object")
    assert "PodTemplateSpec" not in caught.value.message        # no wall of JSON
    assert kube.get(job_path(ns))["metadata"]["uid"] == uid and image(kube, ns) == "migrate:1.0"


def test_force_deletes_and_recreates_the_job_recorded_as_replaced(kube, tmp_path):
    name, ns = unique("force"), unique("force")
    repo = Repo(tmp_path).write({"jobs/migrate.yaml": job(ns, "migrate:1.0")})
    app = application(name, path="jobs", force=True)
    apply_unit(kube, app=app, objects=repo.render(app), revision="r1", token=1)
    uid = kube.get(job_path(ns))["metadata"]["uid"]

    repo.write({"jobs/migrate.yaml": job(ns, "migrate:1.1")})
    result = apply_unit(kube, app=app, objects=repo.render(app), revision="r2", token=2)
    assert result.counts["replaced"] == 1 and result.counts["configured"] == 0
    assert result.changeset.summary() == {"replaced": [f"Job/{ns}/migrate"]}
    assert result.to_dict()["counts"]["replaced"] == 1
    live = kube.get(job_path(ns))
    assert live["metadata"]["uid"] != uid and image(kube, ns) == "migrate:1.1"
    assert ObjectRef("batch/v1", "Job", ns, "migrate") in read_inventory(kube, name).refs

    again = apply_unit(kube, app=app, objects=repo.render(app), revision="r2", token=3)
    assert again.writes == 0 and again.counts["replaced"] == 0


def test_force_replaces_only_what_is_immutable(kube, tmp_path):
    name, ns = unique("force"), unique("force")
    settings = f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: s, namespace: {ns}}}\ndata: {{v: '1'}}\n"
    repo = Repo(tmp_path).write({"jobs/migrate.yaml": job(ns, "migrate:1.0"), "jobs/s.yaml": settings})
    app = application(name, path="jobs", force=True)
    apply_unit(kube, app=app, objects=repo.render(app), revision="r1", token=1)
    cm_uid = kube.get(f"/api/v1/namespaces/{ns}/configmaps/s")["metadata"]["uid"]

    repo.write({"jobs/migrate.yaml": job(ns, "migrate:2.0"), "jobs/s.yaml": settings.replace("'1'", "'2'")})
    result = apply_unit(kube, app=app, objects=repo.render(app), revision="r2", token=2)
    assert (result.counts["replaced"], result.counts["configured"]) == (1, 1)
    configmap = kube.get(f"/api/v1/namespaces/{ns}/configmaps/s")
    assert configmap["metadata"]["uid"] == cm_uid and configmap["data"] == {"v": "2"}
