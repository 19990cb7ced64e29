"""`fireproof migrate traefik-acme`: plan -> apply -> verify.

Traefik's certificates move out of ``acme.json`` (on a ReadWriteOnce claim, so one replica
on one node) into TLS Secrets that every replica reads, under cert-manager. Nothing is
re-issued (the same certificates, adopted; see ``manifests.py``), and nothing is lost: the claim
and its acme.json stay until the user deletes them, and the Deployment as it was is saved for
the rollback.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fireproof.clock import Clock, poll_until
from fireproof.errors import NotFoundError, PermanentError, UsageError
from fireproof.kube import manifests as kube
from fireproof.kube.cluster import Cluster
from fireproof.migrate import deployment as deploy
from fireproof.migrate.acmejson import Resolver, StoredCertificate
from fireproof.migrate.manifests import Challenge, cert_manager_objects, tls_secret, tls_store
from fireproof.migrate.traefikargs import ResolverFlags, resolvers

FIELD_MANAGER = "fireproof-migrate"
CERT_MANAGER_CRD = "certificates.cert-manager.io"
TLSSTORE_CRD = "tlsstores.traefik.io"
INGRESSROUTE = ("traefik.io/v1alpha1", "IngressRoute")


@dataclass(frozen=True, slots=True)
class RouteChange:
    namespace: str
    name: str
    resolver: str


@dataclass(frozen=True, slots=True)
class Plan:
    namespace: str
    deployment: dict[str, Any]
    """The Deployment as read (the rollback restores it)."""
    resolvers: tuple[Resolver, ...]
    """The resolvers of acme.json that the Deployment configures, with their certificates."""
    flags: dict[str, ResolverFlags]
    claims: tuple[str, ...]
    replicas: int
    helm_release: str | None
    cert_manager: bool
    """cert-manager's CRDs are installed: its objects are applied, else only written out."""
    routes: tuple[RouteChange, ...]

    @property
    def certificates(self) -> list[StoredCertificate]:
        return [c for r in self.resolvers for c in r.certificates]

    def secrets(self) -> list[dict[str, Any]]:
        return [tls_secret(c, self.namespace) for c in self.certificates]

    def cert_manager_objects(self) -> list[dict[str, Any]]:
        settings = {name: flags.settings() for name, flags in self.flags.items()}
        return cert_manager_objects(self.resolvers, settings, self.namespace)

    def store(self) -> dict[str, Any]:
        return tls_store(self.certificates, self.namespace)

    def deployment_after(self) -> dict[str, Any]:
        return deploy.stateless(self.deployment, list(self.claims), self.replicas)

    def budget(self) -> dict[str, Any]:
        return deploy.disruption_budget(self.deployment, self.replicas)

    def documents(self) -> list[dict[str, Any]]:
        """Every object the apply writes, in its order (``-o yaml``)."""
        tail = [] if self.helm_release else [self.budget(), self.deployment_after()]
        return [*self.secrets(), *self.cert_manager_objects(), self.store(), *tail]


def make_plan(
    cluster: Cluster, stored: tuple[Resolver, ...], namespace: str, name: str, replicas: int
) -> Plan:
    """What the migration will do; reads only."""
    kube.load_custom_kinds(cluster)
    current = kube.read(cluster, "apps/v1", "Deployment", namespace, name)
    if current is None:
        raise NotFoundError(
            f"Deployment {namespace}/{name} not found",
            hint="name Traefik's with --namespace and --deployment",
        )
    containers = current["spec"]["template"]["spec"].get("containers") or []
    configured = resolvers([a for c in containers for a in c.get("args") or []])
    if not configured:
        raise UsageError(
            f"Deployment {namespace}/{name} configures no ACME resolver "
            "(--certificatesresolvers.NAME.acme.*): nothing to migrate"
        )
    # Traefik's flags are case-insensitive; acme.json keeps the name as Traefik stored it.
    by_name = {name.lower(): flags for name, flags in configured.items()}
    chosen = tuple(r for r in stored if r.name.lower() in by_name and r.certificates)
    if not chosen:
        raise UsageError(
            f"acme.json has no certificate for the resolver(s) {', '.join(configured)}",
            hint="pass the acme.json that this Traefik writes",
        )
    if not kube.served(cluster, TLSSTORE_CRD):
        raise UsageError(
            f"Traefik's CRDs ({TLSSTORE_CRD}) are not installed: the certificates are served "
            "from a TLSStore, which needs Traefik's kubernetescrd provider",
            hint="install Traefik's CRDs (its Helm chart does), then run this again",
        )
    flags = {r.name: by_name[r.name.lower()] for r in chosen}
    claims = deploy.claims_at(current, [f.storage for f in flags.values()])
    return Plan(
        namespace=namespace,
        deployment=current,
        resolvers=chosen,
        flags=flags,
        claims=tuple(claims),
        replicas=replicas,
        helm_release=deploy.helm_release(current),
        cert_manager=kube.served(cluster, CERT_MANAGER_CRD),
        routes=tuple(_routes(cluster, set(flags))),
    )


def _routes(cluster: Cluster, names: set[str]) -> list[RouteChange]:
    if not kube.served(cluster, "ingressroutes.traefik.io"):
        return []
    found = []
    for route in kube.listed(cluster, *INGRESSROUTE, "*"):
        resolver = ((route.get("spec") or {}).get("tls") or {}).get("certResolver")
        if isinstance(resolver, str) and resolver.lower() in {n.lower() for n in names}:
            meta = route["metadata"]
            found.append(RouteChange(meta["namespace"], meta["name"], resolver))
    return found


def describe(plan: Plan, now: float) -> list[str]:
    """The plan as steps a person reads before saying yes, in the apply's order."""
    name = f"{plan.namespace}/{plan.deployment['metadata']['name']}"
    steps = [
        f"read acme.json: {len(plan.certificates)} certificate(s) of resolver(s) "
        f"{', '.join(plan.flags)} of Traefik {name}; the same ones move, none is re-issued"
    ]
    for cert, secret in zip(plan.certificates, plan.secrets(), strict=True):
        days = (cert.not_after.timestamp() - now) / 86400
        steps.append(
            f"write Secret {plan.namespace}/{secret['metadata']['name']}: {cert.main}, serial "
            f"{cert.serial:x}, {cert.key.algorithm}-{cert.key.size}, expires in {days:.0f} days"
        )
    how = "" if plan.cert_manager else " (shown only: cert-manager's CRDs are not installed)"
    for doc in plan.cert_manager_objects():
        steps.append(f"write {doc['kind']} {plan.namespace}/{doc['metadata']['name']}{how}")
    steps += _solver_warnings(plan)
    steps.append(f"write TLSStore {plan.namespace}/default: the Secrets, to every TLS router")
    steps += [
        f"patch IngressRoute {r.namespace}/{r.name}: drop tls.certResolver {r.resolver}"
        for r in plan.routes
    ]
    steps += _deployment_steps(plan, name)
    steps.append(
        f"keep PersistentVolumeClaim(s) {', '.join(plan.claims) or '(none)'} with acme.json, "
        "and save the Deployment as it is now for the rollback"
    )
    return steps


def _solver_warnings(plan: Plan) -> list[str]:
    """A DNS-01 resolver's provider settings do not carry over to cert-manager: its Issuer
    renews by HTTP-01 until the user gives it a dns01 solver, and a wildcard never can."""
    warnings = []
    for resolver in plan.resolvers:
        flags = plan.flags[resolver.name]
        if flags.settings().challenge is not Challenge.DNS:
            continue
        provider = flags.values.get("dnschallenge.provider", "?")
        wildcards = [c.main for c in resolver.certificates if "*" in " ".join(c.dns_names)]
        warnings.append(
            f"warn: resolver {resolver.name} used DNS-01 ({provider}); its Issuer renews by "
            "HTTP-01 until you add a dns01 solver"
            + (f", and {', '.join(wildcards)} cannot renew without one" if wildcards else "")
        )
    return warnings


def _deployment_steps(plan: Plan, name: str) -> list[str]:
    if plan.helm_release:
        return [
            f"leave Deployment {name} to Helm release {plan.helm_release}: apply the values "
            "that -o yaml prints (`helm upgrade --reuse-values -f VALUES`)"
        ]
    return [
        f"write PodDisruptionBudget {plan.namespace}/{plan.deployment['metadata']['name']}: "
        f"minAvailable {max(1, plan.replicas - 1)}",
        f"replace Deployment {name}: no resolver flags, no claim, {plan.replicas} replicas, "
        "rolling (maxUnavailable 0, maxSurge 1), spread over zones and nodes",
    ]


def apply(plan: Plan, cluster: Cluster, rollback: Path, say: Callable[[str], None]) -> None:
    """Write the plan, the certificates first: Traefik loses nothing at any step. The
    Deployment as it was is saved to ``rollback`` before anything changes."""
    rollback.parent.mkdir(parents=True, exist_ok=True)
    rollback.write_text(json.dumps(plan.deployment, indent=2))
    for doc in plan.secrets():
        _no_other_certificate(cluster, doc)
        kube.apply(cluster, doc, FIELD_MANAGER)
        say(f"Secret {plan.namespace}/{doc['metadata']['name']} written")
    if plan.cert_manager:
        for doc in plan.cert_manager_objects():
            kube.apply(cluster, doc, FIELD_MANAGER)
            say(f"{doc['kind']} {plan.namespace}/{doc['metadata']['name']} written")
    kube.apply(cluster, plan.store(), FIELD_MANAGER)
    say(f"TLSStore {plan.namespace}/default written")
    for route in plan.routes:
        patch = {"spec": {"tls": {"certResolver": None}}}
        kube.merge_patch(cluster, *INGRESSROUTE, route.namespace, route.name, patch)
        say(f"IngressRoute {route.namespace}/{route.name}: certResolver removed")
    if plan.helm_release:
        return
    kube.apply(cluster, plan.budget(), FIELD_MANAGER)
    kube.replace(cluster, plan.deployment_after())
    say(f"Deployment {plan.namespace}/{plan.deployment['metadata']['name']} is stateless now")


def _no_other_certificate(cluster: Cluster, doc: dict[str, Any]) -> None:
    """Never overwrite a Secret that holds another certificate: it is the user's."""
    if _holds_certificate(cluster, doc) is False:
        meta = doc["metadata"]
        raise PermanentError(
            f"Secret {meta['namespace']}/{meta['name']} exists with another certificate: "
            "not overwritten",
            hint="move it away, or migrate into another namespace with --namespace",
        )


def _holds_certificate(cluster: Cluster, doc: dict[str, Any]) -> bool | None:
    """Whether the Secret ``doc`` names holds ``doc``'s certificate (None: no such Secret)."""
    meta = doc["metadata"]
    current = kube.read(cluster, "v1", "Secret", meta["namespace"], meta["name"])
    if current is None:
        return None
    return bool((current.get("data") or {}).get("tls.crt") == doc["data"]["tls.crt"])


def verify(plan: Plan, cluster: Cluster, timeout: float, clock: Clock) -> list[str]:
    """Problems left after the apply (empty: verified): the Secrets hold acme.json's
    certificates, and the Deployment runs every replica without the claim."""
    problems = [p for doc in plan.secrets() if (p := _secret_problem(cluster, doc))]
    if plan.helm_release:
        return problems
    name = plan.deployment["metadata"]["name"]
    last: list[str] = []

    def rolled_out() -> bool:
        last[:] = [p for p in [_rollout_problem(cluster, plan.namespace, name, plan.replicas)] if p]
        return not last

    poll_until(rolled_out, timeout=timeout, interval=1.0, clock=clock)
    return problems + last


def _secret_problem(cluster: Cluster, doc: dict[str, Any]) -> str | None:
    if _holds_certificate(cluster, doc):
        return None
    meta = doc["metadata"]
    return f"Secret {meta['namespace']}/{meta['name']} does not hold acme.json's certificate"


def _rollout_problem(cluster: Cluster, namespace: str, name: str, replicas: int) -> str | None:
    current = kube.read(cluster, "apps/v1", "Deployment", namespace, name) or {}
    status = current.get("status") or {}
    seen = status.get("observedGeneration", 0) >= current.get("metadata", {}).get("generation", 0)
    ready = status.get("readyReplicas") or 0
    updated = status.get("updatedReplicas") or 0
    total = status.get("replicas") or 0
    if seen and min(ready, updated) >= replicas and total == replicas:
        return None
    return f"Deployment {namespace}/{name}: {ready} of {replicas} ready, {updated} updated"


def as_dict(plan: Plan) -> dict[str, Any]:
    return {
        "namespace": plan.namespace,
        "resolvers": list(plan.flags),
        "certificates": [
            {"main": c.main, "serial": format(c.serial, "x"), "secret": s["metadata"]["name"]}
            for c, s in zip(plan.certificates, plan.secrets(), strict=True)
        ],
        "claims": list(plan.claims),
        "replicas": plan.replicas,
        "helm_release": plan.helm_release,
        "cert_manager": plan.cert_manager,
        "routes": [dataclasses.asdict(r) for r in plan.routes],
    }
