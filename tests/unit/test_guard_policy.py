"""`decide` as a table: each phase and each gate, one look each; and the transition table."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Any

import pytest

from fireproof.config import GuardConfig, RemediationConfig
from fireproof.fencing import Machine, PowerState
from fireproof.guard import (
    ALLOWED,
    Act,
    Action,
    Forget,
    Gate,
    IllegalTransition,
    NodeView,
    Observation,
    Phase,
    PolicySettings,
    Reason,
    Refuse,
    Remediation,
    Wait,
    decide,
)

from guardsim import node_view

WALL = 1_800_000_000.0
UTC = dt.datetime.fromtimestamp(WALL, dt.UTC)
SETTINGS = PolicySettings(
    GuardConfig(confirm_seconds=2, max_attempts=3),
    RemediationConfig(workload_timeout_seconds=30, recover_timeout_seconds=60),
)
MACHINE = Machine("w1", "pve", host="pve-01", vmid=201)
BMC = Machine("w1", "bmc-pve-01", host="pve-01")


def _view(name: str = "w1", **changes: Any) -> NodeView:
    return node_view(UTC, name, **{"machine": MACHINE, **changes})


def _look(
    node: NodeView,
    reason: Reason | None,
    *,
    since: float = 100.0,
    storm: bool = False,
    hold_until: float = 0.0,
    others: tuple[NodeView, ...] = (),
    also_suspect: tuple[str, ...] = (),
) -> Observation:
    suspects = {node.name: reason} if reason else {}
    suspects.update(dict.fromkeys(also_suspect, Reason.SILENT))
    return Observation(
        at=110.0,
        wall=WALL,
        nodes={v.name: v for v in (node, *others)},
        suspects=suspects,
        suspected_since={node.name: since} if reason else {},
        storm=storm,
        hold_until=hold_until,
        storm_limit=2,
    )


def _record(phase: Phase, **changes: Any) -> Remediation:
    return replace(Remediation(phase, Reason.VM_OFF, 1, "g", WALL - 20, WALL - 10), **changes)


DEAD = {"power": PowerState.OFF, "ready": "Unknown"}
SILENT = {"lease_renewed": UTC - dt.timedelta(seconds=90), "ready": "Unknown"}
CASES: list[tuple[str, NodeView, Reason | None, Remediation | None, dict[str, Any], object]] = [
    ("healthy", _view(), None, None, {}, Forget()),
    ("vm off, confirmed", _view(**DEAD), Reason.VM_OFF, None, {}, Act(Action.DETECT, Phase.DETECTED, Reason.VM_OFF)),
    ("vm off, not confirmed", _view(**DEAD), Reason.VM_OFF, None, {"since": 109.0}, Wait),
    ("excluded", _view(excluded=True, **DEAD), Reason.VM_OFF, None, {}, Gate.EXCLUDED),
    ("paused", _view(paused=True, **DEAD), Reason.VM_OFF, None, {}, Gate.PAUSED),
    ("no device", _view(machine=None, **DEAD), Reason.VM_OFF, None, {}, Gate.NO_DEVICE),
    ("inventory", _view(machine=None, inventory_problem="ambiguous", **DEAD), Reason.VM_OFF, None, {}, Gate.INVENTORY),
    ("storm", _view(**DEAD), Reason.VM_OFF, None, {"storm": True}, Gate.STORM),
    ("hold: stale lease", _view(**SILENT), Reason.SILENT, None, {"hold_until": 200.0}, Gate.API_RECOVERY),
    ("hold: vm off passes", _view(**DEAD), Reason.VM_OFF, None, {"hold_until": 200.0}, Act(Action.DETECT, Phase.DETECTED, Reason.VM_OFF)),
    ("detected", _view(**DEAD), Reason.VM_OFF, _record(Phase.DETECTED), {}, Act(Action.CORDON, Phase.CORDONED)),
    ("detected, back", _view(), None, _record(Phase.DETECTED), {}, Act(Action.UNCORDON, None)),
    ("cordoned", _view(**DEAD), Reason.VM_OFF, _record(Phase.CORDONED), {}, Act(Action.FENCE, Phase.FENCED)),
    ("cordoned, storm", _view(**DEAD), Reason.VM_OFF, _record(Phase.CORDONED), {"storm": True}, Gate.STORM),
    ("cordoned, backing off", _view(**DEAD), Reason.VM_OFF, _record(Phase.CORDONED, not_before=WALL + 5), {}, Wait),
    ("fenced", _view(**DEAD), Reason.VM_OFF, _record(Phase.FENCED), {}, Act(Action.RELEASE, Phase.RELEASED)),
    ("released, was off", _view(**DEAD), Reason.VM_OFF, _record(Phase.RELEASED), {}, Act(Action.LEAVE_OFF, Phase.LEFT_OFF)),
    ("released, guard stopped it", _view(**DEAD), Reason.VM_OFF, _record(Phase.RELEASED, guard_powered_off=True), {}, Act(Action.POWER_ON, Phase.REBOOTING)),
    ("released, volumes attached", _view(attached_volumes=1, **DEAD), Reason.VM_OFF, _record(Phase.RELEASED, guard_powered_off=True), {}, Wait),
    ("rebooting, not yet", _view(**DEAD), Reason.VM_OFF, _record(Phase.REBOOTING), {}, Wait),
    ("rebooting, timed out", _view(**DEAD), Reason.VM_OFF, _record(Phase.REBOOTING, updated=WALL - 61), {}, Act(Action.REFENCE, Phase.RELEASED)),
    ("rebooting, last try", _view(**DEAD), Reason.VM_OFF, _record(Phase.REBOOTING, updated=WALL - 61, attempts=3), {}, Act(Action.REFENCE, Phase.GAVE_UP)),
    ("rebooting, back", _view(), None, _record(Phase.REBOOTING), {}, Act(Action.RESTORE, None)),
    ("left off", _view(**DEAD), Reason.VM_OFF, _record(Phase.LEFT_OFF), {}, Wait),
    ("gave up, back", _view(), None, _record(Phase.GAVE_UP), {}, Act(Action.RESTORE, None)),
    ("host down", _view(host_down=True, host_machine=BMC, **SILENT), Reason.HOST_DOWN, None, {}, Act(Action.DETECT, Phase.DETECTED, Reason.HOST_DOWN)),
    ("host down, no host device", _view(host_down=True, **SILENT), Reason.HOST_DOWN, None, {}, Gate.HOST_UNFENCEABLE),
    ("host down, hold passes", _view(host_down=True, host_machine=BMC, **SILENT), Reason.HOST_DOWN, None, {"hold_until": 200.0}, Act(Action.DETECT, Phase.DETECTED, Reason.HOST_DOWN)),
    ("host down, cordoned", _view(host_down=True, host_machine=BMC, **SILENT), Reason.HOST_DOWN, _record(Phase.CORDONED), {}, Act(Action.FENCE_HOST, Phase.FENCED)),
    ("host down, cordoned, no host device", _view(host_down=True, **SILENT), Reason.HOST_DOWN, _record(Phase.CORDONED), {}, Gate.HOST_UNFENCEABLE),
    ("host down, a node on it alive", _view(host_down=True, host_machine=BMC, **SILENT), Reason.HOST_DOWN, _record(Phase.CORDONED), {"others": (_view("w2", machine=replace(MACHINE, node="w2", vmid=202)),)}, Act(Action.FENCE, Phase.FENCED)),
    ("host fenced, hung (guard powered it off)", _view(host_machine=BMC, **SILENT), Reason.SILENT, _record(Phase.RELEASED, guard_powered_off=True, host_fenced="pve-01"), {}, Act(Action.POWER_ON, Phase.REBOOTING)),
    ("host fenced, another node of it not released", _view(host_machine=BMC, **SILENT), Reason.SILENT, _record(Phase.RELEASED, guard_powered_off=True, host_fenced="pve-01"), {"others": (_view("w2", machine=replace(MACHINE, node="w2", vmid=202), record=_record(Phase.FENCED)),)}, Wait),
    ("host fenced, another node of it dead but not detected yet", _view(host_machine=BMC, **SILENT), Reason.SILENT, _record(Phase.RELEASED, guard_powered_off=True, host_fenced="pve-01"), {"others": (_view("w2", machine=replace(MACHINE, node="w2", vmid=202), **SILENT),), "also_suspect": ("w2",)}, Wait),
    ("host down, detected, Ready and a recent Lease still", _view(host_down=True, host_machine=BMC, ready="True", lease_renewed=UTC - dt.timedelta(seconds=16)), Reason.HOST_DOWN, _record(Phase.DETECTED), {}, Act(Action.CORDON, Phase.CORDONED)),
    ("host fenced, power cut", _view(host_down=True, host_machine=BMC, **SILENT), Reason.HOST_DOWN, _record(Phase.RELEASED, host_fenced="pve-01"), {}, Act(Action.LEAVE_OFF, Phase.LEFT_OFF)),
]  # fmt: skip


@pytest.mark.parametrize(
    ("node", "reason", "record", "look", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_decide(
    node: NodeView,
    reason: Reason | None,
    record: Remediation | None,
    look: dict[str, Any],
    expected: object,
) -> None:
    decision = decide(_look(node, reason, **look), node, record, SETTINGS, WALL)
    if isinstance(expected, Gate):
        assert isinstance(decision, Refuse)
        assert decision.gate is expected
    elif isinstance(expected, type):
        assert isinstance(decision, expected)
    else:
        assert decision == expected
    if isinstance(decision, Act) and record is not None:
        assert decision.next_phase in ALLOWED[record.phase]


def test_quorum_refuses_a_running_control_plane_but_not_one_read_off() -> None:
    cps = [_view(f"cp{i}", control_plane=True) for i in range(3)]
    silent = replace(cps[0], **SILENT)
    down = replace(cps[1], ready="Unknown")
    look = _look(silent, Reason.SILENT, others=(down, cps[2]))
    decision = decide(look, silent, None, SETTINGS, WALL)
    assert isinstance(decision, Refuse)
    assert decision.gate is Gate.QUORUM
    off = replace(cps[0], **DEAD)
    decision = decide(_look(off, Reason.VM_OFF, others=(down, cps[2])), off, None, SETTINGS, WALL)
    assert isinstance(decision, Act)


def test_the_transition_table_refuses_skipping_the_fence() -> None:
    record = _record(Phase.CORDONED)
    with pytest.raises(IllegalTransition):
        record.advance(Phase.RELEASED, epoch=1, leader="g", now=WALL)
    with pytest.raises(IllegalTransition):
        _record(Phase.DETECTED).advance(Phase.FENCED, epoch=1, leader="g", now=WALL)
    assert record.advance(Phase.FENCED, epoch=2, leader="h", now=WALL).phase is Phase.FENCED
    # RELEASED follows a verified fence only: FENCED, or the re-fence after a failed reboot.
    assert [
        p for p, nxt in ALLOWED.items() if Phase.RELEASED in nxt and p is not Phase.RELEASED
    ] == [
        Phase.FENCED,
        Phase.REBOOTING,
    ]
    reachable = {p for nxt in ALLOWED.values() for p in nxt}
    assert reachable >= set(Phase)
