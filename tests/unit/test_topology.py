from __future__ import annotations

import pytest

from fireproof.errors import UsageError
from fireproof.lab.addresses import is_documentation_address
from fireproof.lab.topology import MAX_WORKERS, Role, build_topology


def test_minimal_is_one_control_plane_and_three_workers() -> None:
    topo = build_topology("minimal")
    assert [n.name for n in topo.control_plane] == ["lab-cp-01"]
    assert [n.name for n in topo.workers] == ["lab-worker-01", "lab-worker-02", "lab-worker-03"]


def test_tazlab_matches_the_incident_cluster() -> None:
    topo = build_topology("tazlab")
    assert len(topo.control_plane) == 3
    assert len(topo.workers) == 4
    assert topo.vip == "192.0.2.250"
    assert {n.hypervisor_host for n in topo.nodes} == {"pve-01", "pve-02"}
    assert len({n.vmid for n in topo.nodes}) == 7


@pytest.mark.parametrize("name", ["minimal", "tazlab"])
@pytest.mark.parametrize("workers", [0, 1, 50, MAX_WORKERS])
def test_addresses_are_unique_documentation_addresses(name: str, workers: int) -> None:
    topo = build_topology(name, workers)
    addresses = [n.address for n in topo.nodes]
    assert len(addresses) == len(set(addresses))
    assert all(is_documentation_address(a) for a in addresses)
    assert topo.vip not in addresses
    assert len(topo.workers) == workers
    assert all(n.role is Role.WORKER for n in topo.workers)


def test_unknown_topology_names_the_known_ones() -> None:
    with pytest.raises(UsageError, match=r"unknown topology 'big'.*minimal, tazlab"):
        build_topology("big")


@pytest.mark.parametrize("workers", [-1, MAX_WORKERS + 1])
def test_worker_count_is_bounded(workers: int) -> None:
    with pytest.raises(UsageError, match="--workers"):
        build_topology("minimal", workers)
