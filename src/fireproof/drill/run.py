"""Running a drill: fault -> recovery -> watch until every SLO is decided -> restore, always.

The restore runs in a ``finally``: after a failed SLO, an error or Ctrl-C the machines are
powered back on and the nodes recovered, and the run document says what was left if that fails.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from fireproof.clock import SYSTEM_CLOCK, Clock
from fireproof.drill.hawatch import HaWatch
from fireproof.drill.plan import (
    GUARD_PAUSE,
    AddressChange,
    DrillPlan,
    HostTarget,
    LabHooks,
    NodeTarget,
    ProgressFn,
    describe_error,
)
from fireproof.drill.spec import Fault, Recovery, SloKind
from fireproof.drill.steady import wait_steady
from fireproof.drill.timeline import Entry, Observer
from fireproof.drill.verdict import SloResult, evaluate
from fireproof.errors import FireproofError, TransientError
from fireproof.fencing import HaReader, PowerPoller, PowerState
from fireproof.heal import steps
from fireproof.heal.endpoints import API_PORT, apply_endpoints, plan_endpoints
from fireproof.heal.journal import Journal
from fireproof.heal.node import apply_heal, plan_heal
from fireproof.kube.watch import Watcher
from fireproof.report.phases import (
    ADDRESS_CHANGED,
    API_CLIENTS_READY,
    API_CRASHLOOP,
    ENDPOINTS_REPAIRED,
    ENDPOINTS_STALE,
    HOST_OFF,
    NODE_READY,
    NOT_READY,
    PARTITIONED,
    PHASES,
    RELEASED,
    RESTORED,
    SCALED,
    VM_OFF,
)
from fireproof.wiring import Target


class DrillFailed(TransientError):
    """The drill could not observe or restore as it must (said, never hidden)."""


TICK = 0.25
RESTORE_TIMEOUT = 600.0
RUN_SCHEMA = "https://fireproof.dev/schemas/drill-run-1.json"


@dataclass
class _Recovery:
    """`recovery: heal` runs beside the watch, on a thread, once per node."""

    started: set[str] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)


class DrillRunner:
    def __init__(
        self,
        target: Target,
        plan: DrillPlan,
        lab: LabHooks | None,
        progress: ProgressFn,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        # Wall time: the timeline lines up the drill's own notes with the watch events' stamps.
        self.clock = clock
        self.target = target
        self.plan = plan
        self.lab = lab
        self.progress = progress
        self.observer = Observer(
            nodes={n.node for n in plan.nodes},
            workloads=plan.workloads,
            on_entry=self._show,
            scaling=plan.scale is not None,
            want=dict(plan.wanted),
            retired=set(plan.address.retired) if plan.address is not None else set(),
        )
        self.recovery = _Recovery()
        self.restore_notes: list[str] = []
        self.interrupted = False
        self._fault_cleared = plan.spec.proxmox_fault is None
        self._fault_until = 0.0
        self._restorer: threading.Thread | None = None
        self._restore_lock = threading.Lock()
        self._restored = False
        self._placed: set[str] = set()
        """Nodes back during the drill whose host the drill has read (moved or not)."""
        self.steady_seconds: float | None = None
        readers = (n.fencer for n in plan.nodes if isinstance(n.fencer, HaReader))
        self._ha = HaWatch([h.host for h in plan.hosts], next(readers, None), self.observer.note)

    def _show(self, entry: Entry) -> None:
        self.progress(f"  T+{entry.t:7.1f}s  {entry.phase:<26} {entry.object}  {entry.evidence}")

    # -- the run ------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        spec = self.plan.spec
        watcher = Watcher(self.target.kubeconfig, self.target.context, self.observer.feed)
        if not watcher.start():
            watcher.stop()
            raise DrillFailed("the watches on the API server did not start within 30 s")
        results: list[SloResult] = []
        self._pause_guard(True)
        t0 = self.clock.time()
        try:
            self.observer.arm(t0)
            self._inject()
            results = self._watch(t0, workloads_only=spec.restore)
            if spec.restore:
                self._restore_in_background()
                results = self._watch(t0, workloads_only=False)
        except KeyboardInterrupt:
            self.interrupted = True
            self.progress("interrupted: restoring before exit")
        finally:
            try:
                if spec.restore:
                    self._restore()
                self._clear_lab_faults()
            finally:
                self._pause_guard(False)
                watcher.stop()
        elapsed = self.clock.time() - t0
        if not results or self.interrupted:
            results = self._evaluate(elapsed, final=True)
        if spec.restore and not self.interrupted:
            # After the drill's window (its timeline is closed): back to the steady state.
            self._back_to_steady()
        return self._document(results, elapsed, watcher.errors)

    def _pause_guard(self, pause: bool) -> None:
        """`recovery: none` or `heal` with a guard running: nothing else may recover it."""
        if not self.plan.pause_guard:
            return
        settings = self.target.config.guard
        value = f"drill {self.plan.spec.name}" if pause else None
        try:
            self.target.cluster.annotate_lease(
                settings.lease_namespace, settings.lease_name, GUARD_PAUSE, value
            )
            self.progress(f"  guard {'paused' if pause else 'resumed'}")
        except Exception as exc:  # said loudly, and in the run document
            note = f"guard not {'paused' if pause else 'resumed'}: {describe_error(exc)}"
            self.restore_notes.append(note)
            self.progress(f"  {note}")

    def _inject(self) -> None:
        spec = self.plan.spec
        if self.plan.address is not None:
            assert self.lab is not None  # noqa: S101 - the plan refused it otherwise
            for node, old, new in self.plan.address.moves:
                self.lab.change_ip(node, new)
                evidence = f"InternalIP {old} -> {new}"
                self.observer.note(self.clock.time(), ADDRESS_CHANGED, f"node/{node}", evidence)
            self.observer.check_stale(self.clock.time())
        elif self.plan.scale is not None:
            scale = self.plan.scale
            ref = scale.ref
            self.target.cluster.scale(ref.kind, ref.namespace, ref.name, scale.to)
            self.observer.note(
                self.clock.time(),
                SCALED,
                f"workload/{ref.label}",
                f"replicas {scale.before} -> {scale.to}",
            )
        elif spec.fault.on_host:
            for host in self.plan.hosts:
                self._host_fault(host)
        elif spec.fault is Fault.PARTITION:
            assert self.lab is not None  # noqa: S101 - the plan refused it otherwise
            for target in self.plan.nodes:
                self.lab.partition(target.node, True)
                self.observer.note(
                    self.clock.time(), PARTITIONED, f"node/{target.node}", "network cut, VM running"
                )
        else:
            # All at once, as a host or a rack dies: one thread per machine.
            with ThreadPoolExecutor(max_workers=len(self.plan.nodes)) as pool:
                for done in [pool.submit(self._power_fault, t) for t in self.plan.nodes]:
                    done.result()
        if spec.proxmox_fault is not None and self.lab is not None:
            self.lab.add_proxmox_fault(spec.proxmox_fault, self.plan.nodes[0].machine)
            self._fault_until = self.clock.time() + spec.proxmox_fault.seconds

    def _host_fault(self, host: HostTarget) -> None:
        if self.plan.spec.fault is Fault.HOST_HANG:
            assert self.lab is not None  # noqa: S101 - the plan refused it otherwise
            self.lab.host_hang(host.host)
            evidence = "hung: no answer, its VMs dead, its power on"
        else:
            fencer, machine = host.fencer, host.machine
            if fencer is None or machine is None:  # the plan refuses a host without a device
                raise DrillFailed(f"host {host.host} has no fencing device")
            state = fencer.off(machine)
            evidence = f"reads {state.value} via {fencer.name}"
        self.observer.note(self.clock.time(), HOST_OFF, f"host/{host.host}", evidence)

    def _power_fault(self, target: NodeTarget) -> None:
        state = target.fencer.off(target.machine)
        self.observer.note(
            self.clock.time(),
            VM_OFF,
            f"node/{target.node}",
            f"{target.machine.label} reads {state.value} via {target.fencer.name}",
        )
        if self.plan.spec.fault is Fault.REBOOT:
            target.fencer.on(target.machine)

    def _evaluate(
        self, elapsed: float, *, final: bool, workloads_only: bool = False
    ) -> list[SloResult]:
        nodes = [n.node for n in self.plan.nodes]
        recovered = final or self._recovered()
        return [
            evaluate(slo, self.observer, elapsed, nodes, final=final, recovered=recovered)
            for slo in self.plan.spec.slos
            if not (workloads_only and slo.kind is SloKind.NODE_READY)
        ]

    def _watch(self, t0: float, *, workloads_only: bool) -> list[SloResult]:
        spec = self.plan.spec
        while True:
            now = self.clock.time()
            elapsed = now - t0
            self.observer.tick(now)
            self._ha.tick(now)
            self._follow_moves(now)
            self._hold_fault(now)
            if spec.recovery is Recovery.HEAL:
                if self.plan.address is not None:
                    self._maybe_repair_endpoints()
                else:
                    self._maybe_heal()
            results = self._evaluate(elapsed, final=False, workloads_only=workloads_only)
            # no_double_attach is an invariant over the whole watch: it fails the moment it is
            # broken, and passes when everything else is decided without that happening.
            open_ = [r for r in results if r.passed is None and r.kind != SloKind.NO_DOUBLE_ATTACH]
            deciders = [r for r in results if r.kind != SloKind.NO_DOUBLE_ATTACH]
            if deciders:
                done = not open_ and self._settled()
            else:
                # Nothing to decide in this phase: the recovery's end (before the restore), or
                # the restore's (after it) ends it, never the timeout alone.
                before_restore = workloads_only or not spec.restore
                done = self._recovered() if before_restore else self._restore_finished()
            if done:
                return self._evaluate(elapsed, final=True, workloads_only=workloads_only)
            if elapsed >= spec.timeout:
                return self._evaluate(elapsed, final=True, workloads_only=workloads_only)
            self.clock.sleep(TICK)

    def _recovered(self) -> bool:
        """The recovery did what it does: heal ran to its end, guard released every node; with
        no recovery, the nodes came back by themselves."""
        recovery = self.plan.spec.recovery
        nodes = [n.node for n in self.plan.nodes]
        if self.plan.scale is not None:  # every replica Ready (or the timeout) ends it
            return self.observer.whole(self.plan.scale.ref.label) is not None
        if self.plan.address is not None:  # the API path whole again (or the timeout)
            repaired = self.observer.first(ENDPOINTS_REPAIRED) is not None
            crashed = self.observer.first(API_CRASHLOOP) is not None
            clients = self.observer.first(API_CLIENTS_READY) is not None
            return repaired and (clients or not crashed) and self._settled()
        if recovery is Recovery.NONE:  # only the nodes themselves (a reboot) end it
            return all(self.observer.first(NODE_READY, f"node/{n}") is not None for n in nodes)
        if recovery is Recovery.HEAL:
            return len(self.recovery.started) == len(nodes) and self._settled()
        return all(self.observer.first(RELEASED, f"node/{n}") is not None for n in nodes)

    def _follow_moves(self, now: float) -> None:
        """A node of a lost host that is Ready again before the restore runs on another host:
        Proxmox HA restarted its VM there. A replacement pod on it is elsewhere, and the run
        says so; the one Proxmox read per comeback also proves where the VM is."""
        if not self.plan.hosts or self._restorer is not None:
            return
        for target in self.plan.nodes:
            node, machine = target.node, target.machine
            if node in self._placed or not isinstance(target.fencer, PowerPoller):
                continue
            back = self.observer.node_ready(node) == "True"
            if not back or self.observer.first(NOT_READY, f"node/{node}") is None:
                continue
            try:
                now_on = target.fencer.power_states().locate(machine).host
            except FireproofError:
                continue  # read again on the next tick
            self._placed.add(node)
            if now_on and now_on != machine.host:
                self.observer.moved(node, now, f"{machine.label} runs on {now_on} now")

    def _restore_finished(self) -> bool:
        return self._restorer is None or not self._restorer.is_alive()

    def _settled(self) -> bool:
        """A `heal` still running keeps the drill watching: its outcome belongs to the run."""
        return all(not t.is_alive() for t in self.recovery.threads)

    def _hold_fault(self, now: float) -> None:
        if not self._fault_cleared and now >= self._fault_until:
            self._clear_lab_faults()

    def _clear_lab_faults(self) -> None:
        if self._fault_cleared or self.lab is None:
            return
        self._fault_cleared = True
        try:
            self.lab.clear_proxmox_faults()
            self.progress("  Proxmox fault cleared")
        except Exception as exc:  # the drill reports it; the run goes on
            self.restore_notes.append(f"could not clear the Proxmox fault: {describe_error(exc)}")

    # -- recovery: heal -----------------------------------------------------------------------

    def _maybe_heal(self) -> None:
        for target in self.plan.nodes:
            if target.node in self.recovery.started:
                continue
            if self.observer.node_ready(target.node) in ("False", "Unknown"):
                self.recovery.started.add(target.node)
                thread = threading.Thread(
                    target=self._heal, args=(target,), name=f"heal-{target.node}", daemon=True
                )
                self.recovery.threads.append(thread)
                thread.start()

    def _maybe_repair_endpoints(self) -> None:
        """`heal api-endpoints` the moment the Endpoints are seen stale, like a quick human."""
        if "api-endpoints" in self.recovery.started:
            return
        if self.observer.first(ENDPOINTS_STALE) is None:
            return
        self.recovery.started.add("api-endpoints")
        thread = threading.Thread(target=self._repair_endpoints, name="heal-api", daemon=True)
        self.recovery.threads.append(thread)
        thread.start()

    def _repair_endpoints(self) -> None:
        cluster = self.target.cluster
        journal = Journal(
            "drill heal api-endpoints", "-", cluster=cluster, log_path=self.target.journal_path()
        )
        try:
            plan = plan_endpoints(cluster, vip=self.target.config.cluster.vip)
            apply_endpoints(cluster, plan, journal)
        except Exception as exc:  # recorded in the run: a failed heal fails the drill's SLOs
            self.recovery.errors.append(f"api-endpoints: {describe_error(exc)}")
            self.progress(f"  heal api-endpoints failed: {describe_error(exc)}")

    def _heal(self, target: NodeTarget) -> None:
        cluster = self.target.cluster
        settings = self.target.config.remediation
        journal = Journal(
            "drill heal node", target.node, cluster=cluster, log_path=self.target.journal_path()
        )
        try:
            plan = plan_heal(
                cluster, target.node, target.machine, method=settings.method, fencer=target.fencer
            )
            apply_heal(
                cluster,
                target.fencer,
                plan,
                journal,
                workload_timeout=min(settings.workload_timeout_seconds, self.plan.spec.timeout),
                progress=lambda _line: None,
            )
        except Exception as exc:  # recorded in the run: a failed heal fails the drill's SLOs
            self.recovery.errors.append(f"{target.node}: {describe_error(exc)}")
            self.progress(f"  heal {target.node} failed: {describe_error(exc)}")

    # -- restore ------------------------------------------------------------------------------

    def _restore_in_background(self) -> None:
        """Start restoring while the watch goes on (a node_ready SLO needs to see it)."""
        self._restorer = threading.Thread(target=self._restore_all, name="restore", daemon=True)
        self._restorer.start()

    def _restore(self) -> None:
        if self._restorer is not None:
            self._restorer.join(RESTORE_TIMEOUT * max(1, len(self.plan.nodes)))
        self._restore_all()

    def _restore_all(self) -> None:
        with self._restore_lock:
            if self._restored:
                return
            self._restored = True
        if self.plan.address is not None:
            self._restore_address(self.plan.address)
        if self.plan.scale is not None:
            scale = self.plan.scale
            ref = scale.ref
            try:
                self.target.cluster.scale(ref.kind, ref.namespace, ref.name, scale.before)
                self.progress(f"  {ref.label} scaled back to {scale.before}")
            except Exception as exc:  # said loudly, and in the run document
                note = f"{ref.label}: not scaled back to {scale.before}: {describe_error(exc)}"
                self.restore_notes.append(note)
                self.progress(f"  {note}")
        for host in self.plan.hosts:
            try:
                self._restore_host(host)
            except Exception as exc:  # said loudly, and in the run document
                note = f"host {host.host}: restore failed: {describe_error(exc)}"
                self.restore_notes.append(note)
                self.progress(f"  {note}")
        for target in self.plan.nodes:
            try:
                self._restore_node(target)
            except Exception as exc:  # said loudly, and in the run document
                note = f"{target.node}: restore failed: {describe_error(exc)}"
                self.restore_notes.append(note)
                self.progress(f"  {note}")

    def _restore_address(self, change: AddressChange) -> None:
        """The node gets its address back and the Endpoints name live addresses again."""
        assert self.lab is not None  # noqa: S101 - the plan refused it otherwise
        for node, old, _new in change.moves:
            try:
                self.lab.change_ip(node, old)
                self.progress(f"  {node} back to {old}")
            except Exception as exc:  # said loudly, and in the run document
                note = f"{node}: address not restored to {old}: {describe_error(exc)}"
                self.restore_notes.append(note)
                self.progress(f"  {note}")
        try:  # the Endpoints as the drill found them (their addresses are live again)
            self.target.cluster.set_endpoints(list(change.endpoints_before), API_PORT)
        except Exception as exc:  # said loudly, and in the run document
            note = f"the kubernetes Endpoints not restored: {describe_error(exc)}"
            self.restore_notes.append(note)
            self.progress(f"  {note}")

    def _back_to_steady(self) -> None:
        """The restore ends when the cluster is as the drill found it: nodes Ready and
        untainted, every workload it named with all its replicas Ready (a game day's next drill
        starts from there)."""
        waited, left = wait_steady(
            self.target.cluster,
            [ref for ref, _selector in self.plan.workloads.values()],
            [n.node for n in self.plan.nodes],
            timeout=self.plan.spec.steady_timeout,
            progress=self.progress,
            clock=self.clock,
        )
        self.steady_seconds = round(waited, 1)
        if left:
            limit = self.plan.spec.steady_timeout
            note = f"not back to the steady state within {limit:g} s: {'; '.join(left)}"
            self.restore_notes.append(note)
            self.progress(f"  {note}")
        else:
            self.progress(f"  steady state again after {waited:.1f} s")

    def _restore_host(self, host: HostTarget) -> None:
        """Power the host back: its VMs start as after any power loss (``onboot``)."""
        if self.plan.spec.fault is Fault.HOST_HANG:
            assert self.lab is not None  # noqa: S101 - the plan refused it otherwise
            self.lab.host_restore(host.host)
        elif (
            host.fencer is not None
            and host.machine is not None
            and host.fencer.status(host.machine) is not PowerState.ON
        ):
            host.fencer.on(host.machine)
        self.progress(f"  host {host.host} powered on")

    def _restore_node(self, target: NodeTarget) -> None:
        cluster = self.target.cluster
        self._clear_lab_faults()
        if self.plan.spec.fault is Fault.PARTITION and self.lab is not None:
            self.lab.partition(target.node, False)
        journal = Journal(
            "drill restore", target.node, cluster=cluster, log_path=self.target.journal_path()
        )
        machine = target.machine
        if isinstance(target.fencer, PowerPoller):
            # Where the VM runs now: Proxmox HA may have restarted it on another host.
            machine = target.fencer.power_states().locate(machine)
        if target.fencer.status(machine) is not PowerState.ON:
            steps.power_on(target.fencer, machine, journal)
        steps.wait_ready(cluster, target.node, journal, timeout=RESTORE_TIMEOUT, poll=0.5)
        steps.restore(cluster, target.node, journal)
        self.observer.note(self.clock.time(), RESTORED, f"node/{target.node}", "Ready, untainted")

    # -- the document -------------------------------------------------------------------------

    def _document(
        self, results: list[SloResult], elapsed: float, watch_errors: int
    ) -> dict[str, Any]:
        # No SLO is a timeline-only drill: nothing to fail.
        passed = all(r.passed for r in results) and not self.interrupted
        order = {p: i for i, p in enumerate(PHASES)}
        timeline = sorted(self.observer.entries, key=lambda e: (e.t, order.get(e.phase, 99)))
        return {
            "$schema": RUN_SCHEMA,
            "spec": self.plan.spec.as_dict(),
            "environment": {**self.plan.environment, "watch_reconnects": watch_errors},
            "targets": [
                {
                    "node": n.node,
                    "machine": n.machine.label,
                    "device": n.machine.device,
                    "why": n.why,
                }
                for n in self.plan.nodes
            ],
            "timeline": [e.as_dict() for e in timeline],
            "slos": [r.as_dict() for r in results],
            "recovery": {"mode": self.plan.spec.recovery.value, "errors": self.recovery.errors},
            "restore": {
                "done": self.plan.spec.restore,
                "problems": self.restore_notes,
                "steady_seconds": self.steady_seconds,
            },
            "interrupted": self.interrupted,
            "seconds": round(elapsed, 1),
            "verdict": "pass" if passed else "fail",
        }
