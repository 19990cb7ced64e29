"""An in-process world for guard: an in-memory API server (real lightkube models, conditional
writes that conflict like the real one), a hypervisor, kubelets, the attach/detach
controller, all on one ManualClock. The real `Guard` runs against it, so its windows, gates
and hand-overs are driven in milliseconds. The lab tests run the same code for real."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lightkube.resources.coordination_v1 import Lease
from lightkube.resources.core_v1 import Node, Pod
from lightkube.resources.storage_v1 import VolumeAttachment

from fireproof.clock import ManualClock
from fireproof.config import (
    Config,
    FakeDevice,
    GuardConfig,
    InventoryConfig,
    NodeEntry,
    RemediationConfig,
)
from fireproof.fencing import (
    FencingError,
    HaStatus,
    Machine,
    MachineIdentity,
    PowerPoll,
    PowerState,
)
from fireproof.guard import Guard, GuardMetrics, NodeView, PolicySettings
from fireproof.guard.record import ANNOTATION as REMEDIATION_ANNOTATION
from fireproof.guard.topology import ZONE
from fireproof.inventory import Inventory, build_inventory
from fireproof.kube import KubeConflictError
from fireproof.kube.cache import AttachmentFacts, CacheView, node_facts

OUT_OF_SERVICE = "node.kubernetes.io/out-of-service"


def node_view(at: dt.datetime, name: str = "w1", **changes: Any) -> NodeView:
    """A healthy node as guard sees it at ``at`` (Ready, Lease renewed a second ago, VM on),
    with ``changes`` applied."""
    base: dict[str, Any] = {
        "name": name,
        "ready": "True",
        "ready_since": at - dt.timedelta(hours=1),
        "lease_renewed": at - dt.timedelta(seconds=1),
        "power": PowerState.ON,
        "polled": True,
        "control_plane": False,
        "excluded": False,
        "paused": False,
    }
    base.update(changes)
    return NodeView(**base)


NODE_GRACE = 5.0
"""Seconds without a Lease renewal before the node lifecycle controller says Unknown."""


class FakeApi:
    """The Cluster calls guard makes, on in-memory objects; also guard's ClusterSource."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.nodes: dict[str, dict[str, Any]] = {}
        self.renewed: dict[str, float] = {}
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}
        self.attachments: dict[str, dict[str, Any]] = {}
        self.leases: dict[tuple[str, str], Lease] = {}
        self.events: list[tuple[str, str]] = []
        self.writes: list[str] = []
        self.on_annotate: Callable[[str], None] | None = None
        """Called after each annotation write on a node: the world moves on right then."""
        self.reachable = True
        self._version = 100

    # -- bookkeeping ------------------------------------------------------------------------

    def _bump(self) -> str:
        self._version += 1
        return str(self._version)

    def _up(self) -> None:
        if not self.reachable:
            from fireproof.kube import KubeUnreachableError

            raise KubeUnreachableError("cannot reach the API server: connection refused")

    def add_node(
        self, name: str, *, control_plane: bool = False, uuid: str = "", zone: str | None = "pve-01"
    ) -> None:
        # The zone a CCM (or the lab's kubelets) would have set: guard leaves it alone.
        labels = {"kubernetes.io/hostname": name, **({ZONE: zone} if zone else {})}
        if control_plane:
            labels["node-role.kubernetes.io/control-plane"] = ""
        self.nodes[name] = {
            "metadata": {"name": name, "labels": labels, "annotations": {}},
            "spec": {},
            "status": {
                "conditions": [
                    {"type": "Ready", "status": "True", "lastTransitionTime": self._stamp()}
                ],
                "nodeInfo": _node_info(uuid),
            },
        }
        self.nodes[name]["metadata"]["resourceVersion"] = self._bump()
        self.renewed[name] = self.clock.time()

    def add_pod(self, namespace: str, name: str, node: str, volume: str | None = None) -> None:
        self.pods[(namespace, name)] = {"uid": f"uid-{name}-{self._bump()}", "node": node}
        if volume:
            self.attachments[f"csi-{volume}"] = {"node": node, "attached": True}

    def _stamp(self) -> str:
        return dt.datetime.fromtimestamp(self.clock.time(), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def set_ready(self, name: str, status: str) -> None:
        cond = self.nodes[name]["status"]["conditions"][0]
        if cond["status"] != status:
            cond.update(status=status, lastTransitionTime=self._stamp())
            self.nodes[name]["metadata"]["resourceVersion"] = self._bump()

    def taints(self, name: str) -> list[str]:
        return [t["key"] for t in self.nodes[name]["spec"].get("taints", [])]

    def annotations(self, name: str) -> dict[str, str]:
        return dict(self.nodes[name]["metadata"]["annotations"])

    # -- ClusterSource ----------------------------------------------------------------------

    def view(self) -> CacheView:
        renewals = {
            name: dt.datetime.fromtimestamp(at, dt.UTC) for name, at in self.renewed.items()
        }
        return CacheView(
            nodes={name: node_facts(Node.from_dict(obj)) for name, obj in self.nodes.items()},
            lease_renewals=renewals,
            attachments=tuple(
                AttachmentFacts(name, a["node"], a["attached"])
                for name, a in self.attachments.items()
            ),
            synced=self.reachable,
        )

    # -- Cluster ------------------------------------------------------------------------------

    def node(self, name: str) -> Node:
        self._up()
        return Node.from_dict(self.nodes[name])

    def annotation(self, node: str, key: str) -> tuple[str | None, str | None]:
        meta = self.node(node).metadata
        assert meta is not None
        return (meta.annotations or {}).get(key), meta.resourceVersion

    def set_annotation(
        self, node: str, key: str, value: str | None, *, version: str | None
    ) -> Node:
        self._up()
        meta = self.nodes[node]["metadata"]
        if version is not None and version != meta["resourceVersion"]:
            raise KubeConflictError("conflict", status=409, reason="Conflict")
        if value is None:
            meta["annotations"].pop(key, None)
        else:
            meta["annotations"][key] = value
        meta["resourceVersion"] = self._bump()
        self.writes.append(f"annotate {node}")
        if self.on_annotate is not None:
            self.on_annotate(node)
        return self.node(node)

    def set_labels(self, node: str, labels: dict[str, str], annotations: dict[str, str]) -> Node:
        self._up()
        meta = self.nodes[node]["metadata"]
        meta.setdefault("labels", {}).update(labels)
        meta["annotations"].update(annotations)
        meta["resourceVersion"] = self._bump()
        self.writes.append(f"label {node}")
        return self.node(node)

    def cordon(self, node: str, mark: str) -> None:
        self._up()
        self.nodes[node]["spec"]["unschedulable"] = True
        self.nodes[node]["metadata"]["annotations"][mark] = self._stamp()
        self.nodes[node]["metadata"]["resourceVersion"] = self._bump()
        self.writes.append(f"cordon {node}")

    def uncordon_if_marked(self, node: str, mark: str) -> bool:
        self._up()
        if mark not in self.nodes[node]["metadata"]["annotations"]:
            return False
        del self.nodes[node]["metadata"]["annotations"][mark]
        self.nodes[node]["spec"].pop("unschedulable", None)
        self.nodes[node]["metadata"]["resourceVersion"] = self._bump()
        self.writes.append(f"uncordon {node}")
        return True

    def add_taint(
        self,
        node: str,
        key: str,
        value: str,
        effect: str,
        *,
        before_write: Callable[[], None] | None = None,
    ) -> bool:
        self._up()
        taints = self.nodes[node]["spec"].setdefault("taints", [])
        if any(t["key"] == key for t in taints):
            return False
        if before_write is not None:
            before_write()
        taints.append({"key": key, "value": value, "effect": effect})
        self.nodes[node]["metadata"]["resourceVersion"] = self._bump()
        self.writes.append(f"taint {node}")
        return True

    def remove_taint(self, node: str, key: str) -> bool:
        self._up()
        taints = self.nodes[node]["spec"].get("taints", [])
        kept = [t for t in taints if t["key"] != key]
        if len(kept) == len(taints):
            return False
        self.nodes[node]["spec"]["taints"] = kept
        self.nodes[node]["metadata"]["resourceVersion"] = self._bump()
        self.writes.append(f"untaint {node}")
        return True

    def pods_on(self, node: str) -> list[Pod]:
        self._up()
        return [
            Pod.from_dict({"metadata": {"namespace": ns, "name": name, "uid": pod["uid"]}})
            for (ns, name), pod in self.pods.items()
            if pod["node"] == node
        ]

    def force_delete_pod(self, namespace: str, name: str, uid: str) -> bool:
        self._up()
        pod = self.pods.get((namespace, name))
        if pod is None or pod["uid"] != uid:
            return False
        del self.pods[(namespace, name)]
        self.writes.append(f"delete pod {namespace}/{name}")
        return True

    def volume_attachments(self) -> list[VolumeAttachment]:
        self._up()
        return [
            VolumeAttachment.from_dict(
                {
                    "metadata": {"name": name},
                    "spec": {"attacher": "x", "nodeName": a["node"], "source": {}},
                    "status": {"attached": a["attached"]},
                }
            )
            for name, a in self.attachments.items()
        ]

    def delete_volume_attachment(self, name: str) -> bool:
        return self.attachments.pop(name, None) is not None

    def server_version(self) -> tuple[int, int]:
        self._up()
        return (1, 37)

    def record_event(self, name: str, reason: str, message: str, **_kw: Any) -> None:
        self._up()
        self.events.append((name, reason))

    def lease(self, namespace: str, name: str) -> Lease | None:
        self._up()
        found = self.leases.get((namespace, name))
        return Lease.from_dict(found.to_dict()) if found is not None else None

    def create_lease(self, lease: Lease) -> Lease:
        self._up()
        assert lease.metadata is not None
        key = (lease.metadata.namespace or "", lease.metadata.name or "")
        if key in self.leases:
            raise KubeConflictError("exists", status=409, reason="AlreadyExists")
        lease.metadata.resourceVersion = self._bump()
        self.leases[key] = Lease.from_dict(lease.to_dict())
        return Lease.from_dict(lease.to_dict())

    def replace_lease(self, lease: Lease) -> Lease:
        self._up()
        assert lease.metadata is not None
        key = (lease.metadata.namespace or "", lease.metadata.name or "")
        current = self.leases[key]
        assert current.metadata is not None
        if lease.metadata.resourceVersion != current.metadata.resourceVersion:
            raise KubeConflictError("conflict", status=409, reason="Conflict")
        lease.metadata.resourceVersion = self._bump()
        self.leases[key] = Lease.from_dict(lease.to_dict())
        return Lease.from_dict(lease.to_dict())


def _node_info(uuid: str) -> dict[str, str]:
    return {
        "systemUUID": uuid,
        "machineID": "m",
        "bootID": "b",
        "kernelVersion": "6",
        "osImage": "Talos",
        "containerRuntimeVersion": "containerd://2",
        "kubeletVersion": "v1.37.2",
        "kubeProxyVersion": "",
        "operatingSystem": "linux",
        "architecture": "amd64",
    }


class Hypervisor:
    """A Proxmox-like device: one poll for every VM, verified power actions, identities."""

    name = "pve"

    def __init__(self) -> None:
        self.power: dict[int, PowerState] = {}
        self.uuids: dict[int, str] = {}
        self.stops: list[int] = []
        self.starts: list[int] = []
        self.failing: str | None = None
        """A reason every call fails with (a device fault), or None."""
        self.on_status: Callable[[int], None] | None = None
        """Called before each status read: a test starts the VM behind guard's back."""
        self.passing: dict[int, str] = {}
        """VMID -> a task running on it that passes through "stopped" (qmreboot, qmstart)."""
        self.tasks_readable = True
        self.settle_questions = 0
        self.offline_hosts: set[str] = set()
        self.ha: HaStatus | None = None
        """What Proxmox HA's manager records (None: no HA)."""
        self.vm_hosts: dict[int, str] = {}
        """VMID -> the host the cluster lists it on, when it moved (HA recovery, migration)."""

    def _check(self) -> None:
        if self.failing:
            raise FencingError(self.failing)

    def ha_status(self) -> HaStatus | None:
        self._check()
        return self.ha

    def power_states(self) -> PowerPoll:
        self._check()
        return PowerPoll(dict(self.power), frozenset(self.offline_hosts), hosts=dict(self.vm_hosts))

    def status(self, machine: Machine) -> PowerState:
        self._check()
        assert machine.vmid is not None
        if self.on_status is not None:
            self.on_status(machine.vmid)
        return self.power[machine.vmid]

    def off(self, machine: Machine) -> PowerState:
        self._check()
        assert machine.vmid is not None
        if self.power[machine.vmid] is not PowerState.OFF:
            self.stops.append(machine.vmid)
            self.power[machine.vmid] = PowerState.OFF
        return PowerState.OFF

    def on(self, machine: Machine) -> PowerState:
        self._check()
        assert machine.vmid is not None
        if self.power[machine.vmid] is not PowerState.ON:
            self.starts.append(machine.vmid)
            self.power[machine.vmid] = PowerState.ON
        return PowerState.ON

    def settled_off(self, machine: Machine) -> bool | None:
        self.settle_questions += 1
        if self.failing or not self.tasks_readable:
            return None
        assert machine.vmid is not None
        return self.power[machine.vmid] is PowerState.OFF and machine.vmid not in self.passing

    def identify(self, machine: Machine) -> MachineIdentity:
        self._check()
        assert machine.vmid is not None
        return MachineIdentity(name=machine.node, uuid=self.uuids[machine.vmid])


class Bmc:
    """A host's BMC as a fence agent sees it: one chassis, powered off and on, read back."""

    name = "bmc"

    def __init__(self, world: World, host: str) -> None:
        self.world = world
        self.host = host
        self.offs = 0
        self.off_calls = 0
        self.ons = 0
        self.records_at_on: dict[str, str | None] = {}

    def status(self, machine: Machine) -> PowerState:
        return PowerState.ON if self.world.host_on[self.host] else PowerState.OFF

    def off(self, machine: Machine) -> PowerState:
        self.off_calls += 1
        if self.world.host_on[self.host]:
            self.offs += 1
        self.world.host_power(self.host, on=False)
        return PowerState.OFF

    def on(self, machine: Machine) -> PowerState:
        if not self.world.host_on[self.host]:
            self.ons += 1
            # What each node of the host had recorded when its machines came back.
            self.records_at_on = {
                n: self.world.api.annotations(n).get(REMEDIATION_ANNOTATION)
                for n in self.world.vmids
                if self.world.host_of(n) == self.host
            }
        self.world.host_power(self.host, on=True)
        return PowerState.ON


@dataclass
class World:
    """Nodes on VMs, their kubelets and the controllers guard relies on, on one clock."""

    clock: ManualClock = field(default_factory=ManualClock)
    api: FakeApi = field(init=False)
    pve: Hypervisor = field(default_factory=Hypervisor)
    vmids: dict[str, int] = field(default_factory=dict)
    partitioned: set[str] = field(default_factory=set)
    excluded_from_inventory: set[str] = field(default_factory=set)
    hosts: dict[str, str] = field(default_factory=dict)
    """node -> its Proxmox host (default pve-01)."""
    host_on: dict[str, bool] = field(default_factory=lambda: {"pve-01": True, "pve-02": True})
    hung: set[str] = field(default_factory=set)
    bmcs: dict[str, Bmc] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.api = FakeApi(self.clock)

    def add(self, name: str, *, control_plane: bool = False, zone: str | None = "pve-01") -> None:
        vmid = 200 + len(self.vmids) + 1
        uuid = f"00000000-0000-4000-8000-{vmid:012d}"
        self.vmids[name] = vmid
        self.pve.power[vmid] = PowerState.ON
        self.pve.uuids[vmid] = uuid
        self.api.add_node(name, control_plane=control_plane, uuid=uuid, zone=zone)

    def host_of(self, name: str) -> str:
        return self.hosts.get(name, "pve-01")

    def hang(self, host: str) -> None:
        """The host stops: its Proxmox API is lost, its guests silent, its power on."""
        self.hung.add(host)
        self.pve.offline_hosts.add(host)

    def host_power(self, host: str, *, on: bool, last_status: bool = False) -> None:
        """Cut or restore a host's power. ``last_status``: its VMs keep reading their last
        status after the cut (pmxcfs keeps a lost member's state, as the lab's emulator does)."""
        self.host_on[host] = on
        if not on:
            self.hung.discard(host)
            self.pve.offline_hosts.add(host)
        else:
            self.pve.offline_hosts.discard(host)
        if not on and last_status:
            return
        for name, vmid in self.vmids.items():
            if self.host_of(name) == host:
                self.pve.power[vmid] = PowerState.ON if on else PowerState.OFF

    def config(self) -> Config:
        nodes = {
            name: NodeEntry(device="pve", host=self.host_of(name), vmid=vmid)
            for name, vmid in self.vmids.items()
            if name not in self.excluded_from_inventory
        }
        devices: dict[str, Any] = {"pve": FakeDevice("pve")}
        devices.update({f"bmc-{h}": FakeDevice(f"bmc-{h}") for h in self.bmcs})
        return Config(path=None, devices=devices, inventory=InventoryConfig(nodes=nodes))

    def inventory(self, names: list[str]) -> Inventory:
        return build_inventory(self.config(), names)

    def guard(self, identity: str = "guard-a", *, dry_run: bool = False, **settings: Any) -> Guard:
        defaults: dict[str, Any] = {
            "lease_stale_seconds": 10,
            "storm_cooldown_seconds": 20,
            "retry_backoff_seconds": 2,
            "lease_duration_seconds": 15,
        }
        guard = GuardConfig(**{**defaults, **settings})
        remediation = RemediationConfig(workload_timeout_seconds=30, recover_timeout_seconds=30)
        bmcs = {f"bmc-{h}": b for h, b in self.bmcs.items()}
        return Guard(
            self.api,  # type: ignore[arg-type]  # the in-memory API server answers as Cluster does
            self.api,
            self.inventory,
            lambda device: bmcs.get(device, self.pve),  # type: ignore[arg-type,return-value]
            PolicySettings(guard, remediation, {h: f"bmc-{h}" for h in self.bmcs}),
            identity,
            GuardMetrics(),
            clock=self.clock,
            dry_run=dry_run,
        )

    def running(self, name: str) -> bool:
        host = self.host_of(name)
        alive = name not in self.partitioned and host not in self.hung and self.host_on[host]
        return self.pve.power[self.vmids[name]] is PowerState.ON and alive

    def step(self, seconds: float = 1.0) -> None:
        """Time passes: kubelets of running VMs renew and report Ready, the node lifecycle
        controller marks silent ones Unknown, the attach/detach controller detaches volumes of
        out-of-service nodes, and a rebooted node's kubelet comes back."""
        self.clock.advance(seconds)
        now = self.clock.time()
        # A power cycle ends a partition (the lab's does too: a hung node is healed by it).
        self.partitioned = {
            n for n in self.partitioned if self.pve.power[self.vmids[n]] is PowerState.ON
        }
        for name in self.api.nodes:
            if self.running(name):
                self.api.renewed[name] = now
                self.api.set_ready(name, "True")
            elif now - self.api.renewed[name] > NODE_GRACE:
                self.api.set_ready(name, "Unknown")
        for va, attachment in list(self.api.attachments.items()):
            if OUT_OF_SERVICE in self.api.taints(attachment["node"]):
                del self.api.attachments[va]

    def run(self, guards: list[Guard], seconds: float, every: float = 1.0) -> None:
        """Each guard looks every ``every`` seconds while the world moves on."""
        elapsed = 0.0
        while elapsed < seconds:
            for guard in guards:
                guard.safe_tick()
            self.step(every)
            elapsed += every
