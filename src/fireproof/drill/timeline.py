"""The drill's timeline: every phase the incident report names, on one clock (T+0 = the fault).

The :class:`Observer` is fed the watch's changes (plain dicts) and keeps the state it needs to
see transitions: a node turning NotReady, a pod getting a deletionTimestamp, a replacement pod
turning Ready, a VolumeAttachment moving. Nothing here polls or guesses; the one derived entry
is "Lease stale", which is a renewal that did not come (its time is last renewal + duration).
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from fireproof.doctor.checks_api import API_ERROR
from fireproof.drill.spec import WorkloadRef
from fireproof.kube.watch import Change
from fireproof.report.phases import (
    API_CLIENTS_READY,
    API_CRASHLOOP,
    ATTACHED,
    DETACHED,
    ENDPOINTS_REPAIRED,
    ENDPOINTS_STALE,
    FAILED_ATTACH,
    FAULT,
    FENCED,
    HA_RECOVERED,
    HOST_FENCED,
    LEASE_STALE,
    NODE_READY,
    NOT_READY,
    RELEASED,
    REPLACEMENT,
    REPLICA_CREATED,
    REPLICA_RUNNING,
    RUNNING,
    TERMINATING,
    UNREACHABLE,
    VM_OFF,
    WORKLOAD_READY,
)

UNREACHABLE_TAINT = "node.kubernetes.io/unreachable"
FENCE_REASONS = {
    "FireproofFenced": FENCED,
    "FireproofHostFenced": HOST_FENCED,
    "FireproofReleased": RELEASED,
}


@dataclass(frozen=True, slots=True)
class Entry:
    t: float
    """Seconds since the fault."""
    phase: str
    object: str
    """``node/NAME``, ``pod/NS/NAME``, ``volumeattachment/NAME`` or ``event/NS/NAME``."""
    evidence: str
    lag: float | None = None
    """Seconds between the object's own timestamp and its observation, where it has one."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _time(text: Any) -> float | None:
    if not text:
        return None
    if isinstance(text, dt.datetime):
        return text.timestamp()
    try:
        return dt.datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _clock(epoch: float) -> str:
    return f"{dt.datetime.fromtimestamp(epoch, dt.UTC):%H:%M:%S}Z"


def _ready(conditions: list[dict[str, Any]] | None) -> dict[str, Any] | None:
    return next((c for c in conditions or [] if c.get("type") == "Ready"), None)


@dataclass
class _PodState:
    namespace: str
    name: str
    node: str | None
    labels: dict[str, str]
    running: bool
    deleting: bool
    claims: tuple[str, ...]
    ready_at: float | None = None
    """When its Ready condition last changed (the kubelet's stamp)."""


@dataclass
class Observer:
    """Turns watch changes into timeline entries for the drill's nodes and workloads."""

    nodes: set[str]
    workloads: dict[str, tuple[WorkloadRef, dict[str, str]]]
    """label -> (workload, its pod selector)."""
    on_entry: Callable[[Entry], None] | None = None
    t0: float | None = None
    entries: list[Entry] = field(default_factory=list)
    double_attach_max: int = 0
    """Most volumes seen attached to two nodes at one moment (the split-brain evidence)."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _seen: set[tuple[str, str]] = field(default_factory=set, repr=False)
    _node_ready: dict[str, str] = field(default_factory=dict, repr=False)
    _pods: dict[str, _PodState] = field(default_factory=dict, repr=False)
    _before: set[str] = field(default_factory=set, repr=False)
    _vas: dict[str, tuple[str, str, bool]] = field(default_factory=dict, repr=False)
    _renewed: dict[str, tuple[float, float]] = field(default_factory=dict, repr=False)
    _events: set[str] = field(default_factory=set, repr=False)
    _off_at: dict[str, float] = field(default_factory=dict, repr=False)
    _running: dict[str, Entry] = field(default_factory=dict, repr=False)
    """The first replacement of each workload seen Running and Ready elsewhere."""
    _moving: set[str] = field(default_factory=set, repr=False)
    """Volumes seen attached to a target node: the ones whose move the timeline follows."""
    _unavailable: dict[str, list[tuple[float, float | None]]] = field(
        default_factory=dict, repr=False
    )
    scaling: bool = False
    """A scale drill: new pods are added replicas, not replacements of lost ones."""
    want: dict[str, int] = field(default_factory=dict)
    """label -> the Ready replicas that make the workload whole (``ready_within``)."""
    _short: set[str] = field(default_factory=set, repr=False)
    """Workloads seen short of Ready replicas since the fault (whole again: an entry)."""
    retired: set[str] = field(default_factory=set)
    """change-ip: the addresses the nodes no longer have (stale while the Endpoints name one)."""
    _endpoints: set[str] = field(default_factory=set, repr=False)
    _crashed: set[str] = field(default_factory=set, repr=False)
    """Pods (uid) seen crash-looping on the API path since the fault."""
    _moved: set[str] = field(default_factory=set, repr=False)
    """Target nodes whose VM now runs on another host (an HA recovery): no longer lost."""

    # -- arming and reading --------------------------------------------------------------------

    def arm(self, t0: float) -> None:
        """The fault happens now: pods seen so far are the originals; entries start."""
        with self._lock:
            self.t0 = t0
            self._before = set(self._pods)
            for label in self.workloads:
                self._unavailable[label] = []
                self._update_availability(label, t0)
            self._add(t0, FAULT, "drill", "fault injected")
            for label in self.want:
                self._check_whole(label, t0)

    def note(self, at: float, phase: str, obj: str, evidence: str) -> None:
        """An entry the drill itself witnessed (the device read the VM off, a partition)."""
        with self._lock:
            self._add(at, phase, obj, evidence)
            if phase == VM_OFF:
                self._off_at[obj.removeprefix("node/")] = at

    def moved(self, node: str, at: float, evidence: str) -> None:
        """The node's VM runs on another host now: a pod or a volume there is elsewhere,
        including one that was already running there when the drill learnt of the move."""
        with self._lock:
            self._moved.add(node)
            self._add(at, HA_RECOVERED, f"node/{node}", evidence)
            for uid, state in list(self._pods.items()):
                label = self._workload_of(state)
                if label is not None and state.node == node:
                    self._note_running(uid, state, label, at)
            for name, (pv, on, attached) in list(self._vas.items()):
                if on == node and attached and pv in self._moving:
                    self._add(at, ATTACHED, f"volumeattachment/{name}", f"{pv} attached to {on}")
            for label in self.workloads:
                self._update_availability(label, at)

    def _elsewhere(self, node: str | None) -> bool:
        return node not in self.nodes or node in self._moved

    def first(self, phase: str, obj: str | None = None) -> Entry | None:
        with self._lock:
            return next(
                (e for e in self.entries if e.phase == phase and obj in (None, e.object)), None
            )

    def whole(self, label: str) -> Entry | None:
        """When the workload first had every wanted replica Ready after the fault."""
        return self.first(WORKLOAD_READY, f"workload/{label}")

    def short_since_fault(self, label: str) -> bool:
        """Whether the workload lacked a Ready replica at some point since the fault."""
        with self._lock:
            return label in self._short

    def _check_whole(self, label: str, at: float) -> None:
        """Whole again after being short since the fault: the ``workload-ready`` entry."""
        wanted = self.want.get(label)
        if wanted is None or self.t0 is None:
            return
        ready = sum(
            1
            for p in self._pods.values()
            if p.running and not p.deleting and self._workload_of(p) == label
        )
        if ready < wanted:
            self._short.add(label)
        elif label in self._short:
            self._add(at, WORKLOAD_READY, f"workload/{label}", f"{ready}/{wanted} replicas Ready")

    def node_ready(self, node: str) -> str:
        with self._lock:
            return self._node_ready.get(node, "Unknown")

    def unavailable_seconds(self, label: str, now: float) -> float:
        """The longest stretch the workload had no Ready pod on a healthy node."""
        with self._lock:
            spans = self._unavailable.get(label, [])
            return max(((end or now) - start for start, end in spans), default=0.0)

    def affected(self, label: str) -> bool:
        """Whether the workload lost every available pod at some point (its pods were on the
        drill's nodes); one that never did needed no recovery."""
        with self._lock:
            return bool(self._unavailable.get(label))

    def running_elsewhere(self, label: str) -> Entry | None:
        with self._lock:
            return self._running.get(label)

    def tick(self, now: float) -> None:
        """Derive the entries that are an absence: a node Lease not renewed in time."""
        with self._lock:
            for node, (renewed, duration) in self._renewed.items():
                if node in self.nodes and self.t0 is not None and renewed + duration <= now:
                    stale_at = renewed + duration
                    if stale_at >= self.t0:
                        self._add(
                            stale_at,
                            LEASE_STALE,
                            f"node/{node}",
                            f"Lease last renewed {_clock(renewed)}, "
                            f"leaseDurationSeconds {duration:g}",
                        )

    # -- feeding -------------------------------------------------------------------------------

    def feed(self, change: Change) -> None:
        handler = {
            "Node": self._node,
            "Pod": self._pod,
            "VolumeAttachment": self._va,
            "Event": self._event,
            "Lease": self._lease,
            "Endpoints": self._endpoints_changed,
        }.get(change.kind)
        if handler is not None:
            with self._lock:
                handler(change)

    def _add(
        self, at: float, phase: str, obj: str, evidence: str, *, stamp: float | None = None
    ) -> Entry | None:
        if self.t0 is None or (phase, obj) in self._seen:
            return None
        self._seen.add((phase, obj))
        lag = round(at - stamp, 3) if stamp is not None else None
        entry = Entry(round(at - self.t0, 2), phase, obj, evidence, lag)
        self.entries.append(entry)
        self.entries.sort(key=lambda e: e.t)
        if self.on_entry is not None:
            self.on_entry(entry)
        return entry

    def _node(self, change: Change) -> None:
        meta, obj = change.obj.get("metadata", {}), change.obj
        name = meta.get("name", "")
        if name not in self.nodes:
            return
        cond = _ready(obj.get("status", {}).get("conditions"))
        status = str(cond.get("status")) if cond else "Unknown"
        previous = self._node_ready.get(name)
        self._node_ready[name] = status
        stamp = _time(cond.get("lastTransitionTime")) if cond else None
        if status != "True" and previous in (None, "True"):
            why = f"Ready={status}" + (
                f" ({cond.get('reason')})" if cond and cond.get("reason") else ""
            )
            self._add(change.at, NOT_READY, f"node/{name}", why, stamp=stamp)
        elif status == "True" and self._back(name, cond):
            self._add(change.at, NODE_READY, f"node/{name}", "Ready=True", stamp=stamp)
        for taint in obj.get("spec", {}).get("taints") or []:
            if taint.get("key") == UNREACHABLE_TAINT:
                self._add(
                    change.at,
                    UNREACHABLE,
                    f"node/{name}",
                    f"taint {UNREACHABLE_TAINT}:{taint.get('effect')}",
                    stamp=_time(taint.get("timeAdded")),
                )

    def _back(self, name: str, cond: dict[str, Any] | None) -> bool:
        """Ready again: after it was seen NotReady, or (a reboot quicker than the NotReady
        grace) a kubelet heartbeat newer than the moment the VM read off."""
        if (NOT_READY, f"node/{name}") in self._seen:
            return True
        off_at = self._off_at.get(name)
        beat = _time(cond.get("lastHeartbeatTime")) if cond else None
        return off_at is not None and beat is not None and beat > off_at

    def _workload_of(self, pod: _PodState) -> str | None:
        for label, (ref, selector) in self.workloads.items():
            if (
                ref.namespace == pod.namespace
                and selector
                and all(pod.labels.get(k) == v for k, v in selector.items())
            ):
                return label
        return None

    def _pod(self, change: Change) -> None:
        meta, obj = change.obj.get("metadata", {}), change.obj
        uid = meta.get("uid", "")
        spec, status = obj.get("spec", {}), obj.get("status", {})
        cond = _ready(status.get("conditions"))
        state = _PodState(
            namespace=meta.get("namespace", ""),
            name=meta.get("name", ""),
            node=spec.get("nodeName"),
            labels=meta.get("labels") or {},
            running=status.get("phase") == "Running"
            and bool(cond and cond.get("status") == "True"),
            deleting=bool(meta.get("deletionTimestamp")),
            claims=tuple(
                v["persistentVolumeClaim"]["claimName"]
                for v in spec.get("volumes") or []
                if v.get("persistentVolumeClaim")
            ),
            ready_at=_time(cond.get("lastTransitionTime") if cond else None),
        )
        if change.type == "DELETED":
            self._pods.pop(uid, None)
            self._crashed.discard(uid)
        else:
            self._pods[uid] = state
            self._api_crash(change, uid)
        self._check_clients(change.at)
        label = self._workload_of(state)
        if label is None or self.t0 is None:
            return
        ref = f"pod/{state.namespace}/{state.name}"
        if uid in self._before and state.node in self.nodes and state.deleting:
            self._add(
                change.at,
                TERMINATING,
                ref,
                f"deletionTimestamp set on {state.node}",
                stamp=_time(meta.get("deletionTimestamp")),
            )
        if uid not in self._before and change.type != "DELETED":
            if ("replacement", uid) not in self._seen:
                self._seen.add(("replacement", uid))
                self._add(
                    change.at,
                    REPLICA_CREATED if self.scaling else REPLACEMENT,
                    f"{ref}#{uid[:8]}",
                    f"new pod of {label}",
                    stamp=_time(meta.get("creationTimestamp")),
                )
            self._note_running(uid, state, label, change.at)
        self._update_availability(label, change.at)
        self._check_whole(label, change.at)

    def _note_running(self, uid: str, state: _PodState, label: str, at: float) -> None:
        """A new pod Running and Ready on a node that is not lost: the workload is back."""
        if uid in self._before or not state.running or state.deleting:
            return
        if not self._elsewhere(state.node):
            return
        entry = self._add(
            at,
            REPLICA_RUNNING if self.scaling else RUNNING,
            f"pod/{state.namespace}/{state.name}#{uid[:8]}",
            f"{label} Running and Ready on {state.node}",
            stamp=state.ready_at,
        )
        if entry is not None and not self.scaling:
            self._running.setdefault(label, entry)

    def _update_availability(self, label: str, at: float) -> None:
        available = any(
            p.running and not p.deleting and self._elsewhere(p.node)
            for p in self._pods.values()
            if self._workload_of(p) == label
        )
        spans = self._unavailable.setdefault(label, [])
        if not available and (not spans or spans[-1][1] is not None):
            spans.append((at, None))
        elif available and spans and spans[-1][1] is None:
            spans[-1] = (spans[-1][0], at)

    def _va(self, change: Change) -> None:
        meta, obj = change.obj.get("metadata", {}), change.obj
        name = meta.get("name", "")
        spec = obj.get("spec", {})
        pv = str(spec.get("source", {}).get("persistentVolumeName") or "")
        node = str(spec.get("nodeName") or "")
        attached = bool(obj.get("status", {}).get("attached"))
        gone = change.type == "DELETED"
        previous = self._vas.get(name)
        if gone:
            self._vas.pop(name, None)
        else:
            self._vas[name] = (pv, node, attached)
        ref = f"volumeattachment/{name}"
        if node in self.nodes and previous and previous[2] and (gone or not attached):
            self._add(change.at, DETACHED, ref, f"{pv} detached from {node}")
        if node in self.nodes:
            self._moving.add(pv)
        newly = attached and not gone and (not previous or not previous[2])
        if newly and self._elsewhere(node) and pv in self._moving:
            self._add(change.at, ATTACHED, ref, f"{pv} attached to {node}")
        by_pv: dict[str, set[str]] = {}
        for v_pv, v_node, v_attached in self._vas.values():
            if v_attached:
                by_pv.setdefault(v_pv, set()).add(v_node)
        doubled = sum(1 for nodes in by_pv.values() if len(nodes) > 1)
        self.double_attach_max = max(self.double_attach_max, doubled)

    def _event(self, change: Change) -> None:
        obj = change.obj
        meta = obj.get("metadata", {})
        uid = meta.get("uid", "")
        if self.t0 is None or change.type == "DELETED":
            return
        stamp = _time(obj.get("lastTimestamp") or obj.get("eventTime") or obj.get("firstTimestamp"))
        # Events carry whole seconds: anything stamped before the fault's second is history.
        if stamp is None or stamp < int(self.t0) or uid in self._events:
            return
        self._events.add(uid)
        involved = obj.get("involvedObject", {})
        reason = obj.get("reason", "")
        message = str(obj.get("message", ""))
        if reason == "FailedAttachVolume" and involved.get("kind") == "Pod":
            pod = f"{involved.get('namespace')}/{involved.get('name')}"
            self._add(change.at, FAILED_ATTACH, f"pod/{pod}", message[:300], stamp=stamp)
        elif reason in FENCE_REASONS and involved.get("name") in self.nodes:
            self._add(
                change.at,
                FENCE_REASONS[reason],
                f"node/{involved['name']}",
                message[:300],
                stamp=stamp,
            )

    def check_stale(self, at: float) -> None:
        """Right after the address changed: the Endpoints still name the retired address."""
        with self._lock:
            if self.retired & self._endpoints:
                self._add(
                    at,
                    ENDPOINTS_STALE,
                    "endpoints/default/kubernetes",
                    f"still names {', '.join(sorted(self.retired & self._endpoints))}",
                )

    def _endpoints_changed(self, change: Change) -> None:
        if change.obj.get("metadata", {}).get("name") != "kubernetes":
            return
        subsets = change.obj.get("subsets") or []
        self._endpoints = {a.get("ip", "") for s in subsets for a in s.get("addresses") or []}
        stale = (ENDPOINTS_STALE, "endpoints/default/kubernetes") in self._seen
        if stale and not self.retired & self._endpoints:
            self._add(
                change.at,
                ENDPOINTS_REPAIRED,
                "endpoints/default/kubernetes",
                f"now {', '.join(sorted(self._endpoints)) or '(empty)'}",
            )
            self._check_clients(change.at)

    def _api_crash(self, change: Change, uid: str) -> None:
        """A container crash-looping with an API connection error as its last words."""
        if self.t0 is None or not self.retired:
            return
        for status in change.obj.get("status", {}).get("containerStatuses") or []:
            waiting = (status.get("state") or {}).get("waiting") or {}
            last = ((status.get("lastState") or {}).get("terminated") or {}).get("message") or ""
            if waiting.get("reason") == "CrashLoopBackOff" and API_ERROR.search(last):
                self._crashed.add(uid)
                meta = change.obj.get("metadata", {})
                self._add(
                    change.at,
                    API_CRASHLOOP,
                    f"pod/{meta.get('namespace')}/{meta.get('name')}",
                    f"{status.get('name')}: {last.strip()[:200]}",
                )
                return

    def _check_clients(self, at: float) -> None:
        """Every pod that crash-looped is Ready again, once the Endpoints were repaired."""
        repaired = (ENDPOINTS_REPAIRED, "endpoints/default/kubernetes") in self._seen
        if not repaired or not self._crashed:
            return
        if all(self._pods[u].running for u in self._crashed if u in self._pods):
            self._add(
                at,
                API_CLIENTS_READY,
                "drill",
                f"{len(self._crashed)} API client pod(s) Ready again",
            )

    def _lease(self, change: Change) -> None:
        meta, spec = change.obj.get("metadata", {}), change.obj.get("spec", {})
        node = meta.get("name", "")
        renewed = _time(spec.get("renewTime"))
        if node in self.nodes and renewed is not None:
            self._renewed[node] = (renewed, float(spec.get("leaseDurationSeconds") or 40))
