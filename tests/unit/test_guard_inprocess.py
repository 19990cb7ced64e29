"""The real `Guard` loop in-process, on a fake clock: the windows, gates and hand-overs that the
lab can only show in minutes run here in milliseconds (see guardsim.py for the world)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from fireproof.fencing import HaStatus, Machine, PowerState, TransientFencingError
from fireproof.guard import ANNOTATION, Guard, Phase, Remediation
from fireproof.kube import KubeUnreachableError

from guardsim import OUT_OF_SERVICE, Bmc, World


def _world(workers: int = 4, control_planes: int = 3) -> World:
    world = World()
    for i in range(1, control_planes + 1):
        world.add(f"cp-{i}", control_plane=True)
    for i in range(1, workers + 1):
        world.add(f"w{i}")
    world.api.add_pod("web", "traefik-0", "w1", volume="pvc-traefik")
    world.api.add_pod("blog", "postgres-0", "w2", volume="pvc-postgres")
    return world


def _record(world: World, node: str) -> Remediation | None:
    return Remediation.from_annotation(world.api.annotations(node).get(ANNOTATION))


def _off(world: World, node: str) -> None:
    world.pve.power[world.vmids[node]] = PowerState.OFF


def _settled(world: World) -> None:
    """Guard has seen the cluster long enough that no start-up hold applies."""
    world.step(11)


def _reasons(world: World, node: str) -> list[str]:
    return [reason for name, reason in world.api.events if name == node]


def test_a_vm_off_for_good_is_acted_on_at_the_first_read() -> None:
    world = _world()
    guard = world.guard(confirm_seconds=2)
    _off(world, "w1")
    world.pve.passing[world.vmids["w2"]] = "qmreboot"  # w2 reads off inside a reboot
    _off(world, "w2")
    guard.safe_tick()
    assert _record(world, "w1") is not None  # nothing starts it again: no need to wait
    assert _record(world, "w2") is None  # a reboot's "off" is confirmed over polls


def test_a_vm_read_off_is_acted_on_only_after_the_confirm_window() -> None:
    world = _world()
    world.pve.tasks_readable = False  # off for good or for a moment: the device cannot say
    guard = world.guard(confirm_seconds=2)
    _off(world, "w1")
    guard.safe_tick()
    world.step(1)
    guard.safe_tick()
    assert _record(world, "w1") is None  # read off for 1 s: not confirmed yet
    world.step(1.5)
    guard.safe_tick()
    record = _record(world, "w1")
    assert record is not None
    assert record.phase is Phase.LEFT_OFF  # already off: released and left off, not started
    assert ("web", "traefik-0") not in world.api.pods
    assert OUT_OF_SERVICE in world.api.taints("w1")
    assert world.pve.stops == []  # guard never stops what is off already
    assert world.pve.starts == []  # nor starts what it did not stop


def test_a_storm_gets_nothing_destructive_then_the_cooldown_holds() -> None:
    world = _world()  # 7 nodes: max_unhealthy 40 % is 2
    guard = world.guard(confirm_seconds=2, storm_cooldown_seconds=20)
    for node in ("w1", "w2", "w3"):
        _off(world, node)
    world.run([guard], 10)
    assert world.api.writes == []
    assert guard.metrics.storm._value.get() == 1
    assert set(_reasons(world, "w1")) == {"FireproofStorm"}
    # The device is asked whether a VM is off for good only within the confirm window: a
    # long storm does not cost two Proxmox calls per VM per poll.
    assert 3 <= world.pve.settle_questions <= 3 * 3  # 3 VMs, asked on the polls of 2 s
    world.pve.power[world.vmids["w3"]] = PowerState.ON  # two dead: no longer a storm...
    world.run([guard], 15)
    assert world.api.writes == []  # ...but the cooldown holds
    world.run([guard], 10)
    assert _record(world, "w1") is not None
    assert _record(world, "w2") is not None
    assert guard.metrics.storm._value.get() == 0


def test_after_start_or_an_outage_a_stale_lease_waits_but_a_vm_off_does_not() -> None:
    world = _world()
    world.partitioned.add("w1")  # VM runs, its kubelet is cut off
    world.step(30)  # its Lease is 30 s stale before guard starts
    _off(world, "w2")
    guard = world.guard(confirm_seconds=0, lease_stale_seconds=10)
    world.run([guard], 5)
    assert _record(world, "w1") is None  # held: the kubelets may not have renewed yet
    assert _record(world, "w2") is not None  # the hypervisor's word is not held
    world.run([guard], 7)
    assert _record(world, "w1") is not None  # 10 s after start: acted on
    assert world.pve.stops == [world.vmids["w1"]]


def test_an_api_outage_blinds_guard_then_holds_stale_leases_again() -> None:
    world = _world()
    guard = world.guard(confirm_seconds=0, lease_stale_seconds=10)
    world.run([guard], 12)
    world.api.reachable = False
    world.partitioned.add("w3")
    world.run([guard], 20)  # w3's Lease goes stale while guard sees nothing
    assert world.api.writes == []
    world.api.reachable = True
    world.run([guard], 5)
    assert _record(world, "w3") is None  # held: every kubelet gets a stale period to renew
    world.run([guard], 7)
    assert _record(world, "w3") is not None


def test_a_control_plane_node_is_not_fenced_when_the_rest_lose_quorum() -> None:
    world = _world()
    guard = world.guard(confirm_seconds=0, lease_stale_seconds=10)
    _settled(world)
    world.partitioned.update({"cp-1", "cp-2"})
    world.run([guard], 20)
    assert _record(world, "cp-1") is None
    assert _record(world, "cp-2") is None
    assert world.pve.stops == []
    assert "FireproofFenceRefused" in _reasons(world, "cp-1")


def test_excluded_and_unmapped_nodes_are_left_alone() -> None:
    world = _world()
    world.excluded_from_inventory.add("w2")
    world.api.nodes["w1"]["metadata"]["labels"]["fireproof.io/exclude"] = "true"
    guard = world.guard(confirm_seconds=0)
    _off(world, "w1")
    _off(world, "w2")  # no device polls it: its Lease goes stale instead
    world.run([guard], 15)
    assert world.api.writes == []
    assert "FireproofFenceRefused" in _reasons(world, "w2")  # no device: said on the node
    assert _reasons(world, "w1") == []  # an admin's exclusion is not news


def test_a_partition_is_fenced_released_rebooted_and_restored_exactly_once() -> None:
    world = _world()
    guard = world.guard(lease_stale_seconds=10)
    _settled(world)
    world.partitioned.add("w2")
    phases = []
    for _ in range(20):
        world.run([guard], 1)
        record = _record(world, "w2")
        phases.append(record.phase if record else None)
    assert Phase.REBOOTING in phases
    assert phases[-1] is None  # restored: the record is gone
    assert world.pve.stops == [world.vmids["w2"]]
    assert world.pve.starts == [world.vmids["w2"]]
    assert OUT_OF_SERVICE not in world.api.taints("w2")
    assert "unschedulable" not in world.api.nodes["w2"]["spec"]
    assert _reasons(world, "w2").count("FireproofFenced") == 1
    assert "FireproofHealed" in _reasons(world, "w2")


def test_a_new_leader_resumes_a_half_done_remediation_exactly_once() -> None:
    world = _world()
    first, second = world.guard("guard-a"), world.guard("guard-b")
    _settled(world)
    world.partitioned.add("w2")
    world.run([first, second], 12)
    # The first leader stops right after its release (a crash, a paused process).
    record = _record(world, "w2")
    assert record is not None
    assert (record.phase, record.leader) == (Phase.RELEASED, "guard-a")
    world.run([second], 40)  # its Lease expires (15 s), then the second one finishes
    assert _record(world, "w2") is None
    assert "FireproofHealed" in _reasons(world, "w2")
    assert world.pve.stops.count(world.vmids["w2"]) == 1
    assert world.pve.starts.count(world.vmids["w2"]) == 1


def test_a_stale_leader_that_wakes_up_does_nothing() -> None:
    world = _world()
    first, second = world.guard("guard-a"), world.guard("guard-b")
    world.run([first, second], 12)
    world.run([second], 20)  # the first one sleeps past its lease; the second one leads
    world.partitioned.add("w2")
    world.run([second], 12)
    stops = list(world.pve.stops)
    writes = len(world.api.writes)
    first.safe_tick()  # wakes up believing nothing
    assert world.pve.stops == stops
    assert len(world.api.writes) == writes
    assert first.metrics.leader._value.get() == 0


def test_a_machine_started_again_before_its_release_is_fenced_again_first() -> None:
    world = _world()
    guard = world.guard(lease_stale_seconds=10)
    _settled(world)
    world.partitioned.add("w2")
    vmid = world.vmids["w2"]
    started: list[int] = []

    def someone_starts_it(read: int) -> None:
        record = _record(world, "w2")
        if record is not None and record.phase is Phase.FENCED and not started:
            started.append(read)
            world.pve.power[read] = PowerState.ON  # a person in the Proxmox UI

    world.pve.on_status = someone_starts_it
    world.run([guard], 12)
    assert started == [vmid]
    assert "FireproofReleaseFailed" in _reasons(world, "w2")
    # It was powered off again before anything was released, and released after that.
    assert world.pve.stops == [vmid, vmid]
    assert ("blog", "postgres-0") not in world.api.pods


def test_a_fencing_failure_releases_nothing_and_backs_off() -> None:
    world = _world()
    guard = world.guard(lease_stale_seconds=10, retry_backoff_seconds=4)
    _settled(world)
    world.partitioned.add("w2")
    world.run([guard], 9)
    world.pve.failing = "Proxmox: connection refused"
    world.run([guard], 8)
    record = _record(world, "w2")
    assert record is not None
    assert record.phase is Phase.CORDONED
    assert 1 <= record.failures <= 2  # 8 s of failures: tried at 0 and 4 s, not every second
    assert ("blog", "postgres-0") in world.api.pods
    assert OUT_OF_SERVICE not in world.api.taints("w2")
    world.pve.failing = None
    world.run([guard], 20)
    assert ("blog", "postgres-0") not in world.api.pods


@pytest.mark.parametrize(
    ("fault", "settings", "expected"),
    [
        ("off", {}, ["cordon", "fence", "release", "left-off"]),
        ("off", {"restart_stopped": True}, ["cordon", "fence", "release", "power-on"]),
        ("partition", {}, ["cordon", "fence", "release", "power-on"]),
        ("partition", {"strategy": "off"}, ["cordon", "fence", "release", "left-off"]),
    ],
)
def test_the_dry_run_says_what_the_real_path_then_does(
    fault: str, settings: dict[str, object], expected: list[str]
) -> None:
    said: list[str] = []

    def world_with_fault() -> World:
        world = _world()
        world.step(11)
        if fault == "off":
            _off(world, "w2")
        else:
            world.partitioned.add("w2")
        return world

    dry_world = world_with_fault()
    dry = dry_world.guard(dry_run=True, confirm_seconds=0, lease_stale_seconds=10, **settings)
    dry.say = said.append
    dry_world.run([dry], 15)
    assert dry_world.api.writes == []
    plan = [m for m in said if m.startswith("w2 looks dead")]
    assert len(plan) == 1, said

    real_world = world_with_fault()
    real = real_world.guard(confirm_seconds=0, lease_stale_seconds=10, **settings)
    real_world.run([real], 15)
    done = {
        "FireproofCordoned": "cordon",
        "FireproofFenced": "fence",
        "FireproofReleased": "release",
        "FireproofPoweredOn": "power-on",
        "FireproofLeftOff": "left-off",
    }
    taken = [done[r] for r in _reasons(real_world, "w2") if r in done]
    assert taken == expected
    words = {
        "cordon": "cordon",
        "fence": "power off and verify",
        "release": "release its volumes",
        "power-on": "then power it on again",
        "left-off": "then leave it off and tainted",
    }
    positions = [plan[0].find(words[step]) for step in taken]
    assert all(p >= 0 for p in positions), (plan[0], taken)
    assert positions == sorted(positions)


def test_a_storm_that_starts_mid_remediation_stops_it_before_the_fence() -> None:
    world = _world()
    guard = world.guard(lease_stale_seconds=10, retry_backoff_seconds=2)
    _settled(world)
    world.partitioned.add("w2")
    world.pve.failing = "Proxmox: connection refused"  # w2 waits in cordoned, backing off
    world.run([guard], 12)
    world.pve.failing = None
    for node in ("w1", "w3"):
        _off(world, node)  # three dead of seven: a storm
    world.run([guard], 10)
    record = _record(world, "w2")
    assert record is not None
    assert record.phase is Phase.CORDONED
    assert world.pve.stops == []
    assert ("blog", "postgres-0") in world.api.pods


def test_a_paused_node_is_left_alone_and_says_so_once() -> None:
    world = _world()
    world.api.nodes["w1"]["metadata"]["annotations"]["fireproof.io/pause"] = "maintenance"
    guard = world.guard(confirm_seconds=0)
    _off(world, "w1")
    world.run([guard], 5)
    assert world.api.writes == []
    assert _reasons(world, "w1") == []


def test_an_internal_error_is_said_with_its_cause_counted_and_makes_guard_unready(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from fireproof.guard import FAILING_LOOKS_NOT_READY
    from fireproof.inventory import Inventory

    world = _world()
    guard = world.guard()

    def broken(_names: list[str]) -> Inventory:
        raise RuntimeError("a shape never seen")

    guard.observer.inventory = broken
    for _ in range(FAILING_LOOKS_NOT_READY):
        world.run([guard], 1)
    assert guard.metrics.failing_looks == FAILING_LOOKS_NOT_READY  # /readyz answers 503
    assert guard.metrics.internal_errors._value.get() == FAILING_LOOKS_NOT_READY
    assert "internal error in one look at the cluster (RuntimeError: a shape never seen)" in (
        caplog.text
    )
    guard.observer.inventory = world.inventory
    world.run([guard], 1)
    assert guard.metrics.failing_looks == 0


def test_the_leader_writes_a_missing_zone_label_once_and_the_dry_run_never() -> None:
    world = _world()
    world.add("w9", zone=None)
    assert "topology.kubernetes.io/zone" not in world.api.nodes["w9"]["metadata"]["labels"]
    world.guard("guard-dry", dry_run=True).safe_tick()
    assert "label w9" not in world.api.writes
    guard = world.guard()
    guard.safe_tick()
    guard.safe_tick()
    labels = world.api.nodes["w9"]["metadata"]["labels"]
    assert labels["topology.kubernetes.io/zone"] == "pve-01"  # the inventory's host
    assert world.api.annotations("w9")["fireproof.io/topology-labels"] == (
        "topology.kubernetes.io/zone"
    )
    assert world.api.writes.count("label w9") == 1  # the cache saw its own write
    assert [w for w in world.api.writes if w.startswith("label")] == ["label w9"]


def test_a_node_that_is_not_ready_gets_its_zone_label_only_once_ready_again() -> None:
    # kube-controller-manager panics when a node it is marking unhealthy shows a zone it has
    # not registered yet (the fault campaign saw it die so): wait for Ready.
    world = _world()
    world.add("w9", zone=None)
    world.api.set_ready("w9", "Unknown")
    guard = world.guard()
    guard.safe_tick()
    guard.safe_tick()
    assert "topology.kubernetes.io/zone" not in world.api.nodes["w9"]["metadata"]["labels"]
    assert "label w9" not in world.api.writes
    world.step(1)  # its kubelet reports Ready
    guard.safe_tick()
    assert world.api.nodes["w9"]["metadata"]["labels"]["topology.kubernetes.io/zone"] == "pve-01"


def _host_world() -> tuple[World, Bmc]:
    world = World()
    for i in (1, 2, 3):
        world.add(f"cp-{i}", control_plane=True)
    for name, host in (("w1", "pve-02"), ("w2", "pve-02"), ("w3", "pve-01"), ("w4", "pve-01")):
        world.hosts[name] = host
        world.add(name, zone=host)
    bmc = Bmc(world, "pve-02")
    world.bmcs["pve-02"] = bmc
    world.api.add_pod("web", "traefik-0", "w1", volume="pvc-traefik")
    return world, bmc


def test_a_hung_host_is_fenced_once_through_its_bmc_and_powered_on_after_all_its_releases() -> None:
    world, bmc = _host_world()
    guard = world.guard(max_unhealthy="1")  # two dead nodes, one failure domain: no storm
    _settled(world)
    guard.safe_tick()
    world.hang("pve-02")
    for _ in range(90):
        world.step(1)
        guard.safe_tick()
        if bmc.ons and _record(world, "w1") is None and _record(world, "w2") is None:
            break
    assert bmc.offs == 1  # one power-off for the host, the other node read it off
    assert bmc.off_calls == 1  # and one fence: w2, in the same look, took w1's reading
    assert bmc.ons == 1  # guard powered it off (it was on): strategy reboot powers it on
    phases = {n: Remediation.from_annotation(v) for n, v in bmc.records_at_on.items()}
    # w1's fence powered the host off (it read on): w1 powers it on, once w2 is released too.
    # w2 read it off already and is left off until the host is back, then restored.
    assert {n: r.phase if r else None for n, r in phases.items()} == {
        "w1": Phase.RELEASED,
        "w2": Phase.LEFT_OFF,
    }
    assert all(r is not None and r.host_fenced == "pve-02" for r in phases.values())
    assert "FireproofHostFenced" in _reasons(world, "w1")
    assert "FireproofHostFenced" in _reasons(world, "w2")
    assert _record(world, "w1") is None  # back, untainted, the record dropped
    assert _record(world, "w2") is None
    assert world.pve.stops == []  # no VM was stopped through the hypervisor: its host was lost


def test_a_power_cut_host_its_bmc_reads_off_is_released_before_any_lease_ages() -> None:
    world, bmc = _host_world()
    guard = world.guard(max_unhealthy="1")
    _settled(world)
    guard.safe_tick()
    world.host_power("pve-02", on=False, last_status=True)  # its VMs still read running
    world.step(1)
    guard.safe_tick()
    # One look after the cut, a second after the last renewals: the BMC's "off" is the proof.
    for node in ("w1", "w2"):
        assert OUT_OF_SERVICE in world.api.taints(node), node
        assert _record(world, node) is not None
    assert bmc.off_calls == 1  # one fence for the host (already off: nothing powered off)
    assert bmc.offs == 0
    assert world.pve.stops == []
    assert OUT_OF_SERVICE not in world.api.taints("w3")


def test_a_vm_recovered_onto_another_host_is_not_released_with_its_dead_host() -> None:
    # pve-02 loses power and its BMC reads off, but w1's VM was restarted on pve-01 (an HA
    # recovery): the cluster lists it there, running. The inventory still says pve-02; the
    # host's death is no longer w1's, and releasing it would put a second writer on its volume.
    world, bmc = _host_world()
    guard = world.guard(max_unhealthy="1")
    _settled(world)
    guard.safe_tick()
    world.host_power("pve-02", on=False, last_status=True)
    world.hosts["w1"] = "pve-01"
    world.pve.vm_hosts[world.vmids["w1"]] = "pve-01"
    world.step(1)
    guard.safe_tick()
    assert OUT_OF_SERVICE in world.api.taints("w2")  # still on the dead host: released
    assert OUT_OF_SERVICE not in world.api.taints("w1")
    assert _record(world, "w1") is None
    assert bmc.off_calls == 1


def test_a_host_lost_to_its_cluster_but_on_waits_for_its_leases() -> None:
    # Offline in Proxmox but the BMC reads on and the kubelets renew: a corosync split, not a
    # death. Nothing is fenced.
    world, bmc = _host_world()
    guard = world.guard(max_unhealthy="1")
    _settled(world)
    world.pve.offline_hosts.add("pve-02")
    for _ in range(30):
        world.step(1)
        guard.safe_tick()
    assert bmc.off_calls == 0
    assert _record(world, "w1") is None
    assert OUT_OF_SERVICE not in world.api.taints("w1")


class _SilentBmc(Bmc):
    """A BMC that does not answer: each read costs its timeout, then fails."""

    def status(self, machine: Machine) -> PowerState:
        self.world.clock.advance(20)
        raise TransientFencingError("Connection timed out")


def test_a_bmc_that_times_out_does_not_age_every_lease_of_the_look() -> None:
    world, _bmc = _host_world()
    world.bmcs["pve-02"] = _SilentBmc(world, "pve-02")
    guard = world.guard(max_unhealthy="1")
    _settled(world)
    guard.safe_tick()
    world.pve.offline_hosts.add("pve-02")  # lost to its cluster; its BMC will time out
    for _ in range(5):
        world.step(1)
        guard.safe_tick()
    # The look read the cache before the BMC's 20 s: the healthy nodes' Leases were fresh.
    assert guard.metrics.refused.labels("storm")._value.get() == 0
    assert all(_record(world, n) is None for n in ("cp-1", "w3", "w4"))


def _ha(node_state: str, services: dict[int, tuple[str, str]]) -> HaStatus:
    return HaStatus(True, {"pve-01": "online", "pve-02": node_state}, services)


def _ha_only_hang() -> tuple[World, Guard, int]:
    """No BMC for pve-02: Proxmox HA is the only level. pve-02 hangs; w1 (HA-managed) and w2
    (not) die with it."""
    world, _bmc = _host_world()
    del world.bmcs["pve-02"]
    guard = world.guard(max_unhealthy="1")
    _settled(world)
    world.hang("pve-02")
    return world, guard, world.vmids["w1"]


def test_a_host_proxmox_ha_fenced_is_released_after_its_acknowledgement_only() -> None:
    # No BMC: Proxmox HA is the only level. w1 (HA-managed) and w2 (not) die with pve-02.
    world, guard, w1 = _ha_only_hang()
    world.pve.ha = _ha("unknown", {w1: ("started", "pve-02")})
    for _ in range(20):
        world.step(1)
        guard.safe_tick()
    # HA will fence it: guard waits for it (no refusal), and releases nothing yet.
    assert _record(world, "w2") is not None
    assert OUT_OF_SERVICE not in world.api.taints("w2")
    assert guard.metrics.refused.labels("host-unfenceable")._value.get() == 0
    world.pve.ha = _ha("fence", {w1: ("fence", "pve-02")})
    world.step(1)
    guard.safe_tick()
    assert OUT_OF_SERVICE not in world.api.taints("w2")  # fencing is not fenced
    # Acknowledged: the host's watchdog reset it (its VMs die); HA restarts w1 on pve-01.
    world.host_power("pve-02", on=False)
    world.hosts["w1"] = "pve-01"
    world.pve.vm_hosts[w1] = "pve-01"
    world.pve.power[w1] = PowerState.ON
    world.pve.ha = _ha("unknown", {w1: ("started", "pve-01")})
    world.step(1)
    guard.safe_tick()
    assert OUT_OF_SERVICE in world.api.taints("w2")
    record = _record(world, "w2")
    assert record is not None
    assert record.ha_fenced
    assert record.host_fenced == "pve-02"
    assert "FireproofHostFenced" in _reasons(world, "w2")
    # w1 was restarted by HA: guard leaves it to boot, fences nothing through its VM.
    assert OUT_OF_SERVICE not in world.api.taints("w1")
    assert world.pve.stops == []
    assert guard.metrics.fence_levels.labels("ha")._value.get() == 1


def test_a_vm_ha_restarts_elsewhere_after_the_fence_is_left_to_boot_not_released() -> None:
    # HA acknowledged pve-02's fence and guard took it for w1 (HA-managed): the VM that ran
    # there is dead. Right after, before guard's release, HA starts w1 again on pve-01: a new
    # boot, which HA's acknowledgement says nothing about. Nothing is released under it.
    world, guard, w1 = _ha_only_hang()
    world.pve.ha = _ha("fence", {w1: ("fence", "pve-02")})
    for _ in range(20):
        world.step(1)
        guard.safe_tick()
    assert _record(world, "w1") is not None
    world.host_power("pve-02", on=False)
    world.pve.ha = _ha("unknown", {w1: ("recovery", "pve-02")})
    restarted: list[str] = []

    def ha_restarts_w1(node: str) -> None:
        record = _record(world, "w1")
        if restarted or record is None or record.phase is not Phase.FENCED:
            return
        restarted.append("w1")
        world.hosts["w1"] = "pve-01"
        world.pve.vm_hosts[w1] = "pve-01"
        world.pve.power[w1] = PowerState.ON
        world.pve.ha = _ha("unknown", {w1: ("started", "pve-01")})

    on_w1 = [f"delete pod {ns}/{name}" for (ns, name), p in world.api.pods.items()
             if p["node"] == "w1"]  # fmt: skip
    assert on_w1
    world.api.on_annotate = ha_restarts_w1  # the moment guard records w1 FENCED
    for _ in range(5):
        world.step(1)
        guard.safe_tick()
    assert restarted  # guard took HA's fence (FENCED), and HA restarted w1 before the release
    assert "taint w1" not in world.api.writes
    assert not set(on_w1) & set(world.api.writes)
    assert guard.metrics.refused.labels("started-again")._value.get() >= 1
    # w2 (not HA-managed) died with the host: it is released as before.
    assert OUT_OF_SERVICE in world.api.taints("w2")


def test_a_guard_that_did_not_see_ha_fencing_does_not_take_its_word() -> None:
    # HA reads the lost host "unknown" with its services already elsewhere (fenced before this
    # guard looked): nothing proves to this guard that the host was fenced, not just lost.
    world, _bmc = _host_world()
    del world.bmcs["pve-02"]
    guard = world.guard(max_unhealthy="1")
    _settled(world)
    world.hang("pve-02")
    world.pve.ha = _ha("unknown", {world.vmids["w1"]: ("started", "pve-01")})
    for _ in range(30):
        world.step(1)
        guard.safe_tick()
    assert OUT_OF_SERVICE not in world.api.taints("w2")
    assert guard.metrics.refused.labels("host-unfenceable")._value.get() >= 1


def test_a_lost_host_without_a_bmc_is_refused_and_nothing_is_released() -> None:
    world, _bmc = _host_world()
    del world.bmcs["pve-02"]
    guard = world.guard(max_unhealthy="1")
    _settled(world)
    world.hang("pve-02")
    for _ in range(40):
        world.step(1)
        guard.safe_tick()
    assert _record(world, "w1") is None
    assert OUT_OF_SERVICE not in world.api.taints("w1")
    assert not [w for w in world.api.writes if w.startswith(("delete pod", "taint"))]
    assert guard.metrics.refused.labels("host-unfenceable")._value.get() >= 1


def test_a_node_that_does_not_come_back_after_its_host_is_fenced_alone() -> None:
    # The host is back and its other node runs again: powering the host off once more would
    # kill that neighbour. The node that stays silent is fenced through its own VM.
    world, bmc = _host_world()
    guard = world.guard(max_unhealthy="1")
    _settled(world)
    world.hang("pve-02")
    for _ in range(60):
        world.step(1)
        guard.safe_tick()
        if bmc.ons:
            break
    assert bmc.ons == 1
    world.partitioned.add("w1")  # w1, which powered the host on, never comes back
    for _ in range(90):
        world.step(1)
        guard.safe_tick()
    assert bmc.offs == 1
    assert world.pve.stops == [world.vmids["w1"]]
    assert world.host_on["pve-02"]
    assert _record(world, "w2") is None  # its neighbour came back and was restored


def test_a_release_stopped_by_a_start_leaves_no_taint_once_the_node_is_back() -> None:
    # The fault campaign's seed 90090, run 16: the taint landed as the API server went away, a
    # person started the VM meanwhile, and the node came back Ready but tainted for good.
    world = _world()
    guard = world.guard()
    _settled(world)
    add_taint = world.api.add_taint

    def lands_then_the_api_goes(
        node: str, key: str, value: str, effect: str, **verify: Callable[[], None] | None
    ) -> bool:
        add_taint(node, key, value, effect, **verify)
        world.api.add_taint = add_taint  # type: ignore[method-assign]
        world.api.reachable = False
        world.pve.power[world.vmids[node]] = PowerState.ON
        raise KubeUnreachableError("cannot reach the API server: connection refused")

    world.api.add_taint = lands_then_the_api_goes  # type: ignore[method-assign]
    _off(world, "w1")
    world.run([guard], 3)
    assert OUT_OF_SERVICE in world.api.taints("w1")
    world.api.reachable = True
    world.run([guard], 30)
    assert "FireproofReleaseFailed" in _reasons(world, "w1")
    assert OUT_OF_SERVICE not in world.api.taints("w1")
    assert "FireproofUntainted" in _reasons(world, "w1")
    assert _record(world, "w1") is None
    assert world.running("w1")
