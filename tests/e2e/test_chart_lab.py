"""fireproof's chart installed into the lab with helm, as a user installs it: the lab runs the
guard pods as real processes under the chart's own ServiceAccount, RBAC and values."""

from __future__ import annotations

import base64
import itertools
import json
import os
import re
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from labtools import REPO, LabHandle, run_cli, running_lab, wait_for

pytestmark = pytest.mark.lab

CHART = REPO / "charts" / "fireproof"
NAMESPACE = "fireproof"


def helm(lab: LabHandle, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("lab", "helm", "--state-dir", str(lab.state_dir), "--", *args, timeout=600)


def install(
    lab: LabHandle, *extra: str, name: str = "fireproof"
) -> subprocess.CompletedProcess[str]:
    values = lab.state_dir / "guard-values.yaml"
    return helm(lab, "install", name, str(CHART), "-n", NAMESPACE, "-f", str(values), *extra)


@pytest.fixture(scope="module")
def own_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """fireproof's image, built from these sources as `make image` builds it: the chart's pods
    run inside it, as users' do."""
    out = tmp_path_factory.mktemp("image")
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "image.py"), "--out", str(out), "--cached"],
        capture_output=True, text=True, timeout=1200, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out / "oci"


@pytest.fixture(scope="module")
def chart_lab(tmp_path_factory: pytest.TempPathFactory, own_image: Path) -> Iterator[LabHandle]:
    state = tmp_path_factory.mktemp("chart") / "state"
    with running_lab(state, "--profile", "fast", "--own-image-layout", str(own_image)) as lab:
        done = install(lab, "--wait", "--timeout", "5m")
        assert done.returncode == 0, done.stdout + done.stderr
        yield lab


def guard_pods(lab: LabHandle) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = lab.kubectl_json("get", "pods", "-n", NAMESPACE)["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def lease(lab: LabHandle) -> dict[str, Any]:
    spec: dict[str, Any] = lab.kubectl_json("get", "lease", NAMESPACE, "-n", NAMESPACE)["spec"]
    return spec


def process_of(lab: LabHandle, pod: str) -> int:
    """The guard process of ``pod``, as the lab's Started event names it."""
    events = lab.kubectl_json(
        "get", "events", "-n", NAMESPACE, "--field-selector", f"involvedObject.name={pod}"
    )["items"]
    started = [
        e["message"] for e in events if e["reason"] == "Started" and "process" in e["message"]
    ]
    match = re.search(r"process (\d+)", started[-1])
    assert match, started
    return int(match.group(1))


def test_guard_runs_inside_the_lab_under_the_charts_rbac(chart_lab: LabHandle) -> None:
    pods = guard_pods(chart_lab)
    assert len(pods) == 2
    assert all(ready(p) for p in pods)
    assert len({p["spec"]["nodeName"] for p in pods}) == 2  # required anti-affinity
    names = {p["metadata"]["name"] for p in pods}
    # One leader, and a person can tell which pod it is.
    assert lease(chart_lab)["holderIdentity"] in names

    pod = sorted(names)[0]
    pid = process_of(chart_lab, pod)
    # It runs inside the image users pull: the image's own Python and fireproof, as UID 65532,
    # on a read-only root over the unpacked image.
    root = Path(os.readlink(f"/proc/{pid}/root"))
    assert os.readlink(f"/proc/{pid}/exe") == f"{root}/usr/bin/python3.11"
    # Through /proc/PID/root: the image's overlay exists only in the container's namespace.
    assert Path(f"/proc/{pid}/root/opt/fireproof/lib/fireproof").is_dir()
    status = Path(f"/proc/{pid}/status").read_text()
    assert re.search(r"^Uid:\s+65532\s", status, re.MULTILINE)
    top = next(line for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines()
               if line.split()[4] == "/")  # fmt: skip
    assert " / ro," in top
    assert "lowerdir=" in top
    assert str(chart_lab.state_dir / "image") in top
    environ = dict(
        item.split("=", 1)
        for item in Path(f"/proc/{pid}/environ").read_text().split("\0")
        if "=" in item
    )
    api = chart_lab.state["ports"]["apiserver"]
    assert environ["KUBERNETES_SERVICE_HOST"] == "127.0.0.1"
    assert environ["KUBERNETES_SERVICE_PORT"] == str(api)
    assert environ["POD_NAME"] == pod
    # Its own mount namespace has the ServiceAccount at the standard path and the chart's
    # config and Proxmox Secret where the chart mounts them.
    mounts = Path(f"/proc/{pid}/mountinfo").read_text()
    for target in ("/run/secrets/kubernetes.io/serviceaccount", "/etc/fireproof/pve",
                   "/etc/fireproof/fireproof.yaml", "/var/lib/fireproof"):  # fmt: skip
        assert f" {target} " in mounts, target
    # /var/run is a symlink to /run: through /proc/PID/root an absolute link would leave it.
    account = Path(f"/proc/{pid}/root/run/secrets/kubernetes.io/serviceaccount")
    token = (account / "token").read_text()
    assert (account / "namespace").read_text() == (NAMESPACE)
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert claims["sub"] == f"system:serviceaccount:{NAMESPACE}:fireproof"
    assert claims["kubernetes.io"]["pod"]["name"] == pod  # from the TokenRequest API, bound

    # That token, the one guard runs with: what guard does is allowed, anything else is 403.
    ca = chart_lab.state_dir / "pki" / "ca.crt"
    with httpx.Client(
        base_url=f"https://127.0.0.1:{api}",
        verify=ssl.create_default_context(cafile=str(ca)),
        headers={"Authorization": f"Bearer {token}"},
    ) as client:
        assert client.get("/api/v1/nodes").status_code == 200
        leases = f"/apis/coordination.k8s.io/v1/namespaces/{NAMESPACE}/leases"
        assert client.get(f"{leases}/fireproof").status_code == 200  # its own Lease, by name
        assert client.get(leases).status_code == 403  # not every Lease of the namespace
        assert client.get("/api/v1/namespaces/kube-system/secrets").status_code == 403
        assert client.delete("/api/v1/nodes/tazlab-worker-01").status_code == 403


def test_bad_values_fail_at_install_with_the_schemas_message(chart_lab: LabHandle) -> None:
    done = install(chart_lab, "--set", "replicaCount=0", "--set", "guard.strategy=sometimes",
                   name="broken")  # fmt: skip
    assert done.returncode != 0
    said = done.stdout + done.stderr
    assert "values don't meet the specifications of the schema" in said
    assert "/replicaCount" in said
    assert "/guard/strategy" in said
    assert "broken" not in helm(chart_lab, "list", "-n", NAMESPACE, "-q").stdout


def test_an_upgrade_with_two_replicas_keeps_a_leader(chart_lab: LabHandle) -> None:
    before = {p["metadata"]["name"] for p in guard_pods(chart_lab)}
    # Every version of the Lease, in order: a watch misses none, whatever the machine's speed.
    watch = subprocess.Popen(
        [str(chart_lab.kubectl_path), "--kubeconfig", str(chart_lab.kubeconfig), "get", "lease",
         NAMESPACE, "-n", NAMESPACE, "--watch", "-o", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        done = helm(chart_lab, "upgrade", "fireproof", str(CHART), "-n", NAMESPACE,
                    "--reuse-values", "--set", "podAnnotations.rollout=upgraded",
                    "--wait", "--timeout", "5m")  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        after = wait_for(
            "two new guard pods, one of them leading",
            lambda: _new_leader(chart_lab, before),
            timeout=120,
        )
    finally:
        watch.terminate()
        out, _ = watch.communicate(timeout=30)
    assert after
    holders = [version["spec"].get("holderIdentity") for version in _documents(out)]
    moves = [(a, b) for a, b in itertools.pairwise(holders) if a != b]
    assert any(b and b not in before for _a, b in moves), holders  # moved to a new pod
    # A leader throughout: each leader that went away stepped down (its last write empties the
    # holder, so a standby takes over at its next look). A holder replaced by another directly
    # is a lease left to expire: a time without a leader.
    assert all(not a or not b for a, b in moves), holders


def _documents(stream: str) -> list[dict[str, Any]]:
    """The JSON objects `kubectl get --watch -o json` printed one after the other."""
    decoder, found, at = json.JSONDecoder(), [], 0
    while (at := _skip_space(stream, at)) < len(stream):
        document, at = decoder.raw_decode(stream, at)
        found.append(document)
    return found


def _skip_space(text: str, at: int) -> int:
    while at < len(text) and text[at].isspace():
        at += 1
    return at


def _new_leader(lab: LabHandle, before: set[str]) -> bool:
    pods = guard_pods(lab)
    names = {p["metadata"]["name"] for p in pods}
    fresh = len(pods) == 2 and not names & before and all(ready(p) for p in pods)
    return fresh and lease(lab).get("holderIdentity") in names


def test_the_leaders_own_node_powered_off_is_healed_by_the_other_replica(
    tmp_path: Path, own_image: Path
) -> None:
    """The hardest case: Traefik and the guard leader on one worker, that worker powered off
    (the published figures come from the same script at the real profile)."""
    out = tmp_path / "failover.json"
    done = subprocess.run(
        [sys.executable, "benchmarks/guard_failover.py", "--runs", "1", "--profile", "fast",
         "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=1200,
        env={**os.environ, "FIREPROOF_LAB_IMAGE": str(own_image)},  # its labs run the image
    )  # fmt: skip
    assert out.exists(), done.stdout + done.stderr
    runs = {r["variant"]: r for r in json.loads(out.read_text())["runs"]}
    dies = runs["leader-dies"]
    assert dies["leader_after"] != dies["leader_before"], dies
    assert dies["new_leader_seconds"] is not None
    for run in runs.values():
        assert run["traefik_running_seconds"] is not None, run
        assert not run["split_brain"], run
    assert done.returncode == 0, done.stdout + done.stderr
