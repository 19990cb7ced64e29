"""Files the lab writes for the tools that manage it: Proxmox credentials, the node -> VM
inventory, and a Terraform state describing the same VMs (bpg/proxmox provider format)."""

from __future__ import annotations

import json
import secrets
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from fireproof.errors import UsageError
from fireproof.lab.topology import Role, Topology

DEVICE_NAME = "lab-proxmox"


@dataclass(frozen=True, slots=True)
class ProxmoxAccess:
    """How to reach the lab's Proxmox emulator (``DIR/proxmox.yaml``, mode 0600)."""

    url: str
    ca_file: str
    user: str
    password: str
    token_id: str
    token_secret: str

    @property
    def api_url(self) -> str:
        return f"{self.url}/api2/json"

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    @classmethod
    def generate(cls, port: int, ca_file: Path) -> ProxmoxAccess:
        return cls(
            url=f"https://127.0.0.1:{port}",
            ca_file=str(ca_file),
            user="root@pam",
            password=secrets.token_urlsafe(18),
            token_id="root@pam!fireproof",  # noqa: S106 - an identifier, not a secret
            token_secret=str(uuid.uuid4()),
        )

    def save(self, path: Path) -> None:
        doc = {
            "url": self.url,
            "ca_file": self.ca_file,
            "user": self.user,
            "password": self.password,
            "token_id": self.token_id,
            "token_secret": self.token_secret,
        }
        path.write_text(
            "# Credentials of the lab's Proxmox VE emulator (secrets: keep this file private)\n"
            + yaml.safe_dump(doc, sort_keys=False)
        )
        path.chmod(0o600)

    @classmethod
    def load(cls, path: Path) -> ProxmoxAccess:
        try:
            doc = yaml.safe_load(path.read_text())
            return cls(**{k: str(doc[k]) for k in cls.__dataclass_fields__})
        except FileNotFoundError:
            raise UsageError(f"{path} is missing; is the lab running?") from None
        except (yaml.YAMLError, KeyError, TypeError) as exc:
            raise UsageError(f"{path} is malformed: {type(exc).__name__}") from None


BMC_PROTOCOLS = ("ipmi", "redfish")
"""What fireproof.yaml fences a lab host with (its BMC speaks both, as an iDRAC does)."""
REDFISH_SYSTEM = "/redfish/v1/Systems/1"


@dataclass(frozen=True, slots=True)
class BmcAccess:
    """One host's BMC on 127.0.0.1: IPMI over UDP on ``port``, Redfish over HTTPS on
    ``redfish_port``, one user (an ADMINISTRATOR, as fencing needs). ``protocol`` is the one
    the lab's fireproof.yaml fences the host with."""

    host: str
    port: int
    username: str
    password: str
    redfish_port: int | None = None
    protocol: str = "ipmi"

    def device_name(self) -> str:
        return f"bmc-{self.host}"

    def fencing_port(self) -> int:
        if self.protocol == "redfish" and self.redfish_port is not None:
            return self.redfish_port
        return self.port


def generate_bmcs(
    hosts: list[str], ports: list[int], redfish_ports: list[int], protocol: str = "ipmi"
) -> tuple[BmcAccess, ...]:
    return tuple(
        BmcAccess(host, port, "admin", secrets.token_urlsafe(12), redfish, protocol)
        for host, port, redfish in zip(hosts, ports, redfish_ports, strict=True)
    )


def save_bmcs(path: Path, bmcs: tuple[BmcAccess, ...]) -> None:
    doc = {
        b.host: {
            "port": b.port,
            "redfish_port": b.redfish_port,
            "protocol": b.protocol,
            "username": b.username,
            "password": b.password,
        }
        for b in bmcs
    }
    path.write_text(
        "# The lab's host BMCs (IPMI over UDP and Redfish over HTTPS on 127.0.0.1; "
        "secrets: keep this file private)\n" + yaml.safe_dump(doc, sort_keys=True)
    )
    path.chmod(0o600)


def load_bmcs(path: Path) -> tuple[BmcAccess, ...]:
    try:
        doc = yaml.safe_load(path.read_text()) or {}
        return tuple(
            BmcAccess(
                str(host),
                int(v["port"]),
                str(v["username"]),
                str(v["password"]),
                int(v["redfish_port"]) if v.get("redfish_port") is not None else None,
                str(v.get("protocol", "ipmi")),
            )
            for host, v in sorted(doc.items())
        )
    except FileNotFoundError:
        return ()  # a lab started before its hosts had BMCs
    except (yaml.YAMLError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise UsageError(f"{path} is malformed: {type(exc).__name__}") from None


def write_inventory(path: Path, topology: Topology, access: ProxmoxAccess) -> None:
    """Node -> machine map, with the Proxmox device that can fence each machine."""
    doc: dict[str, Any] = {
        "devices": {
            DEVICE_NAME: {
                "type": "proxmox",
                "url": access.url,
                "ca_file": access.ca_file,
                "token_id": access.token_id,
                "token_secret_file": str(path.parent / "proxmox.yaml"),
            }
        },
        "nodes": {
            n.name: {
                "device": DEVICE_NAME,
                "host": n.hypervisor_host,
                "vmid": n.vmid,
                "address": n.address,
                "role": str(n.role),
            }
            for n in topology.nodes
        },
    }
    path.write_text(
        "# fireproof inventory of the lab: Kubernetes node -> Proxmox VM\n"
        + yaml.safe_dump(doc, sort_keys=False)
    )


def terraform_state(topology: Topology) -> dict[str, Any]:
    """A Terraform v4 state as the bpg/proxmox provider writes it for these VMs."""

    def instances(role: Role) -> list[dict[str, Any]]:
        return [
            {
                "index_key": i,
                "schema_version": 0,
                "attributes": {
                    "id": str(n.vmid),
                    "name": n.name,
                    "node_name": n.hypervisor_host,
                    "vm_id": n.vmid,
                    "started": True,
                    "tags": ["talos", "kubernetes", str(role)],
                    # bpg lists addresses per network interface, loopback first.
                    "ipv4_addresses": [["127.0.0.1"], [n.address]],
                    "mac_addresses": [
                        "00:00:00:00:00:00",
                        f"BC:24:11:00:{i // 256:02X}:{i % 256:02X}",
                    ],
                },
                "sensitive_attributes": [],
            }
            for i, n in enumerate(x for x in topology.nodes if x.role is role)
        ]

    provider = 'provider["registry.terraform.io/bpg/proxmox"]'
    return {
        "version": 4,
        "terraform_version": "1.9.8",
        "serial": 7,
        "lineage": str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{topology.name}.fireproof.lab")),
        "outputs": {},
        "resources": [
            {
                "mode": "managed",
                "type": "proxmox_virtual_environment_vm",
                "name": name,
                "provider": provider,
                "instances": instances(role),
            }
            for name, role in (("control_plane", Role.CONTROL_PLANE), ("worker", Role.WORKER))
        ],
        "check_results": None,
    }


def write_terraform_state(path: Path, topology: Topology) -> None:
    path.write_text(json.dumps(terraform_state(topology), indent=2))


def _secret_file(path: Path, value: str) -> Path:
    path.write_text(value + "\n")
    path.chmod(0o600)
    return path


def bmc_device(bmc: BmcAccess, password_file: Path, ca_file: str) -> dict[str, Any]:
    """The host's fencing device: ClusterLabs' fence_ipmilan or fence_redfish at its BMC."""
    if bmc.protocol == "redfish":
        return {
            "type": "fence-agent",
            "agent": "fence_redfish",
            "options": {
                "ip": "127.0.0.1",
                "ipport": str(bmc.fencing_port()),
                "username": bmc.username,
                "systems_uri": REDFISH_SYSTEM,
            },
            "ca_file": ca_file,  # the BMC's certificate is verified, never ssl_insecure
            "password": {"file": str(password_file)},
            "timeout_seconds": 40,
        }
    return {
        "type": "fence-agent",
        "agent": "fence_ipmilan",
        "options": {
            "ip": "127.0.0.1",
            "ipport": str(bmc.port),
            "username": bmc.username,
            "lanplus": "1",
        },
        "password": {"file": str(password_file)},
        "timeout_seconds": 40,
    }


def write_fireproof_config(
    path: Path,
    topology: Topology,
    access: ProxmoxAccess,
    kubeconfig: Path,
    secret_dir: Path,
    bmcs: tuple[BmcAccess, ...] = (),
) -> None:
    """``DIR/fireproof.yaml``: what `--lab` uses, a config as a user would write for TazLab.

    Secrets go to 0600 files the config refers to; the config itself holds none.
    """
    token_file = _secret_file(secret_dir / "pve-token", access.token_secret)
    host_devices = {
        b.device_name(): bmc_device(
            b,
            _secret_file(secret_dir / f"{b.device_name()}.password", b.password),
            access.ca_file,
        )
        for b in bmcs
    }
    doc: dict[str, Any] = {
        "cluster": {
            "kubeconfig": str(kubeconfig),
            **({"vip": topology.vip} if topology.vip else {}),
        },
        "devices": {
            DEVICE_NAME: {
                "type": "proxmox",
                "url": access.url,
                "ca_file": access.ca_file,
                "token_id": access.token_id,
                "token_secret": {"file": str(token_file)},
                "timeout_seconds": 5,
                "retries": 1,
                "verify_timeout_seconds": 30,
                "poll_interval_seconds": 0.5,
            },
            **host_devices,
        },
        **({"hosts": {b.host: {"device": b.device_name()} for b in bmcs}} if bmcs else {}),
        "inventory": {
            "terraform": [{"path": str(path.parent / "terraform.tfstate"), "device": DEVICE_NAME}],
            "discover": [DEVICE_NAME],
        },
        "remediation": {"method": "auto", "workload_timeout_seconds": 120},
    }
    path.write_text(
        "# fireproof configuration of the lab (used by `--lab`); secrets live in files it names\n"
        + yaml.safe_dump(doc, sort_keys=False)
    )
