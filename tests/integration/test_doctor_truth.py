"""doctor never calls a blind scan healthy, and never lets the cluster write to the operator's
terminal: a refused token, an empty selection, a namespace that does not exist, an Event
carrying an OSC escape."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
import yaml

from labtools import LabHandle, run_cli

pytestmark = pytest.mark.lab


def _refused_kubeconfig(lab: LabHandle, tmp_path: Path) -> Path:
    """The lab's kubeconfig with its client identity swapped for a token the API refuses."""
    doc = yaml.safe_load(lab.kubeconfig.read_text())
    doc["users"] = [{"name": "nobody", "user": {"token": "not-a-valid-token"}}]
    for ctx in doc["contexts"]:
        ctx["context"]["user"] = "nobody"
    path = tmp_path / "refused.kubeconfig"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_a_refused_token_is_not_checked_never_healthy(lab: LabHandle, tmp_path: Path) -> None:
    kubeconfig = _refused_kubeconfig(lab, tmp_path)
    text = run_cli("doctor", "--kubeconfig", str(kubeconfig), "--fail-on", "warning")
    assert text.returncode == 1, text.stdout + text.stderr
    assert "healthy" not in text.stdout
    assert "not checked, nothing could be looked at" in text.stdout
    assert "refused every read" in text.stderr
    assert "unauthorized (401)" in text.stdout  # refused credentials, not RBAC's "forbidden"
    assert "Traceback" not in text.stderr
    as_json = run_cli("doctor", "--kubeconfig", str(kubeconfig), "-o", "json")
    assert as_json.returncode == 1
    summary = json.loads(as_json.stdout)["summary"]
    assert summary["verdict"] == "not checked"
    assert summary["ran"] == 0
    sarif = json.loads(run_cli("doctor", "--kubeconfig", str(kubeconfig), "-o", "sarif").stdout)
    assert sarif["runs"][0]["invocations"][0]["executionSuccessful"] is False
    junit = run_cli("doctor", "--kubeconfig", str(kubeconfig), "-o", "junit").stdout
    assert 'name="verdict" value="not checked"' in junit


def test_the_lab_with_findings_is_not_called_healthy(lab: LabHandle) -> None:
    done = run_cli("doctor", "--lab", "-o", "json", env={"FIREPROOF_LAB_DIR": str(lab.state_dir)})
    summary = json.loads(done.stdout)["summary"]
    assert summary["ran"] > 0
    assert summary["verdict"] in ("findings", "healthy")
    assert (summary["verdict"] == "healthy") == (
        summary["critical"] + summary["warning"] + summary["info"] == 0
    )


def test_an_empty_selection_is_a_usage_error() -> None:
    done = run_cli("doctor", "--check", "FP-N1", "--skip", "FP-N1")
    assert done.returncode == 2
    assert "no check selected" in done.stderr


def test_a_namespace_that_does_not_exist_is_said_so(lab: LabHandle) -> None:
    env = {"FIREPROOF_LAB_DIR": str(lab.state_dir)}
    done = run_cli("doctor", "--lab", "-n", "no-such-namespace", env=env)
    assert done.returncode == 1
    assert "namespace 'no-such-namespace' does not exist" in done.stderr


def test_an_osc_escape_in_an_event_never_reaches_the_terminal(lab: LabHandle) -> None:
    namespace = f"osc-{uuid.uuid4().hex[:6]}"
    lab.apply(
        f"""
apiVersion: v1
kind: Namespace
metadata: {{name: {namespace}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: stuck, namespace: {namespace}}}
spec:
  nodeSelector: {{nowhere: "true"}}
  containers: [{{name: main, image: "nginx:1.27"}}]
"""
    )
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "stuck.osc", "namespace": namespace},
        "involvedObject": {"kind": "Pod", "name": "stuck", "namespace": namespace},
        "reason": "FailedAttachVolume",
        "type": "Warning",
        "message": "Multi-Attach error for volume \x1b]0;pwned-title\x07 \x1b[2J\x9b31m cleared",
    }
    lab.apply(json.dumps(event))
    try:
        env = {"FIREPROOF_LAB_DIR": str(lab.state_dir)}
        done = run_cli("doctor", "--lab", "-n", namespace, "-o", "text", env=env)
        assert "FP-N3" in done.stdout
        assert "pwned-title" in done.stdout  # the text is kept, the control characters are not
        for control in ("\x1b", "\x07", "\x9b"):
            assert control not in done.stdout
    finally:
        lab.kubectl("delete", "namespace", namespace, "--wait=false")


def test_an_identity_that_reads_almost_nothing_is_never_healthy(
    lab: LabHandle, tmp_path: Path
) -> None:
    """A ServiceAccount that may list nodes and nothing else: what ran found nothing, the rest
    was refused, and the verdict says so."""
    lab.apply(
        """
apiVersion: v1
kind: ServiceAccount
metadata: {name: doctor-nodes-only, namespace: default}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: doctor-nodes-only}
rules: [{apiGroups: [""], resources: [nodes], verbs: [get, list]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: doctor-nodes-only}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: doctor-nodes-only}
subjects: [{kind: ServiceAccount, name: doctor-nodes-only, namespace: default}]
"""
    )
    token = lab.kubectl("create", "token", "doctor-nodes-only", "-n", "default").stdout.strip()
    doc = yaml.safe_load(lab.kubeconfig.read_text())
    doc["users"] = [{"name": "n", "user": {"token": token}}]
    for ctx in doc["contexts"]:
        ctx["context"]["user"] = "n"
    kubeconfig = tmp_path / "nodes-only.kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(doc))
    done = run_cli("doctor", "--kubeconfig", str(kubeconfig), "-o", "json")
    summary = json.loads(done.stdout)["summary"]
    assert summary["notChecked"] > 0
    assert summary["verdict"] in ("partial", "not checked", "findings")
    text = run_cli("doctor", "--kubeconfig", str(kubeconfig)).stdout
    assert "healthy:" not in text
