"""Which transports git may use for a source, and how ssh checks the server it talks to.

``workers.fetch.gitcli`` builds git's environment; this module decides what goes into
it for the transport, before git runs:

- ``check_transport`` refuses at once what must never reach git: remote helpers
  (``fd::`` would wait on a descriptor until the timeout, ``ext::`` would run a
  command), ``git://`` and unknown schemes, plain ``http://`` unless the source
  says ``insecure: true`` (and never with credentials), local paths and
  ``file://`` unless ``FLEETSYNC_ALLOW_LOCAL_SOURCES`` is set on the workers,
  and ssh sources with no way to check the host key.
- ``protocol_config`` backs that with git's own ``protocol.allow`` rules, so a
  redirect or a submodule cannot reach another transport either.
- ``ssh_command`` runs ssh with no configuration file but ours: strict host key
  checking against the source's ``knownHosts`` file only (no ``~/.ssh`` or
  ``/etc/ssh`` files), ``accept-new`` only when the source asks for it, in which
  case the keys learned go to a file of the worker's cache, never into the
  operator's ``knownHosts``.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from shared.errors import SourceError
from shared.git_urls import Transport, local_refused, scrub_url, transport
from shared.spec.model import Auth, Source

ALLOWED_KINDS = ("https", "http", "ssh", "file")
# Helpers that run something of ours: named, since their refusal is a security decision.
_HELPER_DANGER = {"fd": "it would make git talk to a file descriptor of the worker",
                  "ext": "it would make git run an arbitrary command"}
SSH_OPTIONS = ("-F", "/dev/null", "-o", "BatchMode=yes", "-o", "GlobalKnownHostsFile=/dev/null",
               "-o", "UpdateHostKeys=no", "-o", "ConnectTimeout=30",
               "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4")


def check_transport(source: Source, *, allow_local: bool) -> Transport:
    """The source's transport, or a permanent SourceError saying why it is refused."""
    where = f"source {source.name}"
    found = transport(source.url)
    if found.helper:
        why = _HELPER_DANGER.get(found.kind, "remote helpers are not sources")
        raise SourceError(f"{where}: the {found.kind}:: transport is refused: {why}; "
                          "use https://, ssh:// or git@host:path")
    if found.kind not in ALLOWED_KINDS:
        raise SourceError(f"{where}: the {found.kind}:// transport is refused (no "
                          "authentication or integrity); use https://, ssh:// or git@host:path")
    if found.kind == "http":
        if source.auth != Auth() or "@" in source.url.split("//", 1)[-1].split("/", 1)[0]:
            raise SourceError(f"{where}: credentials are never sent over plain http:// "
                              f"(even with insecure: true); use https:// for {_url(source)}")
        if not source.insecure:
            raise SourceError(f"{where}: plain http:// is refused ({_url(source)}): use "
                              "https://, or set insecure: true on the source to accept a "
                              "repository that anyone on the path can read and change")
    if found.local and not allow_local:
        raise SourceError(f"{where}: {local_refused(source.url)}")
    if found.kind == "ssh" and not source.known_hosts and source.ssh_host_key_policy != "accept-new":
        raise SourceError(f"{where}: ssh host key of {found.host or '?'} cannot be checked: set "
                          "knownHosts to a known_hosts file holding the server's key "
                          "(ssh-keyscan HOST, checked out of band), or sshHostKeyPolicy: "
                          "accept-new to trust the key seen on first connect")
    return found


def protocol_config(found: Transport, *, allow_local: bool,
                    insecure: bool) -> list[tuple[str, str]]:
    """git's ``protocol.*.allow`` settings: https and ssh, file and http only when allowed."""
    config = [("protocol.allow", "never"), ("protocol.https.allow", "always"),
              ("protocol.ssh.allow", "always")]
    if allow_local:
        config.append(("protocol.file.allow", "always"))
    if insecure and found.kind == "http":
        config.append(("protocol.http.allow", "always"))
    return config


def ssh_command(source: Source, learned: Path | None) -> str:
    """``GIT_SSH_COMMAND`` for an ssh source (after ``check_transport`` accepted it).

    ``learned`` is where ``accept-new`` keeps the keys it learns for this source.
    """
    files: list[str] = []
    if source.ssh_host_key_policy == "accept-new":
        if learned is None:
            raise SourceError(f"source {source.name}: sshHostKeyPolicy: accept-new needs a "
                              "cache directory to keep the keys it learns")
        learned.parent.mkdir(parents=True, exist_ok=True)
        files.append(str(learned))
        strict = "accept-new"
    else:
        strict = "yes"
    if source.known_hosts:
        if not os.access(source.known_hosts, os.R_OK):
            raise SourceError(f"source {source.name}: knownHosts file {source.known_hosts} "
                              "is not readable")
        files.append(source.known_hosts)
    args = ["ssh", *SSH_OPTIONS, "-o", f"StrictHostKeyChecking={strict}",
            "-o", "UserKnownHostsFile=" + " ".join(_ssh_path(source, f) for f in files)]
    key = source.auth.ssh_key_file
    if key:
        if not os.access(key, os.R_OK):
            raise SourceError(f"source {source.name}: ssh key file {key} is not readable")
        args += ["-i", key.replace("%", "%%"), "-o", "IdentitiesOnly=yes"]
    return " ".join(shlex.quote(a) for a in args)


def _ssh_path(source: Source, path: str) -> str:
    """A path as ssh's option parser reads it: quoted, ``%`` doubled (ssh expands tokens)."""
    if '"' in path or "\n" in path:
        raise SourceError(f"source {source.name}: known_hosts path {path!r} holds a quote "
                          "or a newline")
    return '"' + os.path.abspath(path).replace("%", "%%") + '"'


def _url(source: Source) -> str:
    return scrub_url(source.url)
