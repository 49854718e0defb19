"""The apply engine: one sync unit's objects made live, as a pipeline that reads top down.

    (+ namespace) -> observe -> refuse an empty render -> plan -> refuse conflicts
        -> validate (dry-run) -> [pre hooks] -> apply (replace on immutable fields
        with force; wave by wave with Argo CD sync waves) -> prune -> inventory
        -> health (assessed, never waited for) -> [post hooks] -> ApplyResult

Hooks (Helm's of a chart, Argo CD's) and sync waves are ``workers.apply.phases``:
without them the apply is one ``apply_all`` and nothing waits.

Every decision is made by the pure modules (``plan``, ``annotations``, ``health.check``); this
module only sequences the I/O verbs. A no-op reconcile (nothing drifted, same
revision) stops after the plan: no dry-run, no write, and N+1 reads for N
objects.

Health is assessed from the objects already held (apply responses, live reads),
on every apply including a no-op one, so a workload that broke after a Ready
sync is seen at the next tick; the engine never waits for it (the runner ends the
run Progressing and a cheap follow-up re-checks only the unhealthy objects). When apply or prune fails
part way, the inventory gets what was applied and what survived, then the
error is raised; every error carries the sync unit and the revision.

A render of zero objects is refused here, not in the render stage, because
only here is the previous inventory known: a unit that managed objects and now
renders none would prune them all (an application rewritten into a format
fleetsync does not read, a wrong path after a reorganisation). It is
``Failed`` with nothing written unless the application sets ``allowEmpty``.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, replace
from typing import Any

from shared.errors import ApplyError, FleetsyncError
from shared.spec.model import Application
from workers.apply import annotations as notes, health, hooks, ignore, namespaces, occupied, policy
from workers.apply import inventory as inv
from workers.apply.discovery import PROCESS, Discovery
from workers.apply.execute import OPEN, Fence, prune_all
from workers.apply.kube import Kube
from workers.apply.observe import Observation, observe
from workers.apply.phases import Phases
from workers.apply.plan import (ADOPTED, CONFIGURED, CREATED, ChangeSet, ownership_error, plan,
                                with_replaced)
from workers.apply.refs import ObjectRef, is_namespace, ref_of
from workers.apply.snapshot import Snapshot, Unobserved
from workers.apply.validate import Validation, validate
from workers.apply.verdict import DEFAULT_RULES, HealthRules

DRIFTED = "drifted from Git"
CRD_TIMEOUT = 60.0
SHORT_LIST = 10
EMPTY = "rendered 0 objects; refusing to prune everything it manages; set allowEmpty: true to allow"


class EmptyRender(ApplyError):
    """The render has no object while the unit's inventory holds some (and no allowEmpty)."""

    reason = "EmptyRender"


@dataclass(frozen=True)
class ApplyResult:
    """What one apply did; ``to_dict`` is the small JSON-able form for Celery results."""

    app: str
    revision: str
    changeset: ChangeSet
    requests: int
    writes: int
    dry_runs: int
    duration: float
    problems: tuple[tuple[ObjectRef, str, str], ...] = ()     # (object, status, message)
    unvalidated: tuple[str, ...] = ()
    inventory_written: bool = False
    dry_run_only: bool = False
    was_applied: bool = False       # the unit was already applied at this revision: what
                                    # differs live was changed in the cluster, not in Git
    hooks: tuple[str, ...] = ()     # Helm hooks run (``pre-upgrade Job/web/migrate``)
    detected: bool = False          # drift: detect found drift and wrote nothing
    suspended: tuple[str, ...] = ()     # objects Suspended that do not hold the unit back
    notes: tuple[str, ...] = ()     # what per-object annotations left alone, and their warnings

    def drifted_lines(self) -> list[str]:
        """``Deployment/web/web-app spec.replicas: 5 -> 3 (by ...)`` per drifted field, and
        objects that are missing or would be pruned."""
        lines = [f"{c.ref} {f}" for c in self.changeset.by_action(CONFIGURED) for f in c.drift]
        lines += [f"{c.ref}: missing" for c in self.changeset.by_action(CREATED)]
        lines += [f"{c.ref}: would be pruned" for c in self.changeset.to_prune()]
        return lines

    @property
    def counts(self) -> dict[str, int]:
        return self.changeset.counts()

    @property
    def drift_corrections(self) -> int:
        """Objects fleetsync had applied at this revision that someone changed, put back."""
        return len(self.corrected()) if self.was_applied else 0

    def corrected(self) -> dict[str, list[str]]:
        """The corrected objects and their fields (``spec.replicas: 5 -> 3``), a few of each."""
        if not self.was_applied:
            return {}
        return {str(c.ref): list(c.drift[:5]) for c in self.changeset.by_action(CONFIGURED)
                if c.reason == DRIFTED}

    @property
    def healthy(self) -> bool:
        return not self.problems

    @property
    def degraded(self) -> bool:
        return any(status == health.DEGRADED for _, status, _ in self.problems)

    def health_lines(self) -> list[str]:
        """``Deployment/web/web-app: Progressing: 2/3 replicas available``, Degraded first."""
        order = sorted(self.problems, key=lambda p: (p[1] != health.DEGRADED, p[0]))
        return [f"{ref}: {status}: {message}" for ref, status, message in order]

    def to_dict(self) -> dict[str, Any]:
        drifted = [c for c in self.changeset.by_action(CONFIGURED) if c.drift][:SHORT_LIST]
        out: dict[str, Any] = {
            "counts": self.counts, "changed": self.changeset.summary(SHORT_LIST),
            "drift": {str(c.ref): list(c.drift[:5]) for c in drifted},
            "drift_corrections": self.drift_corrections,
            "requests": self.requests, "writes": self.writes, "dry_runs": self.dry_runs,
            "duration_s": round(self.duration, 3),
            "unvalidated": list(self.unvalidated[:SHORT_LIST]),
            "inventory_written": self.inventory_written, "dry_run_only": self.dry_run_only,
        }
        if self.problems:         # the phase says whether it counts; these are the objects
            out["health"] = self.health_lines()[:SHORT_LIST]
        if self.hooks:
            out["hooks"] = list(self.hooks[:SHORT_LIST])
        if self.suspended:
            out["suspended"] = list(self.suspended[:SHORT_LIST])
        out.update({"notes": list(self.notes[:SHORT_LIST])} if self.notes else {})
        if self.detected:
            out["detected_drift"] = self.drifted_lines()[:SHORT_LIST]
        corrected = self.corrected()
        if corrected:
            out["corrected_drift"] = dict(list(corrected.items())[:SHORT_LIST])
        return out


@dataclass(frozen=True)
class _Done:
    changeset: ChangeSet
    checked: Validation
    problems: tuple[tuple[ObjectRef, str, str], ...] = ()
    wrote: bool = False
    was_applied: bool = False
    hooks: tuple[str, ...] = ()
    detected: bool = False
    suspended: tuple[str, ...] = ()


def apply_unit(kube: Kube, *, app: Application, objects: list[dict], revision: str, token: int,
               dry_run_only: bool = False, discovery: Discovery = PROCESS,
               fence: Fence = OPEN, identity: str | None = None,
               correct_drift: bool = True, rules: HealthRules = DEFAULT_RULES) -> ApplyResult:
    """Make the cluster hold ``objects`` for ``app`` at ``revision``; see the module doc.

    ``token`` is the fencing token of the sync unit's lock; ``dry_run_only`` stops
    after validation. ``fence`` is asked before each tier of writes and each write
    (``LockLost`` when the lock is no longer the run's: nothing more is written).
    ``identity`` (``namespace/name`` of a ServiceAccount; default the application's
    ``service_account``) is impersonated for every
    request about the application's objects, dry-runs included. Raises
    ApplyError/OwnershipError/PolicyError (permanent), TransientError/StaleInventory/
    LockLost (retry); health is in the result, not raised. With ``drift: detect`` (and
    not ``correct_drift``: a sync asked for on demand corrects), drift at the revision
    already applied is reported (``detected``) and nothing is written. ``rules`` are
    the application's health rules (its custom checks: ``workers/apply/checks.py``).
    """
    started, session = time.monotonic(), kube.session(identity or app.service_account)
    try:
        done = _reconcile(session, app, objects, revision, token, dry_run_only, discovery,
                          fence, correct_drift or app.drift != "detect", rules)
    except FleetsyncError as exc:
        exc.unit = exc.unit or (f"{kube.name}/{app.name}" if kube.name else app.name)
        exc.revision = exc.revision or revision
        raise
    spent = session.counters.snapshot()
    return ApplyResult(app.name, revision, done.changeset, spent["requests"], spent["writes"],
                       spent["dry_runs"], time.monotonic() - started, done.problems,
                       done.checked.unvalidated, done.wrote, dry_run_only, done.was_applied,
                       done.hooks, done.detected, done.suspended,
                       tuple(notes.warnings(objects) + notes.reported(done.changeset)))


@dataclass(frozen=True)
class _Planned:
    hooks: list[hooks.Hook]
    seen: Observation
    changeset: ChangeSet


def _plan(kube: Kube, app: Application, objects: list[dict], discovery: Discovery,
          token: int | None, snapshot: Snapshot | None = None) -> _Planned:
    """Observe (from ``snapshot`` when given), check and plan: no write, no dry-run.
    With ``token`` (the run's fencing token), a stale worker stops here."""
    hook_list, objects = hooks.split(objects)
    own_namespaces = namespaces.wanted(app, objects)
    seen = observe(kube, app.name, objects + own_namespaces, discovery, snapshot)
    if token is not None:
        inv.check_token(app.name, seen.inventory, token)
    for own in own_namespaces:
        seen = namespaces.leave_foreign(seen, ref_of(own), app.name)
    if app.ignore_differences:           # fields left to others: neither drift nor applied
        seen = dataclasses.replace(seen, desired={
            ref: ignore.strip(obj, seen.live.get(ref), app.ignore_differences)
            for ref, obj in seen.desired.items()})
    refuse_empty(app, objects, seen.inventory, own_namespaces)
    policy.check(app, seen.desired, {ref: seen.resources[ref].namespaced
                                     for ref in seen.desired if ref in seen.resources})
    held = notes.held(seen.desired, seen.live)      # left alone by their annotations
    seen = dataclasses.replace(seen, desired=notes.others(seen.desired, held))
    changeset = notes.settle(plan(
        seen.desired.values(), seen.live, seen.inventory.refs, app=app.name, prune=app.prune,
        adopt=app.adopt, adopted=seen.inventory.adopted, prune_adopted=app.prune_adopted),
        held, seen.live, seen.inventory.refs)
    conflict = ownership_error(changeset, app=app.name)
    if conflict:
        raise conflict
    return _Planned(hook_list, seen, changeset)


@dataclass(frozen=True)
class Judgement:
    """A unit judged from a cluster snapshot: ``why`` it needs a run ("" when it needs
    none), and then the plan's counts (every object unchanged)."""

    why: str = ""
    counts: dict[str, int] = dataclasses.field(default_factory=dict)


def judge(kube: Kube, *, app: Application, objects: list[dict], revision: str,
          snapshot: Snapshot, discovery: Discovery = PROCESS,
          identity: str | None = None, rules: HealthRules = DEFAULT_RULES) -> Judgement:
    """Whether this unit needs a run, judged from a cluster ``snapshot`` with no request
    of its own. It needs none when applied at ``revision`` with nothing drifted, missing
    or to prune, and every object healthy. Anything the snapshot cannot tell, or that
    a run would refuse, needs a run (which observes object by object and says why)."""
    try:
        planned = _plan(kube.session(identity or app.service_account), app, objects,
                        discovery, None, snapshot)
    except (Unobserved, FleetsyncError) as exc:
        return Judgement(str(exc) or type(exc).__name__)
    seen, changeset = planned.seen, planned.changeset
    if changeset.to_apply() or changeset.to_prune():
        return Judgement("differs from the render")
    if not seen.inventory.same_as(set(seen.desired) | set(changeset.kept), revision):
        return Judgement("its inventory is not of this revision")
    unhealthy = health.unhealthy({ref: live for ref, live in seen.live.items() if live}, rules)
    if unhealthy:
        return Judgement("not healthy: " + "; ".join(health.describe(unhealthy)[:2]))
    return Judgement(counts=changeset.counts())


def _reconcile(kube: Kube, app: Application, objects: list[dict], revision: str, token: int,
               dry_run_only: bool, discovery: Discovery, fence: Fence,
               correct: bool = True, rules: HealthRules = DEFAULT_RULES) -> _Done:
    planned = _plan(kube, app, objects, discovery, token)     # a stale worker stops here
    hook_list, seen = planned.hooks, planned.seen
    changeset = occupied.keep_occupied(kube, planned.changeset, seen, app.name, discovery)
    was_applied = seen.inventory.revision == revision
    changeset = notes.spared(changeset) if was_applied and not correct else changeset
    if was_applied and not correct and (changeset.to_apply() or changeset.to_prune()):
        problems = health.assess(kube, _current(seen, {}), rules)  # detect: report, no write
        return _Done(changeset, Validation(), health.problems(problems), was_applied=True,
                     detected=True)
    run = Phases(kube, app, revision, seen, [] if was_applied or dry_run_only else hook_list,
                 discovery=discovery, fence=fence, rules=rules)   # hooks at a new revision
    try:
        done = _write(kube, app, revision, token, dry_run_only, discovery, seen, changeset,
                      fence, run, rules)
        if run.post(done.problems):          # post hooks waited for the main set's health
            done = replace(done, problems=())
    except FleetsyncError as exc:       # drift found and left standing: the unit is Drifted
        run.failed(exc)                 # SyncFail hooks, after a failure past the dry-run
        if was_applied:
            exc.drifted = tuple(str(c.ref) for c in changeset.by_action(CONFIGURED)
                                if c.reason == DRIFTED)
        raise
    return replace(done, was_applied=was_applied, hooks=tuple(run.ran))


def _write(kube: Kube, app: Application, revision: str, token: int, dry_run_only: bool,
           discovery: Discovery, seen: Observation, changeset: ChangeSet,
           fence: Fence, run: Phases | None = None,
           rules: HealthRules = DEFAULT_RULES) -> _Done:
    writes = {c.ref: seen.desired[c.ref] for c in changeset.to_apply()}
    how = notes.behaviours(writes)        # per-object force, replace, validation
    checked = validate(kube, writes, seen.resources, new_namespaces=new_namespaces(changeset),
                       pending=seen.pending, force=app.force, how=how,
                       probed=seen.probed) if writes else Validation()
    if dry_run_only:
        return _Done(changeset, checked)
    run = run or Phases(kube, app, revision, seen, [], discovery=discovery, fence=fence)
    run.before_writes()                  # validated whole: now pre hooks, then the writes

    # execute.apply_all, wave by wave when the render has sync waves (one call when not)
    applied = run.apply(kube, writes, seen.resources, pending=seen.pending,
                        on_crds=lambda: _refresh(kube, discovery, seen),
                        crd_timeout=min(app.timeout, CRD_TIMEOUT), force=app.force,
                        replace_timeout=app.timeout, fence=fence, how=how)
    changeset = with_replaced(changeset, applied.replaced)
    if applied.stopped:
        fence.tier()
        _record(kube, app, token, seen, set(seen.inventory.refs) | set(applied.done),
                seen.inventory.revision)
        raise applied.error("apply")
    pruned = prune_all(kube, [c.ref for c in changeset.to_prune()], seen.live, seen.resources,
                       fence=fence)
    refs = set(seen.desired) | set(changeset.kept) | set(pruned.failed)
    if not seen.inventory.same_as(refs, revision) or changeset.by_action(CONFIGURED):
        fence.tier()                     # a no-op pass writes nothing and asks nothing
    wrote = _record(kube, app, token, seen, refs, revision, changeset)
    if pruned.failed:
        raise pruned.error("prune")

    current = _current(seen, applied.done)
    return _Done(changeset, checked, health.problems(health.assess(kube, current, rules)), wrote,
                 suspended=health.suspended(current, rules))


MAX_RECHECK = 50          # objects one health follow-up reads at most


def recheck_unit(kube: Kube, app: str, ref_ids: list[str], discovery: Discovery = PROCESS,
                 rules: HealthRules = DEFAULT_RULES) -> dict[ObjectRef, health.Verdict]:
    """The health follow-up of a unit that was Progressing: read only the objects still
    unhealthy then, and assess them. The ids come through the broker, so only those in
    the unit's own inventory are read (one more GET): nothing else can be asked for."""
    owned = set(inv.read(kube, app).refs)
    refs = [ref for ref in (_parse(i) for i in ref_ids[:MAX_RECHECK]) if ref in owned]
    return health.recheck(kube, discovery.lookup(kube, refs), rules) if refs else {}


def _parse(ref_id: str) -> ObjectRef | None:
    try:
        return ObjectRef.parse(str(ref_id))
    except ValueError:
        return None


def refuse_empty(app: Application, rendered: list[dict], stored: inv.Inventory,
                 own_namespaces: list[dict]) -> None:
    """``EmptyRender`` when nothing is rendered but the inventory holds objects (besides
    the namespace that createNamespace made), unless the application allows it."""
    if rendered or app.allow_empty:
        return
    ours = {ref_of(own) for own in own_namespaces}
    if any(ref not in ours for ref in stored.refs):
        raise EmptyRender(EMPTY)


def new_namespaces(changeset: ChangeSet) -> frozenset[str]:
    """Namespaces this plan creates: objects in them cannot be dry-run in place."""
    return frozenset(c.ref.name for c in changeset.by_action(CREATED) if is_namespace(c.ref))


def _current(seen: Observation, applied: dict[ObjectRef, dict | None]) -> dict[ObjectRef, dict]:
    """The latest state known of every desired object, without another read."""
    return {ref: applied.get(ref) or seen.live.get(ref) or {} for ref in seen.desired}


def _record(kube: Kube, app: Application, token: int, seen: Observation, refs: set[ObjectRef],
            revision: str, changeset: ChangeSet | None = None) -> bool:
    """Write the inventory (a no-op when unchanged); True when it wrote. Objects this
    change set adopted join those adopted before."""
    adopted = set(seen.inventory.adopted) | (
        {c.ref for c in changeset.by_action(CONFIGURED) if c.reason == ADOPTED}
        if changeset is not None else set())
    stored = inv.write(kube, app.name, refs, token=token, revision=revision,
                       previous=seen.inventory, adopted=adopted)
    return stored is not seen.inventory


def _refresh(kube: Kube, discovery: Discovery, seen: Observation) -> None:
    """After CRDs are established: learn their kinds, when objects of them follow."""
    if seen.pending:
        discovery.refresh(kube)
