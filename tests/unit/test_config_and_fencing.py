"""fireproof.yaml validation and the fencing contract's verification loop."""

from __future__ import annotations

from pathlib import Path

import pytest

from fireproof.clock import ManualClock
from fireproof.config import FenceAgentDevice, ProxmoxDevice, SecretRef, load_config
from fireproof.errors import UsageError
from fireproof.fencing import FencingTimeout, Machine, PowerState, build_fencer, wait_for_state


def _load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "fireproof.yaml"
    path.write_text(text)
    return load_config(path)


def test_a_full_config_loads_with_defaults_and_relative_paths(tmp_path: Path) -> None:
    config = _load(
        tmp_path,
        """
cluster: {kubeconfig: kube/config, vip: 192.0.2.250}
devices:
  pve:
    url: https://pve.example:8006/api2/json
    ca_file: pve-ca.pem
    token_id: root@pam!fireproof
    token_secret: {file: secrets/token}
  ipmi:
    type: fence-agent
    agent: fence_ipmilan
    options: {ip: 192.0.2.10, username: admin, lanplus: "1"}
    password: {secret: fireproof/ipmi/password}
  idrac:
    type: fence-agent
    agent: fence_redfish
    options: {ip: 192.0.2.11, username: root, systems_uri: /redfish/v1/Systems/System.Embedded.1}
    ca_file: bmc-ca.pem
    password: {env: IDRAC_PASSWORD}
remediation: {method: delete}
""",
    )
    assert config.cluster.kubeconfig == tmp_path / "kube" / "config"  # type: ignore[attr-defined]
    pve = config.devices["pve"]  # type: ignore[attr-defined]
    assert isinstance(pve, ProxmoxDevice)
    assert pve.url == "https://pve.example:8006"
    assert pve.ca_file == tmp_path / "pve-ca.pem"
    assert pve.verify_tls is True
    assert pve.token_secret == SecretRef(file=tmp_path / "secrets" / "token")
    ipmi = config.devices["ipmi"]  # type: ignore[attr-defined]
    assert isinstance(ipmi, FenceAgentDevice)
    assert ipmi.options["lanplus"] == "1"
    assert ipmi.password == SecretRef(secret="fireproof/ipmi/password")
    assert ipmi.ca_file is None
    idrac = config.devices["idrac"]  # type: ignore[attr-defined]
    assert isinstance(idrac, FenceAgentDevice)
    assert idrac.ca_file == tmp_path / "bmc-ca.pem"
    assert config.remediation.method == "delete"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("devices:\n  pve:\n    url: https://x:8006\n", ":3: devices.pve: give token_id"),
        (
            "devices:\n  pve:\n    url: https://x\n    user: root@pam\n    password: hunter2\n",
            ":5: devices.pve.password: must be {env: NAME}",
        ),
        (
            "devices:\n  pve:\n    url: https://x\n    user: root@pam\n"
            "    password: {env: A, file: b}\n",
            ":5: devices.pve.password: give exactly one",
        ),
        ("devices:\n  a: {type: fake, extra: 1}\n", ":2: devices.a.extra: unknown field"),
        (
            "devices:\n  a: {type: fake}\ninventory:\n  nodes:\n    n: {device: a, vmid: 12}\n",
            ":5: inventory.nodes.n.vmid: must be >= 100",
        ),
        (
            "devices:\n  a: {type: fence-agent}\n",
            ":2: devices.a: missing required field 'devices.a.agent'",
        ),
        ("- just\n- a list\n", ":1: (top level): must be a mapping"),
    ],
)
def test_errors_name_file_line_and_field(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(UsageError) as info:
        _load(tmp_path, text)
    assert str(info.value) == f"{tmp_path / 'fireproof.yaml'}{expected}" or expected in str(
        info.value
    )
    assert str(info.value).startswith(str(tmp_path / "fireproof.yaml") + ":")


def test_secret_refs_resolve_without_exposing_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FP_TEST_SECRET", "s3cr3t")
    assert SecretRef(env="FP_TEST_SECRET").resolve() == "s3cr3t"
    (tmp_path / "token").write_text("from-file\n")
    assert SecretRef(file=tmp_path / "token").resolve() == "from-file"
    assert SecretRef(secret="ns/name/key").resolve(lambda n, s, k: f"{n}:{s}:{k}") == "ns:name:key"
    with pytest.raises(UsageError, match="FP_TEST_UNSET is not set"):
        SecretRef(env="FP_TEST_UNSET").resolve()
    with pytest.raises(UsageError, match="needs access to the cluster"):
        SecretRef(secret="ns/name/key").resolve()
    assert "s3cr3t" not in SecretRef(env="FP_TEST_SECRET").describe()


def test_verification_times_out_as_a_failure_never_a_success() -> None:
    clock = ManualClock()
    reads = iter([PowerState.ON, PowerState.UNKNOWN, PowerState.ON, PowerState.ON])
    with pytest.raises(FencingTimeout, match="still on after 3 s") as info:
        wait_for_state(
            lambda: next(reads),
            PowerState.OFF,
            timeout=3,
            interval=1,
            what="vm",
            clock=clock,
        )
    assert info.value.hint is not None
    assert "NOT verified" in info.value.hint


def test_verification_returns_once_the_state_is_read_back() -> None:
    reads = iter([PowerState.ON, PowerState.ON, PowerState.OFF])
    state = wait_for_state(
        lambda: next(reads),
        PowerState.OFF,
        timeout=10,
        interval=0,
        what="vm",
        clock=ManualClock(),
    )
    assert state is PowerState.OFF


def test_the_registry_builds_each_driver_and_the_fake_remembers(tmp_path: Path) -> None:
    config = _load(tmp_path, "devices:\n  dry: {type: fake}\n")
    fencer = build_fencer(config.devices["dry"])  # type: ignore[attr-defined]
    machine = Machine("w1", "dry")
    assert fencer.status(machine) is PowerState.ON
    assert fencer.off(machine) is PowerState.OFF
    assert fencer.status(machine) is PowerState.OFF
