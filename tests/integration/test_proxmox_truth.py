"""The emulator answers as a real Proxmox VE 8.x/9.x does, and fireproof's driver reads those
answers right (issue: fencing on real Proxmox). Each behaviour cites the Proxmox source it
follows; the clients are the real ones (proxmoxer, requests, fireproof's driver) over HTTPS."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from proxmoxer import ProxmoxAPI
from proxmoxer.core import AuthenticationError

from fireproof.config import ProxmoxDevice, SecretRef
from fireproof.fencing import (
    Machine,
    PermanentFencingError,
    PowerState,
    TransientFencingError,
)
from fireproof.fencing.proxmox import ProxmoxFencer

from labtools import LabHandle, wait_for

pytestmark = pytest.mark.lab
VICTIM = "tazlab-worker-03"  # not HA-managed
HA_VICTIM = "tazlab-worker-02"  # HA-managed


@pytest.fixture
def pve(healthy_lab: LabHandle) -> Iterator[LabHandle]:
    yield healthy_lab
    healthy_lab.cli("lab", "fault", "clear")
    for node in (VICTIM, HA_VICTIM):
        healthy_lab.cli("lab", "power-on", node)


def _access(lab: LabHandle) -> dict[str, str]:
    doc: dict[str, str] = yaml.safe_load((lab.state_dir / "proxmox.yaml").read_text())
    return doc


def _machine(lab: LabHandle, node: str) -> Machine:
    entry = yaml.safe_load((lab.state_dir / "inventory.yaml").read_text())["nodes"][node]
    return Machine(node, "pve", str(entry["host"]), int(entry["vmid"]))


def _api(access: dict[str, str], token_id: str | None = None, secret: str | None = None) -> Any:
    user, name = (token_id or access["token_id"]).split("!")
    return ProxmoxAPI(
        "127.0.0.1",
        port=int(access["url"].rsplit(":", 1)[1]),
        user=user,
        token_name=name,
        token_value=secret or access["token_secret"],
        verify_ssl=access["ca_file"],
        timeout=10,
    )


def _fencer(
    lab: LabHandle, tmp_path: Path, token_id: str | None = None, secret: str | None = None
) -> ProxmoxFencer:
    access = _access(lab)
    secret_file = tmp_path / "token"
    secret_file.write_text((secret or access["token_secret"]) + "\n")
    device = ProxmoxDevice(
        "pve",
        access["url"],
        ca_file=Path(access["ca_file"]),
        token_id=token_id or access["token_id"],
        token_secret=SecretRef(file=secret_file),
        timeout_seconds=3,
        retries=1,
        verify_timeout_seconds=20,
        poll_interval_seconds=0.2,
    )
    return ProxmoxFencer(device)


def _task(api: Any, host: str, upid: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        task: dict[str, Any] = api.nodes(host).tasks(upid).status.get()
        return task if task["status"] == "stopped" else None

    return wait_for(f"task {upid}", done, timeout=30, interval=0.2)


def _raw(access: dict[str, str], method: str, path: str, **kwargs: Any) -> requests.Response:
    return requests.request(
        method,
        f"{access['url']}/api2/json{path}",
        verify=access["ca_file"],
        timeout=10,
        **kwargs,
    )


def test_a_stop_that_ends_with_warnings_is_a_success(pve: LabHandle, tmp_path: Path) -> None:
    # pve-common PVE/UPID.pm: "WARNINGS: N" is a successful end; qemu-server's _do_vm_stop
    # warns exactly when it had to kill a stuck guest.
    machine = _machine(pve, VICTIM)
    assert (
        pve.cli("lab", "fault", "add", "stop-warnings", "--vmid", str(machine.vmid)).returncode == 0
    )
    api = _api(_access(pve))
    upid = api.nodes(machine.host).qemu(machine.vmid).status.stop.post(timeout=10)
    assert _task(api, str(machine.host), upid)["exitstatus"] == "WARNINGS: 1"
    pve.cli("lab", "power-on", VICTIM)
    wait_for("VM on", lambda: _fencer(pve, tmp_path).status(machine) is PowerState.ON, timeout=20)
    assert _fencer(pve, tmp_path).off(machine) is PowerState.OFF


def test_a_locked_vm_fails_its_task_and_fencing_says_why(pve: LabHandle, tmp_path: Path) -> None:
    # qemu-server checks the lock inside the worker: the request gets a UPID, the task fails.
    machine = _machine(pve, VICTIM)
    assert pve.cli("lab", "fault", "add", "locked", "--vmid", str(machine.vmid)).returncode == 0
    api = _api(_access(pve))
    status = api.nodes(machine.host).qemu(machine.vmid).status.current.get()
    assert status["lock"] == "backup"
    with pytest.raises(PermanentFencingError, match=r"failed: VM is locked \(backup\)"):
        _fencer(pve, tmp_path).off(machine)
    assert api.nodes(machine.host).qemu(machine.vmid).status.current.get()["status"] == "running"


def test_tasks_read_as_on_real_proxmox(pve: LabHandle) -> None:
    access = _access(pve)
    api = _api(access)
    plain, ha = _machine(pve, VICTIM), _machine(pve, HA_VICTIM)
    # vm_start's "already running" is raised in the worker: a UPID, then a failed task.
    upid = api.nodes(plain.host).qemu(plain.vmid).status.start.post()
    assert _task(api, str(plain.host), upid)["exitstatus"] == f"VM {plain.vmid} already running"
    # An HA-managed VM's shutdown is the HA stack's stop: task type hastop.
    upid = api.nodes(ha.host).qemu(ha.vmid).status.shutdown.post()
    assert f":hastop:{ha.vmid}:" in upid
    # Tasks.pm: an unknown (well-formed) UPID is a parameter error on `upid`.
    unknown = upid.replace(":hastop:", ":qmstop:")
    answer = _raw(
        access,
        "GET",
        f"/nodes/{ha.host}/tasks/{unknown}/status",
        headers={"Authorization": f"PVEAPIToken={access['token_id']}={access['token_secret']}"},
    )
    assert answer.status_code == 400
    assert "upid" in answer.json()["errors"]
    assert answer.json()["message"].endswith("\n")  # pve-http-server >= 5.2 repeats it


def test_a_start_under_way_is_not_off_and_the_task_list_shows_it(
    pve: LabHandle, tmp_path: Path
) -> None:
    # pve-manager Tasks.pm (node_tasks): `source=active` lists running tasks, which have no
    # status or endtime yet; the default lists finished ones; without Sys.Audit on the node a
    # caller sees only its own. A VM whose start task runs still reads stopped for a moment:
    # fireproof must not call it off (its volumes would be released under a booting VM).
    machine = _machine(pve, VICTIM)
    fencer = _fencer(pve, tmp_path)
    assert fencer.off(machine) is PowerState.OFF
    hang = pve.cli("lab", "fault", "add", "hang-tasks", "--vmid", str(machine.vmid))
    assert hang.returncode == 0, hang.stderr
    access = _access(pve)
    api = _api(access)
    tasks = api.nodes(machine.host).tasks
    upid = api.nodes(machine.host).qemu(machine.vmid).status.start.post()
    active = tasks.get(source="active", vmid=machine.vmid)
    assert [t["upid"] for t in active] == [upid]
    assert active[0]["type"] == "qmstart"
    assert (active[0]["user"], active[0]["tokenid"]) == tuple(access["token_id"].split("!"))
    assert "status" not in active[0]
    assert "endtime" not in active[0]
    finished = tasks.get(vmid=machine.vmid)
    assert finished
    assert upid not in [t["upid"] for t in finished]
    assert all(t["status"] and t["endtime"] >= t["starttime"] for t in finished)
    assert finished[0]["type"] == "qmstop"
    assert finished[0]["status"] == "OK"
    assert api.nodes(machine.host).qemu(machine.vmid).status.current.get()["status"] == "stopped"
    assert fencer.status(machine) is PowerState.ON
    assert fencer.settled_off(machine) is False  # guard's fast path waits its confirm window

    made = pve.cli("lab", "pve-token", "fireproof@pve!tasks", "--privilege", "VM.Audit")
    stranger = _api(access, "fireproof@pve!tasks", made.stdout.strip())
    assert stranger.nodes(machine.host).tasks.get(source="all") == []


def test_a_vm_off_with_no_task_running_is_settled_off(pve: LabHandle, tmp_path: Path) -> None:
    # What lets guard act on its first read: status/current says stopped and the node's active
    # task list (pve-manager Tasks.pm, source=active) has no start, reboot or migration of it.
    machine = _machine(pve, VICTIM)
    fencer = _fencer(pve, tmp_path)
    assert fencer.settled_off(machine) is False  # running
    assert fencer.off(machine) is PowerState.OFF
    assert fencer.settled_off(machine) is True
    down = pve.cli("lab", "fault", "add", "host-unreachable", "--host", str(machine.host))
    assert down.returncode == 0, down.stderr
    assert fencer.settled_off(machine) is None  # 595: cannot tell, so the window stays


def test_logins_as_on_real_proxmox(pve: LabHandle) -> None:
    access = _access(pve)
    port = int(access["url"].rsplit(":", 1)[1])
    # pve-access-control: a user without realm does not log in.
    with pytest.raises(AuthenticationError, match="code: 401"):
        ProxmoxAPI(
            "127.0.0.1",
            port=port,
            user=access["user"].split("@")[0],
            password=access["password"],
            verify_ssl=access["ca_file"],
        )
    login = _raw(
        access, "POST", "/access/ticket", data={"username": access["user"], "password": "wrong"}
    )
    assert login.status_code == 401
    assert login.content == b""  # answered before any formatter: no body
    # A valid ticket is accepted as the password: that is how proxmoxer renews after an hour.
    first = _raw(
        access,
        "POST",
        "/access/ticket",
        data={"username": access["user"], "password": access["password"]},
    ).json()["data"]
    renewed = _raw(
        access,
        "POST",
        "/access/ticket",
        data={"username": access["user"], "password": first["ticket"]},
    )
    assert renewed.status_code == 200
    assert renewed.json()["data"]["username"] == access["user"]
    bad_token = _raw(
        access,
        "GET",
        "/nodes",
        headers={"Authorization": f"PVEAPIToken={access['token_id']}=not-the-secret"},
    )
    assert bad_token.status_code == 401
    assert bad_token.reason == "Authentication failed!"
    assert bad_token.content == b""


def test_the_minimal_role_is_enough_and_less_is_a_clear_error(
    pve: LabHandle, tmp_path: Path
) -> None:
    machine = _machine(pve, VICTIM)
    minimal = pve.cli(
        "lab",
        "pve-token",
        "fireproof@pve!guard",
        "--privilege",
        "VM.PowerMgmt",
        "--privilege",
        "VM.Audit",
        "--privilege",
        "Sys.Audit",
    )
    assert minimal.returncode == 0, minimal.stderr
    fencer = _fencer(pve, tmp_path, "fireproof@pve!guard", minimal.stdout.strip())
    assert any(vm[2] == machine.vmid for vm in fencer.list_vms())
    assert fencer.identify(machine).name == VICTIM
    assert fencer.off(machine) is PowerState.OFF
    assert fencer.on(machine) is PowerState.ON

    audit_only = pve.cli("lab", "pve-token", "fireproof@pve!audit", "--privilege", "VM.Audit")
    weak = _fencer(pve, tmp_path, "fireproof@pve!audit", audit_only.stdout.strip())
    assert weak.status(machine) is PowerState.ON
    with pytest.raises(PermanentFencingError) as info:
        weak.off(machine)
    assert f"Permission check failed (/vms/{machine.vmid}, VM.PowerMgmt)" in info.value.message
    assert "VM.PowerMgmt and VM.Audit on /vms, Sys.Audit on /nodes" in (info.value.hint or "")
    assert weak.status(machine) is PowerState.ON


def test_a_dead_host_looks_dead_and_fencing_fails_closed(pve: LabHandle, tmp_path: Path) -> None:
    machine = _machine(pve, VICTIM)
    host = str(machine.host)
    access = _access(pve)
    api = _api(access)
    added = pve.cli("lab", "fault", "add", "host-unreachable", "--host", host, "--seconds", "1")
    assert added.returncode == 0, added.stderr
    assert {n["node"]: n["status"] for n in api.nodes.get()}[host] == "offline"
    vms = {v["vmid"]: v for v in api.cluster.resources.get(type="vm")}
    assert vms[machine.vmid]["status"] == "running"  # pmxcfs keeps the last state a while
    path = f"/nodes/{host}/qemu/{machine.vmid}/status/current"
    token = {"Authorization": f"PVEAPIToken={access['token_id']}={access['token_secret']}"}
    # The proxy waits on the dead socket: a client that waits less gives up first.
    with pytest.raises(requests.exceptions.Timeout):
        requests.get(
            f"{access['url']}/api2/json{path}", headers=token, verify=access["ca_file"], timeout=0.3
        )
    answer = _raw(
        access,
        "GET",
        f"/nodes/{host}/qemu/{machine.vmid}/status/current",
        headers={"Authorization": f"PVEAPIToken={access['token_id']}={access['token_secret']}"},
    )
    assert answer.status_code == 595
    assert answer.reason == "No route to host"
    assert answer.content == b""
    with pytest.raises(TransientFencingError) as info:
        _fencer(pve, tmp_path).off(machine)
    assert "Proxmox host is unreachable" in info.value.message
    assert "Proxmox HA" in (info.value.hint or "")

    def forgotten() -> bool:
        vm = {v["vmid"]: v for v in api.cluster.resources.get(type="vm")}[machine.vmid]
        return vm["status"] == "unknown" and "name" not in vm

    wait_for("dead host's VMs read unknown", forgotten, timeout=30)
    # Discovery cannot map a node to a nameless VM: it is left unmapped, never guessed.
    assert all(vm[2] != machine.vmid for vm in _fencer(pve, tmp_path).list_vms())


def test_templates_are_not_discovered_and_the_config_carries_the_smbios_uuid(
    pve: LabHandle, tmp_path: Path
) -> None:
    added = pve.cli("lab", "vm", "add", VICTIM, "--vmid", "9003", "--template")
    assert added.returncode == 0, added.stderr
    try:
        fencer = _fencer(pve, tmp_path)
        named = [vm for vm in fencer.list_vms() if vm[0] == VICTIM]
        assert [vm[2] for vm in named] == [_machine(pve, VICTIM).vmid]
        template = fencer.identify(Machine(VICTIM, "pve", "pve-01", 9003))
        assert template.template
        own = fencer.identify(_machine(pve, VICTIM))
        node = pve.kubectl_json("get", "node", VICTIM)
        assert own.uuid == node["status"]["nodeInfo"]["systemUUID"]
        assert not own.template
    finally:
        pve.cli("lab", "vm", "remove", "9003")


def test_a_two_host_cluster_that_loses_a_host_loses_quorum(pve: LabHandle) -> None:
    # pve-cluster API2/ClusterConfig.pm `/cluster/status`: the cluster entry's quorate and each
    # node's online; `/cluster/config/qdevice` is {} without a corosync-qdevice socket.
    # corosync votequorum: 1 of 2 votes is no majority. qemu-server's power actions call
    # PVE::Cluster::check_cfs_quorum: "cluster not ready - no quorum?" (HTTP 500).
    api = _api(_access(pve))
    assert api.cluster.config.qdevice.get() == {}
    status = {r["id"]: r for r in api.cluster.status.get()}
    assert status["cluster"]["quorate"] == 1
    assert status["cluster"]["name"] == "tazlab"
    machine = _machine(pve, VICTIM)
    assert pve.cli("lab", "host-off", "pve-02").returncode == 0
    try:
        # A power cut's VMs still read as pmxcfs last saw them: running, not stopped.
        lost = _machine(pve, HA_VICTIM)
        assert lost.host == "pve-02"
        vms = {v["vmid"]: v for v in api.cluster.resources.get(type="vm")}
        assert vms[lost.vmid]["status"] == "running"
        status = {r["id"]: r for r in api.cluster.status.get()}
        assert status["cluster"]["quorate"] == 0
        assert status["node/pve-02"]["online"] == 0
        assert status["node/pve-01"]["online"] == 1
        assert machine.host == "pve-01"  # the survivor refuses too
        response = _raw(
            _access(pve),
            "POST",
            f"/nodes/{machine.host}/qemu/{machine.vmid}/status/stop",
            headers={"Authorization": f"PVEAPIToken={_access(pve)['token_id']}="
                     f"{_access(pve)['token_secret']}"},
        )  # fmt: skip
        assert response.status_code == 500
        assert "cluster not ready - no quorum?" in response.json()["message"]
    finally:
        pve.cli("lab", "host-on", "pve-02")
    assert {r["id"]: r for r in api.cluster.status.get()}["cluster"]["quorate"] == 1
