"""Does a worker's memory grow with fetches? RSS over many fetches through the real code path.

Makes a work repository and a bare repository in a temporary directory, then
calls ``workers.fetch.gitsource.SourceCache.fetch`` with a ``file://`` source again
and again, as a long-running worker does; every ``--commit-every`` fetches a
commit is pushed first, so that some fetches find a new revision and most find
none. Prints this process's RSS (``VmRSS`` from ``/proc/self/status``), its
open file descriptors and its child processes at the start, every 100 fetches
and at the end, and fails if a fetch resolves to the wrong revision.

    .venv/bin/python bench/git_fetch_rss_bench.py [--fetches 1000] [--commit-every 10]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared.spec.model import Auth, Source  # noqa: E402
from workers.fetch.gitsource import SourceCache  # noqa: E402


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def child_processes() -> int:
    """Processes (zombies included) whose parent is this one: git must never outlive a fetch."""
    count = 0
    for entry in Path("/proc").iterdir():
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split() if entry.name.isdigit() else []
        except OSError:
            continue
        count += bool(fields) and int(fields[1]) == os.getpid()
    return count


def git(*args: str, cwd: Path | None = None) -> str:
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/"), "LC_ALL": "C",
           "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True,
                          text=True).stdout.strip()


class Upstream:
    """A work repository on ``main`` and the bare repository that the source points at."""

    def __init__(self, root: Path) -> None:
        self.work, self.bare = root / "work", root / "upstream.git"
        git("init", "-q", "-b", "main", str(self.work))
        for key, value in (("user.name", "Bench"), ("user.email", "bench@example.com"),
                           ("commit.gpgsign", "false")):
            git("config", key, value, cwd=self.work)
        git("init", "-q", "--bare", "-b", "main", str(self.bare))
        self.count = 0

    def commit(self) -> str:
        self.count += 1
        (self.work / "apps").mkdir(exist_ok=True)
        (self.work / "apps" / "deploy.yaml").write_text(f"kind: Deployment\nreplicas: {self.count}\n")
        git("add", "-A", cwd=self.work)
        git("commit", "-q", "-m", f"change {self.count}", cwd=self.work)
        git("push", "-q", str(self.bare), "main", cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work)


def run(fetches: int, commit_every: int) -> None:
    with tempfile.TemporaryDirectory(prefix="fleetsync-rss-") as tmp:
        root = Path(tmp)
        upstream = Upstream(root)
        head = upstream.commit()
        source = Source(name="bench", url=upstream.bare.as_uri(), ref_kind="branch", ref="main",
                        interval=60.0, auth=Auth())
        cache = SourceCache(root / "cache", timeout=60, allow_local=True)
        new_revisions, last = 0, ""
        started = time.monotonic()
        print(f"{'fetches':>8} {'rss_kib':>8} {'open_fds':>8} {'children':>8} {'new_revs':>8} "
              f"{'elapsed_s':>9}")
        print(f"{0:>8} {rss_kib():>8} {open_fds():>8} {child_processes():>8} {0:>8} {0.0:>9.1f}")
        for i in range(1, fetches + 1):
            if i % commit_every == 0:
                head = upstream.commit()
            revision = cache.fetch(source)
            if revision != head:
                raise SystemExit(f"fetch {i}: got {revision}, expected {head}")
            new_revisions += revision != last
            last = revision
            if i % 100 == 0 or i == fetches:
                print(f"{i:>8} {rss_kib():>8} {open_fds():>8} {child_processes():>8} "
                      f"{new_revisions:>8} {time.monotonic() - started:>9.1f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--fetches", type=int, default=1000)
    parser.add_argument("--commit-every", type=int, default=10,
                        help="push a new commit before every Nth fetch")
    args = parser.parse_args()
    run(args.fetches, max(1, args.commit_every))


if __name__ == "__main__":
    main()
