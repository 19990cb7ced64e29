"""The guard loop: lead, look, decide, act; nothing else lives here.

Level-triggered: every look starts from what the cluster and the hypervisors say now plus the
phase recorded on each Node, so a restarted guard or a new leader carries on where the last one
stopped. The looking is :mod:`~fireproof.guard.observe`, the deciding the pure
:func:`~fireproof.guard.policy.decide`, the acting :mod:`~fireproof.guard.actuator`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fireproof.clock import SYSTEM_CLOCK, Clock
from fireproof.errors import FireproofError
from fireproof.fencing import Fencer
from fireproof.guard.actuator import Actuator, Stop
from fireproof.guard.leader import LeaderElector, NotLeading
from fireproof.guard.metrics import GuardMetrics
from fireproof.guard.notices import Notices
from fireproof.guard.observe import (
    ClusterSource,
    Observation,
    Observer,
    Windows,
    lost_sight,
    observe,
)
from fireproof.guard.policy import Act, Forget, PolicySettings, Refuse, Wait, decide
from fireproof.guard.record import ACTIVE_PHASES, PAUSE_ANNOTATION
from fireproof.guard.report import DryRunReport
from fireproof.guard.topology import OWNED
from fireproof.heal import Journal
from fireproof.heal.endpoints import apply_endpoints, plan_endpoints
from fireproof.inventory import Inventory
from fireproof.kube import Cluster

log = logging.getLogger("fireproof.guard")
ENDPOINTS_EVERY = 10.0
"""Seconds between two looks at the `kubernetes` Endpoints (repair_api_endpoints)."""
QUIET_REFUSALS = frozenset({"excluded", "paused", "api-recovery"})
"""Refusals said at info level, with no Event: a person's choice, or a hold of seconds."""


@dataclass
class Guard:
    cluster: Cluster
    source: ClusterSource
    inventory: Callable[[list[str]], Inventory]
    fencer: Callable[[str], Fencer]
    settings: PolicySettings
    identity: str
    metrics: GuardMetrics
    clock: Clock = SYSTEM_CLOCK
    dry_run: bool = False
    journal_path: Path | None = None
    vip: str | None = None
    say: Callable[[str], None] = lambda _m: None
    """Where a dry run prints what it would do."""
    wrote_node: Callable[[object], None] | None = None
    elector: LeaderElector = field(init=False)
    notices: Notices = field(init=False)
    observer: Observer = field(init=False)
    actuator: Actuator = field(init=False)
    windows: Windows = field(default_factory=Windows, init=False)
    _endpoints_at: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        g = self.settings.guard
        self.elector = LeaderElector(
            self.cluster,
            g.lease_namespace,
            g.lease_name,
            self.identity,
            g.lease_duration_seconds,
            clock=self.clock,
        )
        self.notices = Notices(event=None if self.dry_run else self._warning_event)
        self.observer = Observer(
            self.source,
            self.inventory,
            self.fencer,
            self.metrics,
            self.clock,
            self.notices,
            confirm_seconds=g.confirm_seconds,
            host_devices=self.settings.hosts,
        )
        self.actuator = Actuator(
            self.cluster,
            self.elector,
            self.fencer,
            self.settings,
            self.identity,
            self.metrics,
            self.clock,
            self.notices,
            self.journal_path,
            self.wrote_node,
        )

    def run(self, stop: threading.Event) -> None:
        interval = self.settings.guard.poll_interval_seconds
        while not stop.is_set():
            started = self.clock.monotonic()
            self.safe_tick()
            stop.wait(max(0.0, interval - (self.clock.monotonic() - started)))
        if not self.dry_run:
            try:
                self.elector.release()
            except FireproofError as exc:
                log.warning("could not hand back the guard Lease: %s", exc.message)

    def safe_tick(self) -> None:
        try:
            self.tick()
        except Exception as exc:  # a bug or an object of a shape never seen: keep watching
            self.metrics.failing_looks += 1  # /readyz says so after a few: never silently blind
            self.metrics.internal_errors.inc()
            log.error(
                "internal error in one look at the cluster (%s: %s); going on",
                type(exc).__name__,
                exc,
            )
            log.debug("the internal error's traceback", exc_info=True)
        else:
            self.metrics.failing_looks = 0

    def tick(self) -> None:
        leading = self._lead()
        if leading is None:
            return
        # The look's time is when the cache was read: a slow device poll after it must not age
        # every Lease it holds (a BMC timing out once made a whole cluster look dead).
        at, wall = self.clock.monotonic(), self.clock.time()
        try:
            views = self.observer.look(self.windows.suspected_since)
        except FireproofError as exc:
            self._lost(f"cannot see the cluster: {exc.message}")
            return
        was_blind = self.windows.blind
        g = self.settings.guard
        observation, self.windows = observe(views, self.windows, g, at, wall)
        self._seen(observation, was_blind)
        if self.dry_run:
            DryRunReport(self.settings, self.notices, self.say).show(observation)
            return
        self._open_remediations(observation, leading)
        if not leading:
            return
        if self.elector.paused:
            message = f"paused cluster-wide ({PAUSE_ANNOTATION} on the Lease)"
            self.notices.once("*", "paused", log.info, message)
            return
        self.notices.clear("*", "paused")
        records = {n for n, v in observation.nodes.items() if v.record is not None}
        self.actuator.new_look()
        for name in sorted(set(observation.suspects) | records):
            try:
                self._advance(observation, name)
            except NotLeading as exc:
                log.warning("stopping: %s", exc.message)
                return
            except FireproofError as exc:
                log.error("%s: %s", name, exc.message)
        self._relabel(observation)
        if g.repair_api_endpoints:
            self._repair_endpoints()

    def _relabel(self, observation: Observation) -> None:
        """Keep the topology labels (zone = Proxmox host, region = cluster) on every node."""
        for name, view in sorted(observation.nodes.items()):
            if not view.relabel:
                continue
            try:
                annotations = {OWNED: view.relabel_owned}
                node = self.cluster.set_labels(name, dict(view.relabel), annotations)
            except FireproofError as exc:
                self.notices.once(name, "labels", log.warning, f"labels: {exc.message}")
                continue
            if self.wrote_node is not None:
                self.wrote_node(node)
            log.info("%s: %s", name, ", ".join(f"{k}={v}" for k, v in view.relabel.items()))

    # -- leading and looking ------------------------------------------------------------------

    def _lead(self) -> bool | None:
        """Whether this process leads now; None when the API server cannot be reached."""
        if self.dry_run:
            return False
        try:
            leading = self.elector.step()
        except FireproofError as exc:
            self.metrics.leader.set(0)
            self._lost(f"cannot reach the API server: {exc.message}")
            return None
        self.metrics.leader.set(1 if leading else 0)
        return leading

    def _lost(self, message: str) -> None:
        self.notices.once("*", "api", log.warning, f"{message}; doing nothing")
        self.windows = lost_sight(self.windows)

    def _seen(self, observation: Observation, was_blind: bool) -> None:
        if was_blind:
            why = "starting" if self.metrics.last_look == 0.0 else "the API server answers again"
            log.info(
                "%s: no remediation from a stale node Lease for %.0f s, while the kubelets renew "
                "theirs (a VM read off is acted on at once)",
                why,
                self.settings.guard.lease_stale_seconds,
            )
        self.notices.clear("*", "api")
        self.metrics.last_look = self.clock.monotonic()
        self.metrics.dead_nodes.set(len(observation.suspects))
        lost = {v.domain for v in observation.nodes.values() if v.name in observation.suspects}
        self.metrics.hosts_dead.set(sum(1 for d in lost if d.startswith("host/")))
        self.metrics.storm.set(1 if observation.storm else 0)
        if observation.storm:
            message = (
                f"storm: {len(observation.suspects)} nodes look dead, more than max_unhealthy "
                f"({observation.storm_limit}); nothing destructive until it passes"
            )
            self.notices.once("*", "storm", log.warning, message)
            for name in observation.suspects:
                self.notices.once(name, "storm", log.debug, message, event="FireproofStorm")
        else:
            self.notices.clear_key("storm")

    def _open_remediations(self, observation: Observation, leading: bool) -> None:
        started = [
            v.record.started
            for v in observation.nodes.values()
            if v.record is not None and v.record.phase in ACTIVE_PHASES
        ]
        oldest = max(0.0, observation.wall - min(started)) if leading and started else 0.0
        self.metrics.oldest_open.set(oldest)

    # -- deciding and acting ------------------------------------------------------------------

    def _advance(self, observation: Observation, name: str) -> None:
        """Steps for one node until one must wait (for time, a device or the node)."""
        view = observation.nodes[name]
        record = view.record
        for _ in range(len(ACTIVE_PHASES) + 3):
            decision = decide(observation, view, record, self.settings, self.clock.time())
            if isinstance(decision, Forget):
                self.notices.clear(name)
                return
            if isinstance(decision, Wait):
                return
            if isinstance(decision, Refuse):
                self._refused(name, decision)
                return
            assert isinstance(decision, Act)  # noqa: S101 - the Decision union is closed
            try:
                record = self.actuator.run(decision, view, record)
            except Stop:
                return
            if record is None:
                return

    def _refused(self, name: str, refusal: Refuse) -> None:
        gate = str(refusal.gate)
        if gate not in ("excluded", "paused"):
            self.metrics.refused.labels(gate).inc()
        if gate == "storm":
            return  # said once for the whole storm, with an Event on each node
        if gate in QUIET_REFUSALS:
            if gate != "api-recovery":
                self.notices.once(name, gate, log.info, refusal.message)
            return
        self.notices.once(name, gate, log.warning, refusal.message, event="FireproofFenceRefused")

    def _repair_endpoints(self) -> None:
        now = self.clock.monotonic()
        if self._endpoints_at is not None and now - self._endpoints_at < ENDPOINTS_EVERY:
            return
        self._endpoints_at = now
        plan = plan_endpoints(self.cluster, vip=self.vip, to="auto")
        if not plan.needed:
            return
        self.elector.assert_leading()
        journal = Journal(
            "guard api-endpoints",
            None,
            cluster=self.cluster,
            log_path=self.journal_path,
            subject=("Endpoints", "default", "kubernetes"),
            clock=self.clock,
        )
        apply_endpoints(self.cluster, plan, journal)
        self.metrics.actions.labels("api-endpoints").inc()

    def _warning_event(self, node: str, reason: str, message: str) -> None:
        self.actuator.event(node, reason, message)
