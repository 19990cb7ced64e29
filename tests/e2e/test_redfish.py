"""A host BMC fenced over Redfish (`lab up --bmc redfish`): ClusterLabs' fence_redfish drives the
lab's BMCs unchanged, over verified HTTPS, and guard fences a hung host through it. The service
answers as DSP0266 says a Redfish service does (an open service root, Basic auth on the rest,
errors in the Redfish error body), and it is the same BMC as the host's IPMI side."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from guardtools import guard_config, guards, record
from hosttools import events, hosts, ipmitool_power, nodes_on, place_on, running_off
from incident import TRAEFIK, attachments, pods, running_pod, volume_of
from labtools import LabHandle, running_lab, wait_for

pytestmark = pytest.mark.lab

HOST = "pve-02"  # tazlab: its loss keeps etcd quorum


@pytest.fixture(scope="module")
def rlab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabHandle]:
    state_dir = tmp_path_factory.mktemp("redfish") / "state"
    with running_lab(state_dir, "--bmc", "redfish") as lab:
        yield lab


def _bmc(lab: LabHandle) -> dict[str, Any]:
    bmc: dict[str, Any] = hosts(lab)[HOST]["bmc"]
    return bmc


def _fence_redfish(bmc: dict[str, Any], action: str, password: str | None = None) -> Any:
    """fence_redfish as a Pacemaker or a person runs it: options on stdin, the BMC's CA."""
    secret = password or Path(bmc["password_file"]).read_text().strip()
    options = {
        "ip": bmc["address"],
        "ipport": bmc["port"],
        "username": bmc["username"],
        "password": secret,
        "systems_uri": bmc["systems_uri"],
        "action": action,
    }
    return subprocess.run(
        ["/usr/sbin/fence_redfish"],
        input="".join(f"{k}={v}\n" for k, v in options.items()),
        capture_output=True,
        text=True,
        timeout=90,
        env={**os.environ, "REQUESTS_CA_BUNDLE": bmc["ca_file"]},
        check=False,
    )


def _url(bmc: dict[str, Any], path: str) -> str:
    return f"https://{bmc['address']}:{bmc['port']}{path}"


def test_fence_redfish_reads_the_hosts_bmc_which_answers_as_a_redfish_service(
    rlab: LabHandle,
) -> None:
    bmc = _bmc(rlab)
    assert bmc["type"] == "redfish"
    assert bmc["port"] == bmc["ports"]["redfish"]
    # The lab's fireproof.yaml fences the host with fence_redfish and verifies its certificate.
    device = yaml.safe_load((rlab.state_dir / "fireproof.yaml").read_text())["devices"][
        f"bmc-{HOST}"
    ]
    assert device["agent"] == "fence_redfish"
    assert device["ca_file"] == bmc["ca_file"]
    assert "ssl_insecure" not in device["options"]

    status = _fence_redfish(bmc, "status")
    assert (status.returncode, status.stdout.strip()) == (0, "Status: ON"), status.stderr
    refused = _fence_redfish(bmc, "off", password="not-the-password")
    assert refused.returncode == 1
    assert hosts(rlab)[HOST]["power"] == "on"  # a refused login switched nothing

    password = Path(bmc["password_file"]).read_text().strip()
    auth = (bmc["username"], password)
    ca = bmc["ca_file"]
    # DSP0266: the service root answers without credentials; everything else asks for them.
    root = requests.get(_url(bmc, "/redfish/v1/"), verify=ca, timeout=10)
    assert root.status_code == 200
    assert root.json()["Systems"] == {"@odata.id": "/redfish/v1/Systems"}
    anonymous = requests.get(_url(bmc, bmc["systems_uri"]), verify=ca, timeout=10)
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Basic")
    members = requests.get(_url(bmc, "/redfish/v1/Systems"), auth=auth, verify=ca, timeout=10)
    assert members.json()["Members"] == [{"@odata.id": bmc["systems_uri"]}]
    system = requests.get(_url(bmc, bmc["systems_uri"]), auth=auth, verify=ca, timeout=10).json()
    assert system["PowerState"] == "On"
    reset = system["Actions"]["#ComputerSystem.Reset"]
    assert "ForceOff" in reset["ResetType@Redfish.AllowableValues"]
    bad = requests.post(
        _url(bmc, reset["target"]), json={"ResetType": "Explode"}, auth=auth, verify=ca, timeout=10
    )
    assert bad.status_code == 400
    assert bad.json()["error"]["code"].endswith("ActionParameterValueNotInList")
    # Not any server will do: without the lab's CA the certificate does not verify.
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(_url(bmc, "/redfish/v1/"), timeout=10)
    # One BMC, two protocols: its IPMI side reads the same chassis.
    assert ipmitool_power(rlab, HOST) == "Chassis Power is on"


def test_a_hung_host_is_fenced_through_redfish_never_while_its_bmc_refuses_the_login(
    rlab: LabHandle, tmp_path: Path
) -> None:
    lab = rlab
    place_on(lab, HOST, TRAEFIK)
    old = running_pod(lab, TRAEFIK)
    pv = volume_of(lab, "traefik", "traefik")
    victims = nodes_on(lab, HOST)
    password = Path(_bmc(lab)["password_file"]).read_text().strip()
    config = guard_config(lab, tmp_path, host_down_lease_seconds=3)
    with guards(config, tmp_path) as (guard,):
        assert lab.cli("lab", "bmc-fault", HOST, "auth-failure").returncode == 0
        assert lab.cli("lab", "host-hang", HOST).returncode == 0
        wait_for(
            "a counted fencing failure",
            lambda: guard.metric("fireproof_guard_fencing_failures_total") >= 1,
            timeout=120,
        )
        # A BMC that refuses the login proves nothing: nothing is released.
        assert old["metadata"]["uid"] in [p["metadata"]["uid"] for p in pods(lab, TRAEFIK)]
        assert [va["spec"]["nodeName"] for va in attachments(lab, pv)] == [old["spec"]["nodeName"]]
        assert "fence_redfish" in guard.log()
        assert lab.cli("lab", "bmc-fault", HOST, "none").returncode == 0
        wait_for(
            "Traefik Running on another host",
            lambda: running_off(lab, TRAEFIK, HOST),
            timeout=120,
        )
        journal = guard.journal()
        # guard powered the hung host off, so it powers it on again: its nodes come back.
        wait_for(
            "the hung host's nodes back, records cleared",
            lambda: all(record(lab, n) is None for n in victims),
            timeout=150,
        )
        log = guard.log()
    node = old["spec"]["nodeName"]
    done = [e for e in journal if e["node"] == node and e["status"] == "ok"]
    steps = [e["step"] for e in done]
    assert steps.index("fence") < steps.index("release"), steps
    fence = next(e for e in done if e["step"] == "fence")
    assert f"host {HOST} verified off via bmc-{HOST}" in fence["message"]
    assert events(lab, "FireproofHostFenced") >= set(victims)
    assert password not in log
    assert password not in json.dumps(journal)
    assert hosts(lab)[HOST]["power"] == "on"
