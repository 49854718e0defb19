"""``fleetsync server`` as a real process for tests: started from the CLI, waited for, stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from devtools import fleet as devfleet

ROOT = Path(__file__).resolve().parents[2]


class ServerProcess:
    def __init__(self, env: dict[str, str], log: Path, *args: str) -> None:
        self.port = devfleet.free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "scheduler.cli", "server", "--port", str(self.port), *args],
                cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)}, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the server exited: {self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.base}/healthz", timeout=5) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"the server did not answer in {timeout}s: "
                             f"{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            self.proc.wait(30)
