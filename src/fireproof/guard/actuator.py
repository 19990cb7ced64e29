"""Carries out one :class:`~fireproof.guard.policy.Act` through heal's idempotent steps.

Every destructive step is preceded by the fencing-token check of the leader Lease; each step's
outcome is recorded on the Node by compare-and-swap (so a stale leader's write fails instead of
overwriting the new leader's), counted in the metrics, and written as Events and journal lines.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Unpack

import stamina

from fireproof.clock import Clock
from fireproof.errors import FireproofError
from fireproof.fencing import Fencer, HaReader, Machine, PowerPoller, PowerState
from fireproof.guard.detect import NodeView
from fireproof.guard.leader import LeaderElector, NotLeading
from fireproof.guard.metrics import GuardMetrics
from fireproof.guard.notices import Notices
from fireproof.guard.policy import Act, Action, PolicySettings
from fireproof.guard.record import ANNOTATION, Changes, Phase, Remediation
from fireproof.guard.transitions import check
from fireproof.heal import Journal, steps
from fireproof.inventory import verify_identity
from fireproof.kube import Cluster, KubeConflictError

log = logging.getLogger("fireproof.guard")


class Stop(FireproofError):
    """The step did not move the remediation on (a failure recorded, or a wait): no further
    step for this node in this look."""


@dataclass
class Actuator:
    cluster: Cluster
    elector: LeaderElector
    fencer: Callable[[str], Fencer]
    settings: PolicySettings
    identity: str
    metrics: GuardMetrics
    clock: Clock
    notices: Notices
    journal_path: Path | None = None
    wrote_node: Callable[[object], None] | None = None
    """Told of every Node our own writes returned (the watch cache sees them at once)."""
    _journals: dict[str, Journal] = field(default_factory=dict, init=False)
    _version: tuple[int, int] | None = field(default=None, init=False)
    _hosts_off: dict[str, str] = field(default_factory=dict, init=False)
    """Hosts verified off in this look -> the node whose host fence did it."""

    def new_look(self) -> None:
        """Forget this look's host fences: a later look fences (and reads) a host afresh."""
        self._hosts_off.clear()

    def run(self, act: Act, view: NodeView, record: Remediation | None) -> Remediation | None:
        """The record after ``act``; raises :class:`Stop` when it did not move on."""
        if record is None:
            return self._detect(act, view)
        handler = {
            Action.CORDON: self._cordon,
            Action.FENCE: self._fence,
            Action.FENCE_HOST: self._fence_host,
            Action.ACCEPT_HA_FENCE: self._accept_ha_fence,
            Action.RELEASE: self._release,
            Action.LEAVE_OFF: self._leave_off,
            Action.POWER_ON: self._power_on,
            Action.REFENCE: self._refence,
            Action.UNCORDON: self._uncordon,
            Action.RESTORE: self._restore,
        }[act.action]
        return handler(act, view, record)

    # -- the steps ----------------------------------------------------------------------------

    def _detect(self, act: Act, view: NodeView) -> Remediation:
        assert act.reason is not None  # noqa: S101 - the policy gives DETECT its reason
        epoch = self.elector.assert_leading()
        now = self.clock.time()
        record = Remediation(Phase.DETECTED, act.reason, epoch, self.identity, now, now)
        self._save(view.name, record, None)
        self.journal(view.name).record(
            "detect", f"{view.name} looks dead: {act.reason}", event="FireproofDetected"
        )
        log.info("%s: detected (%s)", view.name, act.reason)
        return record

    def _cordon(self, _act: Act, view: NodeView, record: Remediation) -> Remediation:
        epoch = self.elector.assert_leading()
        steps.cordon(self.cluster, view.name, self.journal(view.name))
        self.metrics.actions.labels("cordon").inc()
        return self._to(view.name, record, Phase.CORDONED, epoch)

    def _fence(self, _act: Act, view: NodeView, record: Remediation) -> Remediation:
        name, machine = view.name, self._machine(view)
        epoch = self.elector.assert_leading()
        fencer = self.fencer(machine.device)
        try:
            verify_identity(name, view.system_uuid, machine, fencer, view.inventory_source)
            # On now means guard powers it off: only then does strategy reboot start it again.
            was_on = fencer.status(machine) is PowerState.ON
            self.elector.assert_leading()
            steps.fence_off(fencer, machine, name, self.journal(name))
        except NotLeading:
            raise
        except FireproofError as exc:
            raise self._failed(name, record, machine, exc, epoch) from None
        self.metrics.actions.labels("fence").inc()
        self.metrics.fence_levels.labels("vm").inc()
        powered_off = record.guard_powered_off or was_on
        return self._to(
            name, record, Phase.FENCED, epoch, guard_powered_off=powered_off, failures=0
        )

    def _fence_host(self, _act: Act, view: NodeView, record: Remediation) -> Remediation:
        """The node's host is lost: its VMs' last status is stale and its API answers nothing.
        The host's own device powers the whole host off and reads it back off; only then are
        its VMs (this node's among them) known dead. Every node of the host goes through
        this step: the first powers the host off and reads it back; the others of the same look
        take that reading (their release re-reads the host before every write anyway), so a
        host of three nodes costs one fence, not three."""
        name, machine = view.name, view.host_machine
        if machine is None:  # the policy refuses these before
            raise Stop(f"{name}'s host has no fencing device")
        epoch = self.elector.assert_leading()
        host = machine.host or ""
        if (by := self._hosts_off.get(host)) is not None:
            self.journal(name).record(
                "fence",
                f"{machine.label} verified off via {machine.device} moments ago (with {by})",
                event="FireproofHostFenced",
            )
            self.metrics.fence_levels.labels("host").inc()
            return self._to(
                name,
                record,
                Phase.FENCED,
                epoch,
                failures=0,
                host_fenced=host,
                guard_powered_off=record.guard_powered_off,
            )
        fencer = self.fencer(machine.device)
        try:
            was_on = fencer.status(machine) is PowerState.ON
            self.elector.assert_leading()
            steps.fence_off(fencer, machine, name, self.journal(name), event="FireproofHostFenced")
        except NotLeading:
            raise
        except FireproofError as exc:
            raise self._failed(name, record, machine, exc, epoch) from None
        self.metrics.actions.labels("fence").inc()
        self.metrics.fence_levels.labels("host").inc()
        log.info("%s: %s verified off via %s", name, machine.label, machine.device)
        self._hosts_off[host] = name
        return self._to(
            name,
            record,
            Phase.FENCED,
            epoch,
            guard_powered_off=record.guard_powered_off or was_on,
            failures=0,
            host_fenced=machine.host or "",
        )

    def _accept_ha_fence(self, _act: Act, view: NodeView, record: Remediation) -> Remediation:
        """Proxmox HA acknowledged the fence of the node's lost host: it took the host's agent
        lock, which expires only once the host's watchdog reset it. No device was used; the
        release asks HA again before every write."""
        name, machine = view.name, self._machine(view)
        host = machine.host or ""
        epoch = self.elector.assert_leading()
        self.journal(name).record(
            "fence",
            f"host {host} fenced by Proxmox HA (acknowledged: it got the host's agent lock, "
            "so its watchdog reset it): every VM that ran there is dead",
            event="FireproofHostFenced",
        )
        self.metrics.actions.labels("fence").inc()
        self.metrics.fence_levels.labels("ha").inc()
        log.info("%s: host %s fenced by Proxmox HA", name, host)
        return self._to(
            name, record, Phase.FENCED, epoch, failures=0, host_fenced=host, ha_fenced=True
        )

    def _release(self, _act: Act, view: NodeView, record: Remediation) -> Remediation:
        # Verified off: the pods may go now, without waiting for NotReady or pod GC.
        name, machine = view.name, self._power_target(view, record)
        version = self._server_version()
        pods = [
            (p.metadata.namespace or "", p.metadata.name or "", p.metadata.uid or "")
            for p in self.cluster.pods_on(name)
            if p.metadata and p.metadata.name
        ]
        attachments: list[str] = []
        if version < steps.TAINT_SINCE:
            attachments = [
                va.metadata.name
                for va in self.cluster.volume_attachments()
                if va.spec.nodeName == name and va.metadata and va.metadata.name
            ]
        epoch = self.elector.assert_leading()
        fencer = self.fencer(machine.device)
        still_off = (
            self._ha_still_fenced(record.host_fenced, fencer, machine)
            if record.ha_fenced
            else lambda: fencer.status(machine)
        )
        try:
            steps.release(
                self.cluster,
                name,
                self.journal(name),
                taint=version >= steps.TAINT_SINCE,
                pods=pods,
                attachments=attachments,
                still_off=still_off,
            )
        except steps.StartedAgain as exc:
            # Back to the fence: it powers the machine off again (and verifies it) first.
            log.warning("%s: %s", name, exc.message)
            self.metrics.refused.labels("started-again").inc()
            # An earlier try of this release may have written some of it (a write that landed
            # as the API server went away), whatever this try says it did.
            return self._to(name, record, Phase.CORDONED, epoch, release_begun=True)
        self.metrics.actions.labels("release").inc()
        return self._to(name, record, Phase.RELEASED, epoch)

    def _leave_off(self, _act: Act, view: NodeView, record: Remediation) -> Remediation:
        epoch = self.elector.assert_leading()
        why = (
            "strategy off"
            if record.guard_powered_off
            else f"its host {record.host_fenced} read off already (a power cut, or another of its "
            "nodes' fence, which powers it on again if guard stopped it)"
            if record.host_fenced
            else "it was already off and guard starts only what it stopped (restart_stopped: false)"
        )
        self.journal(view.name).record(
            "left-off",
            f"{view.name} is released and left off and tainted ({why})",
            event="FireproofLeftOff",
        )
        self.metrics.remediations.labels("left-off").inc()
        return self._to(view.name, record, Phase.LEFT_OFF, epoch)

    def _power_on(self, _act: Act, view: NodeView, record: Remediation) -> Remediation:
        machine = self._power_target(view, record)
        epoch = self.elector.assert_leading()
        try:
            steps.power_on(self.fencer(machine.device), machine, self.journal(view.name))
        except FireproofError as exc:
            raise self._failed(view.name, record, machine, exc, epoch) from None
        self.metrics.actions.labels("power-on").inc()
        attempts = record.attempts + 1
        return self._to(view.name, record, Phase.REBOOTING, epoch, attempts=attempts, failures=0)

    def _refence(self, act: Act, view: NodeView, record: Remediation) -> Remediation:
        # Not Ready after the reboot: power it off again before deciding anything.
        name, machine = view.name, self._power_target(view, record)
        epoch = self.elector.assert_leading()
        try:
            steps.fence_off(self.fencer(machine.device), machine, name, self.journal(name))
        except FireproofError as exc:
            raise self._failed(name, record, machine, exc, epoch) from None
        if act.next_phase is Phase.GAVE_UP:
            message = (
                f"{name} did not come back Ready after {record.attempts} reboot(s): "
                "left off and tainted; look at the machine"
            )
            self.journal(name).record("gave-up", message, status="failed", event="FireproofGaveUp")
            self.metrics.remediations.labels("gave-up").inc()
            return self._to(name, record, Phase.GAVE_UP, epoch, note=message)
        backoff = self.settings.guard.retry_backoff_seconds * 2 ** min(record.attempts, 3)
        not_before = self.clock.time() + backoff
        return self._to(name, record, Phase.RELEASED, epoch, not_before=not_before)

    def _uncordon(self, _act: Act, view: NodeView, record: Remediation) -> None:
        # Back by itself before it was fenced: leave it alone, undo only our cordon (and the
        # taint of a release that began before the machine was started again).
        name = view.name
        self.elector.assert_leading()
        if record.release_begun and self.cluster.remove_taint(name, steps.OUT_OF_SERVICE):
            self.journal(name).record(
                "untaint",
                f"removed the out-of-service taint a stopped release left on {name}",
                event="FireproofUntainted",
            )
        if self.cluster.uncordon_if_marked(name, steps.CORDONED_MARK):
            self.journal(name).record("uncordon", f"{name} came back by itself; uncordoned")
        self._save(name, None, record)
        self.metrics.remediations.labels("came-back").inc()
        self.forget(name)

    def _restore(self, _act: Act, view: NodeView, record: Remediation) -> None:
        name = view.name
        self.elector.assert_leading()
        steps.restore(self.cluster, name, self.journal(name))
        self.metrics.actions.labels("restore").inc()
        self._save(name, None, record)
        self.metrics.remediations.labels("recovered").inc()
        self.journal(name).record(
            "recovered", f"{name} is back: Ready, untainted", event="FireproofHealed"
        )
        log.info("%s: recovered", name)
        self.forget(name)

    # -- records ------------------------------------------------------------------------------

    def _to(
        self, name: str, record: Remediation, phase: Phase, epoch: int, **changes: Unpack[Changes]
    ) -> Remediation:
        new = record.advance(
            phase, epoch=epoch, leader=self.identity, now=self.clock.time(), **changes
        )
        self._save(name, new, record)
        log.info("%s: %s", name, phase)
        return new

    def _failed(
        self, name: str, record: Remediation, machine: Machine, exc: FireproofError, epoch: int
    ) -> Stop:
        """A fencing or power error: nothing released; back off and try again later."""
        failures = record.failures + 1
        backoff = self.settings.guard.retry_backoff_seconds * 2 ** min(failures - 1, 3)
        self.metrics.fencing_failures.labels(machine.device).inc()
        log.error("%s: %s (retry in %.0f s)", name, exc.message, backoff)
        self.event(
            name,
            "FireproofFenceFailed",
            f"{exc.message}; nothing was released; retry in {backoff:.0f} s",
        )
        new = record.advance(
            record.phase,
            epoch=epoch,
            leader=self.identity,
            now=record.updated,  # the phase's clock keeps running while it fails
            failures=failures,
            not_before=self.clock.time() + backoff,
        )
        self._save(name, new, record)
        return Stop(exc.message)

    def _save(self, node: str, record: Remediation | None, expected: Remediation | None) -> None:
        """Record the phase on the Node: a compare-and-swap on the annotation. The write is
        conditional on the resourceVersion read with the ``expected`` value, so a stale leader
        (or a second actor) that raced this one fails instead of overwriting its record."""
        check(expected.phase if expected else None, record.phase if record else None)
        want = expected.to_annotation() if expected else None
        value = record.to_annotation() if record else None
        try:
            # A conflict means the Node changed for another reason (status, taints): read again.
            for attempt in stamina.retry_context(
                on=KubeConflictError, attempts=5, timeout=10, wait_initial=0.01, wait_max=0.2
            ):
                with attempt:
                    found, version = self.cluster.annotation(node, ANNOTATION)
                    if found != want:
                        raise NotLeading(f"{node}'s remediation record was changed by someone else")
                    written = self.cluster.set_annotation(node, ANNOTATION, value, version=version)
        except KubeConflictError:
            raise NotLeading(
                f"{node} keeps changing; its phase was not recorded this time"
            ) from None
        if self.wrote_node is not None:
            self.wrote_node(written)
        if record is not None:
            self.metrics.phase_seconds.labels(str(record.phase)).observe(
                max(0.0, self.clock.time() - record.started)
            )

    # -- helpers ------------------------------------------------------------------------------

    def _machine(self, view: NodeView) -> Machine:
        if view.machine is None:  # the policy refuses these before any step
            raise Stop(f"{view.name} has no fencing device")
        return view.machine

    @staticmethod
    def _ha_still_fenced(host: str, fencer: Fencer, machine: Machine) -> Callable[[], PowerState]:
        """The release's check after HA's fence: off while HA still has the host out of the
        cluster and the VM is still listed there; once HA restarted it on another host, or the
        host is back, the VM's own power decides. HA's acknowledgement proves the VM that ran
        on the lost host dead, not the one HA has just started elsewhere: a node whose VM runs
        again is left to boot, not released under it."""

        def read() -> PowerState:
            if isinstance(fencer, PowerPoller):
                now = fencer.power_states().locate(machine)
                if now.host and now.host != host:
                    return fencer.status(now)
            status = fencer.ha_status() if isinstance(fencer, HaReader) else None
            if status is not None and status.node_status.get(host) not in (None, "online"):
                return PowerState.OFF
            return fencer.status(machine)

        return read

    def _power_target(self, view: NodeView, record: Remediation) -> Machine:
        """What was fenced: the host (through its BMC) while that host is down, else the VM.
        Once the host is back (its other nodes may run again), a node that does not come back
        is fenced on its own: powering the host off again would kill its healthy neighbours."""
        if record.host_fenced and view.host_down and not record.ha_fenced:
            if view.host_machine is None or view.host_machine.host != record.host_fenced:
                raise Stop(
                    f"{view.name} was fenced through host {record.host_fenced}'s device, which "
                    "the configuration no longer names (hosts: in fireproof.yaml)"
                )
            return view.host_machine
        return self._machine(view)

    def _server_version(self) -> tuple[int, int]:
        if self._version is None:
            self._version = self.cluster.server_version()
        return self._version

    def journal(self, node: str) -> Journal:
        if node not in self._journals:
            self._journals[node] = Journal(
                "guard", node, cluster=self.cluster, log_path=self.journal_path, clock=self.clock
            )
        return self._journals[node]

    def event(self, node: str, reason: str, message: str) -> None:
        try:
            self.cluster.record_event(node, reason, f"fireproof guard: {message}", warning=True)
        except FireproofError as exc:
            self.notices.once("*", "events", log.warning, f"cannot record Events: {exc.message}")

    def forget(self, name: str) -> None:
        self.notices.clear(name)
        self._journals.pop(name, None)
