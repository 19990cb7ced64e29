"""``fireproof.yaml``: the cluster, its fencing devices, the inventory sources, remediation.

Validated on load; every error names the file, the line and the field. Secrets are never
values in this file: they are references to an environment variable, a file or a Kubernetes
Secret, resolved only when a device is used.

    cluster:
      kubeconfig: ~/.kube/config     # default: $KUBECONFIG, then ~/.kube/config
      context: tazlab                # default: the kubeconfig's current context
      vip: 192.0.2.250               # the control-plane VIP, if there is one
    devices:
      pve:
        type: proxmox                # proxmox | fence-agent | fake
        url: https://pve.example:8006
        ca_file: /etc/fireproof/pve-ca.pem
        token_id: root@pam!fireproof
        token_secret: {env: PVE_TOKEN}          # or {file: PATH} or {secret: NS/NAME/KEY}
    inventory:
      nodes:                         # explicit entries win over every other source
        worker-01: {device: pve, host: pve-01, vmid: 201}
      terraform: [{path: infra/terraform.tfstate, device: pve}]
      discover: [pve]                # Proxmox VMs whose name equals the node name
    remediation:
      method: auto                   # auto (out-of-service taint on >= 1.28) | taint | delete
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fireproof.errors import UsageError
from fireproof.names import is_data_key, is_namespace_name, is_node_name, is_object_name
from fireproof.textsafe import has_userinfo
from fireproof.yamldoc import Section, load_yaml

CONFIG_ENV = "FIREPROOF_CONFIG"
"""Environment variable naming fireproof.yaml (after --config, before ./fireproof.yaml)."""

_USER_AT_REALM = re.compile(r"[^\s@:!]+@[A-Za-z][A-Za-z0-9.\-_]*")

SecretReader = Callable[[str, str, str], str]
"""Reads key of Secret name in namespace (provided by the kube layer)."""


@dataclass(frozen=True, slots=True)
class SecretRef:
    """Where a secret lives. ``describe()`` is safe to print; the value never is."""

    env: str | None = None
    file: Path | None = None
    secret: str | None = None  # NAMESPACE/NAME/KEY

    def describe(self) -> str:
        if self.env:
            return f"environment variable {self.env}"
        if self.file:
            return f"file {self.file}"
        return f"Kubernetes Secret {self.secret}"

    def resolve(self, read_secret: SecretReader | None = None) -> str:
        """The secret's value, checked: never empty, no control characters, bounded in size.

        Errors name the source and never the value: a rejected secret may still be a real one.
        """
        if self.env:
            raw = os.environ.get(self.env)
            if raw is None:
                raise UsageError(f"the environment variable {self.env} is not set")
            return clean_secret(raw, self.describe())
        if self.file:
            return clean_secret(_read_secret_file(self.file), self.describe())
        assert self.secret is not None  # noqa: S101 - one of the three is set by the parser
        if read_secret is None:
            raise UsageError(f"{self.describe()} needs access to the cluster")
        namespace, name, key = self.secret.split("/")
        return clean_secret(read_secret(namespace, name, key), self.describe())


MAX_SECRET_BYTES = 64 * 1024
"""A password or token is tens of bytes; more is a wrong path (``/dev/zero``, a log file)."""


def _read_secret_file(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_SECRET_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"cannot read secret file {path}: {exc.strerror}") from None
    if len(data) > MAX_SECRET_BYTES:
        raise UsageError(
            f"secret file {path} is larger than {MAX_SECRET_BYTES // 1024} KiB: not a secret",
            hint="point the secret source at the file that holds only the password or token",
        )
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise UsageError(f"secret file {path} is not UTF-8 text") from None


def clean_secret(raw: str, where: str) -> str:
    """Strip one trailing newline (``echo`` and editors add it); refuse anything else odd.

    A newline inside a secret would end up in an HTTP header or on a fence agent's stdin,
    where it injects options; the message never repeats the value.
    """
    value = raw.removesuffix("\n").removesuffix("\r")
    if not value:
        raise UsageError(f"the secret in {where} is empty")
    if has_control_character(value):
        raise UsageError(
            f"the secret in {where} contains a control character (newline, tab or escape); "
            "its value is not shown",
            hint="a secret is one line: remove the extra line breaks or characters",
        )
    return value


def has_control_character(value: str) -> bool:
    return any(ord(c) < 0x20 or ord(c) == 0x7F for c in value)


@dataclass(frozen=True, slots=True)
class ProxmoxDevice:
    name: str
    url: str
    ca_file: Path | None = None
    verify_tls: bool = True
    user: str | None = None
    password: SecretRef | None = None
    token_id: str | None = None
    """``USER@REALM!TOKENID``."""
    token_secret: SecretRef | None = None
    timeout_seconds: float = 10.0
    """Per HTTP request."""
    retries: int = 2
    """Extra tries of a request that failed transiently (timeouts, 5xx)."""
    verify_timeout_seconds: float = 60.0
    """How long to poll ``status/current`` for the VM to reach the wanted state; every retry of
    a power action stays inside it."""
    poll_interval_seconds: float = 1.0
    stop_timeout_seconds: int = 10
    """Sent as the stop's ``timeout``: how long Proxmox waits for QEMU to quit before SIGTERM,
    then SIGKILL 10 s later (qemu-server ``_do_vm_stop``; its own default is 60 s)."""


@dataclass(frozen=True, slots=True)
class FenceAgentDevice:
    name: str
    agent: str
    """A ClusterLabs program on PATH (fence_pve, fence_ipmilan, fence_redfish, ...)."""
    options: dict[str, str] = field(default_factory=dict)
    """FenceAgentAPI options passed on stdin (ip, username, ssl_insecure, ...)."""
    password: SecretRef | None = None
    timeout_seconds: float = 60.0
    ca_file: Path | None = None
    """CA bundle the agent verifies its device's TLS certificate with (``REQUESTS_CA_BUNDLE``
    for agents built on Python requests, such as fence_redfish), instead of ssl_insecure."""


@dataclass(frozen=True, slots=True)
class FakeDevice:
    """Remembers power states in memory: for dry runs and demos, never for real clusters."""

    name: str


Device = ProxmoxDevice | FenceAgentDevice | FakeDevice


@dataclass(frozen=True, slots=True)
class NodeEntry:
    device: str
    host: str | None = None
    vmid: int | None = None
    plug: str | None = None


@dataclass(frozen=True, slots=True)
class HostEntry:
    """A hypervisor host (a Proxmox node) and the device that powers the host itself off: its
    BMC through a fence agent. The second level of fencing, after the VM's own device."""

    device: str


@dataclass(frozen=True, slots=True)
class TerraformSource:
    path: Path
    device: str


@dataclass(frozen=True, slots=True)
class InventoryConfig:
    nodes: dict[str, NodeEntry] = field(default_factory=dict)
    terraform: tuple[TerraformSource, ...] = ()
    discover: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    kubeconfig: Path | None = None
    context: str | None = None
    vip: str | None = None


REMEDIATION_METHODS = ("auto", "taint", "delete")


@dataclass(frozen=True, slots=True)
class RemediationConfig:
    method: str = "auto"
    workload_timeout_seconds: float = 300.0
    """How long `heal` waits for the affected workloads to run elsewhere."""
    recover_timeout_seconds: float = 180.0


GUARD_STRATEGIES = ("reboot", "off")


@dataclass(frozen=True, slots=True)
class GuardConfig:
    """``guard:``: detection signals, what to do after fencing, and the safety gates."""

    poll_interval_seconds: float = 1.0
    """How often guard looks: one ``cluster/resources`` call per Proxmox device, one list of
    Nodes and of node Leases."""
    confirm_seconds: float = 2.0
    """A VM read off that the device cannot settle (its task list unreadable) must stay off
    this long, poll after poll, before guard acts: it may be a reboot, a start or a migration
    passing through "stopped". A VM off with none of those running is acted on at once. (The
    lease and conditions signals are long confirmations already.)"""
    lease_stale_seconds: float = 40.0
    """A node Lease older than this while its VM runs: a partition or a hung node (the
    kubelet's lease duration is 40 s)."""
    not_ready_grace_seconds: float = 60.0
    """Ready=False/Unknown for this long: dead, for nodes whose device cannot report power."""
    host_down_lease_seconds: float = 15.0
    """A node whose Proxmox host its cluster lost (offline, 595) and whose Lease is older than
    this (the kubelet renews every 10 s: one renewal missed) is on a dead host. Both must hold:
    a host only the Proxmox cluster lost (a corosync split) still runs healthy kubelets."""
    boot_grace_seconds: float = 300.0
    """A VM up for less than this is booting, not partitioned: its stale Lease is not a
    silent kubelet (a host that comes back, a node a person starts)."""
    strategy: str = "reboot"
    """After guard powered a machine off: ``reboot`` (power on, wait Ready, untaint, uncordon)
    or ``off`` (leave it off and tainted)."""
    restart_stopped: bool = False
    """Start machines that were already off (a crash, a person in Proxmox) after the release."""
    max_unhealthy: str = "40%"
    """More dead-looking nodes than this (a count or a percentage of all nodes, at least 1):
    a storm; guard does nothing destructive."""
    storm_cooldown_seconds: float = 60.0
    max_attempts: int = 3
    """Reboots of a node that does not come back Ready before guard gives up (leaves it off)."""
    retry_backoff_seconds: float = 10.0
    """First wait after a failed fencing; doubles up to 8x."""
    lease_namespace: str = "kube-system"
    lease_name: str = "fireproof-guard"
    lease_duration_seconds: float = 15.0
    repair_api_endpoints: bool = False

    def max_unhealthy_nodes(self, total: int) -> int:
        if self.max_unhealthy.endswith("%"):
            share = int(float(self.max_unhealthy[:-1]) * total / 100)
        else:
            share = int(self.max_unhealthy)
        return max(1, share)


@dataclass(frozen=True, slots=True)
class Config:
    path: Path | None
    cluster: ClusterConfig = ClusterConfig()
    devices: dict[str, Device] = field(default_factory=dict)
    inventory: InventoryConfig = InventoryConfig()
    remediation: RemediationConfig = RemediationConfig()
    guard: GuardConfig = GuardConfig()
    hosts: dict[str, HostEntry] = field(default_factory=dict)
    """Proxmox host -> its own fencing device (BMC)."""

    def device(self, name: str) -> Device:
        try:
            return self.devices[name]
        except KeyError:
            raise UsageError(f"no fencing device named {name!r} in {self.path}") from None


def load_config(path: Path) -> Config:
    doc = load_yaml(path, "fireproof.yaml")
    doc.reject_unknown({"cluster", "devices", "hosts", "inventory", "remediation", "guard"})
    base = path.parent
    devices = {name: _device(name, section, base) for name, section in doc.sections("devices")}
    inventory = _inventory(doc.section("inventory"), base, devices)
    return Config(
        path=path,
        cluster=_cluster(doc.section("cluster"), base),
        devices=devices,
        inventory=inventory,
        remediation=_remediation(doc.section("remediation")),
        guard=_guard(doc.section("guard")),
        hosts=_hosts(doc, devices),
    )


def _hosts(doc: Section, devices: dict[str, Device]) -> dict[str, HostEntry]:
    hosts = {}
    for host, entry in doc.sections("hosts"):
        if not is_node_name(host):
            raise entry.error(f"{host!r} is not a Proxmox host name (lower case, digits, - and .)")
        entry.reject_unknown({"device"})
        device = entry.req_text("device")
        found = devices.get(device)
        if found is None:
            raise entry.error(
                f"unknown device {device!r} (devices: {', '.join(devices)})", "device"
            )
        if isinstance(found, ProxmoxDevice):
            raise entry.error(
                f"device {device!r} is a Proxmox API device: it fences VMs, and a dead host's API "
                "does not answer; a host needs its BMC (type: fence-agent, e.g. fence_ipmilan or "
                "fence_redfish)",
                "device",
            )
        hosts[host] = HostEntry(device)
    return hosts


def _path(base: Path, raw: str | None) -> Path | None:
    if raw is None:
        return None
    candidate = expand_user(raw)
    return candidate if candidate.is_absolute() else base / candidate


def expand_user(raw: str) -> Path:
    """``~`` and ``~user`` expanded; an unknown user is a clear error, not an internal one."""
    try:
        return Path(raw).expanduser()
    except RuntimeError:
        user = raw[1:].split("/", 1)[0]
        raise UsageError(f"{raw}: no user {user!r} on this machine to expand ~{user}") from None


def _cluster(section: Section | None, base: Path) -> ClusterConfig:
    if section is None:
        return ClusterConfig()
    section.reject_unknown({"kubeconfig", "context", "vip"})
    return ClusterConfig(
        kubeconfig=_path(base, section.text("kubeconfig")),
        context=section.text("context"),
        vip=_address(section, "vip"),
    )


def _address(section: Section, key: str) -> str | None:
    """An IP address (v4 or v6), checked here so `vip: 999.1.1.1` is a config error."""
    text = section.text(key)
    if text is None:
        return None
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        raise section.error(f"must be an IP address, got {text!r}", key) from None


def _secret(section: Section, key: str, base: Path) -> SecretRef | None:
    if not section.has(key):
        return None
    shape = "must be {env: NAME}, {file: PATH} or {secret: NS/NAME/KEY}"
    try:
        ref = section.section(key)
    except UsageError:
        ref = None
    if ref is None:
        raise section.error(f"{shape}: secrets are never written into fireproof.yaml", key)
    ref.reject_unknown({"env", "file", "secret"})
    if len(ref.fields()) != 1:
        raise section.error("give exactly one of env, file, secret", key)
    secret = ref.text("secret")
    if secret is not None:
        parts = secret.split("/")
        if (
            len(parts) != 3
            or not is_namespace_name(parts[0])
            or not is_object_name(parts[1])
            or not is_data_key(parts[2])
        ):
            raise ref.error(
                "must be NAMESPACE/NAME/KEY: a namespace and a Secret named as Kubernetes "
                f"names them, and a data key; got {secret!r}",
                "secret",
            )
    return SecretRef(env=ref.text("env"), file=_path(base, ref.text("file")), secret=secret)


def _device(name: str, section: Section, base: Path) -> Device:
    kind = section.choice("type", ("proxmox", "fence-agent", "fake"), "proxmox")
    if kind == "fake":
        section.reject_unknown({"type"})
        return FakeDevice(name)
    if kind == "fence-agent":
        section.reject_unknown(
            {"type", "agent", "options", "password", "timeout_seconds", "ca_file"}
        )
        options = section.string_map("options")
        for key, value in options.items():
            # Options go to the agent's stdin one per line: a newline would inject another.
            if has_control_character(key) or has_control_character(value) or "=" in key:
                raise section.error("option names and values must be single-line text", "options")
        if {"password", "plug", "action"} & set(options):
            raise section.error(
                "password, plug and action are set by fireproof (password: the password field)",
                "options",
            )
        return FenceAgentDevice(
            name=name,
            agent=section.req_text("agent"),
            options=options,
            password=_secret(section, "password", base),
            timeout_seconds=section.number("timeout_seconds", 60.0, minimum=1, maximum=3600),
            ca_file=_path(base, section.text("ca_file")),
        )
    section.reject_unknown(
        {
            "type",
            "url",
            "ca_file",
            "verify_tls",
            "user",
            "password",
            "token_id",
            "token_secret",
            "timeout_seconds",
            "retries",
            "verify_timeout_seconds",
            "poll_interval_seconds",
            "stop_timeout_seconds",
        }
    )
    url = section.req_text("url").rstrip("/")
    if has_userinfo(url):
        # Never echoed: the part before @ is a user name and, likely, a password.
        raise section.error(
            "must not carry a user name or password (user@ in the URL; the value is not "
            "shown): give the credentials as token_id/token_secret or user/password",
            "url",
        )
    if not url.startswith("https://"):
        raise section.error("must be an https:// URL (Proxmox serves its API over TLS)", "url")
    device = ProxmoxDevice(
        name=name,
        url=url.removesuffix("/api2/json"),
        ca_file=_path(base, section.text("ca_file")),
        verify_tls=section.boolean("verify_tls", True),
        user=section.text("user"),
        password=_secret(section, "password", base),
        token_id=section.text("token_id"),
        token_secret=_secret(section, "token_secret", base),
        timeout_seconds=section.number("timeout_seconds", 10.0, minimum=0.1, maximum=300),
        retries=section.integer("retries", 2, maximum=10) or 0,
        verify_timeout_seconds=section.number(
            "verify_timeout_seconds", 60.0, minimum=1, maximum=3600
        ),
        poll_interval_seconds=section.number(
            "poll_interval_seconds", 1.0, minimum=0.05, maximum=60
        ),
        stop_timeout_seconds=section.integer("stop_timeout_seconds", 10, maximum=600) or 0,
    )
    if device.token_id:
        if (
            not _USER_AT_REALM.fullmatch(device.token_id.partition("!")[0])
            or not (device.token_id.partition("!")[2])
        ):
            raise section.error("must look like USER@REALM!TOKENID", "token_id")
        if device.token_secret is None:
            raise section.error("token_id needs token_secret")
    elif not (device.user and device.password):
        raise section.error("give token_id + token_secret, or user + password")
    elif not _USER_AT_REALM.fullmatch(device.user):
        # Proxmox refuses a bare name (401); say so here, with the line, not as a login failure.
        raise section.error(
            f"must be USER@REALM (e.g. {device.user}@pam or {device.user}@pve), got "
            f"{device.user!r}",
            "user",
        )
    return device


def _inventory(section: Section | None, base: Path, devices: dict[str, Device]) -> InventoryConfig:
    if section is None:
        return InventoryConfig()
    section.reject_unknown({"nodes", "terraform", "discover"})

    def known(device: str, where: Section, key: str) -> str:
        if device not in devices:
            raise where.error(f"unknown device {device!r} (devices: {', '.join(devices)})", key)
        return device

    nodes = {}
    for node, entry in section.sections("nodes"):
        if not is_node_name(node):
            raise entry.error(
                f"{node!r} is not a node name (RFC 1123: lower case, digits, - and .)"
            )
        entry.reject_unknown({"device", "host", "vmid", "plug"})
        nodes[node] = NodeEntry(
            device=known(entry.req_text("device"), entry, "device"),
            host=entry.text("host"),
            vmid=entry.integer("vmid", None, minimum=100),
            plug=entry.text("plug"),
        )
    terraform = []
    for item in section.list_of_sections("terraform"):
        item.reject_unknown({"path", "device"})
        terraform.append(
            TerraformSource(
                path=_path(base, item.req_text("path")) or Path(),
                device=known(item.req_text("device"), item, "device"),
            )
        )
    discover = tuple(known(d, section, "discover") for d in section.strings("discover"))
    return InventoryConfig(nodes=nodes, terraform=tuple(terraform), discover=discover)


def _remediation(section: Section | None) -> RemediationConfig:
    if section is None:
        return RemediationConfig()
    section.reject_unknown({"method", "workload_timeout_seconds", "recover_timeout_seconds"})
    return RemediationConfig(
        method=section.choice("method", REMEDIATION_METHODS, "auto"),
        workload_timeout_seconds=section.number(
            "workload_timeout_seconds", 300.0, minimum=1, maximum=86400
        ),
        recover_timeout_seconds=section.number(
            "recover_timeout_seconds", 180.0, minimum=1, maximum=86400
        ),
    )


# fullmatch, never `$`: `$` accepts a trailing newline (a YAML block scalar), and a value that
# passed here once left guard failing on every look.
_MAX_UNHEALTHY = re.compile(r"(\d+|\d{1,3}(\.\d+)?%)")


def _name(section: Section, key: str, default: str, valid: Callable[[str], bool]) -> str:
    """A Kubernetes name that goes into an API path: checked here, never in a URL."""
    value = section.text(key, default) or default
    if not valid(value):
        raise section.error(f"{value!r} is not a Kubernetes name (RFC 1123)", key)
    return value


def _guard(section: Section | None) -> GuardConfig:
    if section is None:
        return GuardConfig()
    d = GuardConfig()
    section.reject_unknown(set(GuardConfig.__dataclass_fields__))
    max_unhealthy = section.text("max_unhealthy", d.max_unhealthy) or d.max_unhealthy
    if not _MAX_UNHEALTHY.fullmatch(max_unhealthy) or (
        max_unhealthy.endswith("%") and float(max_unhealthy[:-1]) > 100
    ):
        raise section.error(
            f"must be a node count or a percentage (like 2 or 40%), got {max_unhealthy!r}",
            "max_unhealthy",
        )
    return GuardConfig(
        poll_interval_seconds=section.number(
            "poll_interval_seconds", d.poll_interval_seconds, minimum=0.1, maximum=60
        ),
        confirm_seconds=section.number("confirm_seconds", d.confirm_seconds, maximum=600),
        lease_stale_seconds=section.number(
            "lease_stale_seconds", d.lease_stale_seconds, minimum=1, maximum=3600
        ),
        not_ready_grace_seconds=section.number(
            "not_ready_grace_seconds", d.not_ready_grace_seconds, minimum=1, maximum=86400
        ),
        host_down_lease_seconds=section.number(
            "host_down_lease_seconds", d.host_down_lease_seconds, minimum=1, maximum=3600
        ),
        boot_grace_seconds=section.number(
            "boot_grace_seconds", d.boot_grace_seconds, minimum=0, maximum=3600
        ),
        strategy=section.choice("strategy", GUARD_STRATEGIES, d.strategy),
        restart_stopped=section.boolean("restart_stopped", d.restart_stopped),
        max_unhealthy=max_unhealthy,
        storm_cooldown_seconds=section.number(
            "storm_cooldown_seconds", d.storm_cooldown_seconds, maximum=86400
        ),
        max_attempts=section.integer("max_attempts", d.max_attempts, minimum=1, maximum=100)
        or d.max_attempts,
        retry_backoff_seconds=section.number(
            "retry_backoff_seconds", d.retry_backoff_seconds, minimum=0.1, maximum=3600
        ),
        lease_namespace=_name(section, "lease_namespace", d.lease_namespace, is_namespace_name),
        lease_name=_name(section, "lease_name", d.lease_name, is_object_name),
        lease_duration_seconds=section.number(
            "lease_duration_seconds", d.lease_duration_seconds, minimum=2, maximum=600
        ),
        repair_api_endpoints=section.boolean("repair_api_endpoints", d.repair_api_endpoints),
    )
