"""What `helm install` of fireproof's chart needs in the lab: a Secret and its values file.

The lab creates a privilege-separated Proxmox token for the chart's guard (the three
privileges guard needs, nothing more), puts its secret and the emulator's CA into the Secret
``fireproof/fireproof-pve``, and writes the values that point the chart at both. Then::

    fireproof lab helm -- install fireproof charts/fireproof -n fireproof -f DIR/guard-values.yaml

runs guard inside the lab under the chart's own RBAC (the lab runs fireproof's image for real).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightkube
import yaml
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Namespace, Secret

from fireproof.kube import translate_errors
from fireproof.lab.agentclient import AgentClient
from fireproof.lab.exports import ProxmoxAccess
from fireproof.lab.profiles import TimingProfile

NAMESPACE = "fireproof"
SECRET_NAME = "fireproof-pve"  # noqa: S105 - the Secret object's name
TOKEN_ID = "root@pam!chart"  # noqa: S105 - a token's name, not its secret
PRIVILEGES = ("VM.Audit", "VM.PowerMgmt", "Sys.Audit")


def guard_values(profile: TimingProfile) -> dict[str, Any]:
    """The chart's ``guard:`` values for the lab's timing profile (the chart's defaults are the
    upstream ones, right for the real profile)."""
    if profile.name != "fast":
        return {}
    return {
        # Node Leases renew every second in the fast profile: 6 s of silence is a dead kubelet.
        "leaseStaleSeconds": 6,
        "extra": {
            "lease_duration_seconds": 6,
            "retry_backoff_seconds": 1,
            "storm_cooldown_seconds": 5,
        },
    }


def write_guard_values(
    client: lightkube.Client,
    agent: AgentClient,
    access: ProxmoxAccess,
    path: Path,
    profile: TimingProfile,
    own_image: str,
) -> None:
    token = agent.add_pve_token(TOKEN_ID, list(PRIVILEGES))
    ca = Path(access.ca_file).read_text()
    namespace = Namespace(metadata=ObjectMeta(name=NAMESPACE))
    secret = Secret(
        metadata=ObjectMeta(name=SECRET_NAME, namespace=NAMESPACE),
        type="Opaque",
        stringData={"token-secret": str(token["secret"]), "ca.crt": ca},
    )
    with translate_errors():
        for obj in (namespace, secret):
            client.apply(obj, field_manager="fireproof-lab", force=True)
    values: dict[str, Any] = {
        "image": {"repository": own_image},
        "proxmox": {
            "url": access.url,
            "tokenId": TOKEN_ID,
            "existingSecret": SECRET_NAME,
            "caKey": "ca.crt",
        },
    }
    if guard := guard_values(profile):
        values["guard"] = guard
    path.write_text(
        "# Values for fireproof's chart in this lab (the Secret they name exists already):\n"
        f"#   fireproof lab helm -- install fireproof charts/fireproof -n {NAMESPACE} -f {path}\n"
        + yaml.safe_dump(values, sort_keys=False)
    )
