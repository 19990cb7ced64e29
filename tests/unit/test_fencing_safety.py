"""Safety logic of fencing, in isolation: secrets, identity proof, ambiguous inventories,
deadline-bounded retries and the translation of proxmoxer's errors (issue: fencing on real
Proxmox). The same rules are exercised against the lab's emulator in tests/integration."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import stamina
from proxmoxer.core import AuthenticationError, ResourceException

from fireproof.clock import ManualClock
from fireproof.config import (
    Config,
    FenceAgentDevice,
    InventoryConfig,
    NodeEntry,
    ProxmoxDevice,
    SecretRef,
    TerraformSource,
    load_config,
)
from fireproof.errors import UsageError
from fireproof.fencing import (
    FencingError,
    Machine,
    MachineIdentity,
    PermanentFencingError,
    PowerState,
    TransientFencingError,
)
from fireproof.fencing.agent import FenceAgentFencer
from fireproof.fencing.proxmox import ProxmoxFencer
from fireproof.inventory import (
    IdentityMethod,
    IdentityMismatch,
    InventoryError,
    VmInfo,
    build_inventory,
    verify_identity,
)

SECRET = "5f0c3a8e-1111-2222-3333-444455556666"


# -- secrets ----------------------------------------------------------------------------------


@pytest.mark.parametrize("ending", ["\n", "\r\n", ""])
def test_one_trailing_newline_is_stripped_from_every_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ending: str
) -> None:
    monkeypatch.setenv("FP_TEST_TOKEN", SECRET + ending)
    path = tmp_path / "token"
    path.write_text(SECRET + ending)
    assert SecretRef(env="FP_TEST_TOKEN").resolve() == SECRET
    assert SecretRef(file=path).resolve() == SECRET
    from_cluster = SecretRef(secret="ns/name/key").resolve(lambda _n, _s, _k: SECRET + ending)
    assert from_cluster == SECRET


@pytest.mark.parametrize(
    "value", [SECRET + "\n\n", SECRET + "\nplug=202", "a\tb", "a\x1b]0;x\x07", "x\x7fy"]
)
def test_control_characters_are_refused_without_showing_the_value(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("FP_TEST_TOKEN", value)
    with pytest.raises(UsageError) as info:
        SecretRef(env="FP_TEST_TOKEN").resolve()
    assert "control character" in info.value.message
    assert value.strip() not in str(info.value) + (info.value.hint or "")
    assert "FP_TEST_TOKEN" in info.value.message


def test_empty_and_oversized_secrets_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FP_TEST_TOKEN", "\n")
    with pytest.raises(UsageError, match="is empty"):
        SecretRef(env="FP_TEST_TOKEN").resolve()
    # /dev/zero never ends: reading it whole would hang; a bounded read refuses it at once.
    with pytest.raises(UsageError, match="larger than 64 KiB"):
        SecretRef(file=Path("/dev/zero")).resolve()
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(UsageError, match="not UTF-8"):
        SecretRef(file=binary).resolve()


def test_secrets_are_resolved_when_the_fencer_is_built(monkeypatch: pytest.MonkeyPatch) -> None:
    # A missing secret must fail before heal writes anything (cordon), not at the first call.
    monkeypatch.delenv("FP_TEST_UNSET", raising=False)
    device = ProxmoxDevice(
        "pve",
        "https://127.0.0.1:8006",
        token_id="a@pam!b",
        token_secret=SecretRef(env="FP_TEST_UNSET"),
    )
    with pytest.raises(UsageError, match="FP_TEST_UNSET is not set"):
        ProxmoxFencer(device)
    agent = FenceAgentDevice("ipmi", "fence_ipmilan", password=SecretRef(env="FP_TEST_UNSET"))
    with pytest.raises(UsageError, match="FP_TEST_UNSET is not set"):
        FenceAgentFencer(agent)


def test_an_agent_option_with_a_line_break_is_refused_before_the_agent_runs(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "ran"
    agent = tmp_path / "fence_probe"
    agent.write_text(f"#!/bin/sh\ntouch {marker}\nexit 0\n")
    agent.chmod(0o755)
    device = FenceAgentDevice("d", str(agent), options={"ip": "192.0.2.10\nplug=202"})
    with pytest.raises(PermanentFencingError, match="line break"):
        FenceAgentFencer(device).status(Machine("w1", "d", plug="201"))
    assert not marker.exists()


def test_an_agent_verifies_its_device_with_the_ca_file_and_a_missing_one_runs_nothing(
    tmp_path: Path,
) -> None:
    # The probe answers "on" only when it was handed the CA bundle: what requests (and with it
    # fence_redfish) verifies a BMC's certificate with.
    bundle = tmp_path / "bmc-ca.pem"
    agent = tmp_path / "fence_probe"
    agent.write_text(f'#!/bin/sh\n[ "$REQUESTS_CA_BUNDLE" = "{bundle}" ] && exit 0\nexit 1\n')
    agent.chmod(0o755)
    device = FenceAgentDevice("d", str(agent), ca_file=bundle)
    with pytest.raises(PermanentFencingError, match="is not a readable file"):
        FenceAgentFencer(device).status(Machine("pve-01", "d"))
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    assert FenceAgentFencer(device).status(Machine("pve-01", "d")) is PowerState.ON
    unverified = FenceAgentDevice("d", str(agent))
    with pytest.raises(FencingError, match="exit 1"):
        FenceAgentFencer(unverified).status(Machine("pve-01", "d"))


# -- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("    user: root\n    password: {env: X}\n", ":4: devices.pve.user: must be USER@REALM"),
        (
            "    token_id: a@pam!b\n    token_secret: {env: X}\n    retries: 1000000000000\n",
            ":6: devices.pve.retries: must be <= 10",
        ),
        (
            "    token_id: a@pam!b\n    token_secret: {env: X}\n    timeout_seconds: nan\n",
            ":6: devices.pve.timeout_seconds: must be a finite number",
        ),
    ],
)
def test_proxmox_device_fields_are_validated_with_their_line(
    tmp_path: Path, body: str, expected: str
) -> None:
    path = tmp_path / "fireproof.yaml"
    path.write_text("devices:\n  pve:\n    url: https://pve.example:8006\n" + body)
    with pytest.raises(UsageError) as info:
        load_config(path)
    assert f"{path}{expected}" in info.value.message


def test_agent_options_are_single_line(tmp_path: Path) -> None:
    path = tmp_path / "fireproof.yaml"
    path.write_text(
        "devices:\n  ipmi:\n    type: fence-agent\n    agent: fence_ipmilan\n"
        '    options: {ip: "192.0.2.10\\nplug=202"}\n'
    )
    with pytest.raises(UsageError, match="must be single-line text"):
        load_config(path)


# -- identity ---------------------------------------------------------------------------------

NODE_UUID = "76e4de05-5b22-524a-bf0b-92a1460b48d1"


class _Device:
    """A device that answers identify() with a fixed identity (the emulator tests the real one)."""

    name = "pve"

    def __init__(self, identity: MachineIdentity) -> None:
        self.identity = identity

    def identify(self, machine: Machine) -> MachineIdentity:
        return self.identity

    def status(self, machine: Machine) -> PowerState:
        return PowerState.ON

    def off(self, machine: Machine) -> PowerState:
        return PowerState.OFF

    def on(self, machine: Machine) -> PowerState:
        return PowerState.ON


class _Blind(_Device):
    """A BMC behind a fence agent: it cannot say which machine it powers."""

    identify = None  # type: ignore[assignment]


VM = Machine("w1", "pve", "pve-01", 201)


def test_identity_by_uuid_wins_over_names_both_ways() -> None:
    same = _Device(MachineIdentity("renamed-in-proxmox", NODE_UUID.upper()))
    assert verify_identity("w1", NODE_UUID, VM, same, "config") is IdentityMethod.UUID
    # SMBIOS < 2.6 byte order of the first three fields: the same machine.
    swapped = "05dee476-225b-4a52-bf0b-92a1460b48d1"
    assert verify_identity("w1", NODE_UUID, VM, _Device(MachineIdentity("w1", swapped)), "x") is (
        IdentityMethod.UUID
    )
    clone = _Device(MachineIdentity("w1", "59fb73d0-d487-5e3c-9037-ca13f6248585"))
    with pytest.raises(IdentityMismatch) as info:
        verify_identity("w1", NODE_UUID, VM, clone, "terraform:/infra/state")
    assert NODE_UUID in info.value.message
    assert "59fb73d0-d487-5e3c-9037-ca13f6248585" in info.value.message
    assert "/infra/state" in (info.value.hint or "")


def test_identity_falls_back_to_the_name_only_without_a_uuid() -> None:
    assert verify_identity("w1", None, VM, _Device(MachineIdentity("w1", NODE_UUID)), "x") is (
        IdentityMethod.NAME
    )
    assert verify_identity("w1", NODE_UUID, VM, _Device(MachineIdentity("w1", None)), "x") is (
        IdentityMethod.NAME
    )
    with pytest.raises(IdentityMismatch, match="the VM is named w4"):
        verify_identity("w1", None, VM, _Device(MachineIdentity("w4", None)), "x")
    with pytest.raises(IdentityMismatch, match="template"):
        verify_identity("w1", None, VM, _Device(MachineIdentity("w1", None, template=True)), "x")


def test_a_device_that_cannot_identify_is_trusted_only_for_a_pinned_mapping() -> None:
    blind = _Blind(MachineIdentity(None, None))
    assert verify_identity("w1", NODE_UUID, VM, blind, "config") is IdentityMethod.PINNED
    with pytest.raises(IdentityMismatch, match="cannot say which machine"):
        verify_identity("w1", NODE_UUID, VM, blind, "terraform:/x")


# -- inventory --------------------------------------------------------------------------------


def test_a_name_shared_by_several_vms_fails_closed_and_names_them() -> None:
    config = Config(path=None, inventory=InventoryConfig(discover=("pve",)))
    vms = [VmInfo("w1", "pve-01", 201), VmInfo("w1", "pve-02", 299), VmInfo("w2", "pve-01", 202)]
    inv = build_inventory(config, ["w1", "w2"], lambda _d: vms)
    with pytest.raises(InventoryError) as info:
        inv.machine("w1")
    assert "VM 201 on pve-01" in info.value.message
    assert "VM 299 on pve-02" in info.value.message
    assert "inventory.nodes.w1" in (info.value.hint or "")
    machine = inv.machine("w2")
    assert machine is not None
    assert machine.vmid == 202


def test_a_ccm_provider_id_names_the_vm_by_its_vmid_before_its_name() -> None:
    config = Config(path=None, inventory=InventoryConfig(discover=("pve",)))
    # The VM kept an old name; the Proxmox CCM's providerID names it by VMID.
    vms = [VmInfo("old-name", "pve-02", 204), VmInfo("w2", "pve-01", 202)]
    ids = {"w1": "proxmox://tazlab/204", "w2": "proxmox://tazlab/999", "w3": "aws:///i-1"}
    inv = build_inventory(config, ["w1", "w2", "w3"], lambda _d: vms, ids)
    w1, w2 = inv.entries["w1"], inv.entries["w2"]
    assert (w1.source, w1.machine) == ("provider-id:pve", Machine("w1", "pve", "pve-02", 204))
    # A providerID naming no VM of the device falls back to the name.
    assert (w2.source, w2.machine.vmid if w2.machine else None) == ("discovery:pve", 202)
    assert inv.entries["w3"].machine is None  # another cloud's providerID is not ours


def test_one_vm_mapped_to_several_nodes_is_an_error_for_each(tmp_path: Path) -> None:
    state = tmp_path / "terraform.tfstate"
    state.write_text(
        '{"version": 4, "resources": [{"mode": "managed", "type": '
        '"proxmox_virtual_environment_vm", "name": "w", "instances": ['
        '{"attributes": {"name": "w1", "vm_id": 204, "node_name": "pve-02"}},'
        '{"attributes": {"name": "w4", "vm_id": 204, "node_name": "pve-02"}}]}]}'
    )
    config = Config(
        path=None,
        inventory=InventoryConfig(
            nodes={"w9": NodeEntry("pve", "pve-01", 209)},
            terraform=(TerraformSource(state, "pve"),),
        ),
    )
    inv = build_inventory(config, ["w1", "w4", "w9"])
    for node in ("w1", "w4"):
        with pytest.raises(InventoryError, match="VM 204 on pve-02 of device 'pve' is mapped to 2"):
            inv.machine(node)
    assert {e.node for e in inv.problems} == {"w1", "w4"}
    assert inv.machine("w9") is not None


def test_a_name_twice_in_a_terraform_state_is_said(tmp_path: Path) -> None:
    state = tmp_path / "terraform.tfstate"
    state.write_text(
        '{"version": 4, "resources": [{"mode": "managed", "type": '
        '"proxmox_virtual_environment_vm", "name": "w", "instances": ['
        '{"index_key": 0, "attributes": {"name": "w1", "vm_id": 201, "node_name": "pve-01"}},'
        '{"index_key": 1, "attributes": {"name": "w1", "vm_id": 301, "node_name": "pve-01"}}]}]}'
    )
    config = Config(
        path=None, inventory=InventoryConfig(terraform=(TerraformSource(state, "pve"),))
    )
    with pytest.raises(InventoryError, match="names 2 VMs w1: VM 201"):
        build_inventory(config, ["w1"]).machine("w1")


# -- the Proxmox driver's retries and errors --------------------------------------------------


@pytest.fixture
def no_real_pauses() -> Iterator[None]:
    """stamina's pauses are real sleeps; here the fake clock counts time, so none are slept
    (the tries are still decided by the driver's deadline rule)."""
    with stamina.set_testing(True, attempts=100, cap=True):
        yield


def _fencer(clock: ManualClock, *, retries: int = 10, timeout: float = 10.0) -> ProxmoxFencer:
    os.environ.setdefault("FP_TEST_TOKEN_SET", SECRET)
    device = ProxmoxDevice(
        "pve",
        "https://127.0.0.1:8006",
        token_id="root@pam!fp",
        token_secret=SecretRef(env="FP_TEST_TOKEN_SET"),
        timeout_seconds=timeout,
        retries=retries,
    )
    return ProxmoxFencer(device, clock=clock)


@pytest.mark.usefixtures("no_real_pauses")
def test_retries_stay_inside_the_deadline() -> None:
    clock = ManualClock()
    fencer = _fencer(clock)
    calls: list[float] = []

    def times_out() -> None:
        calls.append(clock.monotonic())
        clock.advance(10.0)  # each request uses its whole timeout
        raise requests.exceptions.Timeout()

    deadline = clock.monotonic() + 60.0
    with pytest.raises(TransientFencingError, match="timed out"):
        fencer._call("status of VM 201", times_out, deadline)
    assert clock.monotonic() <= deadline  # no try was started that could not end in time
    assert len(calls) >= 2  # but it did retry while there was room


@pytest.mark.usefixtures("no_real_pauses")
def test_login_failures_are_classified_by_status_and_no_exception_escapes() -> None:
    clock = ManualClock()
    fencer = _fencer(clock, retries=1)

    def login(code: int) -> None:
        raise AuthenticationError(f"Couldn't authenticate user: u@pam to https://x code: {code}")

    with pytest.raises(PermanentFencingError, match="refused the credentials"):
        fencer._call("log in", lambda: login(401))
    with pytest.raises(TransientFencingError, match="answered HTTP 500"):
        fencer._call("log in", lambda: login(500))
    with pytest.raises(TransientFencingError, match="host is unreachable"):
        fencer._call("log in", lambda: login(595))

    def garbled() -> None:
        raise requests.exceptions.ChunkedEncodingError("Connection broken")

    with pytest.raises(TransientFencingError, match="unusable answer"):
        fencer._call("status", garbled)

    def header() -> None:
        raise ValueError(f"Invalid header value b'PVEAPIToken=root@pam!fp={SECRET}\\n'")

    with pytest.raises(FencingError) as info:
        fencer._call("status", header)
    assert SECRET not in str(info.value)


@pytest.mark.usefixtures("no_real_pauses")
def test_proxmox_reasons_reach_the_operator() -> None:
    fencer = _fencer(ManualClock(), retries=0)

    def locked() -> None:
        raise ResourceException(500, "Internal Server Error", "VM is locked (backup)")

    def denied() -> None:
        raise ResourceException(
            403, "Forbidden", "Permission check failed (/vms/201, VM.PowerMgmt)"
        )

    def bad_param() -> None:
        raise ResourceException(
            400, "Bad Request", "Parameter verification failed.", errors={"timeout": "bad"}
        )

    with pytest.raises(TransientFencingError, match=r"VM is locked \(backup\) \(500\)"):
        fencer._call("stop VM 201", locked)
    with pytest.raises(PermanentFencingError) as info:
        fencer._call("stop VM 201", denied)
    assert "Permission check failed (/vms/201, VM.PowerMgmt)" in info.value.message
    assert "VM.PowerMgmt and VM.Audit" in (info.value.hint or "")
    with pytest.raises(PermanentFencingError, match="timeout: bad"):
        fencer._call("stop VM 201", bad_param)
