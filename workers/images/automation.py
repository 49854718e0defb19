"""One pass of image automation, as ``fleetsync.scan_images`` runs it on a worker.

Top to bottom: scan each named policy whose record is older than its interval (or
every one named, when forced) and record the choice or the error
(``workers.images.scan``, ``shared.state.images``); then, for each Git source with
``imageUpdates``, under a Redis lease per repository URL (two workers never push the
same repository at once; the second waits, then finds the work done), set the
recorded tags of every policy with a good record in ONE commit and push it
(``workers.images.gitpush``). The outcome per source is recorded
(``shared.state.imageupdates``) and logged; a commit on the source's own branch asks
for the source's fetch at once, as a push webhook does, so units see it now.

A source whose policies chose the same tags as in its last good pass, within its
``imageUpdates.interval``, is left alone: beat's per-policy ticks cost a scan, not a
clone. The setter markers of the source's head (the pushed commit) and of every
revision a unit applied are read once per revision and kept
(``workers.images.readmarkers``): they are ``images status``'s "in Git" and
"clusters" columns. Credentials come in
``environ`` (read by the task's edge), by the names the spec gives; they reach the
registry client and the push only, never a record, a result or a log line.
"""

from __future__ import annotations

import time
import urllib.parse
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from shared.errors import FleetsyncError, TransientError
from shared.logs import get_logger
from shared.spec.images import ImagePolicy
from shared.spec.model import Fleet, Source
from shared.state import imageupdates, images as image_records, keys
from shared.state.locks import Leases
from workers.context import Context
from workers.images import readmarkers
from workers.images.gitpush import PushResult, update_repository
from workers.images.scan import scan

log = get_logger("fleetsync.images")
LOCK_TTL_MS = 600_000       # a push that takes longer than this lost its lease
LOCK_WAIT = 300.0           # seconds a worker waits for another's push to the same repository
LOCK_POLL = 0.2
MAX_LISTED = 50             # changes and problems kept per source in a record or a result


@dataclass(frozen=True)
class PassOptions:
    force: bool = False                     # scan even fresh records, push even unchanged choices
    sources: tuple[str, ...] = ()           # only these sources (empty: every one)
    owner: str = ""                         # this worker, for the repository lease


def run_pass(ctx: Context, names: Sequence[str], options: PassOptions,
             environ: Mapping[str, str], enqueue_fetch: Callable[[str], None]) -> dict:
    """Scan the named policies, then commit their choices to every Git source."""
    fleet = ctx.fleet()
    by_name = {p.name: p for p in fleet.images}
    unknown = sorted({n for n in names if n not in by_name})
    scans = [scan_policy(ctx, by_name[n], options.force, environ) for n in dict.fromkeys(names)
             if n in by_name]
    updates = [update_source(ctx, fleet, source, options, environ, enqueue_fetch)
               for source in image_sources(fleet)
               if not options.sources or source.name in options.sources]
    return {"policies": scans, "sources": updates, "unknown": unknown}


def image_sources(fleet: Fleet) -> list[Source]:
    return [s for s in fleet.sources.values() if s.image_updates is not None
            and not s.helm_repository and not s.oci_artifact]


def scan_policy(ctx: Context, policy: ImagePolicy, force: bool,
                environ: Mapping[str, str]) -> dict[str, Any]:
    """Scan one policy unless its record is fresh; record and return what it found."""
    last = image_records.load(ctx.redis, policy.name)
    if not force and last and time.time() - float(last.get("at") or 0) < policy.interval:
        return {"policy": policy.name, "fresh": True, **_brief(last)}
    try:
        result = scan(policy, environ)
    except FleetsyncError as exc:
        image_records.record_error(ctx.redis, policy.name, str(exc), time.time())
        log.warning("image scan failed", policy=policy.name, error=str(exc))
        return {"policy": policy.name, "error": str(exc)}
    # Scanned (shared.state.images) declares settable fields; a frozen ScanResult reads the same
    previous = image_records.record(ctx.redis, result)  # type: ignore[arg-type]
    log.info("image scanned", policy=policy.name, tag=result.tag, why=result.why,
             considered=result.considered, ignored=result.ignored)
    return {"policy": policy.name, "tag": result.tag, "digest": result.digest,
            "why": result.why, "previous": (previous or {}).get("tag", "")}


def _brief(record: Mapping[str, Any]) -> dict[str, Any]:
    if record.get("error"):
        return {"error": record["error"]}
    return {k: record.get(k, "") for k in ("tag", "digest", "why")}


def chosen_tags(policies: Sequence[ImagePolicy], records: Mapping[str, Mapping[str, Any]]
                ) -> tuple[dict[str, str], list[str]]:
    """The recorded tag of each policy, and the policies left out, each with why (pure)."""
    chosen, left_out = {}, []
    for policy in policies:
        record = records.get(policy.name)
        if record is None:
            left_out.append(f"{policy.name}: not scanned yet")
        elif record.get("error") or not record.get("tag"):
            left_out.append(f"{policy.name}: {record.get('error') or 'no tag chosen'}")
        else:
            chosen[policy.name] = str(record["tag"])
    return chosen, left_out


def update_source(ctx: Context, fleet: Fleet, source: Source, options: PassOptions,
                  environ: Mapping[str, str], enqueue_fetch: Callable[[str], None]) -> dict:
    """Commit and push the recorded choices to one source, under its repository's lease."""
    assert source.image_updates is not None
    policies = list(fleet.images)
    chosen, left_out = chosen_tags(policies, image_records.load_all(
        ctx.redis, [p.name for p in policies]))
    with repository_lock(ctx.redis, source.url, options.owner) as waited:
        last = imageupdates.load_pass(ctx.redis, source.name)
        if not options.force and unchanged(last, chosen, source.image_updates.interval):
            return {"source": source.name, "skipped": "the same tags as its last pass",
                    "commit": None, "left_out": left_out}
        record = _push(ctx, source, policies, chosen, environ)
        record.update(left_out=left_out, chosen=chosen, waited_for_lock=waited)
        imageupdates.record_pass(ctx.redis, source.name, record)
        if "error" not in record:
            remember_markers(ctx, fleet, source, record)
    if record.get("commit") and source.image_updates.push_branch in (None, source.ref):
        enqueue_fetch(source.name)      # a push to another branch is for a pull request
    return record


def unchanged(last: Mapping[str, Any] | None, chosen: Mapping[str, str], interval: float
              ) -> bool:
    """Whether the last pass already set these very tags, without trouble, recently (pure)."""
    if not last:
        return False
    return not last.get("error") and not last.get("problems") \
        and last.get("chosen") == dict(chosen) \
        and time.time() - float(last.get("at") or 0) < interval


def _push(ctx: Context, source: Source, policies: Sequence[ImagePolicy],
          chosen: Mapping[str, str], environ: Mapping[str, str]) -> dict[str, Any]:
    workdir = ctx.settings.cache_dir / "images" / source.name
    workdir.mkdir(parents=True, exist_ok=True)
    at = time.time()
    try:
        result = update_repository(source, policies, chosen, environ, workdir)
    except FleetsyncError as exc:
        log.warning("image update not pushed", source=source.name, error=str(exc))
        return {"source": source.name, "at": at, "commit": None, "error": str(exc),
                "changes": [], "problems": []}
    log.info("image updates", source=source.name, commit=result.commit, branch=result.branch,
             changes=len(result.changes), problems=list(result.problems)[:MAX_LISTED],
             attempts=result.attempts)
    return pass_record(source.name, at, result)


def pass_record(source: str, at: float, result: PushResult) -> dict[str, Any]:
    return {"source": source, "at": at, "commit": result.commit, "branch": result.branch,
            "changes": [asdict(c) for c in result.changes[:MAX_LISTED]],
            "problems": list(result.problems[:MAX_LISTED]), "attempts": result.attempts,
            "subject": result.message.splitlines()[0] if result.message else ""}


@contextmanager
def repository_lock(r: Any, repository: str, owner: str, wait: float = LOCK_WAIT
                    ) -> Iterator[bool]:
    """Hold the image-update lease of ``repository``, waiting for another holder at most
    ``wait`` seconds (then ``TransientError``: the task is retried). Yields whether it
    waited."""
    leases, key = Leases(r), keys.image_push_lock(_without_userinfo(repository))
    deadline, waited = time.monotonic() + wait, False
    while not leases.acquire(key, owner, LOCK_TTL_MS):
        if time.monotonic() >= deadline:
            raise TransientError(f"repository {_without_userinfo(repository)}: another "
                                 f"worker's image update held it for over {wait:g} s",
                                 delay=30.0)
        waited = True
        time.sleep(LOCK_POLL)
    try:
        yield waited
    finally:
        leases.release(key, owner)


def _without_userinfo(url: str) -> str:
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme and "@" in parsed.netloc:
        return parsed._replace(netloc=parsed.netloc.rsplit("@", 1)[1]).geturl()
    return url


def remember_markers(ctx: Context, fleet: Fleet, source: Source,
                     record: dict[str, Any]) -> None:
    """Keep the markers of the source's head (the pushed commit, when there is one) and
    of each revision its units applied; a revision not in this host's mirror yet (the
    commit just pushed) is fetched into it once. ``record["revision"]`` names the head."""
    assert source.image_updates is not None
    apps = {a.name for a in fleet.applications.values() if a.source == source.name}
    known_head = ctx.status.source_revision(source.name)
    head = str(record.get("commit") or (known_head[0] if known_head else "") or
               _fetched(ctx, source))
    revisions = {s.revision for s in ctx.status.all_statuses() if s.app in apps and s.revision}
    revisions |= {head} if head else set()
    known = imageupdates.load_markers_many(ctx.redis, source.name, revisions)
    fetched = False
    for revision in sorted(revisions - set(known)):
        tree = _tree(ctx, source, revision)
        if tree is None and not fetched:
            fetched = bool(_fetched(ctx, source))
            tree = _tree(ctx, source, revision)
        if tree is not None:
            imageupdates.record_markers(ctx.redis, source.name, revision,
                                        readmarkers.markers(tree, source.image_updates.path))
    if head:
        record["revision"] = head
        imageupdates.record_pass(ctx.redis, source.name, record)


def _fetched(ctx: Context, source: Source) -> str:
    """The mirror brought up to date (the revision it resolves to); "" when it cannot be."""
    try:
        return ctx.sources.fetch(source)
    except FleetsyncError as exc:
        log.warning("image markers not read: source not fetched", source=source.name,
                    error=str(exc))
        return ""


def _tree(ctx: Context, source: Source, revision: str) -> Path | None:
    try:
        return ctx.sources.checkout(source, revision)
    except FleetsyncError:
        return None                  # not in this host's mirror
