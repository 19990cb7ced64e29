"""fireproof's image as users run it: built here from Debian packages and the wheel by
`scripts/image.py` (mmdebstrap, uv, umoci; no base image pulled), run by runc with the host's
network, UID 65532 and a read-only root, against the lab."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from fireproof.lab.ownimage import image_config

from labtools import REPO, LabHandle, wait_for

pytestmark = pytest.mark.lab
SCRIPT = REPO / "scripts" / "image.py"


def _build(out: Path, *flags: str) -> str:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(out), *flags],
        capture_output=True, text=True, timeout=1200, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    digest = next(w for line in done.stdout.splitlines() for w in line.split() if "sha256:" in w)
    assert json.loads((out / "oci" / "index.json").read_text())["manifests"][0]["digest"] == digest
    return digest


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("image")
    _build(out, "--cached")  # built once per source (the chart's lab tests share it)
    return out


def test_two_builds_of_the_same_sources_give_the_same_digest(image: Path, tmp_path: Path) -> None:
    first = json.loads((image / "oci" / "index.json").read_text())["manifests"][0]["digest"]
    assert _build(tmp_path / "again") == first  # afresh, not from the cache


def _run(
    image: Path, *args: str, mount: Path | None = None, entrypoint: tuple[str, ...] = ()
) -> Any:
    argv = [sys.executable, str(SCRIPT), "run", "--image", str(image / "oci")]
    if mount is not None:
        argv += ["--mount", str(mount)]
    for word in entrypoint:
        argv += ["--entrypoint", word]
    return subprocess.run([*argv, "--", *args], capture_output=True, text=True, timeout=300)


def _config(image: Path) -> dict[str, Any]:
    return image_config(image / "oci")


def _containerfile() -> dict[str, Any]:
    out: dict[str, Any] = {"env": {}}
    for line in (REPO / "Containerfile").read_text().splitlines():
        word, _, rest = line.partition(" ")
        if word in ("ENTRYPOINT", "CMD"):
            out[word] = json.loads(rest)
        elif word == "USER":
            out[word] = rest.strip()
        elif word == "ENV":
            out["env"].update(p.split("=", 1) for p in shlex.split(rest))
    return out


def test_the_image_and_the_containerfile_agree_and_it_is_small_with_an_sbom(image: Path) -> None:
    config = _config(image)["config"]
    wanted = _containerfile()
    assert config["Entrypoint"] == wanted["ENTRYPOINT"]
    assert config["Cmd"] == wanted["CMD"]
    assert config["User"] == wanted["USER"] == "65532:65532"
    env = dict(e.split("=", 1) for e in config["Env"])
    assert wanted["env"].items() <= env.items()
    bom = json.loads((image / "sbom.cdx.json").read_text())
    assert bom["bomFormat"] == "CycloneDX"
    purls = [c["purl"] for c in bom["components"]]
    assert any(p.startswith("pkg:pypi/lightkube@") for p in purls)
    assert any(p.startswith("pkg:deb/debian/python3.11@") for p in purls)
    assert not any(p.startswith("pkg:deb/debian/perl@") for p in purls)


def test_it_runs_as_65532_on_a_read_only_root(image: Path) -> None:
    assert _run(image, "--version").stdout.startswith("fireproof, version ")
    probe = (
        "import os\nprint(os.getuid(), os.getgid())\n"
        "try:\n    open('/etc/x', 'w')\nexcept OSError as e:\n    print(e.strerror)\n"
    )
    done = _run(image, "-c", probe, entrypoint=("/usr/bin/python3",))
    assert done.stdout.splitlines() == ["65532 65532", "Read-only file system"], done.stderr


def _readable_copy(lab: LabHandle, tmp_path: Path) -> str:
    """The lab's config, kubeconfig, certificates and secrets, readable by the image's user
    (the lab's own are root's, 0600), mounted where the files name them: SOURCE:DEST."""
    copy = tmp_path / "lab-for-65532"
    skip = shutil.ignore_patterns("etcd", "logs", "pods", "*.log", "ledger*")
    shutil.copytree(lab.state_dir, copy, ignore=skip, symlinks=True)
    for path in [copy, *copy.rglob("*")]:
        os.chown(path, 65532, 65532, follow_symlinks=False)
    return f"{copy}:{lab.state_dir}"


def test_doctor_and_a_dry_run_guard_from_the_image_against_the_lab(
    image: Path, healthy_lab: LabHandle, tmp_path: Path
) -> None:
    lab = healthy_lab
    mount = _readable_copy(lab, tmp_path)
    done = _run(image, "doctor", "--kubeconfig", str(lab.kubeconfig), "-o", "json", mount=mount)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["kind"] == "DoctorReport"
    assert report["summary"]["ran"] > 10
    # guard --dry-run in the image reads the Proxmox emulator over HTTPS with the lab's CA and
    # token files (mounted read-only), and says what it would do for a node powered off.
    config = lab.state_dir / "fireproof.yaml"
    argv = [sys.executable, str(SCRIPT), "run", "--image", str(image / "oci"),
            "--mount", mount, "--", "guard", "run", "--dry-run", "--config",
            str(config), "--metrics-address", ""]  # fmt: skip
    guard = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    node = "tazlab-worker-03"
    lines: list[str] = []
    try:
        time.sleep(5)
        assert lab.cli("lab", "power-off", node).returncode == 0

        def said() -> bool:
            assert guard.stdout is not None
            lines.append(guard.stdout.readline())
            return f"dry-run: {node}" in lines[-1]

        wait_for("the image's guard to say what it would do", said, timeout=120, interval=0)
    finally:
        guard.terminate()  # forwarded by runc to guard, which hands its Lease back and stops
        _out, err = guard.communicate(timeout=60)
    assert any(f"dry-run: {node}" in line for line in lines), (lines, err)
    assert "guard running dry run: nothing will be changed" in err
    assert "Traceback" not in err
    # A dry run touches nothing: no record on the node.
    annotations = lab.kubectl_json("get", "node", node)["metadata"].get("annotations", {})
    assert "fireproof.io/remediation" not in annotations


def test_the_fence_agents_image_reads_a_hosts_bmc_with_fence_ipmilan(
    healthy_lab: LabHandle, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # guard fences a dead host with ClusterLabs' fence_ipmilan (the chart's `hosts:`), which
    # drives the ipmitool program: the image built with them must carry both, and they must
    # reach the host's BMC from inside it.
    image = tmp_path_factory.mktemp("image-fence-agents")
    _build(image, "--cached", "--fence-agents")
    host = json.loads(healthy_lab.cli("lab", "status", "-o", "json").stdout)["hosts"][0]
    bmc = host["bmc"]
    secrets = tmp_path_factory.mktemp("bmc-secret")
    password = secrets / "password"
    shutil.copyfile(bmc["password_file"], password)
    for path in (secrets, password):
        os.chown(path, 65532, 65532)
    done = _run(
        image, "--ip", bmc["address"], "--ipport", str(bmc["port"]), "--username",
        bmc["username"], "--password-script", f"cat {password}", "--lanplus", "-o", "status",
        mount=secrets, entrypoint=("fence_ipmilan",),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == "Status: ON"
