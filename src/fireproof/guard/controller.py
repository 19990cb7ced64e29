"""The guard loop: look, decide, act one phase at a time, record each phase on the Node.

Level-triggered: every look starts from what the cluster and the hypervisors say now plus the
phase recorded on each Node, so a restarted guard or a new leader carries on where the last one
stopped. Every destructive step is preceded by the fencing-token check of the leader Lease.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lightkube.resources.core_v1 import Node

from fireproof.config import GuardConfig, RemediationConfig
from fireproof.errors import FireproofError
from fireproof.fencing import Fencer, Machine, PowerPoller, PowerState
from fireproof.guard.detect import (
    NodeView,
    back_since,
    healthy,
    quorum_allows_fencing,
    suspicion,
)
from fireproof.guard.leader import LeaderElector, NotLeading
from fireproof.guard.metrics import GuardMetrics
from fireproof.guard.record import (
    ACTIVE_PHASES,
    ANNOTATION,
    EXCLUDE_LABEL,
    PAUSE_ANNOTATION,
    Phase,
    Reason,
    Remediation,
)
from fireproof.heal import Journal, steps
from fireproof.heal.endpoints import apply_endpoints, plan_endpoints
from fireproof.inventory import Inventory, InventoryError, verify_identity
from fireproof.kube import (
    Cluster,
    KubeConflictError,
    is_control_plane,
    node_ready,
    ready_since,
    system_uuid,
)
from fireproof.wiring import Target

log = logging.getLogger("fireproof.guard")
INVENTORY_TTL = 30.0


@dataclass
class Guard:
    target: Target
    settings: GuardConfig
    remediation: RemediationConfig
    identity: str
    metrics: GuardMetrics
    dry_run: bool = False
    journal_path: Path | None = None
    clock: Callable[[], float] = time.time
    say: Callable[[str], None] = lambda _m: None
    """Where a dry run prints what it would do."""
    elector: LeaderElector = field(init=False)
    _inventory: Inventory | None = field(default=None, init=False)
    _inventory_at: float = field(default=0.0, init=False)
    _journals: dict[str, Journal] = field(default_factory=dict, init=False)
    _said: set[tuple[str, str]] = field(default_factory=set, init=False)
    _storm_until: float = field(default=0.0, init=False)
    _version: tuple[int, int] | None = field(default=None, init=False)
    _endpoints_at: float = field(default=0.0, init=False)
    _suspect_since: dict[str, float] = field(default_factory=dict, init=False)
    _blind: bool = field(default=True, init=False)
    """guard has not seen the cluster lately (or ever, at start: it cannot tell whether an
    outage just ended)."""
    _hold_until: float = field(default=0.0, init=False)
    """After guard could not see the cluster: no new remediation from a stale Lease until every
    kubelet had time to renew its own (their renewals failed too while the API server was
    away). The hypervisor's reading (a VM off) is not held."""

    def __post_init__(self) -> None:
        self.elector = LeaderElector(
            self.target.cluster,
            self.settings.lease_namespace,
            self.settings.lease_name,
            self.identity,
            self.settings.lease_duration_seconds,
            clock=self.clock,
        )

    @property
    def cluster(self) -> Cluster:
        return self.target.cluster

    # -- the loop -----------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                self.tick()
            except Exception:  # a bug or an object of a shape never seen: keep watching
                log.exception("internal error in one look at the cluster; going on")
            stop.wait(max(0.0, self.settings.poll_interval_seconds - (time.monotonic() - started)))
        if not self.dry_run:
            try:
                self.elector.release()
            except FireproofError as exc:
                log.warning("could not hand back the guard Lease: %s", exc.message)

    def tick(self) -> None:
        leading = False
        if not self.dry_run:
            try:
                leading = self.elector.step()
            except FireproofError as exc:
                self._once(
                    "*",
                    "api",
                    log.warning,
                    f"cannot reach the API server: {exc.message}; doing nothing",
                )
                self.metrics.leader.set(0)
                self._blind = True
                return
        self.metrics.leader.set(1 if leading else 0)
        try:
            views, nodes, inventory = self._look()
        except FireproofError as exc:
            self._once(
                "*", "api", log.warning, f"cannot see the cluster: {exc.message}; doing nothing"
            )
            self._blind = True
            return
        if self._blind:
            # The kubelets could not renew their Leases while guard could not see the cluster
            # either: every Lease looks stale for a while. Only the hypervisor's word counts
            # until each kubelet had a full staleness period to renew.
            self._blind = False
            self._hold_until = time.monotonic() + self.settings.lease_stale_seconds
            why = "starting" if self.metrics.last_look == 0.0 else "the API server answers again"
            log.info(
                "%s: no remediation from a stale node Lease for %.0f s, while the kubelets renew "
                "theirs (a VM read off is acted on at once)",
                why,
                self.settings.lease_stale_seconds,
            )
        self._said.discard(("*", "api"))
        self.metrics.last_look = time.monotonic()
        now = dt.datetime.now(dt.UTC)
        suspects = {
            v.name: reason
            for v in views
            if not v.excluded and (reason := suspicion(v, self.settings, now)) is not None
        }
        self.metrics.dead_nodes.set(len(suspects))
        seen = time.monotonic()
        self._suspect_since = {n: self._suspect_since.get(n, seen) for n in suspects}
        gate = self._storm_gate(suspects, len(views))
        records = {
            name: rec
            for name, node in nodes.items()
            if (rec := Remediation.from_annotation(_annotations(node).get(ANNOTATION)))
        }
        if self.dry_run:
            self._report(views, suspects, records, gate)
            return
        active = [r.started for r in records.values() if r.phase in ACTIVE_PHASES]
        self.metrics.oldest_open.set(
            max(0.0, self.clock() - min(active)) if leading and active else 0.0
        )
        if not leading:
            return
        if self.elector.paused:
            self._once(
                "*", "paused", log.info, f"paused cluster-wide ({PAUSE_ANNOTATION} on the Lease)"
            )
            return
        self._said.discard(("*", "paused"))
        by_name = {v.name: v for v in views}
        for name in sorted(set(suspects) | set(records)):
            view = by_name.get(name)
            if view is None:
                continue
            try:
                self._advance(
                    view, suspects.get(name), records.get(name), gate, views, nodes, inventory
                )
            except NotLeading as exc:
                log.warning("stopping: %s", exc.message)
                return
            except FireproofError as exc:
                log.error("%s: %s", name, exc.message)
        if self.settings.repair_api_endpoints:
            self._repair_endpoints()

    # -- looking ------------------------------------------------------------------------------

    def _look(self) -> tuple[list[NodeView], dict[str, Node], Inventory]:
        node_list = self.cluster.nodes()
        leases = self.cluster.node_lease_renewals()
        nodes = {n.metadata.name: n for n in node_list if n.metadata and n.metadata.name}
        inventory = self._inventory_for(sorted(nodes))
        power = self._poll(inventory, sorted(nodes))
        views = []
        for name, node in nodes.items():
            labels = (node.metadata.labels if node.metadata else None) or {}
            state, polled = power.get(name, (PowerState.UNKNOWN, False))
            views.append(
                NodeView(
                    name=name,
                    ready=node_ready(node),
                    ready_since=ready_since(node),
                    lease_renewed=leases.get(name),
                    power=state,
                    polled=polled,
                    control_plane=is_control_plane(node),
                    excluded=EXCLUDE_LABEL in labels,
                    paused=PAUSE_ANNOTATION in _annotations(node),
                )
            )
        return views, nodes, inventory

    def _inventory_for(self, names: list[str]) -> Inventory:
        fresh = time.monotonic() - self._inventory_at < INVENTORY_TTL
        if self._inventory is not None and fresh and set(names) <= set(self._inventory.entries):
            return self._inventory
        try:
            self._inventory = self.target.inventory(names)
            self._inventory_at = time.monotonic()
        except FireproofError as exc:
            if self._inventory is None:
                raise
            log.warning("inventory not refreshed, using the last one: %s", exc.message)
        return self._inventory

    def _fencer(self, device: str) -> Fencer:
        return self.target.fencer(device)

    def _poll(self, inventory: Inventory, names: list[str]) -> dict[str, tuple[PowerState, bool]]:
        """node -> (power, polled): one poll per device that can read all its machines."""
        out: dict[str, tuple[PowerState, bool]] = {}
        by_device: dict[str, list[tuple[str, Machine]]] = {}
        for name in names:
            entry = inventory.entry(name)
            if entry is None or entry.machine is None or entry.problem:
                continue
            by_device.setdefault(entry.machine.device, []).append((name, entry.machine))
        for device, members in by_device.items():
            try:
                fencer = self._fencer(device)
            except FireproofError as exc:
                self._once(device, "fencer", log.error, f"device {device!r}: {exc.message}")
                continue
            if not isinstance(fencer, PowerPoller):
                continue  # the conditions signal covers these nodes
            started = time.monotonic()
            try:
                states = fencer.power_states()
            except FireproofError as exc:
                self.metrics.poll_errors.labels(device).inc()
                self._once(
                    device, "poll", log.warning, f"cannot poll device {device!r}: {exc.message}"
                )
                states = {}
            else:
                self._said.discard((device, "poll"))
            self.metrics.poll_seconds.labels(device).observe(time.monotonic() - started)
            for name, machine in members:
                out[name] = (states.get(machine.vmid or -1, PowerState.UNKNOWN), True)
        return out

    # -- gates --------------------------------------------------------------------------------

    def _storm_gate(self, suspects: dict[str, Reason], total: int) -> bool:
        now = time.monotonic()
        limit = self.settings.max_unhealthy_nodes(total)
        if len(suspects) > limit:
            message = (
                f"storm: {len(suspects)} nodes look dead, more than max_unhealthy ({limit}); "
                "nothing destructive until it passes"
            )
            if now >= self._storm_until:
                log.warning(message)
            for name in suspects:
                self._once(name, "storm", log.debug, message, event="FireproofStorm")
            self._storm_until = now + self.settings.storm_cooldown_seconds
        active = now < self._storm_until
        if not active:
            self._said = {k for k in self._said if k[1] != "storm"}
        self.metrics.storm.set(1 if active else 0)
        return active

    # -- acting -------------------------------------------------------------------------------

    def _journal(self, node: str) -> Journal:
        if node not in self._journals:
            self._journals[node] = Journal(
                "guard", node, cluster=self.cluster, log_path=self.journal_path
            )
        return self._journals[node]

    def _save(self, node: str, record: Remediation | None, expected: Remediation | None) -> None:
        """Record the phase on the Node: a compare-and-swap on the annotation. The write is
        conditional on the resourceVersion read with the ``expected`` value, so a stale leader
        (or a second actor) that raced this one fails instead of overwriting its record."""
        want = expected.to_annotation() if expected else None
        value = record.to_annotation() if record else None
        for _ in range(5):
            current = self.cluster.node(node)
            found = _annotations(current).get(ANNOTATION)
            if found != want:
                raise NotLeading(f"{node}'s remediation record was changed by someone else")
            version = current.metadata.resourceVersion if current.metadata else None
            try:
                self.cluster.set_annotation(node, ANNOTATION, value, version=version)
                break
            except KubeConflictError:
                continue  # the Node changed for another reason (status, taints): read again
        else:
            raise NotLeading(f"{node} keeps changing; its phase was not recorded this time")
        if record is not None:
            self.metrics.phase_seconds.labels(str(record.phase)).observe(
                max(0.0, self.clock() - record.started)
            )

    def _advance(
        self,
        view: NodeView,
        reason: Reason | None,
        record: Remediation | None,
        gate: bool,
        views: list[NodeView],
        nodes: dict[str, Node],
        inventory: Inventory,
    ) -> None:
        name = view.name
        if view.excluded or view.paused:
            if reason is not None:
                why = "excluded" if view.excluded else "paused"
                self._once(name, why, log.info, f"{name} looks dead ({reason}) but is {why}")
            return
        now = self.clock()
        if record is None:
            if reason is None:
                return
            machine = self._machine(name, inventory)
            if machine is None:
                return
            if gate:
                self.metrics.refused.labels("storm").inc()
                return
            if reason is not Reason.VM_OFF and time.monotonic() < self._hold_until:
                self.metrics.refused.labels("api-recovery").inc()
                return
            since = self._suspect_since.get(name, time.monotonic())
            # One poll's reading is confirmed over a few polls; a stale Lease or a long NotReady
            # is a confirmation of tens of seconds already.
            fresh = time.monotonic() - since < self.settings.confirm_seconds
            if reason is Reason.VM_OFF and fresh:
                return  # not confirmed yet: look again at the next poll
            if not quorum_allows_fencing(views, view) and view.power is not PowerState.OFF:
                self.metrics.refused.labels("quorum").inc()
                self._once(
                    name,
                    "quorum",
                    log.warning,
                    f"{name} looks dead ({reason}) but fencing it would leave the control plane "
                    "without a Ready quorum: left alone",
                    event="FireproofFenceRefused",
                )
                return
            epoch = self.elector.assert_leading()
            record = Remediation(Phase.DETECTED, reason, epoch, self.identity, now, now)
            self._save(name, record, None)
            self._journal(name).record(
                "detect", f"{name} looks dead: {reason}", event="FireproofDetected"
            )
            log.info("%s: detected (%s)", name, reason)
        self._phases(view, record, gate, nodes[name], inventory)

    def _machine(self, name: str, inventory: Inventory) -> Machine | None:
        try:
            machine = inventory.machine(name)
        except InventoryError as exc:
            self.metrics.refused.labels("inventory").inc()
            self._once(name, "inventory", log.error, exc.message, event="FireproofFenceRefused")
            return None
        if machine is None:
            self.metrics.refused.labels("no-device").inc()
            self._once(
                name,
                "no-device",
                log.warning,
                f"{name} looks dead but has no fencing device in the inventory: left alone",
                event="FireproofFenceRefused",
            )
        return machine

    def _phases(
        self, view: NodeView, record: Remediation, gate: bool, node: Node, inventory: Inventory
    ) -> None:
        """Run phases until one must wait (for time, a device or the node)."""
        name = view.name
        journal = self._journal(name)
        now_dt = dt.datetime.now(dt.UTC)
        while True:
            now = self.clock()
            phase = record.phase
            if phase in (Phase.DETECTED, Phase.CORDONED) and healthy(view, self.settings, now_dt):
                # Back by itself before it was fenced: leave it alone, undo only our cordon.
                self.elector.assert_leading()
                if self.cluster.uncordon_if_marked(name, steps.CORDONED_MARK):
                    journal.record("uncordon", f"{name} came back by itself; uncordoned")
                self._save(name, None, record)
                self.metrics.remediations.labels("came-back").inc()
                self._forget(name)
                return
            if phase in (Phase.REBOOTING, Phase.LEFT_OFF, Phase.GAVE_UP) and back_since(
                view, record.updated
            ):
                self.elector.assert_leading()
                steps.restore(self.cluster, name, journal)
                self.metrics.actions.labels("restore").inc()
                self._save(name, None, record)
                self.metrics.remediations.labels("recovered").inc()
                journal.record(
                    "recovered", f"{name} is back: Ready, untainted", event="FireproofHealed"
                )
                log.info("%s: recovered", name)
                self._forget(name)
                return
            if now < record.not_before or phase in (Phase.LEFT_OFF, Phase.GAVE_UP):
                return
            if gate and phase in (Phase.DETECTED, Phase.CORDONED, Phase.FENCED, Phase.RELEASED):
                self.metrics.refused.labels("storm").inc()
                return
            nxt = self._step(view, record, node, inventory, journal, now)
            if nxt is None:
                return
            record = nxt

    def _step(
        self,
        view: NodeView,
        record: Remediation,
        node: Node,
        inventory: Inventory,
        journal: Journal,
        now: float,
    ) -> Remediation | None:
        name = view.name
        machine = self._machine(name, inventory)
        if machine is None:
            return None
        epoch = self.elector.assert_leading()

        def to(phase: Phase, **changes: object) -> Remediation:
            new = record.advance(
                phase, epoch=epoch, leader=self.identity, now=self.clock(), **changes
            )
            self._save(name, new, record)
            log.info("%s: %s", name, phase)
            return new

        if record.phase is Phase.DETECTED:
            steps.cordon(self.cluster, name, journal)
            self.metrics.actions.labels("cordon").inc()
            return to(Phase.CORDONED)
        if record.phase is Phase.CORDONED:
            fencer = self._fencer(machine.device)
            entry = inventory.entry(name)
            source = entry.source if entry else "none"
            try:
                verify_identity(name, system_uuid(node), machine, fencer, source)
                was_on = fencer.status(machine) is PowerState.ON
                self.elector.assert_leading()
                steps.fence_off(fencer, machine, name, journal)
            except NotLeading:
                raise
            except FireproofError as exc:
                self._failed(name, record, machine, exc, epoch)
                return None
            self.metrics.actions.labels("fence").inc()
            return to(
                Phase.FENCED, guard_powered_off=record.guard_powered_off or was_on, failures=0
            )
        if record.phase is Phase.FENCED:
            # Verified off: the pods may go now, without waiting for NotReady or pod GC.
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
            self.elector.assert_leading()
            fencer = self._fencer(machine.device)
            try:
                steps.release(
                    self.cluster,
                    name,
                    journal,
                    taint=version >= steps.TAINT_SINCE,
                    pods=pods,
                    attachments=attachments,
                    still_off=lambda: fencer.status(machine),
                )
            except steps.StartedAgain as exc:
                # Back to the fence: it powers the machine off again (and verifies it) first.
                log.warning("%s: %s", name, exc.message)
                self.metrics.refused.labels("started-again").inc()
                return to(Phase.CORDONED)
            self.metrics.actions.labels("release").inc()
            return to(Phase.RELEASED)
        if record.phase is Phase.RELEASED:
            start = (
                record.guard_powered_off and self.settings.strategy == "reboot"
            ) or self.settings.restart_stopped
            if not start:
                why = (
                    "strategy off"
                    if record.guard_powered_off
                    else "it was already off and guard starts only what it stopped "
                    "(restart_stopped: false)"
                )
                journal.record(
                    "left-off",
                    f"{name} is released and left off and tainted ({why})",
                    event="FireproofLeftOff",
                )
                self.metrics.remediations.labels("left-off").inc()
                return to(Phase.LEFT_OFF)
            attached = [
                va
                for va in self.cluster.volume_attachments()
                if va.spec.nodeName == name and va.status is not None and va.status.attached
            ]
            waited = self.clock() - record.updated
            if attached and waited < self.remediation.workload_timeout_seconds:
                return None  # the attach/detach controller detaches on the taint; wait for it
            self.elector.assert_leading()
            try:
                steps.power_on(self._fencer(machine.device), machine, journal)
            except FireproofError as exc:
                self._failed(name, record, machine, exc, epoch)
                return None
            self.metrics.actions.labels("power-on").inc()
            return to(Phase.REBOOTING, attempts=record.attempts + 1, failures=0)
        if record.phase is Phase.REBOOTING:
            if self.clock() - record.updated <= self.remediation.recover_timeout_seconds:
                return None
            # Not Ready after the reboot: power it off again before deciding anything.
            self.elector.assert_leading()
            try:
                steps.fence_off(self._fencer(machine.device), machine, name, journal)
            except FireproofError as exc:
                self._failed(name, record, machine, exc, epoch)
                return None
            if record.attempts >= self.settings.max_attempts:
                message = (
                    f"{name} did not come back Ready after {record.attempts} reboot(s): "
                    "left off and tainted; look at the machine"
                )
                journal.record("gave-up", message, status="failed", event="FireproofGaveUp")
                self.metrics.remediations.labels("gave-up").inc()
                return to(Phase.GAVE_UP, note=message)
            backoff = self.settings.retry_backoff_seconds * 2 ** min(record.attempts, 3)
            return to(Phase.RELEASED, not_before=self.clock() + backoff)
        return None

    def _failed(
        self, name: str, record: Remediation, machine: Machine, exc: FireproofError, epoch: int
    ) -> None:
        """A fencing or power error: nothing released; back off and try again later."""
        failures = record.failures + 1
        backoff = self.settings.retry_backoff_seconds * 2 ** min(failures - 1, 3)
        self.metrics.fencing_failures.labels(machine.device).inc()
        log.error("%s: %s (retry in %.0f s)", name, exc.message, backoff)
        self._event(
            name,
            "FireproofFenceFailed",
            f"{exc.message}; nothing was released; retry in {backoff:.0f} s",
            warning=True,
        )
        new = record.advance(
            record.phase,
            epoch=epoch,
            leader=self.identity,
            now=record.updated,  # the phase's clock keeps running while it fails
            failures=failures,
            not_before=self.clock() + backoff,
        )
        self._save(name, new, record)

    # -- helpers ------------------------------------------------------------------------------

    def _server_version(self) -> tuple[int, int]:
        if self._version is None:
            self._version = self.cluster.server_version()
        return self._version

    def _repair_endpoints(self) -> None:
        if time.monotonic() - self._endpoints_at < 10:
            return
        self._endpoints_at = time.monotonic()
        plan = plan_endpoints(self.cluster, vip=self.target.config.cluster.vip, to="auto")
        if not plan.needed:
            return
        self.elector.assert_leading()
        journal = Journal(
            "guard api-endpoints",
            None,
            cluster=self.cluster,
            log_path=self.journal_path,
            subject=("Endpoints", "default", "kubernetes"),
        )
        apply_endpoints(self.cluster, plan, journal)
        self.metrics.actions.labels("api-endpoints").inc()

    def _event(self, node: str | None, reason: str, message: str, *, warning: bool = False) -> None:
        if node is None or self.dry_run:
            return  # cluster-wide: the log and the metric carry it; a dry run writes nothing
        try:
            self.cluster.record_event(node, reason, f"fireproof guard: {message}", warning=warning)
        except FireproofError as exc:
            self._once("*", "events", log.warning, f"cannot record Events: {exc.message}")

    def _once(
        self,
        node: str,
        key: str,
        emit: Callable[[str], None],
        message: str,
        *,
        event: str | None = None,
    ) -> None:
        """Say a standing condition once, not every second."""
        if (node, key) in self._said:
            return
        self._said.add((node, key))
        emit(message)
        if event and node != "*":
            self._event(node, event, message, warning=True)

    def _forget(self, name: str) -> None:
        self._said = {k for k in self._said if k[0] != name}
        self._journals.pop(name, None)

    def _report(
        self,
        views: list[NodeView],
        suspects: dict[str, Reason],
        records: dict[str, Remediation],
        gate: bool,
    ) -> None:
        """--dry-run: say once what guard would do, touching nothing."""
        for view in views:
            name = view.name
            reason = suspects.get(name)
            if name in records:
                self._once(
                    name,
                    f"rec-{records[name].phase}",
                    self.say,
                    f"{name}: remediation in phase {records[name].phase}",
                )
            elif reason is None:
                self._said = {k for k in self._said if k[0] != name}
            elif view.excluded or view.paused:
                self._once(
                    name,
                    "skip",
                    self.say,
                    f"{name} looks dead ({reason}); excluded or paused: would do nothing",
                )
            elif gate:
                self._once(
                    name,
                    "storm",
                    self.say,
                    f"{name} looks dead ({reason}); storm gate: would do nothing",
                )
            else:
                then = (
                    "power it on again, wait Ready, untaint, uncordon"
                    if (reason is Reason.SILENT and self.settings.strategy == "reboot")
                    or self.settings.restart_stopped
                    else "leave it off and tainted"
                )
                self._once(
                    name,
                    f"would-{reason}",
                    self.say,
                    f"{name} looks dead ({reason}): would cordon, power off and verify, "
                    f"release its volumes, then {then}",
                )


def _annotations(node: Node) -> dict[str, str]:
    return dict((node.metadata.annotations if node.metadata else None) or {})
