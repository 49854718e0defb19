"""Session fixtures over real services: Redis, Celery workers, local control planes.

A test that needs a service it cannot find fails under CI (``CI=true``) and
skips with the reason elsewhere.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from devtools import fleet as devfleet
from devtools.binaries import BinaryError, find_binaries

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# The tests' Git sources are repositories on disk: workers (and this process) may read them.
os.environ["FLEETSYNC_ALLOW_LOCAL_SOURCES"] = "true"


def need(what: str, why: str) -> None:
    """Fail in CI, skip elsewhere: a real-service test never silently passes."""
    if IN_CI:
        pytest.fail(f"{what} is required in CI: {why}")
    pytest.skip(f"{what} unavailable: {why}")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    given = os.environ.get("FLEETSYNC_TEST_REDIS_URL")
    if given:
        yield given
        return
    binary = shutil.which("redis-server")
    if binary is None:
        need("redis-server", "install it with apt-get install redis-server")
    port = devfleet.free_port()
    data = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(data), "--databases", "256"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while not devfleet.redis_answers(url):
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            need("redis-server", f"did not start on port {port}")
        time.sleep(0.05)
    yield url
    proc.terminate()
    proc.wait(10)


_databases = itertools.count(1)


def new_redis_db(redis_url: str) -> str:
    """A Redis database of its own: a test's workers never see another test's tasks."""
    import redis

    url = f"{redis_url.rsplit('/', 1)[0]}/{next(_databases)}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    return url


@pytest.fixture()
def isolated_redis_url(redis_url: str) -> str:
    return new_redis_db(redis_url)


@pytest.fixture()
def redis_client(redis_url: str):
    import redis

    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.close()


def worker_env(redis_url: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(FLEETSYNC_REDIS_URL=redis_url, PYTHONPATH=str(ROOT), **extra)
    return env


def start_worker(redis_url: str, name: str, queues: str | None = None, concurrency: int = 2,
                 **env: str) -> subprocess.Popen:
    """A real ``celery worker`` process on the real Redis broker."""
    argv = [sys.executable, "-m", "celery", "-A", "workers.app", "worker", "-n", f"{name}@%h",
            "-c", str(concurrency), "--without-mingle", "--without-gossip", "-l", "WARNING"]
    if queues:
        argv += ["-Q", queues]
    return subprocess.Popen(argv, cwd=ROOT, env=worker_env(redis_url, **env),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def stop_worker(proc: subprocess.Popen) -> None:
    devfleet.stop_processes([devfleet.Proc("worker", proc.pid, "")], grace=15)
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        pass


@pytest.fixture(scope="session")
def celery_app(redis_url: str):
    from shared.celery_app import make_app
    from shared.settings import Settings

    return make_app(Settings(redis_url=redis_url))


@pytest.fixture(scope="session")
def celery_worker(redis_url: str, celery_app) -> Iterator[subprocess.Popen]:
    proc = start_worker(redis_url, "session")
    try:
        celery_app.send_task("fleetsync.ping").get(timeout=60)
    except Exception as exc:  # the worker never answered: say so, with the reason
        stop_worker(proc)
        need("a Celery worker", f"did not answer a ping within 60s: {exc!r}")
    yield proc
    stop_worker(proc)


@pytest.fixture(scope="session")
def k8s_binaries() -> None:
    try:
        if find_binaries() is None:
            need("kube-apiserver and etcd", "run `fleetsync dev build` (or .ci/run) first")
    except BinaryError as exc:
        need("kube-apiserver and etcd", str(exc))


@pytest.fixture(scope="session")
def dev_fleet(redis_url: str, k8s_binaries: None,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[devfleet.FleetState]:
    """Two local control planes (``dev-1``, ``dev-2``) for the whole session."""
    state_dir = tmp_path_factory.mktemp("fleet")
    os.environ["FLEETSYNC_REDIS_URL"] = redis_url
    state = devfleet.up(["dev-1", "dev-2"], state_dir, progress=lambda _: None, workloads=False)
    yield state
    devfleet.down(state_dir, progress=lambda _: None)


@pytest.fixture(scope="session")
def workload_fleet(redis_url: str,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[devfleet.FleetState]:
    """One cluster (``work-1``) with controllers, scheduler, kwok and 3 fake Nodes: real
    Pods, rollouts, Jobs, garbage collection. Started only when a test asks for it."""
    try:
        if find_binaries(workloads=True) is None:
            need("kube-controller-manager, kube-scheduler and kwok",
                 "run `fleetsync dev build` (or .ci/run) first")
    except BinaryError as exc:
        need("kube-controller-manager, kube-scheduler and kwok", str(exc))
    state_dir = tmp_path_factory.mktemp("workload-fleet")
    os.environ["FLEETSYNC_REDIS_URL"] = redis_url
    state = devfleet.up(["work-1"], state_dir, progress=lambda _: None, workloads=True)
    yield state
    devfleet.down(state_dir, progress=lambda _: None)


@pytest.fixture(scope="session")
def kube_clients(dev_fleet: devfleet.FleetState) -> dict:
    """A ``kubernetes`` ApiClient per local cluster, keyed by cluster name."""
    from kubernetes import config

    return {name: config.new_client_from_config(config_file=path)
            for name, path in dev_fleet.clusters.items()}


@pytest.fixture(scope="module")
def work_kube(workload_fleet: devfleet.FleetState) -> Iterator[Any]:
    """The apply engine's ``Kube`` on ``work-1``, the cluster with controllers and Nodes."""
    from kubernetes import config

    from workers.apply.kube import Kube

    api = config.new_client_from_config(config_file=workload_fleet.clusters["work-1"])
    yield Kube(api, name="work-1")
    api.close()
