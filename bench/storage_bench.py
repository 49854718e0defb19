"""Does storage stay bounded? Git cache and Redis after many revisions of a many-app repository.

Makes a repository of ``--apps`` plain-YAML applications, then ``--revisions`` times
commits a change to one application and fetches and renders every application at
the new revision through the real stages (``workers.run.stages.fetch`` and ``render``:
mirrors, checkouts, the sealed render cache on a real Redis started here). Prints
the Git cache's size (mirrors and checkouts separately), the number of checkouts
kept, and Redis's ``used_memory`` and key count, every ``--every`` revisions.

    .venv/bin/python bench/storage_bench.py [--apps 50] [--revisions 100] [--every 20]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from shared.logs import configure  # noqa: E402
from shared.settings import Settings  # noqa: E402
from workers.run import stages  # noqa: E402
from workers.context import Context  # noqa: E402
from workers.fetch.gitdisk import disk_usage  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from fleet_bench import app_objects  # noqa: E402
from scratch import scratch_redis  # noqa: E402


def git(*args: str, cwd: Path) -> str:
    env = {"PATH": os.environ["PATH"], "HOME": str(cwd), "LC_ALL": "C", "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "b@example.com",
           "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "b@example.com"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True,
                          text=True).stdout.strip()


def write_app(repo: Path, name: str, revision: int) -> None:
    objects = app_objects(name)
    objects[-1].setdefault("metadata", {}).setdefault("annotations", {})["rev"] = str(revision)
    path = repo / "apps" / name
    path.mkdir(parents=True, exist_ok=True)
    (path / "app.yaml").write_text("\n---\n".join(json.dumps(o) for o in objects) + "\n")


def spec(bare: Path, apps: list[str]) -> str:
    lines = ["sources:", "  - name: git", f"    url: file://{bare}", "    branch: main",
             "    interval: 1s", "clusters:", "  - name: c1", "    kubeconfig: /dev/null",
             "applications:"]
    for name in apps:
        lines += [f"  - name: {name}", "    source: git", f"    path: apps/{name}",
                  "    clusters: {names: [c1]}"]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apps", type=int, default=50)
    parser.add_argument("--revisions", type=int, default=100)
    parser.add_argument("--every", type=int, default=20)
    args = parser.parse_args()
    apps = [f"app{i:03d}" for i in range(args.apps)]
    configure("WARNING")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        work, bare = root / "work", root / "bare.git"
        work.mkdir()
        git("init", "-q", "-b", "main", cwd=work)
        for name in apps:
            write_app(work, name, 0)
        git("add", "-A", cwd=work)
        git("commit", "-q", "-m", "apps", cwd=work)
        git("clone", "-q", "--bare", str(work), str(bare), cwd=root)
        git("remote", "add", "origin", str(bare), cwd=work)
        (root / "fleet.yaml").write_text(spec(bare, apps))
        with scratch_redis() as url:
            ctx = Context.connect(Settings(redis_url=url, fleet_path=str(root / "fleet.yaml"),
                                           cache_dir=root / "cache", allow_local_sources=True))
            started = time.monotonic()
            print("revision  mirrors_kib  trees_kib  trees  redis_kib  redis_keys  seconds")
            for rev in range(1, args.revisions + 1):
                write_app(work, apps[rev % len(apps)], rev)
                git("commit", "-q", "-am", f"change {rev}", cwd=work)
                git("push", "-q", "origin", "main", cwd=work)
                revision = stages.fetch(ctx, "git")
                for name in apps:
                    stages.render(ctx, name, "c1", revision)
                if rev % args.every == 0 or rev == args.revisions:
                    cache = root / "cache" / "git"
                    info = redis.Redis.from_url(url).info("memory")
                    keys = redis.Redis.from_url(url).dbsize()
                    trees = list((cache / "trees").iterdir())
                    print(f"{rev:8d}  {disk_usage(cache / 'mirrors') // 1024:11d}  "
                          f"{disk_usage(cache / 'trees') // 1024:9d}  {len(trees):5d}  "
                          f"{info['used_memory'] // 1024:9d}  {keys:10d}  "
                          f"{time.monotonic() - started:7.1f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
