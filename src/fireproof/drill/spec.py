"""A drill spec: YAML, validated on load; every error names the file, line and field."""

from __future__ import annotations

import enum
import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fireproof.errors import UsageError
from fireproof.names import is_namespace_name, is_node_name, is_object_name
from fireproof.yamldoc import Section, load_yaml


class SpecError(UsageError):
    """A drill spec that cannot be run as written (exit code 2, nothing touched)."""


class Fault(enum.StrEnum):
    POWER_OFF = "power-off"
    PARTITION = "partition"
    REBOOT = "reboot"
    HOST_POWER_OFF = "host-power-off"
    """A whole Proxmox host powered off through its own device (its BMC, ``hosts:``)."""
    HOST_HANG = "host-hang"
    """A whole Proxmox host hung: no answer, its VMs dead, its power on (the lab only)."""
    SCALE = "scale"
    """A workload scaled to ``replicas:`` (the report's Traefik on RWO storage, scaled to 2)."""
    CHANGE_IP = "change-ip"
    """A control-plane node's address changes, the ``kubernetes`` Endpoints left stale (the
    report's second scene; the lab only)."""

    @property
    def on_host(self) -> bool:
        return self in (Fault.HOST_POWER_OFF, Fault.HOST_HANG)


class Recovery(enum.StrEnum):
    GUARD = "guard"
    HEAL = "heal"
    NONE = "none"


PROXMOX_FAULTS = (
    "api-error",
    "latency",
    "hang",
    "auth-failure",
    "ignore-stop",
    "hang-tasks",
    "host-unreachable",
    "locked",
    "stop-warnings",
)
"""The lab emulator's faults a drill may hold during recovery."""

_DURATION = re.compile(
    r"^\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s?)?\s*$"
)


def parse_duration(text: str) -> float | None:
    """``300s``, ``5m``, ``1m30s``, ``1h``, or a bare number of seconds; None if malformed."""
    match = _DURATION.match(text)
    if not match or not any(match.groups()):
        return None
    hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds


@dataclass(frozen=True, slots=True)
class WorkloadRef:
    namespace: str
    kind: str
    """``deployment``, ``statefulset`` or ``daemonset``."""
    name: str
    where: str = field(default="", compare=False)
    """``file:line`` of the reference, for errors found later (a workload that is not there)."""

    @property
    def label(self) -> str:
        return f"{self.namespace}/{self.kind}/{self.name}"


@dataclass(frozen=True, slots=True)
class TargetSpec:
    node: str | None = None
    running: WorkloadRef | None = None
    host: str | None = None
    """A Proxmox host (host faults)."""
    host_of: WorkloadRef | None = None
    """The Proxmox host of the node that runs this workload (host faults)."""
    workload: WorkloadRef | None = None
    """The workload itself (``fault: scale``)."""
    control_planes: str | None = None
    """``{control-plane: any}`` (a Ready control-plane node the plan picks) or ``all``."""
    where: str = field(default="", compare=False)

    @property
    def label(self) -> str:
        if self.node:
            return f"node {self.node}"
        if self.running:
            return f"the node running {self.running.label}"
        if self.host:
            return f"host {self.host}"
        if self.workload:
            return self.workload.label
        if self.control_planes:
            return f"{self.control_planes} control-plane node(s)"
        return f"the host running {self.host_of.label}"  # type: ignore[union-attr]

    @property
    def on_host(self) -> bool:
        return self.host is not None or self.host_of is not None

    def as_dict(self) -> dict[str, str]:
        if self.node:
            return {"node": self.node}
        if self.running:
            return {"running": self.running.label}
        if self.host:
            return {"host": self.host}
        if self.workload:
            return {"workload": self.workload.label}
        if self.control_planes:
            return {"control-plane": self.control_planes}
        return {"host-of": self.host_of.label}  # type: ignore[union-attr]


class SloKind(enum.StrEnum):
    RUNNING_ELSEWHERE = "running_elsewhere_within"
    MAX_UNAVAILABLE = "max_unavailable_seconds"
    NODE_READY = "node_ready_within"
    NO_DOUBLE_ATTACH = "no_double_attach"
    READY = "ready_within"


@dataclass(frozen=True, slots=True)
class Slo:
    kind: SloKind
    threshold: float | None = None
    """Seconds (None for no_double_attach, whose threshold is zero volumes)."""
    workload: WorkloadRef | None = None
    node: str | None = None
    """For node_ready_within: one node (default: every target node)."""

    @property
    def label(self) -> str:
        subject = self.workload.label if self.workload else (self.node or "target nodes")
        if self.kind is SloKind.NO_DOUBLE_ATTACH:
            return "no volume attached to two nodes"
        words = {
            SloKind.RUNNING_ELSEWHERE: "running elsewhere within",
            SloKind.MAX_UNAVAILABLE: "unavailable at most",
            SloKind.NODE_READY: "Ready again within",
            SloKind.READY: "every replica Ready within",
        }[self.kind]
        return f"{subject} {words} {self.threshold:g} s"


@dataclass(frozen=True, slots=True)
class ProxmoxFaultSpec:
    kind: str
    seconds: float
    """How long the fault is held once recovery starts."""
    host: str | None = None
    vmid: int | None = None


@dataclass(frozen=True, slots=True)
class DrillSpec:
    name: str
    targets: tuple[TargetSpec, ...]
    fault: Fault
    recovery: Recovery
    timeout: float
    slos: tuple[Slo, ...]
    restore: bool = True
    proxmox_fault: ProxmoxFaultSpec | None = None
    path: Path | None = None
    steady_timeout: float = 180.0
    """How long the drill waits for its steady state, before the fault and after the restore."""
    replicas: int | None = None
    """``fault: scale``: the replica count the workload is scaled to."""
    new_address: str | None = None
    """``fault: change-ip``: the node's new address (default: a free one the lab picks)."""

    @property
    def workloads(self) -> tuple[WorkloadRef, ...]:
        seen: dict[str, WorkloadRef] = {}
        for target in self.targets:
            for ref in (target.running, target.host_of, target.workload):
                if ref is not None:
                    seen.setdefault(ref.label, ref)
        for slo in self.slos:
            if slo.workload is not None:
                seen.setdefault(slo.workload.label, slo.workload)
        return tuple(seen.values())

    def as_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "name": self.name,
            "targets": [t.as_dict() for t in self.targets],
            "fault": self.fault.value,
            "recovery": self.recovery.value,
            "timeout": self.timeout,
            "restore": self.restore,
            "slo": [_slo_dict(s) for s in self.slos],
        }
        if self.proxmox_fault is not None:
            pf = self.proxmox_fault
            doc["proxmox_fault"] = {"kind": pf.kind, "seconds": pf.seconds}
        return doc


def _slo_dict(slo: Slo) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    if slo.workload is not None:
        doc["workload"] = slo.workload.label
    if slo.node is not None:
        doc["node"] = slo.node
    doc[slo.kind.value] = True if slo.kind is SloKind.NO_DOUBLE_ATTACH else slo.threshold
    return doc


TOP_LEVEL = {"name", "target", "targets", "fault", "recovery", "timeout", "restore", "slo"}
TOP_LEVEL |= {"proxmox_fault", "steady_timeout", "replicas", "new_address"}


def load_spec(path: Path) -> DrillSpec:
    try:
        doc = load_yaml(path, "drill spec")
    except UsageError as exc:
        raise SpecError(exc.message, hint=exc.hint) from None
    try:
        return _parse(doc)
    except UsageError as exc:
        if isinstance(exc, SpecError):
            raise
        raise SpecError(exc.message, hint=exc.hint) from None


def _where(section: Section) -> str:
    return f"{section.path}:{section.node.start_mark.line + 1}"


MAX_DURATION = 24 * 3600.0
"""The longest timeout or SLO threshold a drill takes: a day (a fire drill is minutes; a
typo's 100000h would hold the cluster in its fault for years)."""


def _duration(section: Section, key: str, *, required: bool = False) -> float | None:
    text = section.text(key, required=required)
    if text is None:
        return None
    value = parse_duration(text)
    if value is None or value <= 0:
        raise section.error(f"must be a duration like 60s, 5m or 1m30s; got {text!r}", key)
    if value > MAX_DURATION:
        raise section.error(f"must be at most 24h; got {text!r}", key)
    return value


def _workload(section: Section, key: str) -> WorkloadRef:
    text = section.req_text(key)
    parts = text.split("/")
    kinds = ("deployment", "statefulset", "daemonset")
    if (
        len(parts) != 3
        or parts[1].lower() not in kinds
        or not is_namespace_name(parts[0])
        or not is_object_name(parts[2])
    ):
        raise section.error(
            f"must be NAMESPACE/KIND/NAME with KIND one of {', '.join(kinds)} and Kubernetes "
            f"names (RFC 1123); got {text!r}",
            key,
        )
    return WorkloadRef(parts[0], parts[1].lower(), parts[2], _where(section))


def _node_name(section: Section, key: str) -> str:
    name = section.req_text(key)
    if not is_node_name(name):
        raise section.error(f"{name!r} is not a valid node name (RFC 1123)", key)
    return name


TARGET_KEYS = ("node", "running", "host", "host-of", "workload", "control-plane")


def _target(section: Section) -> TargetSpec:
    section.reject_unknown(set(TARGET_KEYS))
    if sum(section.has(k) for k in TARGET_KEYS) != 1:
        raise section.error(
            "needs exactly one of node: NAME, running: NAMESPACE/KIND/NAME (node faults), "
            "host: NAME or host-of: NAMESPACE/KIND/NAME (host faults), workload: "
            "NAMESPACE/KIND/NAME (scale), control-plane: any|all (change-ip)"
        )
    where = _where(section)
    if section.has("node"):
        return TargetSpec(node=_node_name(section, "node"), where=where)
    if section.has("running"):
        return TargetSpec(running=_workload(section, "running"), where=where)
    if section.has("host"):
        return TargetSpec(host=_node_name(section, "host"), where=where)
    if section.has("workload"):
        return TargetSpec(workload=_workload(section, "workload"), where=where)
    if section.has("control-plane"):
        which = section.text("control-plane")
        if which not in ("any", "all"):
            raise section.error("must be `control-plane: any` or `all`", "control-plane")
        return TargetSpec(control_planes=which, where=where)
    return TargetSpec(host_of=_workload(section, "host-of"), where=where)


def _slo(section: Section) -> Slo:
    section.reject_unknown({"workload", "node", *(k.value for k in SloKind)})
    kinds = [k for k in SloKind if section.has(k.value)]
    if len(kinds) != 1:
        known = ", ".join(k.value for k in SloKind)
        raise section.error(f"needs exactly one of {known}")
    kind = kinds[0]
    if kind is SloKind.NO_DOUBLE_ATTACH:
        if not section.boolean(kind.value, True):
            raise section.error("only `no_double_attach: true` makes sense", kind.value)
        if section.has("workload") or section.has("node"):
            raise section.error("no_double_attach covers every volume: drop workload/node")
        return Slo(kind)
    threshold: float | None
    if kind is SloKind.MAX_UNAVAILABLE:
        threshold = section.number(kind.value, 0.0, minimum=0.001, maximum=86400)
    else:
        threshold = _duration(section, kind.value, required=True)
    if kind is SloKind.NODE_READY:
        if section.has("workload"):
            raise section.error("node_ready_within is about a node: use node:, not workload:")
        node = _node_name(section, "node") if section.has("node") else None
        return Slo(kind, threshold, node=node)
    if section.has("node"):
        raise section.error(f"{kind.value} is about a workload: use workload:, not node:")
    if not section.has("workload"):
        raise section.error(f"{kind.value} needs workload: NAMESPACE/KIND/NAME")
    return Slo(kind, threshold, workload=_workload(section, "workload"))


def _address(doc: Section, fault: Fault) -> str | None:
    text = doc.text("new_address")
    if text is None:
        return None
    if fault is not Fault.CHANGE_IP:
        raise doc.error("new_address: is for fault: change-ip", "new_address")
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise doc.error(f"{text!r} is not an IP address", "new_address") from None


def _parse(doc: Section) -> DrillSpec:
    if not doc.fields():
        raise SpecError(
            f"{doc.path}: the drill spec is empty",
            hint="start from a shipped one: drills/traefik-worker-power-off.yaml",
        )
    doc.reject_unknown(TOP_LEVEL)
    name = doc.req_text("name")
    if doc.has("target") and doc.has("targets"):
        raise doc.error("give target: or targets:, not both", "targets")
    targets = [
        _target(s) for s in doc.list_of_sections("targets" if doc.has("targets") else "target")
    ]
    if not targets:
        raise doc.error("missing required field 'target'")
    fault = Fault(doc.choice("fault", tuple(f.value for f in Fault), Fault.POWER_OFF.value))
    for target in targets:
        kind = "scale" if fault is Fault.SCALE else "host" if fault.on_host else "node"
        got = "scale" if target.workload is not None else "host" if target.on_host else "node"
        if kind != got:
            wanted = {
                "scale": "workload:",
                "host": "host: or host-of:",
                "node": "node: or running:",
            }[kind]
            raise SpecError(f"{target.where}: fault: {fault.value} needs a target {wanted}")
        if target.workload is not None and target.workload.kind not in (
            "deployment",
            "statefulset",
        ):
            raise SpecError(f"{target.where}: fault: scale works on a deployment or statefulset")
    new_address = _address(doc, fault)
    replicas = doc.integer("replicas", None, minimum=0, maximum=1000)
    if (fault is Fault.SCALE) != (replicas is not None):
        why = (
            "fault: scale needs replicas: N"
            if replicas is None
            else "replicas: is for fault: scale"
        )
        raise doc.error(why, "replicas")
    recovery = Recovery(
        doc.choice("recovery", tuple(r.value for r in Recovery), Recovery.NONE.value)
    )
    timeout = _duration(doc, "timeout") or 300.0
    steady_timeout = _duration(doc, "steady_timeout") or 180.0
    slos = [_slo(s) for s in doc.list_of_sections("slo")]
    proxmox_fault = None
    if (pf := doc.section("proxmox_fault")) is not None:
        pf.reject_unknown({"kind", "seconds", "host", "vmid"})
        kind = pf.choice("kind", PROXMOX_FAULTS, "")
        seconds = pf.number("seconds", 20.0, minimum=1, maximum=3600)
        proxmox_fault = ProxmoxFaultSpec(
            kind, seconds, pf.text("host"), pf.integer("vmid", None, minimum=100)
        )
    return DrillSpec(
        name=name,
        targets=tuple(targets),
        fault=fault,
        recovery=recovery,
        timeout=timeout,
        steady_timeout=steady_timeout,
        replicas=replicas,
        new_address=new_address,
        slos=tuple(slos),
        restore=doc.boolean("restore", True),
        proxmox_fault=proxmox_fault,
        path=doc.path,
    )
