"""``fleetsync dev up --registry``: an OCI registry beside the local fleet, on loopback.

``start`` runs go-containerregistry's in-memory ``registry`` (plain HTTP, no
auth, on a port it picks and logs) and, in front of it, ``devtools.registryproxy``
with the fleet's serving certificate (SAN 127.0.0.1 and localhost, the CA the
kubeconfigs already name) and basic auth for one account, ``fleetsync``, whose
password is generated and written to ``DIR/registry/password`` (mode 0600, never
printed). Both processes are recorded in ``dev.json`` so ``down`` stops them.
The push clients (helm, crane, oras) trust the certificate with ``--ca-file`` or
``SSL_CERT_FILE``; ``insecure: true`` sources can use the plain port directly.
"""

from __future__ import annotations

import json
import secrets
import ssl
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from devtools import fleet as devfleet
from devtools.gotools import ensure_registry_tools

USER = "fleetsync"
START_TIMEOUT = 30.0


def _logged_port(log: Path, proc: devfleet.Proc) -> int:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace") if log.exists() else ""
        if "serving on port " in text:
            return int(text.split("serving on port ", 1)[1].split()[0])
        if not devfleet.pid_alive(proc.pid):
            break
        time.sleep(0.1)
    raise devfleet.DevFleetError(f"the registry did not start (log {log})")


def _answers(url: str, ca: Path) -> bool:
    """The proxy answers /v2/ (with 401: it wants the account)."""
    try:
        urllib.request.urlopen(f"{url}/v2/", context=ssl.create_default_context(cafile=str(ca)),
                               timeout=1)
    except urllib.error.HTTPError as exc:
        return exc.code == 401
    except OSError:
        return False
    return False


def start(state: devfleet.FleetState, progress: devfleet.Progress = print) -> dict[str, str]:
    """Start the registry and its TLS + basic-auth front; what ``state.registry`` records."""
    tools = ensure_registry_tools(progress)
    pki, where = state.state_dir / "pki", state.state_dir / "registry"
    where.mkdir(parents=True, exist_ok=True)
    log = state.state_dir / "logs" / "registry.log"
    upstream = devfleet.spawn(log, "registry", [str(tools["registry"]), "-port", "0"])
    state.processes.append(upstream)
    port = _logged_port(log, upstream)
    password = where / "password"
    password.write_text(secrets.token_urlsafe(18))
    password.chmod(0o600)
    users = where / "users.json"
    users.write_text(json.dumps({USER: password.read_text()}))
    users.chmod(0o600)
    front_port = devfleet.free_port()
    front = devfleet.spawn(state.state_dir / "logs" / "registry-proxy.log", "registry-proxy", [
        sys.executable, "-m", "devtools.registryproxy", "--upstream", f"127.0.0.1:{port}",
        "--port", str(front_port), "--auth", "basic", "--users-file", str(users),
        "--cert", str(pki / "serving.crt"), "--key", str(pki / "serving.key")])
    state.processes.append(front)
    url = f"https://127.0.0.1:{front_port}"
    deadline = time.monotonic() + START_TIMEOUT
    while not _answers(url, pki / "serving.crt"):
        if time.monotonic() > deadline or not devfleet.pid_alive(front.pid):
            raise devfleet.DevFleetError(f"the registry's TLS front did not start (log {front.log})")
        time.sleep(0.1)
    progress(f"Registry: {url} (basic auth), plain HTTP on 127.0.0.1:{port}")
    return {"host": f"127.0.0.1:{front_port}", "plain": f"127.0.0.1:{port}",
            "ca_file": str(pki / "serving.crt"), "user": USER, "password_file": str(password)}
