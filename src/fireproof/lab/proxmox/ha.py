"""Proxmox HA's cluster resource manager (pve-ha-manager's CRM), as the lab plays it.

Followed from pve-ha-manager: ``src/PVE/HA/NodeStatus.pm`` (node states and the fence) and
``src/PVE/HA/Manager.pm`` (service states and recovery):

- A node the quorate partition no longer has goes ``online -> unknown``. Once it has been
  offline for the fence delay (``$fence_delay = 60``), each of its ``started`` services goes to
  ``fence`` and the node to ``fence``.
- The CRM then tries to take the dead node's HA agent lock. The node's own LRM renews that lock
  while it runs; the lock expires (pmxcfs: 120 s) only once the node is dead or its watchdog
  has reset it. Taking it is "fencing: acknowledged - got agent lock": the node goes back to
  ``unknown`` and its services to ``recovery``, then ``started`` on a surviving node, where the
  VM boots again (same VM, same SMBIOS UUID, another ``node`` in the API).
- Nothing of this happens without quorum: a 2-host cluster without a QDevice that lost a host
  has no quorate partition, and HA waits, whatever happens.
- A node whose LRM has no HA service arms no watchdog and is never fenced.

In the lab, an acknowledged fence leaves the node's host off (its watchdog reset it, or it was
off already): every VM on it is dead, which is what the acknowledgement promises. `host-on`
brings the host back.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

ONLINE, UNKNOWN, FENCE = "online", "unknown", "fence"


@dataclass(frozen=True, slots=True)
class HaTimings:
    round_seconds: float
    """How often the CRM runs a round (pve-ha-crm: every 10 s)."""
    fence_delay_seconds: float
    """Offline this long before a node's services are fenced (NodeStatus.pm: 60 s)."""
    agent_lock_seconds: float
    """How long a dead node's agent lock outlives its last renewal (pmxcfs locks: 120 s)."""


@dataclass(slots=True)
class Service:
    sid: str
    vmid: int
    node: str
    state: str
    """``started``, ``stopped``, ``fence``, ``recovery``."""


@dataclass(slots=True)
class HaEvent:
    at: float
    """Epoch seconds."""
    message: str


@dataclass
class HaManager:
    """The CRM over an emulated cluster. ``members``/``alive``/``vms_on``/``recover``/
    ``self_fence`` are the cluster's side; the manager keeps only HA's own state."""

    timings: HaTimings
    members: Callable[[], list[str]]
    quorate: Callable[[], bool]
    alive: Callable[[str], bool]
    """Whether the host is in the quorate partition (its LRM renews its lock)."""
    self_fence: Callable[[str], None]
    """The node's watchdog reset it: every VM on it is dead."""
    recover: Callable[[int, str], None]
    """Start the VM on the given surviving host."""
    services: dict[str, Service] = field(default_factory=dict)
    node_status: dict[str, str] = field(default_factory=dict)
    last_online: dict[str, float] = field(default_factory=dict)
    lock_renewed: dict[str, float] = field(default_factory=dict)
    events: list[HaEvent] = field(default_factory=list)
    master: str = ""
    timestamp: int = 0
    _next_round: float = 0.0

    def add_service(self, vmid: int, node: str, running: bool) -> None:
        sid = f"vm:{vmid}"
        self.services[sid] = Service(sid, vmid, node, "started" if running else "stopped")

    def request(self, vmid: int, state: str) -> None:
        """A start or stop through the API (``hastart``/``hastop``): the service's request."""
        service = self.services.get(f"vm:{vmid}")
        if service is not None and service.state in ("started", "stopped"):
            service.state = state

    def tick(self, now: float) -> None:
        """Run a CRM round when one is due (``now``: monotonic seconds)."""
        if now < self._next_round:
            return
        self._next_round = now + self.timings.round_seconds
        if not self.quorate():
            return  # no quorate partition: no CRM acts
        self._update_nodes(now)
        self._fence_services(now)
        self.timestamp = int(time.time())

    def _log(self, message: str) -> None:
        self.events.append(HaEvent(time.time(), message))
        del self.events[:-200]

    def _set(self, node: str, state: str) -> None:
        old = self.node_status.get(node, UNKNOWN)
        if old != state:
            self.node_status[node] = state
            self._log(f"node '{node}': state changed from '{old}' => '{state}'")

    def _update_nodes(self, now: float) -> None:
        members = self.members()
        self.master = next((h for h in members if self.alive(h)), "")
        for node in members:
            state = self.node_status.setdefault(node, ONLINE)
            self.lock_renewed.setdefault(node, now)
            if self.alive(node):
                self.last_online[node] = now
                if state != FENCE:
                    # The LRM holds its lock while it runs; a node in fence waits for it.
                    self.lock_renewed[node] = now
                    self._set(node, ONLINE)
            elif state == ONLINE:
                self.last_online.setdefault(node, now)
                self._set(node, UNKNOWN)

    def _offline_delayed(self, node: str, now: float) -> bool:
        if self.node_status.get(node) == ONLINE:
            return False
        since = self.last_online.get(node, now)
        return now - since >= self.timings.fence_delay_seconds

    def _fence_services(self, now: float) -> None:
        for service in self.services.values():
            if service.state == "started" and self._offline_delayed(service.node, now):
                self._service(service, FENCE)
        fenced: dict[str, bool] = {}
        for service in sorted(self.services.values(), key=lambda s: s.sid):
            if service.state != FENCE:
                continue
            node = service.node
            if node not in fenced:
                fenced[node] = self._fence_node(node, now)
            if fenced[node]:
                self._service(service, "recovery")
        for service in sorted(self.services.values(), key=lambda s: s.sid):
            if service.state == "recovery":
                self._recover(service)  # stays in recovery while no node is online

    def _fence_node(self, node: str, now: float) -> bool:
        if self.node_status.get(node) != FENCE:
            self._set(node, FENCE)
        if now - self.lock_renewed.get(node, now) < self.timings.agent_lock_seconds:
            return False
        self._log(f"fencing: acknowledged - got agent lock for node '{node}'")
        self.self_fence(node)
        self._set(node, UNKNOWN)
        return True

    def _recover(self, service: Service) -> None:
        online = [n for n in self.members() if self.node_status.get(n) == ONLINE]
        if not online:
            return  # stays in recovery until a node is back
        load = {n: sum(1 for s in self.services.values() if s.node == n) for n in online}
        target = min(online, key=lambda n: (load[n], n))
        self._log(
            f"recover service '{service.sid}' from fenced node '{service.node}' to node '{target}'"
        )
        service.node = target
        self._service(service, "started", f"  (node = {target})")
        self.recover(service.vmid, target)

    def _service(self, service: Service, state: str, detail: str = "") -> None:
        self._log(
            f"service '{service.sid}': state changed from '{service.state}' to '{state}'{detail}"
        )
        service.state = state

    # -- what the API shows ---------------------------------------------------------------------

    def manager_status(self) -> dict[str, object]:
        """``/cluster/ha/status/manager_status``'s ``manager_status``."""
        return {
            "master_node": self.master,
            "node_status": dict(self.node_status),
            "service_status": {
                s.sid: {"node": s.node, "state": s.state, "running": int(s.state == "started")}
                for s in self.services.values()
            },
            "timestamp": self.timestamp,
        }
