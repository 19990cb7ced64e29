"""The TazLab incident, reproduced on the real control plane, and the upstream way out of it.

A hard power-off (through the Proxmox API) of the worker that runs Traefik: the real node
lifecycle controller taints it, taint eviction marks its pods Terminating, the replacement pod
cannot attach the ReadWriteOnce volume (the real attach/detach controller refuses), and the
StatefulSet pod is not even recreated. Only the out-of-service taint gets things moving.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from incident import (
    OUT_OF_SERVICE,
    POSTGRES,
    TRAEFIK,
    attach_refusal,
    attachments,
    pods,
    power_on_and_clean,
    refusal_events,
    running_pod,
    volume_of,
    wait_dead_and_tainted,
    wait_terminating,
)
from labtools import LabHandle, running_lab, wait_for

pytestmark = pytest.mark.lab
STUCK_WINDOW = 20.0  # seconds we watch after the replacement got stuck: nothing may move


def _replacement(lab: LabHandle, old_uid: str) -> dict[str, Any] | None:
    fresh = [
        p
        for p in pods(lab, TRAEFIK)
        if p["metadata"]["uid"] != old_uid and not p["metadata"].get("deletionTimestamp")
    ]
    return fresh[0] if fresh else None


def test_power_off_reproduces_the_incident_and_out_of_service_ends_it(
    healthy_lab: LabHandle,
) -> None:
    lab = healthy_lab
    traefik = running_pod(lab, TRAEFIK)
    postgres = running_pod(lab, POSTGRES)
    traefik_node = traefik["spec"]["nodeName"]
    postgres_node = postgres["spec"]["nodeName"]
    dead = sorted({traefik_node, postgres_node})
    traefik_pv = volume_of(lab, "traefik", "traefik")
    postgres_pv = volume_of(lab, "blog", "data-postgres-0")
    assert [va["spec"]["nodeName"] for va in attachments(lab, traefik_pv)] == [traefik_node]

    for node in dead:
        off = lab.cli("lab", "power-off", node)
        assert off.returncode == 0, off.stderr
        assert "stopped" in off.stdout
    try:
        for node in dead:
            wait_dead_and_tainted(lab, node)
        wait_terminating(lab, TRAEFIK, traefik["metadata"]["uid"])
        wait_terminating(lab, POSTGRES, postgres["metadata"]["uid"])

        # Traefik's replacement is scheduled on a live worker and refused the volume.
        replacement = wait_for(
            "Traefik replacement", lambda: _replacement(lab, traefik["metadata"]["uid"])
        )
        name = str(replacement["metadata"]["name"])
        events = wait_for(
            "FailedAttachVolume on the replacement",
            lambda: refusal_events(lab, "traefik", name),
            timeout=60,
        )
        prefix = attach_refusal(lab)
        assert any(e["message"].startswith(f'{prefix} "{traefik_pv}"') for e in events), events
        assert all(e["type"] == "Warning" for e in events)

        deadline = time.monotonic() + STUCK_WINDOW
        while time.monotonic() < deadline:
            current = _replacement(lab, traefik["metadata"]["uid"])
            assert current is not None
            assert current["spec"]["nodeName"] not in dead
            assert current["status"].get("phase") == "Pending"
            waiting = current["status"]["containerStatuses"][0]["state"]["waiting"]
            assert waiting["reason"] == "ContainerCreating"
            assert [va["spec"]["nodeName"] for va in attachments(lab, traefik_pv)] == [traefik_node]
            postgres_now = pods(lab, POSTGRES)
            # The StatefulSet may not recreate postgres-0 while the old one exists.
            assert [p["metadata"]["uid"] for p in postgres_now] == [postgres["metadata"]["uid"]]
            assert postgres_now[0]["metadata"]["deletionTimestamp"]
            time.sleep(2)

        # The documented upstream recovery: the node is known to be off, say so.
        for node in dead:
            tainted = lab.kubectl("taint", "node", node, f"{OUT_OF_SERVICE}=nodeshutdown:NoExecute")
            assert tainted.returncode == 0, tainted.stderr
        new_traefik = wait_for(
            "Traefik Running elsewhere",
            lambda: (
                p
                if (p := running_pod(lab, TRAEFIK))["spec"]["nodeName"] not in dead
                and all(
                    q["metadata"]["uid"] != traefik["metadata"]["uid"] for q in pods(lab, TRAEFIK)
                )
                else None
            ),
            timeout=90,
        )
        new_postgres = wait_for(
            "postgres-0 recreated and Running elsewhere",
            lambda: (
                p
                if (p := running_pod(lab, POSTGRES))["metadata"]["uid"]
                != postgres["metadata"]["uid"]
                and p["spec"]["nodeName"] not in dead
                else None
            ),
            timeout=90,
        )
        assert [va["spec"]["nodeName"] for va in attachments(lab, traefik_pv)] == [
            new_traefik["spec"]["nodeName"]
        ]
        wait_for(
            "postgres volume attached to its new node only",
            lambda: (
                [va["spec"]["nodeName"] for va in attachments(lab, postgres_pv)]
                == [new_postgres["spec"]["nodeName"]]
            ),
            timeout=30,
        )
    finally:
        power_on_and_clean(lab, *dead)


@pytest.fixture(scope="module")
def lab_136(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabHandle]:
    """A second lab whose kube-controller-manager is v1.36's, the last release whose refusal
    says Multi-Attach (beside the newest API server, as the version skew policy allows)."""
    state_dir: Path = tmp_path_factory.mktemp("lab136") / "state"
    with running_lab(state_dir, "--profile", "fast", "--kubernetes", "1.36") as lab:
        yield lab


def test_v136_replacement_gets_the_incidents_multi_attach_error(lab_136: LabHandle) -> None:
    lab = lab_136
    status = json.loads(lab.cli("lab", "status", "-o", "json").stdout)
    controller_manager = status["replaced_binaries"]["kube-controller-manager"]
    said = subprocess.run(
        [controller_manager, "--version"], capture_output=True, text=True, timeout=30, check=True
    )
    assert said.stdout.startswith("Kubernetes v1.36."), said.stdout
    assert not lab.kubectl_json("version")["serverVersion"]["gitVersion"].startswith("v1.36.")
    traefik = running_pod(lab, TRAEFIK)
    node = traefik["spec"]["nodeName"]
    pv = volume_of(lab, "traefik", "traefik")
    assert lab.cli("lab", "power-off", node).returncode == 0
    wait_dead_and_tainted(lab, node)
    wait_terminating(lab, TRAEFIK, traefik["metadata"]["uid"])
    replacement = wait_for(
        "Traefik replacement", lambda: _replacement(lab, traefik["metadata"]["uid"])
    )
    events = wait_for(
        "FailedAttachVolume",
        lambda: refusal_events(lab, "traefik", str(replacement["metadata"]["name"])),
        timeout=60,
    )
    # The exact text the incident report quotes.
    assert any(e["message"].startswith(f'Multi-Attach error for volume "{pv}"') for e in events)
    assert [va["spec"]["nodeName"] for va in attachments(lab, pv)] == [node]
