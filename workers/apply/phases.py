"""The phases of one sync around its main set: when each hook runs, and the sync waves.

The engine validates the whole set (dry-run), then hands the rest to ``Phases``:

    before_writes   Helm ``pre-install``/``pre-upgrade`` hooks, then Argo CD
                    ``PreSync`` hooks (the namespaces they need are created
                    first); one that fails stops the sync with nothing of the
                    main set written
    apply           the main set, wave by wave (``waves``): after each wave its
                    ``Sync`` hooks, and before a later wave is written the wave
                    is waited for until healthy; without waves and Sync hooks,
                    one ``apply_all`` as always
    post            once the main set is healthy (waited for, within what is left
                    of the application's ``timeout``): Helm ``post-*`` hooks,
                    then Argo CD ``PostSync`` hooks
    failed          when the sync failed after its dry-run (a hook, a write, a
                    wave or the health wait for PostSync): Argo CD ``SyncFail``
                    hooks, named in the error. Not for a transient failure (the
                    retry runs the sync again) nor a lost lock (nothing more may
                    be written).

Hooks run only when the unit's revision changes; the engine passes none for a
pass at the revision already applied (a no-op pass, a drift correction), which
still applies its writes wave by wave. Helm hooks: ``install`` on a unit that
applied nothing yet, else ``upgrade``. The timeout starts once the set is
validated: the waits for waves and for PostSync share it; each hook has its own.

Where DESIGN says health is assessed and never waited for within an apply, this
module waits on purpose, and only when the render asks for it: a later wave, a
post hook or a PostSync hook is defined by the health of what came before.
"""

from __future__ import annotations

import time
from typing import Any, Mapping

from shared import argocd
from shared.errors import FleetsyncError, TransientError
from shared.spec.model import Application
from workers.apply import health, hooks, policy, waves
from workers.apply.discovery import Discovery, Resource
from workers.apply.execute import Fence, Outcome, apply_all
from workers.apply.kube import Kube
from workers.apply.observe import Observation
from workers.apply.refs import ObjectRef, is_namespace
from workers.apply.verdict import DEFAULT_RULES, HealthRules

Problems = tuple[tuple[ObjectRef, str, str], ...]


class Phases:
    """One sync's hooks and waves (see the module doc); ``ran`` says what hooks ran."""

    def __init__(self, kube: Kube, app: Application, revision: str, seen: Observation,
                 hook_list: list[hooks.Hook], *, discovery: Discovery, fence: Fence,
                 rules: HealthRules = DEFAULT_RULES) -> None:
        self.kube, self.app, self.revision, self.seen = kube, app, revision, seen
        self.hooks, self.discovery, self.fence, self.rules = hook_list, discovery, fence, rules
        self.event = "install" if not seen.inventory.refs else "upgrade"
        policy.check(app, [h.ref for h in hook_list], {})     # hooks obey it as objects do
        self.sync = hooks.due(hook_list, argocd.SYNC)
        self.order = waves.order(seen.desired, [(h.ref, h.weight) for h in self.sync])
        self.ran: list[str] = []
        self.started = False
        self.deadline = time.monotonic() + app.timeout

    def _due(self, event: str) -> list[hooks.Hook]:
        return [hooks.named(h, self.revision, event) for h in hooks.due(self.hooks, event)]

    def _run(self, due: list[hooks.Hook], event: str) -> None:
        self.ran.extend(hooks.run(self.kube, due, self.app.name, event, self.discovery,
                                  self.app.timeout))

    def _left(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def before_writes(self) -> None:
        """The set passed its dry-run: pre hooks and PreSync hooks, before any write."""
        self.started, self.deadline = True, time.monotonic() + self.app.timeout
        helm, argo = self._due(f"pre-{self.event}"), self._due(argocd.PRE_SYNC)
        if not helm and not argo:
            return
        self.fence.tier()
        needed = {h.ref.namespace for h in helm + argo}   # as helm --create-namespace: first
        for ref, obj in self.seen.desired.items():
            if is_namespace(ref) and ref.name in needed and self.seen.live.get(ref) is None:
                self.kube.apply(self.seen.resources[ref].path(ref), obj)
        self._run(helm, f"pre-{self.event}")
        self._run(argo, argocd.PRE_SYNC)

    def apply(self, kube: Kube, writes: Mapping[ObjectRef, dict],
              resources: Mapping[ObjectRef, Resource], **options: Any) -> Outcome:
        """``execute.apply_all`` of the main set's writes (``options`` are its own), wave by
        wave when the render has waves (``waves.apply``), in one call when not."""
        return waves.apply(writes, self.order,
                           lambda part: apply_all(kube, part, resources, **options),
                           lambda wave, done: self._between(wave, done, list(writes)))

    def _between(self, wave: int, done: Outcome, writes: list[ObjectRef]) -> None:
        due = [hooks.named(h, self.revision, argocd.SYNC) for h in self.sync
               if h.weight == wave]
        if due:
            self.fence.tier()
            self._run(due, argocd.SYNC)
        assert self.order is not None
        if not waves.later(self.order, wave, writes, [h.weight for h in self.sync]):
            return
        refs = self.order.of(wave)
        current = {ref: done.done.get(ref) or self.seen.live.get(ref) or {} for ref in refs}
        try:
            health.wait(self.kube, current, self.seen.resources, timeout=self._left(),
                        rules=self.rules)
        except FleetsyncError as exc:
            lines = exc.message.partition("\n")[2]
            raise waves.WaveNotHealthy(
                f"sync wave {wave} not healthy within the timeout of {self.app.timeout:g}s; "
                f"later waves not applied:\n{lines}", obj=exc.obj) from exc

    def post(self, problems: Problems) -> bool:
        """Post hooks and PostSync hooks once the main set is healthy; True when they
        waited for that health (so the set is healthy now)."""
        helm, argo = self._due(f"post-{self.event}"), self._due(argocd.POST_SYNC)
        if not helm and not argo:
            return False
        kube, resources = self.kube, self.seen.resources
        unhealthy = {ref: kube.get_or_none(resources[ref].path(ref)) or {}
                     for ref, _, _ in problems}
        what = "post hooks" if helm else "PostSync hooks"
        hooks.main_set_healthy(kube, unhealthy, resources, self._left(), what=what)
        self.fence.tier()
        self._run(helm, f"post-{self.event}")
        self._run(argo, argocd.POST_SYNC)
        return True

    def failed(self, exc: FleetsyncError) -> None:
        """SyncFail hooks, when the sync failed after its dry-run; what ran, or how they
        failed, is added to ``exc``'s message."""
        due = self._due(argocd.SYNC_FAIL) if self.started else []
        if not due or isinstance(exc, TransientError):
            return
        before = len(self.ran)
        try:
            self.fence.tier()
            self._run(due, argocd.SYNC_FAIL)
        except FleetsyncError as hook_exc:
            exc.message += f"; {hook_exc.message}"
        ran = self.ran[before:]
        if ran:
            exc.message += "; SyncFail hooks run: " + ", ".join(r.split(" ", 1)[1] for r in ran)
        exc.args = (exc.message,)
