"""guard's decisions in isolation: detection signals, the storm limit, quorum, the record on
the Node, and heal's idempotent steps against a fake cluster. The lab tests (tests/e2e/
test_guard.py) run the same logic against the real control plane and Proxmox emulator."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from fireproof.clock import ManualClock
from fireproof.config import GuardConfig, load_config
from fireproof.errors import TransientError, UsageError
from fireproof.fencing import FencingError, Machine, PowerState
from fireproof.guard import (
    NodeView,
    Phase,
    Reason,
    Remediation,
    quorum_allows_fencing,
    suspicion,
)
from fireproof.guard.detect import back_since, healthy
from fireproof.heal import Journal, steps
from fireproof.kube import Cluster

from guardsim import node_view

NOW = dt.datetime(2026, 11, 25, 12, 0, 0, tzinfo=dt.UTC)
SETTINGS = GuardConfig(lease_stale_seconds=40, not_ready_grace_seconds=60)


def _view(**changes: Any) -> NodeView:
    return node_view(NOW, **{"lease_renewed": NOW - dt.timedelta(seconds=2), **changes})


def test_a_vm_read_off_is_dead_at_once_whatever_ready_says() -> None:
    assert suspicion(_view(power=PowerState.OFF), SETTINGS, NOW) is Reason.VM_OFF
    assert suspicion(_view(), SETTINGS, NOW) is None


def test_a_stale_lease_is_a_silent_kubelet_running_or_unknown() -> None:
    stale = NOW - dt.timedelta(seconds=41)
    assert suspicion(_view(lease_renewed=stale), SETTINGS, NOW) is Reason.SILENT
    assert suspicion(_view(lease_renewed=stale, power=PowerState.UNKNOWN), SETTINGS, NOW) is (
        Reason.SILENT
    )
    assert suspicion(_view(lease_renewed=NOW - dt.timedelta(seconds=39)), SETTINGS, NOW) is None


def test_a_lost_host_is_host_down_only_once_its_kubelet_missed_a_renewal() -> None:
    # Proxmox lost the host (a corosync split can do that to a healthy host): the kubelet's
    # Lease decides. One renewal missed (15 s): on a dead host, whatever the VM last read.
    lost = {"host_down": True, "machine": Machine("w1", "pve", host="pve-02", vmid=201)}
    assert suspicion(_view(**lost), SETTINGS, NOW) is None
    missed = NOW - dt.timedelta(seconds=16)
    assert suspicion(_view(lease_renewed=missed, **lost), SETTINGS, NOW) is Reason.HOST_DOWN
    assert _view(**lost).domain == "host/pve-02"
    assert _view().domain == "node/w1"


def test_a_booting_vm_is_not_a_silent_kubelet_until_it_renewed_once() -> None:
    stale = NOW - dt.timedelta(seconds=600)  # renewed before the host died
    settings = GuardConfig(lease_stale_seconds=40, boot_grace_seconds=300)
    booting = _view(lease_renewed=stale, vm_uptime=60)
    assert suspicion(booting, settings, NOW) is None
    # Past the grace, the boot is over: silent.
    assert suspicion(_view(lease_renewed=stale, vm_uptime=301), settings, NOW) is Reason.SILENT
    # Renewed after this boot, then silent again: a real silence, whatever the uptime.
    renewed_since = NOW - dt.timedelta(seconds=50)
    assert suspicion(_view(lease_renewed=renewed_since, vm_uptime=120), settings, NOW) is (
        Reason.SILENT
    )


def test_the_storm_limit_counts_failure_domains_not_nodes() -> None:
    from fireproof.guard.observe import Windows, observe

    missed = NOW - dt.timedelta(seconds=60)
    on_dead_host = [
        _view(
            name=f"w{i}",
            host_down=True,
            lease_renewed=missed,
            machine=Machine(f"w{i}", "pve", host="pve-02", vmid=200 + i),
        )
        for i in range(3)
    ]
    healthy_nodes = [_view(name=f"h{i}") for i in range(4)]
    settings = GuardConfig(max_unhealthy="1", lease_stale_seconds=40)
    look, _ = observe(on_dead_host + healthy_nodes, Windows(), settings, 10.0, NOW.timestamp())
    assert set(look.suspects) == {"w0", "w1", "w2"}
    assert (look.domains, look.storm) == (1, False)
    # The same three dead one by one, on hosts that answer: three domains, a storm.
    alone = [_view(name=f"w{i}", lease_renewed=missed, power=PowerState.OFF) for i in range(3)]
    look, _ = observe(alone + healthy_nodes, Windows(), settings, 10.0, NOW.timestamp())
    assert (look.domains, look.storm) == (3, True)


def test_not_ready_counts_only_for_unpolled_nodes_after_the_grace() -> None:
    late = NOW - dt.timedelta(seconds=61)
    unpolled = {"polled": False, "power": PowerState.UNKNOWN, "ready": "False"}
    assert suspicion(_view(**unpolled, ready_since=late), SETTINGS, NOW) is Reason.NOT_READY
    early = NOW - dt.timedelta(seconds=30)
    assert suspicion(_view(**unpolled, ready_since=early), SETTINGS, NOW) is None
    # A polled node's power and lease say more than its Ready condition.
    assert suspicion(_view(ready="False", ready_since=late), SETTINGS, NOW) is None


def test_back_means_a_lease_renewed_after_the_step_not_a_stale_ready() -> None:
    step = (NOW - dt.timedelta(seconds=5)).timestamp()
    assert not back_since(_view(lease_renewed=NOW - dt.timedelta(seconds=6)), step)
    assert back_since(_view(lease_renewed=NOW - dt.timedelta(seconds=1)), step)
    assert not back_since(_view(power=PowerState.OFF), step)
    assert not healthy(_view(power=PowerState.OFF), SETTINGS, NOW)


def test_control_plane_quorum_and_storm_limit() -> None:
    cps = [_view(name=f"cp{i}", control_plane=True) for i in range(3)]
    assert quorum_allows_fencing(cps, cps[0])
    degraded = [cps[0], _view(name="cp1", control_plane=True, ready="Unknown"), cps[2]]
    assert not quorum_allows_fencing(degraded, cps[0])
    assert quorum_allows_fencing(degraded, _view(name="w9"))
    assert GuardConfig(max_unhealthy="40%").max_unhealthy_nodes(7) == 2
    assert GuardConfig(max_unhealthy="40%").max_unhealthy_nodes(2) == 1
    assert GuardConfig(max_unhealthy="3").max_unhealthy_nodes(7) == 3


def test_the_record_round_trips_and_a_foreign_value_is_not_trusted() -> None:
    record = Remediation(Phase.FENCED, Reason.SILENT, 3, "guard-a", 1.0, 2.0, True, 1)
    assert Remediation.from_annotation(record.to_annotation()) == record
    assert Remediation.from_annotation('{"phase": "exploded"}') is None
    assert Remediation.from_annotation("not json") is None
    moved = record.advance(Phase.RELEASED, epoch=4, leader="guard-b", now=9.0)
    assert (moved.phase, moved.epoch, moved.leader, moved.updated) == (
        Phase.RELEASED,
        4,
        "guard-b",
        9.0,
    )


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("guard:\n  strategy: pray\n", ":2: guard.strategy: must be one of reboot, off"),
        ("guard:\n  max_unhealthy: lots\n", ":2: guard.max_unhealthy: must be a node count"),
        ("guard:\n  max_unhealthy: 140%\n", ":2: guard.max_unhealthy: must be a node count"),
        # A block scalar ends in a newline, which a `$` pattern let through: guard then failed
        # on every look and acted on nothing.
        ("guard:\n  max_unhealthy: |\n    40%\n", ":2: guard.max_unhealthy: must be a node count"),
        ("guard:\n  poll_interval_seconds: inf\n", ":2: guard.poll_interval_seconds: must be a"),
        ("guard:\n  lease_stale: 3\n", ":2: guard.lease_stale: unknown field"),
    ],
)
def test_guard_settings_are_validated_with_their_line(
    tmp_path: Path, body: str, expected: str
) -> None:
    path = tmp_path / "fireproof.yaml"
    path.write_text(body)
    with pytest.raises(UsageError) as info:
        load_config(path)
    assert f"{path}{expected}" in info.value.message


# -- heal's steps against a fake cluster ------------------------------------------------------


class _FakeCluster:
    """The few Cluster calls the steps make, on one in-memory Node."""

    def __init__(self, *, unschedulable: bool = False, ready: str = "True") -> None:
        self.unschedulable = unschedulable
        self.ready = ready
        self.annotations: dict[str, str] = {}
        self.taints: set[str] = set()
        self.writes: list[str] = []

    def node(self, _name: str) -> Any:
        return SimpleNamespace(
            spec=SimpleNamespace(unschedulable=self.unschedulable),
            status=SimpleNamespace(conditions=[SimpleNamespace(type="Ready", status=self.ready)]),
            metadata=SimpleNamespace(annotations=dict(self.annotations)),
        )

    def cordon(self, _node: str, mark: str) -> None:
        self.writes.append("cordon")
        self.unschedulable = True
        self.annotations[mark] = "now"

    def uncordon_if_marked(self, _node: str, mark: str) -> bool:
        if mark not in self.annotations:
            return False
        self.writes.append("uncordon")
        del self.annotations[mark]
        self.unschedulable = False
        return True

    def remove_taint(self, _node: str, key: str) -> bool:
        if key not in self.taints:
            return False
        self.writes.append("untaint")
        self.taints.discard(key)
        return True

    def add_taint(
        self,
        _node: str,
        key: str,
        _value: str,
        _effect: str,
        *,
        before_write: Callable[[], None] | None = None,
    ) -> bool:
        if key in self.taints:
            return False
        if before_write is not None:
            before_write()
        self.writes.append("taint")
        self.taints.add(key)
        return True

    def force_delete_pod(self, namespace: str, name: str, _uid: str) -> bool:
        self.writes.append(f"delete {namespace}/{name}")
        return True


def _cluster(fake: _FakeCluster) -> Cluster:
    return cast(Cluster, fake)


def test_cordon_and_release_are_idempotent() -> None:
    fake = _FakeCluster()
    journal = Journal("test", "w1")
    assert steps.cordon(_cluster(fake), "w1", journal)
    assert not steps.cordon(_cluster(fake), "w1", journal)
    steps.release(_cluster(fake), "w1", journal, taint=True)
    steps.release(_cluster(fake), "w1", journal, taint=True)
    assert fake.writes == ["cordon", "taint"]
    # A second call finds everything done: said as skipped, as a second cordon is.
    assert [s.status for s in journal.steps] == ["ok", "skipped", "ok", "skipped"]


def test_restore_undoes_only_fireproofs_own_cordon() -> None:
    ours = _FakeCluster()
    journal = Journal("test", "w1")
    steps.cordon(_cluster(ours), "w1", journal)
    ours.taints.add(steps.OUT_OF_SERVICE)
    steps.restore(_cluster(ours), "w1", journal)
    assert ours.writes == ["cordon", "untaint", "uncordon"]
    admins = _FakeCluster(unschedulable=True)
    admins.taints.add(steps.OUT_OF_SERVICE)
    steps.restore(_cluster(admins), "w1", journal)
    assert admins.writes == ["untaint"]
    assert admins.unschedulable
    assert "cordoned by someone else, left cordoned" in journal.steps[-1].message
    with pytest.raises(TransientError, match="not Ready"):
        steps.restore(_cluster(_FakeCluster(ready="Unknown")), "w1", journal)


class _Fence:
    name = "dev"

    def __init__(self, after_off: PowerState) -> None:
        self.after_off = after_off

    def status(self, _machine: Machine) -> PowerState:
        return self.after_off

    def off(self, _machine: Machine) -> PowerState:
        return self.after_off

    def on(self, _machine: Machine) -> PowerState:
        return PowerState.ON


def test_fence_off_releases_nothing_unless_verified_off() -> None:
    journal = Journal("test", "w1")
    machine = Machine("w1", "dev", "pve-01", 201)
    steps.fence_off(_Fence(PowerState.OFF), machine, "w1", journal)
    assert journal.steps[-1].status == "ok"
    from fireproof.fencing import FencingError

    with pytest.raises(FencingError, match="not verified off"):
        steps.fence_off(_Fence(PowerState.UNKNOWN), machine, "w1", journal)
    assert journal.steps[-1].status == "failed"


def test_waits_use_the_injected_clock() -> None:
    clock = ManualClock()
    start = clock.monotonic()
    fake = _FakeCluster(ready="Unknown")
    with pytest.raises(TransientError, match="not Ready after 30 s"):
        steps.wait_ready(_cluster(fake), "w1", Journal("t", "w1"), timeout=30, poll=5, clock=clock)
    assert clock.monotonic() - start == 30.0  # no real second was slept


def test_guard_terminal_logs_drop_control_characters() -> None:
    import logging

    from fireproof.guard.logs import TerminalLines

    record = logging.LogRecord(
        "fireproof.guard", logging.INFO, "x", 1, "vm \x1b]0;t\x07 off", (), None
    )
    assert "\x1b" not in TerminalLines("%(message)s").format(record)


def test_release_refuses_a_machine_started_again_after_its_fence() -> None:
    # Verified off, then started by someone else before the release: nothing is released.
    fake = _FakeCluster(ready="Unknown")
    journal = Journal("test", "w1")
    with pytest.raises(steps.StartedAgain, match="no longer verified off"):
        steps.release(_cluster(fake), "w1", journal, taint=True, still_off=lambda: PowerState.ON)
    assert fake.writes == []
    assert journal.steps[-1].status == "failed"

    def unreadable() -> PowerState:
        raise FencingError("status timed out")

    with pytest.raises(steps.StartedAgain, match="status timed out"):
        steps.release(_cluster(fake), "w1", journal, taint=True, still_off=unreadable)
    assert fake.writes == []
    steps.release(_cluster(fake), "w1", journal, taint=True, still_off=lambda: PowerState.OFF)
    assert fake.writes == ["taint"]


def test_release_stops_where_it_is_when_the_machine_starts_during_it() -> None:
    # The fault campaign (seed 9009, run 21): a person started the fenced VM 0.1 s into guard's
    # release; the writes after that landed on a running machine. Power is read before every
    # write, and a start takes longer than the gap between a read and its write.
    fake = _FakeCluster(ready="Unknown")
    journal = Journal("test", "w1")
    reads = iter([PowerState.OFF, PowerState.OFF, PowerState.ON])
    pods = [("blog", "postgres-0", "u1"), ("kube-system", "kube-proxy-x", "u2"), ("a", "b", "u3")]
    with pytest.raises(steps.StartedAgain, match="released so far: pod blog/postgres-0, pod kube"):
        steps.release(
            _cluster(fake), "w1", journal, taint=True, pods=pods, still_off=lambda: next(reads)
        )
    # Read 1: off, delete; read 2: off, delete; read 3: on, nothing more (the taint neither).
    assert fake.writes == ["delete blog/postgres-0", "delete kube-system/kube-proxy-x"]
    assert journal.steps[-1].status == "failed"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:9108", ("127.0.0.1", 9108)),
        ("[::1]:9108", ("::1", 9108)),
        (":0", ("127.0.0.1", 0)),
        ("localhost:9108", ("localhost", 9108)),
    ],
)
def test_metrics_addresses_ipv4_and_ipv6(text: str, expected: tuple[str, int]) -> None:
    from fireproof.guard import parse_address

    assert parse_address(text) == expected


@pytest.mark.parametrize(
    "text", ["nowhere", "::1:9108", "example.org:9108", "1.2.3.4:99999", "[::1]"]
)
def test_bad_metrics_addresses_are_one_clear_error(text: str) -> None:
    from fireproof.guard import parse_address

    with pytest.raises(UsageError, match="--metrics-address"):
        parse_address(text)


def test_topology_labels_are_set_when_absent_and_changed_only_when_guard_owns_them() -> None:
    from fireproof.guard.topology import OWNED, REGION, ZONE, owned_after, topology_patch

    assert topology_patch({}, {}, "pve-01", "tazlab", ready=True) == {
        ZONE: "pve-01",
        REGION: "tazlab",
    }
    # The same values already there (a CCM's): nothing to write.
    ccm = {ZONE: "pve-01", REGION: "tazlab"}
    assert topology_patch(ccm, {}, "pve-01", "tazlab", ready=True) == {}
    # A value someone else wrote is never overwritten, even when the inventory disagrees.
    assert topology_patch({ZONE: "rack-a"}, {}, "pve-02", None, ready=True) == {}
    # Its own label follows the VM to another host.
    mine = {OWNED: f"{REGION},{ZONE}"}
    assert topology_patch({ZONE: "pve-01"}, mine, "pve-02", None, ready=True) == {ZONE: "pve-02"}
    assert owned_after({}, {REGION: "tazlab"}) == REGION
    assert owned_after(mine, {ZONE: "pve-02"}) == f"{REGION},{ZONE}"
    # No host known: nothing said about the zone.
    assert topology_patch({}, {}, None, None, ready=True) == {}
    # A node that is not Ready is left alone until it is (a new zone on an unhealthy node can
    # crash kube-controller-manager's node lifecycle controller).
    assert topology_patch({}, {}, "pve-01", "tazlab", ready=False) == {}
    assert topology_patch({ZONE: "pve-01"}, mine, "pve-02", None, ready=False) == {}
