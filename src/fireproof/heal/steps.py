"""The steps of a node remediation, each idempotent: it reads the current state first, so a
second run (a retry, a resumed guard, a new leader) does no harm and no double work.

`heal node` runs them in order with a person watching; `guard` runs them one phase at a time.
Waits take the injectable :class:`~fireproof.clock.Clock` so their logic is tested without
sleeping.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from fireproof.clock import SYSTEM_CLOCK, Clock, poll_until
from fireproof.errors import FireproofError, TransientError
from fireproof.fencing import Fencer, FencingError, Machine, PowerState
from fireproof.heal.journal import Journal
from fireproof.heal.workloads import AffectedPod, waiting_for
from fireproof.kube import Cluster, node_ready

OUT_OF_SERVICE = "node.kubernetes.io/out-of-service"
OUT_OF_SERVICE_VALUE = "nodeshutdown"
TAINT_SINCE = (1, 28)
"""The out-of-service taint is GA (and honoured) from Kubernetes 1.28."""
CORDONED_MARK = "fireproof.io/cordoned-at"
"""Annotation left by fireproof's own cordon: recovery uncordons only what fireproof cordoned."""


def cordon(cluster: Cluster, node: str, journal: Journal) -> bool:
    """Cordon unless already cordoned; returns whether this call cordoned it."""
    current = cluster.node(node)
    if current.spec is not None and current.spec.unschedulable:
        journal.record("cordon", f"{node} was already cordoned", status="skipped")
        return False
    cluster.cordon(node, CORDONED_MARK)
    journal.record("cordon", f"{node} cordoned", event="FireproofCordoned")
    return True


def fence_off(
    fencer: Fencer, machine: Machine, node: str, journal: Journal, event: str = "FireproofFenced"
) -> None:
    """Power off and verify; returns only when the device read the machine back as off.

    Raises FencingError (after recording it) on any error, timeout or unknown state.
    """
    try:
        state = fencer.off(machine)  # idempotent: a machine already off is only read
        confirm = fencer.status(machine)  # once more, after the driver's own poll
    except FencingError as exc:
        journal.record(
            "fence",
            f"fencing {machine.label} failed: {exc.message}; no volume was released",
            status="failed",
            event="FireproofFenceFailed",
        )
        raise FencingError(
            f"{node}: fencing failed, nothing was released: {exc.message}", hint=exc.hint
        ) from exc
    if state is not PowerState.OFF or confirm is not PowerState.OFF:
        journal.record(
            "fence",
            f"{machine.label} reads {confirm} after power-off; no volume was released",
            status="failed",
            event="FireproofFenceFailed",
        )
        raise FencingError(f"{node}: {machine.label} is not verified off ({confirm})")
    journal.record("fence", f"{machine.label} verified off via {fencer.name}", event=event)


class StartedAgain(FencingError):
    """The machine was verified off, then read running again before its volumes were released
    (someone, or something, started it): nothing more is released until it is fenced again."""


def _still_off(
    node: str, journal: Journal, still_off: Callable[[], PowerState], done: list[str]
) -> None:
    try:
        state = still_off()
    except FencingError as exc:
        state = PowerState.UNKNOWN
        reason = exc.message
    else:
        reason = f"it reads {state}"
    if state is PowerState.OFF:
        return
    so_far = f"released so far: {', '.join(done)}" if done else "nothing released"
    message = (
        f"{node}'s machine is no longer verified off ({reason}) after it was fenced; "
        f"{so_far}; it will be fenced again"
    )
    journal.record("release", message, status="failed", event="FireproofReleaseFailed")
    raise StartedAgain(message)


def release(
    cluster: Cluster,
    node: str,
    journal: Journal,
    *,
    taint: bool,
    pods: Sequence[tuple[str, str, str]] = (),
    attachments: Sequence[str] = (),
    still_off: Callable[[], PowerState] | None = None,
) -> None:
    """Release a verified-off node's volumes: the out-of-service taint, and/or force-delete its
    pods (namespace, name, uid) and delete its VolumeAttachments. Only ever call it after
    :func:`fence_off`.

    ``still_off`` reads the machine's power right before every release write: "verified off"
    is a fact about a moment, and a person (or automation) may start the machine between the
    fence and the release, or during it. A start takes longer than the gap between that read
    and its write, so no write lands on a running machine. Anything but off stops the release
    where it is (StartedAgain): the machine will be fenced again."""
    done: list[str] = []

    def verify() -> None:
        if still_off is not None:
            _still_off(node, journal, still_off, done)

    verify()
    try:
        what = []
        # Pods before the taint: the taint-eviction controller deletes the pods it finds on a
        # tainted node by name, and would delete the replacement a StatefulSet has just created
        # under that name (a second or more lost to a needless restart).
        if pods:
            deleted = []
            for index, (ns, name, uid) in enumerate(pods):
                if index:
                    verify()
                if cluster.force_delete_pod(ns, name, uid):
                    deleted.append(f"{ns}/{name}")
                    done.append(f"pod {ns}/{name}")
            what.append(f"force-deleted {len(deleted)} pod(s)")
        if taint:
            # Verified right before the write, and again before a retry of it (a Node that
            # changed meanwhile is read again): a retry must not outlive the check.
            added = cluster.add_taint(
                node, OUT_OF_SERVICE, OUT_OF_SERVICE_VALUE, "NoExecute", before_write=verify
            )
            if added:
                done.append("the out-of-service taint")
            what.append(f"out-of-service taint {'applied' if added else 'already present'}")
        if attachments:
            gone = []
            for index, va in enumerate(attachments):
                if index or pods or taint:
                    verify()
                if cluster.delete_volume_attachment(va):
                    gone.append(va)
                    done.append(f"VolumeAttachment {va}")
            what.append(f"deleted {len(gone)} VolumeAttachment(s)")
    except FireproofError as exc:
        if isinstance(exc, StartedAgain):
            raise
        journal.record(
            "release",
            f"release of {node} stopped half-way: {exc.message} ({node} is verified off)",
            status="failed",
            event="FireproofReleaseFailed",
        )
        raise
    if not done:
        # A resumed remediation (a guard killed between its release and its record) finds
        # nothing left to do: said as such, so the journal shows one release, not two.
        journal.record(
            "release", f"{node}: nothing left to release ({', '.join(what)})", status="skipped"
        )
        return
    journal.record("release", f"{node}: " + ", ".join(what), event="FireproofReleased")


def wait_workloads(
    cluster: Cluster,
    node: str,
    pods: Sequence[AffectedPod],
    journal: Journal,
    *,
    timeout: float,
    poll: float = 1.0,
    clock: Clock = SYSTEM_CLOCK,
) -> None:
    waiting = [p for p in pods if p.comes_back]

    def all_back() -> bool:
        waiting[:] = waiting_for(cluster, node, waiting) if waiting else []
        return not waiting

    if not poll_until(all_back, timeout=timeout, interval=poll, clock=clock):
        names = ", ".join(p.label for p in waiting)
        journal.record(
            "workloads",
            f"not Running elsewhere after {timeout:g} s: {names}",
            status="failed",
            event="FireproofWorkloadsStuck",
        )
        raise TransientError(
            f"{node} was fenced and released, but these are not Running elsewhere after "
            f"{timeout:g} s: {names}",
            hint="check `kubectl get pods -A -o wide` and their events",
        )
    back = ", ".join(p.label for p in pods if p.comes_back) or "none to wait for"
    journal.record("workloads", f"Running on other nodes: {back}", event="FireproofHealed")


def power_on(fencer: Fencer, machine: Machine, journal: Journal) -> None:
    try:
        fencer.on(machine)
    except FencingError as exc:
        journal.record(
            "power-on", f"failed: {exc.message}", status="failed", event="FireproofRecoverFailed"
        )
        raise
    journal.record("power-on", f"{machine.label} verified on", event="FireproofPoweredOn")


def wait_ready(
    cluster: Cluster,
    node: str,
    journal: Journal,
    *,
    timeout: float,
    poll: float = 1.0,
    clock: Clock = SYSTEM_CLOCK,
) -> None:
    def ready() -> bool:
        return node_ready(cluster.node(node)) == "True"

    if not poll_until(ready, timeout=timeout, interval=poll, clock=clock):
        journal.record(
            "ready",
            f"{node} not Ready after {timeout:g} s",
            status="failed",
            event="FireproofRecoverFailed",
        )
        raise TransientError(
            f"{node} is not Ready after {timeout:g} s",
            hint=f"the out-of-service taint stays on {node} until it is Ready; rerun --recover",
        )
    journal.record("ready", f"{node} is Ready")


def restore(cluster: Cluster, node: str, journal: Journal) -> None:
    """For a node that is Ready again: remove the out-of-service taint, and uncordon it if
    fireproof cordoned it (an admin's cordon is left alone, and said so)."""
    # Only for a Ready node: removing the taint from a node that is not back would let pods
    # schedule onto a machine that cannot run them.
    if node_ready(cluster.node(node)) != "True":
        raise TransientError(f"{node} is not Ready: its out-of-service taint stays")
    if cluster.remove_taint(node, OUT_OF_SERVICE):
        journal.record(
            "untaint", f"removed the out-of-service taint from {node}", event="FireproofUntainted"
        )
    if cluster.uncordon_if_marked(node, CORDONED_MARK):
        journal.record("uncordon", f"{node} uncordoned", event="FireproofRecovered")
    elif (spec := cluster.node(node).spec) is not None and spec.unschedulable:
        journal.record(
            "uncordon",
            f"{node} was cordoned by someone else, left cordoned",
            status="skipped",
            event="FireproofRecovered",
        )
    else:
        journal.record("uncordon", f"{node} is schedulable", event="FireproofRecovered")


def record_abort(journal: Journal, node: str, why: str) -> str:
    """Any exit after `heal` started acting: what was done, what is left, how to finish; in the
    journal and as an Event. Returns the message."""
    done = [s.step for s in journal.steps if s.status == "ok"]
    left = []
    if journal.done("cordon") and not journal.done("uncordon"):
        left.append(f"{node} cordoned")
    if journal.done("cordon") and not journal.done("fence"):
        left.append("a power-off may have been sent but was not verified: nothing was released")
    if journal.done("fence") and not journal.done("release"):
        left.append("the machine verified off, its volumes not released")
    if journal.done("release") and not journal.done("workloads"):
        left.append("volumes released, the workloads not yet seen running elsewhere")
    finish = (
        f"to finish rerun `fireproof heal node {node} --recover`"
        if "--recover" in journal.playbook
        else f"to finish rerun `fireproof heal node {node}`, or undo with "
        f"`fireproof heal node {node} --recover`"
    )
    message = (
        f"aborted ({why}); done: {', '.join(done) or 'nothing'}; "
        f"left: {'; '.join(left) or 'nothing'}; {finish}"
    )
    journal.record("aborted", message, status="failed", event="FireproofAborted")
    return message
