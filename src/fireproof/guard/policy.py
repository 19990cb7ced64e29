"""guard's whole policy as one pure function: what to do next for one node, given one look.

:func:`decide` holds every gate and every choice (including what follows a release); it reads
nothing and writes nothing, so it is tested as a table, and the dry run calls it exactly as the
real loop does (:func:`plan_for`). The actuator carries out an :class:`Act`; the transition
table (:mod:`fireproof.guard.transitions`) checks the phase it leads to.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from fireproof.config import GuardConfig, RemediationConfig
from fireproof.fencing import PowerState
from fireproof.guard.detect import (
    HA_FENCED,
    HA_NONE,
    HA_PENDING,
    NodeView,
    back_since,
    booting,
    healthy,
    quorum_allows_fencing,
)
from fireproof.guard.observe import Observation
from fireproof.guard.record import Phase, Reason, Remediation


class Gate(enum.StrEnum):
    """Why a remediation is held back (the ``gate`` label of fireproof_guard_refusals_total)."""

    EXCLUDED = "excluded"
    PAUSED = "paused"
    INVENTORY = "inventory"
    NO_DEVICE = "no-device"
    STORM = "storm"
    API_RECOVERY = "api-recovery"
    QUORUM = "quorum"
    HOST_UNFENCEABLE = "host-unfenceable"
    """The node's host is lost and nothing can prove it off: no host device in ``hosts:``."""


class Action(enum.StrEnum):
    DETECT = "detect"
    """Record the failure on the Node (the first write, after every gate passed)."""
    CORDON = "cordon"
    FENCE = "fence"
    """Prove the machine is the node's, power it off, verify it off."""
    FENCE_HOST = "fence-host"
    """The node's host is lost: power the whole host off through its own device (BMC) and
    read it back off. Every VM of a host verified off is off."""
    ACCEPT_HA_FENCE = "accept-ha-fence"
    """Proxmox HA acknowledged the lost host's fence (it got the host's agent lock, so the
    host's watchdog has reset it): every VM that ran there is dead."""
    RELEASE = "release"
    POWER_ON = "power-on"
    LEAVE_OFF = "leave-off"
    REFENCE = "refence"
    """Not Ready after a reboot: power it off again before deciding anything."""
    UNCORDON = "uncordon"
    """Back by itself before the fence: undo guard's cordon, drop the record."""
    RESTORE = "restore"
    """Back after the remediation: untaint, uncordon, drop the record."""


@dataclass(frozen=True, slots=True)
class Wait:
    why: str


@dataclass(frozen=True, slots=True)
class Forget:
    """Nothing to do and nothing recorded: whatever was said of the node may be said again."""


@dataclass(frozen=True, slots=True)
class Refuse:
    gate: Gate
    message: str


@dataclass(frozen=True, slots=True)
class Act:
    action: Action
    next_phase: Phase | None
    """The phase recorded once the action succeeded (None: the record is removed)."""
    reason: Reason | None = None
    """For DETECT: why the node looks dead."""


Decision = Wait | Forget | Refuse | Act


@dataclass(frozen=True, slots=True)
class PolicySettings:
    guard: GuardConfig
    remediation: RemediationConfig
    hosts: Mapping[str, str] = field(default_factory=dict)
    """Proxmox host -> the device that fences the host itself (``hosts:``)."""


HYPERVISOR_WORD = frozenset({Reason.VM_OFF, Reason.HOST_DOWN})
"""Reasons the hypervisor gives, not a Lease: they hold even right after an API outage."""

ACTING_PHASES = frozenset({Phase.DETECTED, Phase.CORDONED, Phase.FENCED, Phase.RELEASED})
"""Phases the storm gate stops: nothing destructive is started while it holds."""


def decide(
    observation: Observation,
    node: NodeView,
    record: Remediation | None,
    settings: PolicySettings,
    now: float,
) -> Decision:
    """The next step for ``node``. ``now`` is wall-clock seconds (records are stamped in it)."""
    reason = observation.suspects.get(node.name)
    if node.excluded or node.paused:
        if reason is None:
            return Forget() if record is None else Wait("excluded or paused")
        why = Gate.EXCLUDED if node.excluded else Gate.PAUSED
        return Refuse(why, f"{node.name} looks dead ({reason}) but is {why}")
    if record is None:
        return _new(observation, node, reason, settings.guard) if reason else Forget()
    return _next(observation, node, record, settings, now)


def _new(observation: Observation, node: NodeView, reason: Reason, g: GuardConfig) -> Decision:
    """Gates before the first write: device, storm, post-outage hold, confirm, quorum."""
    if (held := _machine_gate(node)) is not None:
        return held
    if observation.storm:
        return Refuse(Gate.STORM, _storm_message(observation))
    if reason is Reason.HOST_DOWN and node.host_machine is None and node.host_ha == HA_NONE:
        return _unfenceable(node)
    if reason not in HYPERVISOR_WORD and observation.at < observation.hold_until:
        return Refuse(
            Gate.API_RECOVERY,
            f"{node.name} looks dead ({reason}) but guard just started or the API server "
            "answers again: no remediation from a stale Lease until the kubelets renewed theirs",
        )
    since = observation.suspected_since.get(node.name, observation.at)
    # A VM that reads off while nothing starts, reboots or moves it is off: act at once. Only a
    # reading the device cannot settle is confirmed over a few polls. (A stale Lease or a long
    # NotReady is a confirmation of tens of seconds already.)
    confirming = reason is Reason.VM_OFF and not node.settled_off
    if confirming and observation.at - since < g.confirm_seconds:
        return Wait("the VM read off is not confirmed yet")
    views = list(observation.nodes.values())
    if not quorum_allows_fencing(views, node) and node.power is not PowerState.OFF:
        return Refuse(
            Gate.QUORUM,
            f"{node.name} looks dead ({reason}) but fencing it would leave the control plane "
            "without a Ready quorum: left alone",
        )
    return Act(Action.DETECT, Phase.DETECTED, reason)


def _next(
    observation: Observation,
    node: NodeView,
    record: Remediation,
    settings: PolicySettings,
    now: float,
) -> Decision:
    phase = record.phase
    g = settings.guard
    if phase in (Phase.DETECTED, Phase.CORDONED) and healthy(node, g, observation.utc):
        return Act(Action.UNCORDON, None)
    if phase in (Phase.REBOOTING, Phase.LEFT_OFF, Phase.GAVE_UP) and back_since(
        node, record.updated
    ):
        return Act(Action.RESTORE, None)
    if phase in (Phase.LEFT_OFF, Phase.GAVE_UP):
        return Wait(f"{phase}: waits for a person")
    if now < record.not_before:
        return Wait("backing off after a failure")
    if observation.storm and phase in ACTING_PHASES:
        return Refuse(Gate.STORM, _storm_message(observation))
    if (held := _machine_gate(node)) is not None:
        return held
    if phase is Phase.DETECTED:
        return Act(Action.CORDON, Phase.CORDONED)
    if phase is Phase.CORDONED:
        if booting(node, g, observation.utc):
            # Its VM started again (Proxmox HA restarted it on another host, or a person did):
            # a boot, not a death. Fencing it now would undo the restart.
            return Wait("its VM is booting: waits for its kubelet")
        if node.host_down and whole_host_dead(observation, node):
            # The VM's own device cannot answer for a lost host: only the host's can, or
            # Proxmox HA once it acknowledged the host's fence, whichever proves it first.
            if node.host_ha == HA_FENCED:
                return Act(Action.ACCEPT_HA_FENCE, Phase.FENCED)
            if node.host_machine is not None:
                return Act(Action.FENCE_HOST, Phase.FENCED)
            if node.host_ha == HA_PENDING:
                host = node.machine.host if node.machine else "?"
                return Wait(
                    f"Proxmox HA is fencing host {host}: its acknowledgement (the host's agent "
                    "lock, once its watchdog reset it) proves every VM there dead"
                )
            return _unfenceable(node)
        # A host its cluster lost while some of its nodes still renew their Leases is not
        # dead (a corosync split): powering it off would kill them. The VM's own fence is
        # tried, and fails closed while the host's API does not answer.
        return Act(Action.FENCE, Phase.FENCED)
    if phase is Phase.FENCED:
        return Act(Action.RELEASE, Phase.RELEASED)
    if phase is Phase.RELEASED:
        return _after_release(observation, node, record, settings, now)
    # REBOOTING: not back yet.
    if now - record.updated <= settings.remediation.recover_timeout_seconds:
        return Wait("rebooting: waits for the node to come back Ready")
    gave_up = record.attempts >= g.max_attempts
    return Act(Action.REFENCE, Phase.GAVE_UP if gave_up else Phase.RELEASED)


def restarts(record: Remediation, g: GuardConfig) -> bool:
    """What follows a release: start the machine again, or leave it off and tainted. guard
    starts what it powered off itself (strategy reboot), and what was already off only with
    restart_stopped."""
    if record.ha_fenced:
        return False  # HA owns that host: its return (onboot) or HA brings the VMs back
    return (record.guard_powered_off and g.strategy == "reboot") or g.restart_stopped


def _after_release(
    observation: Observation,
    node: NodeView,
    record: Remediation,
    settings: PolicySettings,
    now: float,
) -> Decision:
    if not restarts(record, settings.guard):
        return Act(Action.LEAVE_OFF, Phase.LEFT_OFF)
    if record.host_fenced and (pending := _unreleased_on(observation, record.host_fenced, node)):
        # Powering the host on boots every VM on it: a node still before its release would
        # find its machine started again and fence the host once more.
        return Wait(f"host {record.host_fenced}: {', '.join(pending)} not released yet")
    waited = now - record.updated
    if node.attached_volumes and waited < settings.remediation.workload_timeout_seconds:
        # The attach/detach controller detaches on the out-of-service taint: wait for it, or a
        # rebooted kubelet would find its volumes still attached.
        return Wait("released: waits for its volumes to detach")
    return Act(Action.POWER_ON, Phase.REBOOTING)


def _machine_gate(node: NodeView) -> Refuse | None:
    if node.inventory_problem is not None:
        return Refuse(Gate.INVENTORY, node.inventory_problem)
    if node.machine is None:
        return Refuse(
            Gate.NO_DEVICE,
            f"{node.name} looks dead but has no fencing device in the inventory: left alone",
        )
    return None


def _unreleased_on(observation: Observation, host: str, node: NodeView) -> list[str]:
    """The other nodes of ``host`` not released yet: a record before the release, or
    dead-looking with no record yet (this very look may be the one that detects them)."""
    before = (Phase.DETECTED, Phase.CORDONED, Phase.FENCED)
    return sorted(
        v.name
        for v in observation.nodes.values()
        if v.name != node.name
        and v.machine is not None
        and v.machine.host == host
        and (
            (v.record is not None and v.record.phase in before)
            or (v.record is None and v.name in observation.suspects)
        )
    )


def whole_host_dead(observation: Observation, node: NodeView) -> bool:
    """Every node on ``node``'s host looks dead: powering the host off kills nothing alive."""
    host = node.machine.host if node.machine else None
    if host is None:
        return False
    return all(
        v.name in observation.suspects
        for v in observation.nodes.values()
        if v.machine is not None and v.machine.host == host
    )


def _unfenceable(node: NodeView) -> Refuse:
    host = node.machine.host if node.machine else None
    return Refuse(
        Gate.HOST_UNFENCEABLE,
        f"{node.name}'s Proxmox host {host} is lost (offline, its API unreachable), and "
        "unreachable is not off: nothing can prove its VMs dead without the host's own device "
        "or Proxmox HA's fence (none here: no HA service on the host, or no quorum). "
        f"Give {host} a BMC under hosts: in fireproof.yaml; nothing is released until then",
    )


def _storm_message(observation: Observation) -> str:
    return (
        f"storm: {len(observation.suspects)} nodes in {observation.domains} failure domain(s) "
        f"look dead, more than max_unhealthy ({observation.storm_limit}); nothing destructive "
        "until it passes"
    )


def plan_for(
    observation: Observation, node: NodeView, settings: PolicySettings, now: float
) -> tuple[list[Action], Decision]:
    """What guard would do for ``node``, step by step, if every step succeeded: the dry run.

    Each step is :func:`decide` on the look as that step would leave it. Returns the actions
    and the decision that stops the plan (a Wait, a Refuse, or a final Act)."""
    actions: list[Action] = []
    record = node.record
    view = node
    for _ in range(len(Action) + 1):
        decision = decide(observation, view, record, settings, now)
        if not isinstance(decision, Act):
            return actions, decision
        actions.append(decision.action)
        if decision.next_phase is None or decision.action in (Action.LEAVE_OFF, Action.POWER_ON):
            return actions, decision
        record, view = _as_if_done(decision, record, view, now)
    return actions, Wait("plan too long")  # pragma: no cover - the phases end before


def _as_if_done(
    act: Act, record: Remediation | None, view: NodeView, now: float
) -> tuple[Remediation, NodeView]:
    """The record and the look after ``act`` succeeded, as the actuator would leave them."""
    if record is None:
        assert act.reason is not None  # noqa: S101 - DETECT carries its reason
        return Remediation(Phase.DETECTED, act.reason, 0, "dry-run", now, now), view
    assert act.next_phase is not None  # noqa: S101 - only final actions remove the record
    if act.action is Action.FENCE:
        # The real path reads the power right before its stop: on means guard powered it off.
        powered_off = record.guard_powered_off or view.power is PowerState.ON
        moved = record.advance(
            Phase.FENCED, epoch=0, leader="dry-run", now=now, guard_powered_off=powered_off
        )
        return moved, replace(view, power=PowerState.OFF)
    if act.action is Action.FENCE_HOST:
        # The dry run cannot read the BMC: a lost host is taken as already off (a power cut).
        host = view.host_machine.host if view.host_machine else None
        moved = record.advance(
            Phase.FENCED, epoch=0, leader="dry-run", now=now, host_fenced=host or ""
        )
        return moved, replace(view, power=PowerState.OFF)
    if act.action is Action.ACCEPT_HA_FENCE:
        host = view.machine.host if view.machine else None
        moved = record.advance(
            Phase.FENCED, epoch=0, leader="dry-run", now=now, host_fenced=host or "", ha_fenced=True
        )
        return moved, replace(view, power=PowerState.OFF)
    if act.action is Action.RELEASE:
        moved = record.advance(Phase.RELEASED, epoch=0, leader="dry-run", now=now)
        return moved, replace(view, attached_volumes=0)
    return record.advance(act.next_phase, epoch=0, leader="dry-run", now=now), view
