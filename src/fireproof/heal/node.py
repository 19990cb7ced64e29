"""`heal node`: fence a dead node, verify it is off, release its volumes, wait for its workloads.

Safety rules (each one a test on the lab):
- a Ready node is never touched: heal acts only on a node that stopped reporting;
- volumes are released only after the fencing device read the machine back as off;
- a fencing error, a timeout or an unknown state stops the playbook before any release, and
  the journal says so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from fireproof.clock import SYSTEM_CLOCK, Clock
from fireproof.errors import FireproofError, PermanentError, TransientError
from fireproof.fencing import Fencer, FencingError, Machine, PowerState
from fireproof.heal import steps
from fireproof.heal.journal import Journal
from fireproof.heal.steps import OUT_OF_SERVICE, OUT_OF_SERVICE_VALUE, TAINT_SINCE
from fireproof.heal.workloads import AffectedPod, affected_pods
from fireproof.inventory import IdentityMethod, IdentityMismatch, verify_identity
from fireproof.kube import Cluster, node_ready, system_uuid


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
    identity = None
    if fencer is not None:
        try:
            identity = verify_identity(node, system_uuid(current), machine, fencer, source)
        except IdentityMismatch:
            raise
        except FireproofError as exc:
            raise FencingError(
                f"{node}: could not ask device {machine.device!r} which machine {machine.label} "
                f"is, so nothing was done: {exc.message}",
                hint=exc.hint,
            ) from exc
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
    clock: Clock = SYSTEM_CLOCK,
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
    steps.cordon(cluster, node, journal)
    progress(f"cordoned {node}")

    progress(f"powering off {plan.machine.label} through {fencer.name} ...")
    try:
        steps.fence_off(fencer, plan.machine, node, journal)
    except FencingError as exc:
        raise FencingError(
            exc.message,
            hint=f"{node} stays cordoned; fix the device and rerun, or check the machine by hand",
        ) from exc
    progress(f"{plan.machine.label} verified off")

    def still_off() -> PowerState:
        return fencer.status(plan.machine)

    if plan.method == "taint":
        steps.release(cluster, node, journal, taint=True, still_off=still_off)
    else:
        steps.release(
            cluster,
            node,
            journal,
            taint=False,
            pods=[(p.namespace, p.name, p.uid) for p in plan.pods],
            attachments=plan.attachments,
            still_off=still_off,
        )
    progress(f"released {node}'s volumes ({plan.method})")
    steps.wait_workloads(
        cluster, node, plan.pods, journal, timeout=workload_timeout, poll=poll, clock=clock
    )


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
    annotations = (current.metadata.annotations if current.metadata else None) or {}
    ours = steps.CORDONED_MARK in annotations
    plan = [
        f"power on {machine.label} through device {machine.device!r} and verify it reads on",
        f"wait until {node} is Ready",
    ]
    if tainted:
        plan.append(f"remove the {OUT_OF_SERVICE} taint")
    if cordoned and ours:
        plan.append(f"uncordon {node} (fireproof cordoned it)")
    elif cordoned:
        plan.append(f"leave {node} cordoned (someone else cordoned it)")
    return RecoverPlan(node, machine, tainted, cordoned, tuple(plan))


def apply_recover(
    cluster: Cluster,
    fencer: Fencer,
    plan: RecoverPlan,
    journal: Journal,
    *,
    timeout: float,
    poll: float = 1.0,
    progress: Callable[[str], None] = lambda _m: None,
    clock: Clock = SYSTEM_CLOCK,
) -> None:
    node = plan.node
    steps.power_on(fencer, plan.machine, journal)
    progress(f"{plan.machine.label} is on; waiting for {node} to be Ready")
    try:
        steps.wait_ready(cluster, node, journal, timeout=timeout, poll=poll, clock=clock)
    except TransientError as exc:
        raise TransientError(
            f"{plan.machine.label} is on but {exc.message}", hint=exc.hint
        ) from exc
    steps.restore(cluster, node, journal)
