"""Every bad input gives one clean `error:` (or click's usage error) naming the file, line or
flag, exit 1 or 2, and never a traceback or an "internal error": run as a user runs the CLI.
None of these reach a cluster, so no lab is needed."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from fireproof.lab.pki import ADMIN, LabPKI

from labtools import FIREPROOF, REPO, run_cli


def _ok_error(done: object, code: tuple[int, ...] = (1, 2)) -> str:
    assert done.returncode in code, (done.returncode, done.stdout, done.stderr)  # type: ignore[attr-defined]
    err: str = done.stderr  # type: ignore[attr-defined]
    assert "Traceback" not in err
    assert "internal error" not in err
    return err


def _state(tmp_path: Path, attributes: dict[str, object]) -> Path:
    path = tmp_path / "terraform.tfstate"
    resource = {
        "mode": "managed",
        "type": "proxmox_virtual_environment_vm",
        "name": "worker",
        "instances": [{"attributes": {"name": "w1", "node_name": "pve-01", **attributes}}],
    }
    path.write_text(json.dumps({"version": 4, "resources": [resource]}))
    return path


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "fireproof.yaml"
    path.write_text(text)
    return path


TERRAFORM_CONFIG = (
    "devices:\n  pve: {type: fake}\ninventory:\n  terraform: [{path: %s, device: pve}]\n"
)


@pytest.mark.parametrize(
    ("vm_id", "words"),
    [
        ("abc", "vm_id must be an integer, got 'abc'"),
        (1.5, "vm_id must be an integer, got 1.5"),
        (-5, "vm_id -5 is outside Proxmox's range 100-999999999"),
        (42, "vm_id 42 is outside Proxmox's range"),
        (10**12, "outside Proxmox's range"),
        (True, "vm_id must be an integer"),
    ],
)
def test_terraform_vm_ids_are_validated(tmp_path: Path, vm_id: object, words: str) -> None:
    state = _state(tmp_path, {"vm_id": vm_id})
    config = _config(tmp_path, TERRAFORM_CONFIG % state)
    err = _ok_error(run_cli("inventory", "show", "--config", str(config)))
    assert words in err
    assert "proxmox_virtual_environment_vm.worker" in err  # which instance
    assert err.count("\n") <= 2  # one error line, maybe a hint


def test_a_string_of_digits_is_a_valid_vm_id(tmp_path: Path) -> None:
    from fireproof.inventory.terraform import read_terraform_state

    vms = read_terraform_state(_state(tmp_path, {"vm_id": "201"}))
    assert [v.vmid for v in vms] == [201]


def test_non_utf8_and_deeply_nested_files(tmp_path: Path) -> None:
    state = tmp_path / "terraform.tfstate"
    state.write_bytes(b'{"version": 4, "resources": [], "x": "\xff\xfe"}')
    config = _config(tmp_path, TERRAFORM_CONFIG % state)
    assert "not UTF-8" in _ok_error(run_cli("inventory", "show", "--config", str(config)))
    state.write_text("[" * 100_000 + "]" * 100_000)
    assert "nested too deeply" in _ok_error(run_cli("inventory", "show", "--config", str(config)))
    config.write_bytes(b"devices:\n  pve: {type: fake}\n# \xff\n")
    err = _ok_error(run_cli("inventory", "show", "--config", str(config)))
    assert "fireproof.yaml: not UTF-8" in err
    config.write_text("a: " + "[" * 50_000 + "]" * 50_000 + "\n")
    err = _ok_error(run_cli("inventory", "show", "--config", str(config)))
    assert "nested too deeply" in err or "malformed YAML" in err


def test_duplicate_yaml_keys_are_an_error_not_last_wins(tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        "devices:\n  pve: {type: fake}\nremediation:\n  method: auto\n  method: delete\n",
    )
    err = _ok_error(run_cli("inventory", "show", "--config", str(config)))
    assert "fireproof.yaml:5: remediation.method: duplicate key (first on line 4)" in err


@pytest.mark.parametrize("vip", ["999.1.1.1", "not-an-ip", "192.0.2"])
def test_the_vip_must_be_an_ip_address(tmp_path: Path, vip: str) -> None:
    config = _config(tmp_path, f"cluster:\n  vip: {vip}\n")
    err = _ok_error(run_cli("inventory", "show", "--config", str(config)))
    assert f"fireproof.yaml:2: cluster.vip: must be an IP address, got '{vip}'" in err


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (
            "devices:\n  pve: {type: fence-agent, agent: fence_pve, timeout_seconds: 1e12}\n",
            "<= 3600",
        ),
        ("remediation:\n  workload_timeout_seconds: inf\n", "finite number"),
        ("remediation:\n  recover_timeout_seconds: 1e9\n", "<= 86400"),
        (
            "devices:\n  pve:\n    type: proxmox\n    url: https://x:8006\n"
            "    token_id: a@pam!b\n    token_secret: {env: X}\n    retries: 1000000000000\n",
            "<= 10",
        ),
    ],
)
def test_retries_and_timeouts_are_bounded(tmp_path: Path, text: str, words: str) -> None:
    err = _ok_error(run_cli("inventory", "show", "--config", str(_config(tmp_path, text))))
    assert words in err


def test_a_malformed_yaml_kubeconfig_is_one_line(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nclusters: [\n  - name: x\n")
    err = _ok_error(run_cli("doctor", "--kubeconfig", str(kubeconfig)))
    assert f"kubeconfig {kubeconfig}:" in err
    assert "malformed YAML" in err
    assert len(err.strip().splitlines()) <= 2


@pytest.mark.parametrize(
    "args",
    [
        ("heal", "node", "w1", "--timeout", "nan"),
        ("heal", "node", "w1", "--timeout", "inf"),
        ("doctor", "--stuck-after", "nan"),
        ("doctor", "--stuck-after", "-inf"),
        ("lab", "fault", "add", "latency", "--seconds", "nan"),
    ],
)
def test_nan_and_inf_flags_are_refused(args: tuple[str, ...]) -> None:
    err = _ok_error(run_cli(*args), code=(2,))
    assert "is not a finite number" in err


@pytest.mark.parametrize("name", ["a/b", "?x=1", "..", "", "bad\nname", "esc\x1b[31m", "UPPER"])
def test_node_names_are_rfc1123_before_any_url(name: str) -> None:
    err = _ok_error(run_cli("heal", "node", name), code=(2,))
    assert "is not a valid node name" in err
    assert "\x1b" not in err  # the escape is shown escaped, never sent to the terminal


@pytest.mark.parametrize(
    "command", [("fence", "status"), ("fence", "off"), ("fence", "on"), ("lab", "power-off")]
)
def test_every_node_argument_is_checked(command: tuple[str, ...]) -> None:
    assert "is not a valid node name" in _ok_error(run_cli(*command, "a/b"), code=(2,))


def test_a_namespace_that_cannot_exist_is_said_so() -> None:
    err = _ok_error(run_cli("doctor", "-n", "a/b?c"), code=(2,))
    assert "is not a valid namespace name" in err
    assert "not served" not in err


PASSWORD = "hunter2-s3cret"


def test_a_password_in_a_proxmox_url_is_refused_and_never_printed(tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        "devices:\n  pve:\n    type: proxmox\n"
        f"    url: https://root%40pam:{PASSWORD}@192.0.2.10:8006\n"
        "    token_id: root@pam!x\n    token_secret: {env: NOPE}\n",
    )
    err = _ok_error(run_cli("inventory", "show", "--config", str(config)))
    assert "devices.pve.url: must not carry a user name or password" in err
    assert PASSWORD not in err


def test_a_password_in_a_kubeconfig_server_is_refused_and_never_printed(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: x\n"
        f"clusters: [{{name: c, cluster: {{server: 'https://admin:{PASSWORD}@127.0.0.1:1'}}}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: x, context: {cluster: c, user: u}}]\n"
    )
    err = _ok_error(run_cli("doctor", "--kubeconfig", str(kubeconfig)))
    assert "server URL carries a user name or password" in err
    assert PASSWORD not in err


@pytest.mark.parametrize(
    "command",
    [
        ("inventory", "show", "--config", "/dev/zero"),
        ("drill", "run", "/dev/zero"),
        ("drill", "report", "/dev/zero"),
        ("inventory", "show", "--config", "/etc"),
    ],
)
def test_a_file_of_no_end_or_a_directory_is_one_clear_error(command: tuple[str, ...]) -> None:
    done = run_cli(*command, timeout=30)
    err = _ok_error(done)
    assert command[-1] in err
    assert "larger than" in err or "is a directory" in err


SPEC = 'name: x\ntarget: {running: "%s"}\nfault: power-off\nrecovery: none\n'
BAD_FILES = [
    ("fireproof.yaml", "cluster:\n  kubeconfig: ~no-such-user-here/kc\n", "no user"),
    ("fireproof.yaml", 'cluster:\n  context: "x\x01y"\n', ":2: control character U+0001"),
    ("fireproof.yaml", "guard:\n  lease_name: a/b\n", ":2: guard.lease_name: 'a/b' is not a"),
    ("fireproof.yaml", "guard:\n  lease_namespace: KUBE\n", ":2: guard.lease_namespace"),
    (
        "fireproof.yaml",
        "devices:\n  pve: {type: fake}\ninventory:\n  nodes:\n    ../x: {device: pve}\n",
        ":5: inventory.nodes.../x: '../x' is not a node name",
    ),
    (
        "fireproof.yaml",
        "devices:\n  p:\n    type: proxmox\n    url: https://x:8006\n    token_id: a@pam!t\n"
        "    token_secret: {secret: ns/../k}\n",
        ":6: devices.p.token_secret.secret: must be NAMESPACE/NAME/KEY",
    ),
    ("spec.yaml", "", "the drill spec is empty"),
    ("spec.yaml", SPEC % "Web/deployment/x", ":2: target.running: must be NAMESPACE/KIND/NAME"),
    ("spec.yaml", SPEC % "web/deployment/x?y=1", ":2: target.running: must be"),
    (
        "spec.yaml",
        "name: d\ntarget: {node: n1}\nfault: power-off\ntimeout: 100000h\n",
        ":4: timeout: must be at most 24h",
    ),
    (
        "spec.yaml",
        "name: d\ntarget: {node: n1}\nfault: power-off\ntimeout: 99999999999999999999s\n",
        ":4: timeout: must be at most 24h",
    ),
    (
        "spec.yaml",
        "name: d\ntarget: {node: n1}\nfault: power-off\n"
        "slo:\n  - {workload: a/deployment/b, running_elsewhere_within: 25h}\n",
        ":5: slo[0].running_elsewhere_within: must be at most 24h",
    ),
]


@pytest.mark.parametrize(("file", "text", "words"), BAD_FILES)
def test_bad_files_are_one_line_naming_file_line_and_field(
    tmp_path: Path, file: str, text: str, words: str
) -> None:
    path = tmp_path / file
    path.write_text(text)
    if file == "spec.yaml":
        done = run_cli("drill", "run", str(path), "--yes")
    else:
        done = run_cli("inventory", "show", "--config", str(path))
    err = _ok_error(done)
    assert words in err, err
    assert len(err.strip().splitlines()) <= 2, err


def _run_document(**changes: object) -> dict[str, object]:
    doc: dict[str, object] = json.loads((REPO / "tests/data/drill-run-heal.json").read_text())
    doc.update(changes)
    return doc


ESCAPES = "\x1b]52;c;aGk=\x07\x1b[2J"
BAD_RUNS = [
    (_run_document(verdict=ESCAPES + "pass"), "at $.verdict"),
    (_run_document(timeline=[{"t": "soon", "phase": "fenced"}]), "at $.timeline[0]"),
    (_run_document(slos="all good"), "at $.slos"),
    ({"spec": {}, "timeline": [], "slos": [], "verdict": "pass"}, "is a required property"),
    (_run_document(spec={**_run_document()["spec"], "fault": ESCAPES}), "at $.spec.fault"),  # type: ignore[dict-item]
]


@pytest.mark.parametrize(("doc", "words"), BAD_RUNS)
@pytest.mark.parametrize("command", ["report", "compare"])
def test_run_documents_from_outside_are_checked_against_the_schema(
    tmp_path: Path, doc: dict[str, object], words: str, command: str
) -> None:
    path = tmp_path / "run.json"
    path.write_text(json.dumps(doc))
    args = (
        [str(path)]
        if command == "report"
        else [str(REPO / "tests/data/drill-run-heal.json"), str(path)]
    )
    err = _ok_error(run_cli("drill", command, *args))
    assert "not a valid drill run" in err, err
    assert words in err, err
    assert "\x1b" not in err
    assert "\x07" not in err


def test_the_shipped_run_documents_still_render() -> None:
    for name in ("drill-run-heal.json", "drill-run-none.json"):
        done = run_cli("drill", "report", str(REPO / "tests/data" / name))
        assert done.returncode in (0, 3), done.stderr


@pytest.mark.parametrize(
    ("flag", "where", "words"),
    [
        ("--save", "no-such-dir/run.json", "does not exist"),
        ("--html", ".", "is a directory"),
        ("--junit", "no-such-dir/j.xml", "does not exist"),
    ],
)
def test_drill_outputs_are_checked_before_anything_runs(
    tmp_path: Path, flag: str, where: str, words: str
) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: x\ntarget: {node: w1}\nfault: power-off\n")
    done = run_cli("drill", "run", str(spec), "--yes", flag, str(tmp_path / where))
    err = _ok_error(done)
    assert flag in err
    assert words in err


EXEC_KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:9"}}]
users:
- name: u
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1beta1
      command: %s
      args: %s
      interactiveMode: Never
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
"""


@pytest.mark.parametrize(
    ("command", "args", "words"),
    [
        ("no-such-plugin-here", "[]", "is not installed"),
        ("sleep", '["100"]', "did not answer within 2 s"),
        ("echo", '["not json"]', "did not answer an ExecCredential with a token"),
        ("echo", """['{"status": {}}']""", "did not answer an ExecCredential with a token"),
        ("/bin/false", "[]", "exited 1"),
    ],
)
def test_exec_credential_plugins_are_bounded_and_checked(
    tmp_path: Path, command: str, args: str, words: str
) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(EXEC_KUBECONFIG % (command, args))
    done = run_cli(
        "doctor", "--kubeconfig", str(kubeconfig), env={"FIREPROOF_EXEC_TIMEOUT": "2"}, timeout=30
    )
    err = _ok_error(done)
    assert words in err, err


def _kubeconfig(
    server: str = "https://127.0.0.1:1", cluster: str = "", user: str = "token: t"
) -> str:
    return (
        "apiVersion: v1\nkind: Config\ncurrent-context: x\n"
        f"clusters: [{{name: c, cluster: {{server: '{server}'{cluster}}}}}]\n"
        f"users: [{{name: u, user: {{{user}}}}}]\n"
        "contexts: [{name: x, context: {cluster: c, user: u}}]\n"
    )


NOT_PEM = "aGVsbG8="  # base64 of "hello"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "is empty"),
        ("apiVersion: v1\nkind: Config\n", "has no clusters"),
        ("- a\n- b\n", "is not a mapping"),
        ("clusters: 5\n", "clusters must be a list, not int"),
        ("clusters: [{name: c, cluster: 7}]\ncontexts: []\n", "cluster must be a mapping"),
        ("clusters: [{cluster: {server: x}}]\n", "clusters[0] needs a name"),
        (_kubeconfig(cluster=", certificate-authority-data: '!!x'"), "is not base64"),
        (_kubeconfig(cluster=f", certificate-authority-data: {NOT_PEM}"), "not a PEM certificate"),
        (_kubeconfig(user=f"client-certificate-data: {NOT_PEM}"), "not a PEM certificate"),
        (_kubeconfig(user=f"client-key-data: {NOT_PEM}"), "not a PEM private key"),
        (_kubeconfig(server="https://127.0.0.1:99999"), "server port is not 1-65535"),
        (_kubeconfig(server="127.0.0.1:6443"), "not an https:// URL with a host"),
        (_kubeconfig().replace("current-context: x", "current-context: y"), "'y' not found"),
    ],
)
def test_every_malformed_kubeconfig_shape_is_one_clear_error(
    tmp_path: Path, text: str, words: str
) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(text)
    err = _ok_error(run_cli("doctor", "--kubeconfig", str(kubeconfig), timeout=30))
    assert f"kubeconfig {kubeconfig}" in err
    assert words in err


def test_kubeconfig_paths_are_merged_as_kubectl_merges_them(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    first.write_text(_kubeconfig(server="https://127.0.0.1:1"))
    second.write_text(
        _kubeconfig(server="https://127.0.0.1:2")
        .replace("name: c,", "name: c2,")
        .replace("cluster: c,", "cluster: c2,")
        .replace("name: x,", "name: other,")
        .replace("current-context: x", "current-context: other")
    )
    missing = tmp_path / "missing"
    env = {"KUBECONFIG": f"{missing}:{first}:{second}"}
    # The first file's current-context wins; a context of the second file is there too; a
    # missing file of the list is skipped.
    done = run_cli("doctor", env=env, timeout=60)
    assert "127.0.0.1:1" in _ok_error(done)
    done = run_cli("doctor", "--context", "other", env=env, timeout=60)
    assert "127.0.0.1:2" in _ok_error(done)
    err = _ok_error(run_cli("doctor", env={"KUBECONFIG": str(missing)}, timeout=30))
    assert "none of $KUBECONFIG" in err
    err = _ok_error(run_cli("doctor", "--kubeconfig", str(tmp_path), timeout=30))
    assert "is a directory" in err


@pytest.mark.parametrize(
    ("attributes", "words"),
    [
        ({"vm_id": 101, "name": ["w1"]}, "name must be a string, got a list"),
        ({"vm_id": 101, "node_name": {"x": 1}}, "node_name must be a string, got an object"),
        ({"vm_id": 101, "ipv4_addresses": 5}, "ipv4_addresses must be a list of lists"),
        ({"vm_id": 101, "ipv4_addresses": [5, [6]]}, "ipv4_addresses must be a list of lists"),
    ],
)
def test_terraform_shapes_of_the_wrong_type_name_the_resource(
    tmp_path: Path, attributes: dict[str, object], words: str
) -> None:
    state = _state(tmp_path, attributes)
    config = _config(tmp_path, TERRAFORM_CONFIG % state)
    err = _ok_error(run_cli("inventory", "show", "--config", str(config)))
    assert words in err
    assert "proxmox_virtual_environment_vm.worker" in err


def test_terraform_instances_of_the_wrong_type_name_the_resource(tmp_path: Path) -> None:
    path = tmp_path / "terraform.tfstate"
    resource = {"mode": "managed", "type": "proxmox_vm_qemu", "name": "cp", "instances": 5}
    path.write_text(json.dumps({"version": 4, "resources": [resource]}))
    config = _config(tmp_path, TERRAFORM_CONFIG % path)
    err = _ok_error(run_cli("inventory", "show", "--config", str(config)))
    assert "proxmox_vm_qemu.cp: instances must be a list, got a number" in err


def test_a_missing_lab_dir_is_hinted_with_the_flag_the_user_typed(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "name: d\ntarget: {node: n1}\nfault: partition\nslo: [{no_double_attach: true}]\n"
    )
    done = run_cli("drill", "run", str(spec), "--lab-dir", str(tmp_path / "none"), "--dry-run")
    err = _ok_error(done)
    assert "--lab-dir" in err
    assert "--state-dir" not in err


def test_no_writable_temporary_directory_is_one_clear_error(tmp_path: Path) -> None:
    # A container with a read-only root and no /tmp mount: the Kubernetes client has nowhere to
    # write the kubeconfig's inline certificates. Made here with a private mount namespace in
    # which /tmp and /var/tmp are read-only and the working directory is /proc.
    pki = LabPKI(tmp_path / "pki")
    pki.generate()
    kubeconfig = tmp_path / "kubeconfig"
    pki.write_kubeconfig(kubeconfig, ADMIN, "https://127.0.0.1:1", embed=True)
    script = (
        "mount -o bind,ro /tmp /tmp && mount -o bind,ro /var/tmp /var/tmp && cd /proc && "
        f'exec "{FIREPROOF}" doctor --kubeconfig "{kubeconfig}"'
    )
    env = {k: v for k, v in os.environ.items() if k not in ("TMPDIR", "TEMP", "TMP")}
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    err = _ok_error(done)
    assert "no writable temporary directory" in err
    assert "hint: mount a writable /tmp" in err
