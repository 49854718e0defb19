"""A throwaway redis-server for benchmarks that need a real one and nothing else."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devtools import fleet as devfleet  # noqa: E402


@contextmanager
def scratch_redis() -> Iterator[str]:
    """A redis-server on a free loopback port, without persistence; yields its URL."""
    port = devfleet.free_port()
    server = subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port",
                               str(port), "--save", "", "--appendonly", "no"],
                              stdout=subprocess.DEVNULL)
    try:
        url = f"redis://127.0.0.1:{port}/0"
        while not devfleet.redis_answers(url):
            time.sleep(0.05)
        yield url
    finally:
        server.terminate()
        server.wait(10)
