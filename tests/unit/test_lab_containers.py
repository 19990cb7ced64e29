"""The lab's real containers: which images run for real, what the image gives them (kept equal
to the Containerfile the chart's image is built from), and the kubelet's `$(VAR)` expansion."""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
from pathlib import Path

import pytest

from fireproof.lab.agent.containers import OWN_IMAGE, repository_of, runtime_reachable
from fireproof.lab.agent.podfiles import PodFileError, _write_items, expand

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("image", "repository"),
    [
        ("ghcr.io/fireproof/fireproof:0.4.0", "ghcr.io/fireproof/fireproof"),
        ("ghcr.io/fireproof/fireproof", "ghcr.io/fireproof/fireproof"),
        ("registry:5000/fireproof/fireproof:dev", "registry:5000/fireproof/fireproof"),
        ("ghcr.io/fireproof/fireproof@sha256:" + "a" * 64, "ghcr.io/fireproof/fireproof"),
        ("ghcr.io/fireproof/fireproof-extra:1", "ghcr.io/fireproof/fireproof-extra"),
    ],
)
def test_the_repository_of_an_image_reference(image: str, repository: str) -> None:
    assert repository_of(image) == repository


def test_the_lab_runs_what_the_containerfile_builds() -> None:
    lines = (REPO / "Containerfile").read_text().splitlines()
    directive = {
        line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in lines if line[:1].isupper()
    }
    assert tuple(json.loads(directive["ENTRYPOINT"])) == OWN_IMAGE.entrypoint
    assert tuple(json.loads(directive["CMD"])) == OWN_IMAGE.cmd
    assert directive["USER"] == f"{OWN_IMAGE.user}:{OWN_IMAGE.group}"
    env = dict(pair.split("=", 1) for pair in directive["ENV"].split())
    assert env == dict(OWN_IMAGE.env)


def test_variable_references_expand_as_the_kubelet_does() -> None:
    env = {"POD_NAME": "fireproof-abc", "EMPTY": ""}
    assert expand("--id=$(POD_NAME)", env) == "--id=fireproof-abc"
    assert expand("$(EMPTY)x", env) == "x"
    assert expand("$(UNKNOWN) stays", env) == "$(UNKNOWN) stays"
    assert expand("$$(POD_NAME) is escaped", env) == "$(POD_NAME) is escaped"


def test_volume_files_get_the_kubelets_modes_and_fs_group(tmp_path: Path) -> None:
    data = {"token-secret": b"s3cret", "ca.crt": b"PEM"}
    _write_items(tmp_path, data, None, 0o400, os.getgid())
    secret = tmp_path / "token-secret"
    assert secret.read_bytes() == b"s3cret"
    # defaultMode 0400 with an fsGroup: group-readable, owned by that group.
    assert stat.S_IMODE(secret.stat().st_mode) == 0o440
    assert secret.stat().st_gid == os.getgid()

    class Item:
        key, path, mode = "missing", "x", None

    with pytest.raises(PodFileError, match="'missing'"):
        _write_items(tmp_path, data, [Item()], None, None)


def test_a_runtime_under_a_private_home_is_not_reachable_by_another_user() -> None:
    # Not under pytest's tmp_path: its base directory is private (0700) itself.
    root = Path(tempfile.mkdtemp(prefix="fireproof-reach-"))
    try:
        root.chmod(0o755)
        private = root / "home" / "venv"
        private.mkdir(parents=True)
        (root / "home").chmod(0o700)  # like /root holding a pyenv
        shared = root / "opt" / "venv"
        shared.mkdir(parents=True)
        assert not runtime_reachable(65532, [str(private)])
        assert runtime_reachable(65532, [str(shared)])
        assert runtime_reachable(0, [str(private)])  # root reaches it (with no capability)
    finally:
        shutil.rmtree(root)


def _run_container(root: Path, runtime: list[str], argv: list[str]) -> tuple[int, str]:
    """The lab's real first process (nsinit) in real namespaces: an emptyDir-like volume at
    /tmp, as the chart mounts one, and ``argv`` exec'd after "go"."""
    import subprocess
    import sys

    volume = root / "volume"
    volume.mkdir()
    report_r, report_w = os.pipe()
    plan = {
        "argv": argv,
        "env": {"PATH": "/usr/bin:/bin"},
        "hostname": "pod",
        "mounts": [{"source": str(volume), "target": "/tmp", "read_only": False}],  # noqa: S108 - a mount path inside the pod, as the chart sets
        "runtime": runtime,
        "scratch": str(root / "scratch"),
        "report_fd": report_w,
    }
    spec = root / "plan.json"
    spec.write_text(json.dumps(plan))
    process = subprocess.Popen(
        [sys.executable, "-m", "fireproof.lab.agent.nsinit", str(spec)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        pass_fds=(report_w,),
    )
    os.close(report_w)
    with os.fdopen(report_r) as report:
        assert report.read().strip() == "ready"
    out, _ = process.communicate("go\n", timeout=30)
    return process.returncode, out


@pytest.mark.skipif(os.geteuid() != 0, reason="the lab's containers need root (namespaces)")
@pytest.mark.parametrize("where", ["fp-checkout", "fp checkout with a space"])
def test_an_installation_under_a_volume_path_stays_runnable(where: str) -> None:
    # A checkout under /tmp, and a pod with an emptyDir at /tmp (the chart's): the entry point
    # must still run, as it does from an image whose programs never sit under a volume.
    with tempfile.TemporaryDirectory(dir="/tmp") as base, tempfile.TemporaryDirectory() as root:
        install = Path(base) / where
        install.mkdir()
        program = install / "entry-point"
        program.write_text("#!/bin/sh\necho running from the installation\n")
        program.chmod(0o755)
        code, out = _run_container(Path(root), [str(install)], [str(program)])
        assert (code, out.strip()) == (0, "running from the installation")
        # Without it the volume hides the program: exit 127, and the reason in one line.
        (Path(root) / "again").mkdir()
        code, out = _run_container(Path(root) / "again", [], [str(program)])
        assert code == 127
        assert out.startswith("lab container: cannot run")


def test_a_mount_path_inside_an_image_resolves_its_symlinks_in_the_image(tmp_path: Path) -> None:
    # Debian's /var/run is a symlink to /run: absolute, so followed on the host it would put the
    # ServiceAccount token in the host's /run. Inside the image it stays inside.
    from fireproof.lab.agent.nsinit import _inside

    root = tmp_path / "root"
    (root / "var").mkdir(parents=True)
    (root / "run").mkdir()
    (root / "var" / "run").symlink_to("/run")
    (root / "etc").mkdir()
    (root / "etc" / "alt").symlink_to("../run")
    target = "/var/run/secrets/kubernetes.io/serviceaccount"
    assert _inside(root, target) == root / "run" / "secrets" / "kubernetes.io" / "serviceaccount"
    assert _inside(root, "/etc/alt/x") == root / "run" / "x"
    (root / "etc" / "up").symlink_to("../../../../outside")
    assert _inside(root, "/etc/up") == root / "outside"  # a link cannot climb out of the image
    assert (
        _inside(root, "/etc/fireproof/fireproof.yaml")
        == root / "etc" / "fireproof" / "fireproof.yaml"
    )


def test_the_image_config_gives_the_containers_entry_point_user_and_environment() -> None:
    from fireproof.lab.agent.containers import OWN_IMAGE, image_from_oci

    oci = {
        "config": {
            "User": "65532:65532",
            "Entrypoint": ["fireproof"],
            "Cmd": ["guard", "run"],
            "Env": ["PATH=/usr/bin", "XDG_STATE_HOME=/var/lib/fireproof"],
        }
    }
    image = image_from_oci(oci, OWN_IMAGE)
    assert image.entrypoint == ("fireproof",)
    assert image.cmd == ("guard", "run")
    assert (image.user, image.group) == (65532, 65532)
    assert dict(image.env) == {"XDG_STATE_HOME": "/var/lib/fireproof"}  # PATH: the lab's own
