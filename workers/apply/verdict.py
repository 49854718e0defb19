"""The health verdict as one type, and the per-spec rules that shape it.

Every health function answers a ``Verdict``: a ``(status, message)`` pair, so older
callers that unpack it or compare it with a tuple keep working, that also says
which ``rule`` decided (``built-in apps/Deployment``, ``generic: conditions``,
``cel: cert-manager.io/Certificate``...), so a surprising verdict can be traced to
the code or the configuration that produced it.

``HealthRules`` is built once per fleet spec by its owner and passed in; nothing
here reads settings on its own. ``blocking`` is the one place that says which
verdicts keep a unit from Ready.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Callable, Mapping


class Health(enum.StrEnum):
    HEALTHY = "Healthy"
    PROGRESSING = "Progressing"
    DEGRADED = "Degraded"
    SUSPENDED = "Suspended"
    UNKNOWN = "Unknown"


class Verdict(tuple[Health, str]):
    """``(status, message)`` plus the ``rule`` that decided; equality ignores the rule.

    A tuple subclass cannot have non-empty ``__slots__``, so ``rule`` lives in the
    instance dict; pickling a tuple subclass restores it from there."""

    rule: str

    def __new__(cls, status: str, message: str, rule: str = "") -> Verdict:
        self = super().__new__(cls, (Health(status), message))
        self.rule = rule
        return self

    def __getnewargs__(self) -> tuple[Health, str, str]:    # type: ignore[override]
        return self[0], self[1], self.rule

    @property
    def status(self) -> Health:
        return self[0]

    @property
    def message(self) -> str:
        return self[1]

    def by(self, rule: str) -> Verdict:
        """The same verdict credited to ``rule`` (kept when one is already named)."""
        return self if self.rule else Verdict(self[0], self[1], rule)

    def __repr__(self) -> str:
        return f"Verdict({self[0].value!r}, {self[1]!r}, rule={self.rule!r})"


CustomCheck = Callable[[Mapping], "Verdict | None"]

# "group/Kind" of custom resources whose controllers never write a status, so that
# having none is no sign of a missing controller. Checked against the CRDs as shipped:
# Prometheus operator's scrape and rule objects, Traefik's routing objects, Istio's
# networking and security objects (status only with istiod's opt-in status writer),
# template-like kinds of Argo Workflows, Argo Rollouts, KEDA and Tekton, and
# Crossplane's configuration kinds (as Argo CD's Crossplane check lists them). An entry
# ``*.<domain>/<Kind>`` covers the kind in every group under that domain: Crossplane's
# providers each serve their ProviderConfig kinds in a group of their own
# (aws.upbound.io, helm.m.crossplane.io...); those hold credentials references and at
# most a ``users`` count or an empty ``conditions`` list, never a health signal.
STATUSLESS_KINDS = frozenset({
    "monitoring.coreos.com/ServiceMonitor", "monitoring.coreos.com/PodMonitor",
    "monitoring.coreos.com/PrometheusRule", "monitoring.coreos.com/Probe",
    "monitoring.coreos.com/AlertmanagerConfig", "monitoring.coreos.com/ScrapeConfig",
    *(f"{group}/{kind}" for group in ("traefik.io", "traefik.containo.us") for kind in (
        "IngressRoute", "IngressRouteTCP", "IngressRouteUDP", "Middleware", "MiddlewareTCP",
        "TLSOption", "TLSStore", "ServersTransport", "ServersTransportTCP", "TraefikService")),
    *(f"networking.istio.io/{kind}" for kind in (
        "VirtualService", "DestinationRule", "Gateway", "ServiceEntry", "Sidecar",
        "EnvoyFilter", "WorkloadEntry", "WorkloadGroup", "ProxyConfig")),
    *(f"security.istio.io/{kind}" for kind in (
        "AuthorizationPolicy", "PeerAuthentication", "RequestAuthentication")),
    "telemetry.istio.io/Telemetry",
    "argoproj.io/WorkflowTemplate", "argoproj.io/ClusterWorkflowTemplate",
    "argoproj.io/AnalysisTemplate", "argoproj.io/ClusterAnalysisTemplate",
    "keda.sh/TriggerAuthentication", "keda.sh/ClusterTriggerAuthentication",
    "tekton.dev/Task", "tekton.dev/Pipeline", "tekton.dev/ClusterTask",
    "triggers.tekton.dev/TriggerBinding", "triggers.tekton.dev/TriggerTemplate",
    "apiextensions.crossplane.io/Composition",
    "apiextensions.crossplane.io/CompositionRevision",
    "pkg.crossplane.io/DeploymentRuntimeConfig", "pkg.crossplane.io/ControllerConfig",
    "snapshot.storage.k8s.io/VolumeSnapshotClass",
    "external-secrets.io/ClusterExternalSecretTemplate",
    *(f"*.{domain}/{kind}" for domain in ("crossplane.io", "upbound.io") for kind in (
        "ProviderConfig", "ClusterProviderConfig", "ProviderConfigUsage",
        "ClusterProviderConfigUsage", "StoreConfig", "EnvironmentConfig", "ImageConfig",
        "DeploymentRuntimeConfig", "ControllerConfig", "Composition")),
})


@dataclass(frozen=True)
class HealthRules:
    """How one fleet spec wants health read; the defaults fit a typical cluster.

    ``custom`` checks are tried first, in order; the first that answers wins.
    ``load_balancer_address``: a LoadBalancer Service waits for its address (False
    where no load-balancer controller runs). ``ingress_address``: an Ingress waits
    for its address too (Argo CD's reading; kstatus's, the default, does not).
    ``suspended_is``: what a suspended object counts as for readiness."""

    custom: tuple[CustomCheck, ...] = ()
    load_balancer_address: bool = True
    ingress_address: bool = False
    statusless_kinds: frozenset[str] = field(default=STATUSLESS_KINDS)
    suspended_is: Health = Health.SUSPENDED


DEFAULT_RULES = HealthRules()


def blocking(verdict: tuple[str, str], rules: HealthRules = DEFAULT_RULES) -> bool:
    """Whether ``verdict`` keeps a unit from Ready: all but Healthy, and Suspended
    only when the application counts a suspended object as still Progressing."""
    status = verdict[0]
    if status == Health.HEALTHY:
        return False
    if status == Health.SUSPENDED:
        return rules.suspended_is == Health.PROGRESSING
    return True
