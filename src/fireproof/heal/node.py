"""`heal node`: fence a dead node, verify it is off, release its volumes, wait for its workloads.

Safety rules (each one a test on the lab):
- a Ready node is never touched: heal acts only on a node that stopped reporting;
- volumes are released only after the fencing device read the machine back as off;
- a fencing error, a timeout or an unknown state stops the playbook before any release, and
  the journal says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from fireproof.errors import FireproofError, PermanentError, TransientError
from fireproof.fencing import Fencer, FencingError, Machine, PowerState
from fireproof.heal.journal import Journal
from fireproof.heal.workloads import AffectedPod, affected_pods, waiting_for
from fireproof.inventory import IdentityMethod, verify_identity
from fireproof.kube import Cluster, node_ready, system_uuid

OUT_OF_SERVICE = "node.kubernetes.io/out-of-service"
OUT_OF_SERVICE_VALUE = "nodeshutdown"
TAINT_SINCE = (1, 28)  # the out-of-service taint is GA (and honoured) from Kubernetes 1.28


class HealRefused(PermanentError):
    """The playbook will not act: the reason is the message."""


@dataclass(frozen=True, slots=True)
class NodePlan:
    node: str
    ready: str
    machine: Machine
    method: str
    """``taint`` (out-of-service) or ``delete`` (force-delete pods, delete VolumeAttachments)."""
    server_version: tuple[int, int]
    pods: tuple[AffectedPod, ...]
    attachments: tuple[str, ...]
    steps: tuple[str, ...] = field(default=())
    source: str = "config"
    """The inventory source of the mapping, for the identity check."""
    identity: IdentityMethod | None = None
    """How the machine was proven to be the node's (None: not checked yet)."""


IDENTITY_WORDS = {
    IdentityMethod.UUID: "its SMBIOS UUID is the node's systemUUID",
    IdentityMethod.NAME: "its name is the node's (no UUID to compare)",
    IdentityMethod.PINNED: "pinned in fireproof.yaml (the device cannot identify machines)",
}


def prove_identity(
    cluster: Cluster, node: str, machine: Machine, fencer: Fencer, source: str
) -> IdentityMethod:
    """Ask the device which machine this is; raises IdentityMismatch when it is not the node."""
    return verify_identity(node, system_uuid(cluster.node(node)), machine, fencer, source)


def plan_heal(
    cluster: Cluster,
    node: str,
    machine: Machine | None,
    *,
    method: str = "auto",
    fencer: Fencer | None = None,
    source: str = "config",
) -> NodePlan:
    """What `heal` would do. With ``fencer`` the machine's identity is proven first."""
    current = cluster.node(node)
    ready = node_ready(current)
    if ready == "True":
        raise HealRefused(
            f"{node} is Ready: heal only acts on a node that stopped reporting",
            hint="to take a healthy node out, drain it (`kubectl drain`) instead",
        )
    if machine is None:
        raise HealRefused(
            f"{node} has no fencing device in the inventory: it cannot be verified off",
            hint="map it in fireproof.yaml (inventory.nodes) or a Terraform state; "
            "see `fireproof inventory show`",
        )
    version = cluster.server_version()
    chosen = method
    if method == "auto":
        chosen = "taint" if version >= TAINT_SINCE else "delete"
    if chosen == "taint" and version < TAINT_SINCE:
        raise HealRefused(
            f"the out-of-service taint needs Kubernetes >= 1.28; this cluster is "
            f"{version[0]}.{version[1]}",
            hint="use --method delete",
        )
    pods = tuple(affected_pods(cluster.pods_on(node)))
    attachments = tuple(
        va.metadata.name
        for va in cluster.volume_attachments()
        if va.spec.nodeName == node and va.metadata and va.metadata.name
    )
    release = (
        f"apply {OUT_OF_SERVICE}={OUT_OF_SERVICE_VALUE}:NoExecute (the controllers force-delete "
        f"its pods and detach its volumes)"
        if chosen == "taint"
        else f"force-delete its {len(pods)} pod(s) and delete its {len(attachments)} "
        "VolumeAttachment(s)"
    )
    identity = (
        verify_identity(node, system_uuid(current), machine, fencer, source)
        if fencer is not None
        else None
    )
    proof = f" ({machine.label} is {node}: {IDENTITY_WORDS[identity]})" if identity else ""
    steps = (
        f"cordon {node}",
        f"power off {machine.label} through device {machine.device!r} and verify it reads off"
        + proof,
        release,
        "wait until its workloads run on other nodes",
    )
    return NodePlan(
        node, ready, machine, chosen, version, pods, attachments, steps, source, identity
    )


def apply_heal(
    cluster: Cluster,
    fencer: Fencer,
    plan: NodePlan,
    journal: Journal,
    *,
    workload_timeout: float,
    poll: float = 1.0,
    progress: Callable[[str], None] = lambda _m: None,
) -> None:
    """Run the plan. Raises a FireproofError after recording where it stopped."""
    node = plan.node
    # The node may have come back since the plan was shown: never fence a Ready node.
    if node_ready(cluster.node(node)) == "True":
        journal.record("preflight", f"{node} is Ready again; nothing done", status="failed")
        raise HealRefused(f"{node} became Ready since the plan was made; nothing was done")
    # Proven again just before acting: the inventory or the VM may have changed at the prompt.
    try:
        prove_identity(cluster, node, plan.machine, fencer, plan.source)
    except FireproofError as exc:
        journal.record(
            "preflight",
            f"{plan.machine.label} is not proven to be {node}: {exc.message}; nothing done",
            status="failed",
            event="FireproofFenceRefused",
        )
        raise
    cluster.set_unschedulable(node, True)
    journal.record("cordon", f"{node} cordoned", event="FireproofCordoned")
    progress(f"cordoned {node}")

    progress(f"powering off {plan.machine.label} through {fencer.name} ...")
    try:
        state = fencer.off(plan.machine)
        confirm = fencer.status(plan.machine)  # read back once more, after the driver's own poll
    except FencingError as exc:
        journal.record(
            "fence",
            f"fencing {plan.machine.label} failed: {exc.message}; no volume was released, "
            f"{node} stays cordoned",
            status="failed",
            event="FireproofFenceFailed",
        )
        raise FencingError(
            f"{node}: fencing failed, nothing was released: {exc.message}",
            hint=f"{node} stays cordoned; fix the device and rerun, or check the machine by hand",
        ) from None
    if state is not PowerState.OFF or confirm is not PowerState.OFF:
        journal.record(
            "fence",
            f"{plan.machine.label} reads {confirm} after power-off; no volume was released",
            status="failed",
            event="FireproofFenceFailed",
        )
        raise FencingError(f"{node}: {plan.machine.label} is not verified off ({confirm})")
    journal.record(
        "fence", f"{plan.machine.label} verified off via {fencer.name}", event="FireproofFenced"
    )
    progress(f"{plan.machine.label} verified off")

    _release(cluster, plan, journal)
    progress(f"released {node}'s volumes ({plan.method})")

    waiting = [p for p in plan.pods if p.comes_back]
    deadline = time.monotonic() + workload_timeout
    while waiting:
        waiting = waiting_for(cluster, node, waiting)
        if not waiting:
            break
        if time.monotonic() >= deadline:
            names = ", ".join(p.label for p in waiting)
            journal.record(
                "workloads",
                f"not Running elsewhere after {workload_timeout:g} s: {names}",
                status="failed",
                event="FireproofWorkloadsStuck",
            )
            raise TransientError(
                f"{node} was fenced and released, but these are not Running elsewhere after "
                f"{workload_timeout:g} s: {names}",
                hint="check `kubectl get pods -A -o wide` and their events",
            )
        time.sleep(poll)
    back = ", ".join(p.label for p in plan.pods if p.comes_back) or "none to wait for"
    journal.record("workloads", f"Running on other nodes: {back}", event="FireproofHealed")


def _release(cluster: Cluster, plan: NodePlan, journal: Journal) -> None:
    node = plan.node
    try:
        if plan.method == "taint":
            added = cluster.add_taint(node, OUT_OF_SERVICE, OUT_OF_SERVICE_VALUE, "NoExecute")
            what = "applied" if added else "already present"
            journal.record(
                "release", f"out-of-service taint {what} on {node}", event="FireproofReleased"
            )
            return
        deleted = [
            f"{p.namespace}/{p.name}"
            for p in plan.pods
            if cluster.force_delete_pod(p.namespace, p.name)
        ]
        detached = [va for va in plan.attachments if cluster.delete_volume_attachment(va)]
        journal.record(
            "release",
            f"force-deleted {len(deleted)} pod(s), deleted {len(detached)} VolumeAttachment(s)",
            event="FireproofReleased",
        )
    except FireproofError as exc:
        journal.record(
            "release",
            f"release of {node} stopped half-way: {exc.message} ({node} is verified off)",
            status="failed",
            event="FireproofReleaseFailed",
        )
        raise


@dataclass(frozen=True, slots=True)
class RecoverPlan:
    node: str
    machine: Machine
    tainted: bool
    cordoned: bool
    steps: tuple[str, ...]


def plan_recover(cluster: Cluster, node: str, machine: Machine | None) -> RecoverPlan:
    current = cluster.node(node)
    if machine is None:
        raise HealRefused(f"{node} has no fencing device in the inventory: cannot power it on")
    taints = (current.spec.taints if current.spec else None) or []
    tainted = any(t.key == OUT_OF_SERVICE for t in taints)
    cordoned = bool(current.spec and current.spec.unschedulable)
    steps = [
        f"power on {machine.label} through device {machine.device!r} and verify it reads on",
        f"wait until {node} is Ready",
    ]
    if tainted:
        steps.append(f"remove the {OUT_OF_SERVICE} taint")
    if cordoned:
        steps.append(f"uncordon {node}")
    return RecoverPlan(node, machine, tainted, cordoned, tuple(steps))


def apply_recover(
    cluster: Cluster,
    fencer: Fencer,
    plan: RecoverPlan,
    journal: Journal,
    *,
    timeout: float,
    poll: float = 1.0,
    progress: Callable[[str], None] = lambda _m: None,
) -> None:
    node = plan.node
    try:
        fencer.on(plan.machine)
    except FencingError as exc:
        journal.record(
            "power-on", f"failed: {exc.message}", status="failed", event="FireproofRecoverFailed"
        )
        raise
    journal.record("power-on", f"{plan.machine.label} verified on", event="FireproofPoweredOn")
    progress(f"{plan.machine.label} is on; waiting for {node} to be Ready")
    deadline = time.monotonic() + timeout
    while node_ready(cluster.node(node)) != "True":
        if time.monotonic() >= deadline:
            journal.record(
                "ready",
                f"{node} not Ready after {timeout:g} s",
                status="failed",
                event="FireproofRecoverFailed",
            )
            raise TransientError(
                f"{plan.machine.label} is on but {node} is not Ready after {timeout:g} s",
                hint=f"the out-of-service taint stays on {node} until it is Ready; rerun --recover",
            )
        time.sleep(poll)
    journal.record("ready", f"{node} is Ready")
    # Only now: removing the taint from a node that is not back would let pods schedule onto
    # a machine that cannot run them.
    if cluster.remove_taint(node, OUT_OF_SERVICE):
        journal.record(
            "untaint", f"removed the out-of-service taint from {node}", event="FireproofUntainted"
        )
    cluster.set_unschedulable(node, False)
    journal.record("uncordon", f"{node} uncordoned", event="FireproofRecovered")
