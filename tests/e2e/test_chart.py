"""The Helm chart, checked with the tools its users run: helm (built from the Go module proxy
by `fireproof lab build`), promtool, fireproof's own config loader, and the lab's API server
(server-side validation, and RBAC decisions for the chart's ServiceAccount)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from fireproof.config import FenceAgentDevice, ProxmoxDevice, load_config
from fireproof.errors import FireproofError
from fireproof.guard.metrics import GuardMetrics
from fireproof.lab.gotools import locate_helm

from labtools import REPO, LabHandle

CHART = REPO / "charts" / "fireproof"
VALUES = CHART / "ci" / "test-values.yaml"
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}  # the lab has no Prometheus operator


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(locate_helm()), *args], capture_output=True, text=True, timeout=120)


def render(*extra: str, namespace: str = "fireproof") -> list[dict[str, Any]]:
    done = helm("template", "fp", str(CHART), "-n", namespace, "-f", str(VALUES), *extra)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    assert len(found) == 1, [d["metadata"]["name"] for d in found]
    return found[0]


def test_helm_lint_passes_with_values_and_names_what_is_missing_in_one_message() -> None:
    assert helm("lint", str(CHART), "-f", str(VALUES)).returncode == 0
    # The chart's own defaults: one message naming every value a release needs (helm lint
    # reports a template's fail as information; an install fails with it).
    bare = helm("lint", str(CHART))
    message = "required values not set: proxmox.url"
    assert message in bare.stdout + bare.stderr
    install = helm("template", "fp", str(CHART), "--set", "proxmox.url=https://pve:8006")
    assert install.returncode != 0
    assert install.stderr.count("required values not set") == 1
    assert "proxmox.tokenId (USER@REALM!TOKENNAME); proxmox.existingSecret" in install.stderr
    assert "proxmox.url (" not in install.stderr  # the one given is not asked again


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("replicaCount=0", "/replicaCount"),
        ("guard.strategy=sometimes", "/guard/strategy"),
        ("proxmox.url=http://pve:8006", "/proxmox/url"),
        ("proxmox.tokenId=root@pam", "/proxmox/tokenId"),
        ("replicas=3", "additional properties 'replicas' not allowed"),
    ],
)
def test_a_bad_value_fails_at_install_with_the_schemas_message(setting: str, message: str) -> None:
    done = helm("template", "fp", str(CHART), "-f", str(VALUES), "--set", setting)
    assert done.returncode != 0
    assert message in done.stderr


def test_the_deployment_is_two_replicas_apart_non_root_and_read_only() -> None:
    deployment = one(render(), "Deployment")
    spec = deployment["spec"]["template"]["spec"]
    assert deployment["spec"]["replicas"] == 2
    term = spec["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert spec["securityContext"]["runAsNonRoot"] is True
    container = spec["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert "--id=$(POD_NAME)" in container["args"]
    assert one(render(), "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1


def test_the_rendered_config_is_a_fireproof_yaml_guard_accepts(tmp_path: Path) -> None:
    config_map = one(render(namespace="ops"), "ConfigMap", "fp-fireproof")
    path = tmp_path / "fireproof.yaml"
    path.write_text(config_map["data"]["fireproof.yaml"])
    config = load_config(path)
    assert config.guard.lease_namespace == "ops"
    assert config.guard.lease_name == "fp-fireproof"
    device = config.devices["pve"]
    assert isinstance(device, ProxmoxDevice)
    assert device.token_secret is not None
    assert device.token_secret.file == Path("/etc/fireproof/pve/token-secret")


BOUNDARIES = [
    ("guard.maxUnhealthy", ["40%", "100%", "100.0%", "0%", "2", "007%", "100.5%", "150%",
                            "40%\n", "-1", "4O%"]),
    ("guard.leaseStaleSeconds", [0.5, 1, 3600, 3601]),
    ("guard.confirmSeconds", [-1, 0, 600, 601]),
    ("guard.pollIntervalSeconds", [0.05, 0.1, 60, 61]),
    ("guard.extra", [{"max_attempts": 0}, {"max_attempts": 100}, {"max_attempts": 101},
                     {"lease_duration_seconds": 1}, {"lease_duration_seconds": 600},
                     {"boot_grace_seconds": 3600}, {"boot_grace_seconds": 3601},
                     {"retry_backoff_seconds": 0.05}, {"no_such_setting": 1}]),
    ("proxmox.timeoutSeconds", [0.05, 0.1, 300, 301]),
    ("proxmox.verifyTimeoutSeconds", [0.5, 1, 3600, 3601]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("key", "value"), [(key, value) for key, values in BOUNDARIES for value in values]
)
def test_the_chart_and_the_config_loader_agree_on_every_boundary(
    tmp_path: Path, key: str, value: object
) -> None:
    # A value helm installs must be one guard starts with, and one it refuses must be refused at
    # install: else the pods crash-loop after a successful `helm install`.
    done = helm(
        "template", "fp", str(CHART), "-f", str(VALUES), "--set-json", f"{key}={json.dumps(value)}"
    )
    chart_accepts = done.returncode == 0
    # The loader's verdict on the same value, in the config the chart renders from defaults.
    config_map = one(render(), "ConfigMap", "fp-fireproof")
    doc = yaml.safe_load(config_map["data"]["fireproof.yaml"])
    section, field = key.split(".")
    loader_key = {
        "maxUnhealthy": "max_unhealthy",
        "leaseStaleSeconds": "lease_stale_seconds",
        "confirmSeconds": "confirm_seconds",
        "pollIntervalSeconds": "poll_interval_seconds",
        "timeoutSeconds": "timeout_seconds",
        "verifyTimeoutSeconds": "verify_timeout_seconds",
    }.get(field)
    target = doc["guard"] if section == "guard" else doc["devices"]["pve"]
    if loader_key is None:  # guard.extra: merged into the guard: section as it is
        assert isinstance(value, dict)
        target.update(value)
    else:
        target[loader_key] = value
    path = tmp_path / "fireproof.yaml"
    path.write_text(yaml.safe_dump(doc))
    try:
        load_config(path)
        loader_accepts = True
    except FireproofError:
        loader_accepts = False
    assert chart_accepts == loader_accepts, (key, value, done.stderr)


BMC = {"agent": "fence_ipmilan", "options": {"ip": "192.0.2.211", "username": "admin"},
       "existingSecret": "bmc-pve-01"}  # fmt: skip


def test_hosts_render_a_bmc_device_guard_loads_with_its_password_from_a_secret(
    tmp_path: Path,
) -> None:
    docs = render("--set-json", f"hosts={json.dumps({'pve-01': BMC})}")
    config_map = one(docs, "ConfigMap", "fp-fireproof")
    path = tmp_path / "fireproof.yaml"
    path.write_text(config_map["data"]["fireproof.yaml"])
    config = load_config(path)
    assert config.hosts["pve-01"].device == "bmc-pve-01"
    device = config.devices["bmc-pve-01"]
    assert isinstance(device, FenceAgentDevice)
    assert device.agent == "fence_ipmilan"
    assert device.password is not None
    assert device.password.file == Path("/etc/fireproof/bmc/pve-01/password")
    spec = one(docs, "Deployment")["spec"]["template"]["spec"]
    mount = {m["name"]: m for m in spec["containers"][0]["volumeMounts"]}["bmc-pve-01"]
    assert mount == {"name": "bmc-pve-01", "mountPath": "/etc/fireproof/bmc/pve-01",
                     "readOnly": True}  # fmt: skip
    volume = {v["name"]: v for v in spec["volumes"]}["bmc-pve-01"]["secret"]
    assert volume["secretName"] == "bmc-pve-01"
    assert volume["items"] == [{"key": "password", "path": "password"}]
    assert device.ca_file is None


def test_a_redfish_bmc_is_verified_with_the_ca_from_its_secret(tmp_path: Path) -> None:
    redfish = {**BMC, "agent": "fence_redfish", "caKey": "bmc-ca.pem"}
    docs = render("--set-json", f"hosts={json.dumps({'pve-01': redfish})}")
    path = tmp_path / "fireproof.yaml"
    path.write_text(one(docs, "ConfigMap", "fp-fireproof")["data"]["fireproof.yaml"])
    device = load_config(path).devices["bmc-pve-01"]
    assert isinstance(device, FenceAgentDevice)
    assert device.ca_file == Path("/etc/fireproof/bmc/pve-01/ca.crt")
    spec = one(docs, "Deployment")["spec"]["template"]["spec"]
    volume = {v["name"]: v for v in spec["volumes"]}["bmc-pve-01"]["secret"]
    assert volume["items"] == [
        {"key": "password", "path": "password"},
        {"key": "bmc-ca.pem", "path": "ca.crt"},
    ]


@pytest.mark.parametrize(
    ("hosts", "accepted"),
    [
        ({"pve-01": BMC}, True),
        ({"pve-01": {**BMC, "agent": "ipmitool"}}, False),
        ({"pve-01": {**BMC, "options": {"password": "x"}}}, False),
        ({"pve-01": {**BMC, "options": {"ip": "a\nb"}}}, False),
        ({"pve-01": {**BMC, "timeoutSeconds": 0}}, False),
        ({"pve-01": {**BMC, "caKey": "ca crt"}}, False),
        ({"PVE_01": BMC}, False),
        ({"pve-01": {k: v for k, v in BMC.items() if k != "existingSecret"}}, False),
    ],
)
def test_the_chart_refuses_at_install_a_host_device_that_cannot_work(
    tmp_path: Path, hosts: dict[str, object], accepted: bool
) -> None:
    done = helm(
        "template", "fp", str(CHART), "-f", str(VALUES), "--set-json", f"hosts={json.dumps(hosts)}"
    )
    assert (done.returncode == 0) == accepted, done.stderr


def test_the_alert_rules_pass_promtool(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool comes with Debian's prometheus package (make test installs it)"
    rule = one(render(), "PrometheusRule")
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(rule["spec"]))
    done = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 4 rules found" in done.stdout


def test_each_alert_fires_and_stays_silent_as_its_promtool_unit_tests_say(tmp_path: Path) -> None:
    # tests/promtool/alerts_test.yaml: one group per alert, firing and not firing, against the
    # rules as helm renders them with the chart's defaults (stuckAfterMinutes 15).
    promtool = shutil.which("promtool")
    assert promtool, "promtool comes with Debian's prometheus package (make test installs it)"
    rule = one(render("--set", "prometheusRule.stuckAfterMinutes=15"), "PrometheusRule")
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rule["spec"]))
    cases = tmp_path / "alerts_test.yaml"
    cases.write_text((REPO / "tests" / "promtool" / "alerts_test.yaml").read_text())
    done = subprocess.run(
        [promtool, "test", "rules", cases.name],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout
    alerts = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]}
    tested = set(re.findall(r"alertname: (\w+)", cases.read_text()))
    assert tested == alerts  # a new alert comes with its cases


def _exported() -> set[str]:
    names: set[str] = set()
    for family in GuardMetrics().registry.collect():
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "histogram":
            names.update(f"{family.name}_{s}" for s in ("bucket", "sum", "count"))
        else:
            names.add(family.name)
    return names


def test_every_metric_the_dashboard_and_rules_name_is_one_guard_exports() -> None:
    docs = render()
    text = json.dumps(one(docs, "PrometheusRule")["spec"])
    text += one(docs, "ConfigMap", "fp-fireproof-dashboard")["data"]["fireproof-guard.json"]
    named = set(re.findall(r"\bfireproof_[a-z_]+", text))
    assert len(named) >= 8
    assert named <= _exported(), named - _exported()


@pytest.mark.lab
def test_the_rendered_manifests_pass_the_api_servers_validation(lab: LabHandle) -> None:
    namespace = f"chart-{uuid.uuid4().hex[:6]}"
    docs = [d for d in render(namespace=namespace) if d["kind"] not in CRD_KINDS]
    assert lab.kubectl("create", "namespace", namespace).returncode == 0
    try:
        done = lab.kubectl(
            "apply", "--server-side", "--dry-run=server", "-f", "-", input=yaml.safe_dump_all(docs)
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.count("(server dry run)") == len(docs)
    finally:
        lab.kubectl("delete", "namespace", namespace, "--wait=false")


@pytest.mark.lab
def test_the_service_account_may_do_what_guard_does_and_nothing_more(lab: LabHandle) -> None:
    namespace = f"chart-{uuid.uuid4().hex[:6]}"
    rbac = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
    docs = [d for d in render(namespace=namespace) if d["kind"] in rbac]
    for doc in docs:  # unique cluster-scoped names: tests may share the lab
        if doc["kind"].startswith("Cluster"):
            doc["metadata"]["name"] = f"{namespace}-{doc['metadata']['name']}"
        if doc["kind"] == "ClusterRoleBinding":
            doc["roleRef"]["name"] = f"{namespace}-{doc['roleRef']['name']}"
    manifest = yaml.safe_dump_all(
        [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}, *docs]
    )
    assert lab.kubectl("apply", "-f", "-", input=manifest).returncode == 0
    who = f"system:serviceaccount:{namespace}:fp-fireproof"
    try:
        allowed = [
            ("patch", "nodes", None),
            ("watch", "nodes", None),
            ("watch", "volumeattachments.storage.k8s.io", None),
            ("watch", "leases.coordination.k8s.io", "kube-node-lease"),
            ("delete", "pods", "blog"),
            ("delete", "volumeattachments.storage.k8s.io", None),
            ("list", "leases.coordination.k8s.io", "kube-node-lease"),
            ("update", "leases.coordination.k8s.io", namespace),
            ("create", "events", "default"),
        ]
        denied = [
            ("delete", "nodes", None),
            ("get", "secrets", namespace),
            ("update", "leases.coordination.k8s.io", "kube-system"),
            ("create", "pods", "blog"),
            ("watch", "pods", "blog"),
            ("patch", "deployments.apps", "kube-system"),
        ]
        for verb, resource, ns in allowed + denied:
            args = ["auth", "can-i", verb, resource, "--as", who]
            args += ["-n", ns] if ns else []
            answer = lab.kubectl(*args).stdout.strip()
            assert answer == ("yes" if (verb, resource, ns) in allowed else "no"), (verb, resource)
    finally:
        lab.kubectl("delete", "--wait=false", "-f", "-", input=manifest)
