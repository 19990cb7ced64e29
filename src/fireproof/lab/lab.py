"""The lab as a whole: bring it up, describe it, switch its machines, tear it down."""

from __future__ import annotations

import functools
import secrets
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from lightkube.models.core_v1 import EndpointAddress, EndpointPort, EndpointSubset
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Endpoints, Node, ServiceAccount

from fireproof.errors import FireproofError, NotFoundError, UsageError
from fireproof.kube import (
    KubeApiError,
    KubeUnreachableError,
    internal_ip,
    load_kubeconfig,
    sync_client,
    translate_errors,
)
from fireproof.lab import binaries, gotools, ownimage, processes
from fireproof.lab.acme import AcmePorts, acme_env
from fireproof.lab.agentclient import AgentClient
from fireproof.lab.controlplane import (
    AUDIT_POLICY,
    Ports,
    apiserver_argv,
    controller_manager_argv,
    etcd_argv,
    scheduler_argv,
)
from fireproof.lab.exports import (
    REDFISH_SYSTEM,
    BmcAccess,
    ProxmoxAccess,
    generate_bmcs,
    load_bmcs,
    save_bmcs,
    write_fireproof_config,
    write_inventory,
    write_terraform_state,
)
from fireproof.lab.guardvalues import write_guard_values
from fireproof.lab.health import probe, wait_until
from fireproof.lab.images import OWN_IMAGE_REPOSITORY
from fireproof.lab.pki import ADMIN, AGENT, CONTROLLER_MANAGER, SCHEDULER
from fireproof.lab.ports import allocate, free_udp_ports, require_free
from fireproof.lab.profiles import PROFILES, TimingProfile
from fireproof.lab.pveclient import PveClient
from fireproof.lab.state import LabPaths, LabState
from fireproof.lab.topology import NodeSpec, Topology, build_topology
from fireproof.lab.workloads import apply_workloads, install_crds, workloads_ready

Progress = Callable[[str], None]
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "agent")


class LabAlreadyRunningError(FireproofError):
    """``up`` on a lab that runs with other settings."""


@dataclass(frozen=True, slots=True)
class UpOptions:
    profile: str = "fast"
    topology: str = "tazlab"
    workers: int | None = None
    hosts: int | None = None
    api_port: int | None = None
    bin_dir: Path | None = None
    release: str | None = None
    """An older Kubernetes release (``binaries.COMPAT_RELEASES``) instead of the newest pin."""
    ready_timeout: float = 180.0
    own_image: str = OWN_IMAGE_REPOSITORY
    """Containers of this image repository run as real processes (fireproof's own)."""
    own_image_layout: Path | None = None
    """fireproof's image (an OCI layout): its containers run inside it."""
    qdevice: bool = False
    """The Proxmox cluster has a corosync QDevice: a 2-host cluster keeps quorum with one."""
    bmc: str = "ipmi"
    """What fireproof.yaml fences the hosts with: their BMC's IPMI or its Redfish service."""


@dataclass(frozen=True, slots=True)
class ComponentStatus:
    name: str
    pid: int
    running: bool
    endpoint: str


@dataclass(frozen=True, slots=True)
class NodeStatus:
    name: str
    ready: str
    roles: str
    power: str
    kubelet: str
    address: str
    taints: tuple[str, ...]
    version: str
    hypervisor_host: str = ""
    vmid: int = 0


@dataclass(frozen=True, slots=True)
class LabStatus:
    state_dir: Path
    state: LabState
    components: tuple[ComponentStatus, ...]
    nodes: tuple[NodeStatus, ...]
    problems: tuple[str, ...]
    hosts: tuple[dict[str, Any], ...] = ()
    """Each Proxmox host: name, power, hung, reachable, and its BMC (no secret, a file)."""
    etcd: dict[str, Any] | None = None
    """etcd's quorum: quorate, members (the control-plane nodes), up."""

    @property
    def healthy(self) -> bool:
        return not self.problems


def _check_writable(root: Path) -> None:
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe_file = root / ".write-test"
        probe_file.write_text("")
        probe_file.unlink()
    except OSError as exc:
        raise UsageError(
            f"state dir {root} is not writable: {exc.strerror or exc}",
            hint="pass --state-dir with a directory you can write",
        ) from None


class Lab:
    def __init__(self, state_dir: Path) -> None:
        self.paths = LabPaths(state_dir.expanduser().resolve())

    # -- queries ----------------------------------------------------------------------------

    def load_state(self) -> LabState:
        return LabState.load(self.paths)

    def running_state(self) -> LabState | None:
        """The lab's state if any of its processes is still alive."""
        if not self.paths.state_file.exists():
            return None
        state = self.load_state()
        return state if any(processes.is_alive(p) for p in state.processes) else None

    def status(self) -> LabStatus:
        state = self.running_state()
        if state is None:
            raise NotFoundError(
                f"no lab is running in {self.paths.root}",
                hint="start one with `fireproof lab up`",
            )
        endpoints = {
            "etcd": f"http://127.0.0.1:{state.ports['etcd_client']}",
            "kube-apiserver": state.api_server,
            "kube-controller-manager": f"https://127.0.0.1:{state.ports['controller_manager']}",
            "kube-scheduler": f"https://127.0.0.1:{state.ports['scheduler']}",
            "agent": state.agent_url,
        }
        if state.acme_ports:
            acme = state.acme(self.paths)
            endpoints["pebble"] = acme.directory_url
            endpoints["pebble-challtestsrv"] = f"dns://127.0.0.1:{acme.ports.dns}"
        components = tuple(
            ComponentStatus(p.name, p.pid, processes.is_alive(p), endpoints.get(p.name, ""))
            for p in state.processes
        )
        problems = [f"{c.name} is not running" for c in components if not c.running]
        power: dict[str, dict[str, Any]] = {}
        hosts: list[dict[str, Any]] = []
        etcd: dict[str, Any] | None = None
        try:
            agent = AgentClient(self.paths, state)
            power = {n["name"]: n for n in agent.nodes()}
            hosts = self._hosts(agent.hosts())
            etcd = agent.etcd()
        except FireproofError as exc:
            problems.append(str(exc))
        if etcd is not None and not etcd["quorate"]:
            problems.append(quorum_lost(etcd))
        nodes: list[NodeStatus] = []
        try:
            client = sync_client(load_kubeconfig(self.paths.kubeconfig), timeout=10)
            with translate_errors(state.api_server):
                for node in client.list(Node):
                    nodes.append(_node_status(node, power))
        except (KubeApiError, KubeUnreachableError) as exc:
            problems.append(str(exc))
        return LabStatus(
            self.paths.root, state, components, tuple(nodes), tuple(problems), tuple(hosts), etcd
        )

    def _hosts(self, reported: list[dict[str, Any]]) -> list[dict[str, Any]]:
        bmcs = {b.host: b for b in load_bmcs(self.paths.bmc)}
        return [{**host, "bmc": self._bmc_view(bmcs.get(host["name"]))} for host in reported]

    def _bmc_view(self, bmc: BmcAccess | None) -> dict[str, Any] | None:
        """How fireproof.yaml reaches the host's BMC (``type``, ``port``) and its other side:
        one BMC speaks both protocols, as an iDRAC does."""
        if bmc is None:
            return None
        view: dict[str, Any] = {
            "type": bmc.protocol,
            "address": "127.0.0.1",
            "port": bmc.fencing_port(),
            "username": bmc.username,
            "password_file": str(self.paths.internal / f"{bmc.device_name()}.password"),
            "ports": {"ipmi": bmc.port, "redfish": bmc.redfish_port},
        }
        if bmc.protocol == "redfish":
            # Its certificate is the lab's one for 127.0.0.1, from the lab's Proxmox CA.
            view |= {"systems_uri": REDFISH_SYSTEM, "ca_file": str(self.paths.pki.pve_ca.cert)}
        return view

    # -- up ---------------------------------------------------------------------------------

    def up(self, options: UpOptions, progress: Progress) -> tuple[LabState, bool]:
        """Start the lab; returns its state and False when an identical lab was already up."""
        try:
            profile = PROFILES[options.profile]
        except KeyError:
            known = ", ".join(sorted(PROFILES))
            raise UsageError(f"unknown profile {options.profile!r} (known: {known})") from None
        topology = build_topology(options.topology, options.workers, options.hosts)
        _check_writable(self.paths.root)
        if self.paths.state_file.exists():
            running = self.running_state()
            if running is not None:
                bmc = next((b.protocol for b in load_bmcs(self.paths.bmc)), options.bmc)
                have = (running.profile, running.topology, running.workers, running.hosts, bmc)
                want = (options.profile, options.topology, options.workers, options.hosts)
                same = have == (*want, options.bmc)
                if same:
                    return running, False
                raise LabAlreadyRunningError(
                    f"a lab is already running in {self.paths.root} "
                    f"(profile {running.profile}, topology {running.topology}, --bmc {bmc})",
                    hint="stop it first with `fireproof lab down`",
                )
        bins = binaries.locate(options.bin_dir, options.release)
        api_port = require_free(options.api_port, "--api-port") if options.api_port else None
        free = allocate(7 if api_port is None else 6, {api_port} if api_port else set())
        ports = Ports(
            apiserver=api_port or free.pop(),
            etcd_client=free[0],
            etcd_peer=free[1],
            controller_manager=free[2],
            scheduler=free[3],
            agent=free[4],
            proxmox=free[5],
        )
        self._reset_files()
        progress(f"generating certificates in {self.paths.pki.directory}")
        self._write_credentials(topology, ports, options.bmc)
        state = LabState(
            profile=profile.name,
            topology=topology.name,
            workers=options.workers,
            hosts=options.hosts,
            kubernetes_version=bins.version,
            bin_dir=str(bins.directory),
            replaced_binaries=bins.replaced,
            ports=ports.as_dict(),
            acme_ports=AcmePorts.allocate(set(ports.as_dict().values())).as_dict(),
            processes=(),
            started_at=time.time(),
        )
        try:
            state = self._start_processes(state, bins, ports, profile, topology, options, progress)
        except BaseException:
            progress("start-up failed; stopping what was started")
            self._stop_all(state_or_none(self.paths))
            raise
        return state, True

    def _own_image(self, options: UpOptions, progress: Progress) -> list[str]:
        layout = ownimage.layout_from(options.own_image_layout)
        if layout is None:
            progress(
                "fireproof's own containers run from this Python (no image given: "
                "`make image`, then `lab up --own-image-layout dist/image/oci`)"
            )
            return []
        image = ownimage.unpack(layout, self.paths.root / "image")
        progress(f"fireproof's own containers run inside the image {image.digest[:19]}")
        return [f"--own-image-rootfs={image.rootfs}", f"--own-image-config={image.config}"]

    def _reset_files(self) -> None:
        for stale in (
            self.paths.etcd_data,
            self.paths.pki.directory,
            self.paths.internal,
            self.paths.logs,
            self.paths.pods,
        ):
            shutil.rmtree(stale, ignore_errors=True)
        self.paths.ledger.unlink(missing_ok=True)  # a new lab, a new history
        for directory in (self.paths.logs, self.paths.internal):
            directory.mkdir(parents=True, exist_ok=True)
        self.paths.internal.chmod(0o700)

    def _write_credentials(self, topology: Topology, ports: Ports, bmc: str) -> None:
        pki = self.paths.pki
        addresses = tuple(n.address for n in topology.control_plane)
        pki.generate(extra_addresses=addresses + ((topology.vip,) if topology.vip else ()))
        server = f"https://127.0.0.1:{ports.apiserver}"
        pki.write_kubeconfig(self.paths.kubeconfig, ADMIN, server, embed=True)
        for name, who in (
            ("controller-manager", CONTROLLER_MANAGER),
            ("scheduler", SCHEDULER),
            ("agent", AGENT),
        ):
            pki.write_kubeconfig(self.paths.component_kubeconfig(name), who, server, embed=False)
        self.paths.audit_policy.write_text(AUDIT_POLICY)
        self.paths.agent_token.write_text(secrets.token_urlsafe(32))
        self.paths.agent_token.chmod(0o600)
        pki.generate_pve()
        access = ProxmoxAccess.generate(ports.proxmox, pki.pve_ca.cert)
        access.save(self.paths.proxmox)
        write_inventory(self.paths.inventory, topology, access)
        write_terraform_state(self.paths.terraform_state, topology)
        hosts = sorted({n.hypervisor_host for n in topology.nodes})
        redfish = allocate(len(hosts), set(ports.as_dict().values()))
        bmcs = generate_bmcs(hosts, free_udp_ports(len(hosts)), redfish, bmc)
        save_bmcs(self.paths.bmc, bmcs)
        write_fireproof_config(
            self.paths.config, topology, access, self.paths.kubeconfig, self.paths.internal, bmcs
        )

    def _spawn(
        self, state: LabState, name: str, argv: list[str], env: dict[str, str] | None = None
    ) -> LabState:
        record = processes.spawn(name, argv, self.paths.log(name), env=env)
        state = LabState(**{**_fields(state), "processes": (*state.processes, record)})
        state.save(self.paths)  # saved after every spawn so a failed start can be cleaned up
        return state

    def _start_processes(
        self,
        state: LabState,
        bins: binaries.BinarySet,
        ports: Ports,
        profile: TimingProfile,
        topology: Topology,
        options: UpOptions,
        progress: Progress,
    ) -> LabState:
        paths, timeout = self.paths, options.ready_timeout

        def alive(name: str) -> Callable[[], bool]:
            return lambda: all(processes.is_alive(p) for p in state.processes if p.name == name)

        progress(f"starting etcd on 127.0.0.1:{ports.etcd_client}")
        state = self._spawn(state, "etcd", etcd_argv(bins, paths, ports))
        wait_until(
            "etcd",
            lambda: probe(f"http://127.0.0.1:{ports.etcd_client}/health"),
            timeout=timeout,
            alive=alive("etcd"),
            log=paths.log("etcd"),
        )
        progress(f"starting kube-apiserver {bins.version} on 127.0.0.1:{ports.apiserver}")
        state = self._spawn(state, "kube-apiserver", apiserver_argv(bins, paths, ports, profile))
        wait_until(
            "kube-apiserver",
            lambda: probe(f"{state.api_server}/readyz", paths),
            timeout=timeout,
            alive=alive("kube-apiserver"),
            log=paths.log("kube-apiserver"),
        )
        progress("starting kube-controller-manager and kube-scheduler")
        state = self._spawn(
            state, "kube-controller-manager", controller_manager_argv(bins, paths, ports, profile)
        )
        state = self._spawn(state, "kube-scheduler", scheduler_argv(bins, paths, ports))
        for name, port in (
            ("kube-controller-manager", ports.controller_manager),
            ("kube-scheduler", ports.scheduler),
        ):
            wait_until(
                name,
                functools.partial(probe, f"https://127.0.0.1:{port}/healthz", paths),
                timeout=timeout,
                alive=alive(name),
                log=paths.log(name),
            )
        self._write_kubernetes_endpoints(topology)
        state = self._start_acme(state, timeout, progress)
        image_args = self._own_image(options, progress)
        progress(f"starting {len(topology.nodes)} simulated kubelets ({topology.description})")
        state = self._spawn(
            state,
            "agent",
            [
                sys.executable,
                "-m",
                "fireproof.lab.agent",
                f"--state-dir={paths.root}",
                f"--profile={profile.name}",
                f"--topology={topology.name}",
                f"--port={ports.agent}",
                f"--kubelet-version={bins.version}",
                f"--own-image={options.own_image}",
                *([f"--workers={options.workers}"] if options.workers is not None else []),
                *([f"--hosts={options.hosts}"] if options.hosts is not None else []),
                *(["--qdevice"] if options.qdevice else []),
                *image_args,
            ],
        )
        wait_until(
            "agent",
            lambda: probe(f"{state.agent_url}/healthz"),
            timeout=timeout,
            alive=alive("agent"),
            log=paths.log("agent"),
        )
        progress("waiting for every node to be Ready")
        client = sync_client(load_kubeconfig(paths.kubeconfig), timeout=10)
        wait_until(
            "nodes",
            lambda: _all_ready(client, len(topology.nodes)),
            timeout=timeout,
            alive=alive("agent"),
            log=paths.log("agent"),
            interval=0.5,
        )
        wait_until(
            "default service account",
            lambda: _has_default_sa(client),
            timeout=timeout,
            alive=alive("kube-controller-manager"),
            log=paths.log("kube-controller-manager"),
        )
        progress("installing cert-manager's and Traefik's CustomResourceDefinitions")
        install_crds(client, [f for files in gotools.LAB_FILES for f in files.files()])
        progress(
            "deploying workloads: Longhorn-like storage, CoreDNS, kube-proxy, "
            "longhorn-manager, Traefik (RWO volume), a StatefulSet"
        )
        apply_workloads(client, topology.name)
        if topology.workers:
            wait_until(
                "workloads",
                lambda: workloads_ready(client),
                timeout=timeout,
                alive=alive("agent"),
                log=paths.log("agent"),
                interval=0.5,
            )
        progress(f"writing {paths.guard_values} (helm install of fireproof's chart)")
        write_guard_values(
            client,
            AgentClient(paths, state),
            ProxmoxAccess.load(paths.proxmox),
            paths.guard_values,
            profile,
            options.own_image,
        )
        return state

    def _start_acme(self, state: LabState, timeout: float, progress: Progress) -> LabState:
        """Pebble and its DNS server, as Let's Encrypt is to the report's Traefik."""
        acme = state.acme(self.paths)
        acme.write_config()
        progress(f"starting the ACME server (Pebble) on {acme.directory_url}")
        dns = gotools.locate(gotools.CHALLTESTSRV)
        state = self._spawn(state, "pebble-challtestsrv", acme.challtestsrv_argv(dns))
        pebble = gotools.locate(gotools.PEBBLE)
        state = self._spawn(state, "pebble", acme.pebble_argv(pebble), env=acme_env())
        wait_until(
            "pebble",
            acme.root_ready,
            timeout=timeout,
            alive=lambda: all(
                processes.is_alive(p) for p in state.processes if p.name.startswith("pebble")
            ),
            log=self.paths.log("pebble"),
        )
        return state

    def _write_kubernetes_endpoints(self, topology: Topology) -> None:
        """The lab plays the apiserver's endpoint reconciler: one address per control-plane node.

        It never updates them afterwards: `change-ip` leaves them stale, as in the incident.
        """
        client = sync_client(load_kubeconfig(self.paths.kubeconfig), timeout=10)
        addresses = [n.address for n in topology.control_plane]
        endpoints = Endpoints(
            metadata=ObjectMeta(
                name="kubernetes",
                namespace="default",
                labels={"endpointslice.kubernetes.io/skip-mirror": "false"},
            ),
            subsets=[
                EndpointSubset(
                    addresses=[EndpointAddress(ip=a) for a in addresses],
                    ports=[EndpointPort(name="https", port=6443, protocol="TCP")],
                )
            ],
        )
        with translate_errors():
            client.apply(endpoints, field_manager="fireproof-lab", force=True)

    # -- power ------------------------------------------------------------------------------

    def machine(self, node: str) -> NodeSpec:
        state = self._require_running()
        spec = build_topology(state.topology, state.workers, state.hosts).node(node)
        if spec is None:
            raise NotFoundError(f"unknown node {node} (see `fireproof lab status`)")
        return spec

    def power(self, node: str, on: bool) -> tuple[NodeSpec, str]:
        """Stop or start the node's VM through the Proxmox API; returns the task's UPID."""
        spec = self.machine(node)
        # Where the VM runs now: Proxmox HA may have restarted it on another host.
        now = next((n for n in self.agent().nodes() if n["name"] == node), None)
        host = str(now["hypervisor_host"]) if now else spec.hypervisor_host
        with PveClient(ProxmoxAccess.load(self.paths.proxmox)) as pve:
            upid = pve.power(host, spec.vmid, "start" if on else "stop")
        return replace(spec, hypervisor_host=host), upid

    def partition(self, node: str, cut: bool) -> dict[str, Any]:
        self.machine(node)
        return AgentClient(self.paths, self._require_running()).partition(node, not cut)

    def change_ip(self, node: str, address: str) -> tuple[NodeSpec, dict[str, Any]]:
        """Give NODE's VM a new address. Returns once its kubelet reported it in the Node's
        status (when the kubelet runs): whatever reads the Node next, like `heal
        api-endpoints` in a rollback, must see the new address, not the one before."""
        spec = self.machine(node)
        view = AgentClient(self.paths, self._require_running()).set_address(node, address)
        if view.get("kubelet") == "running":
            client = sync_client(load_kubeconfig(self.paths.kubeconfig), timeout=10)

            def reported() -> bool:
                try:
                    with translate_errors():
                        return internal_ip(client.get(Node, name=node)) == address
                except KubeUnreachableError:
                    return True  # the API server is down: nobody reads the Node meanwhile

            wait_until(f"{node}'s new address in its Node status", reported, timeout=30)
        return spec, view

    def agent(self) -> AgentClient:
        return AgentClient(self.paths, self._require_running())

    def heartbeats(self) -> dict[str, Any]:
        return AgentClient(self.paths, self._require_running()).heartbeats()

    def _require_running(self) -> LabState:
        state = self.running_state()
        if state is None:
            raise NotFoundError(
                f"no lab is running in {self.paths.root}", hint="start one with `fireproof lab up`"
            )
        return state

    # -- down -------------------------------------------------------------------------------

    def apiserver(self, running: bool, timeout: float = 60.0) -> str:
        """Stop kube-apiserver (an outage: every client's connection is refused) or start it
        again with the same flags and wait until it serves. Returns what happened.

        On start, kube-controller-manager and kube-scheduler start afresh too: on a real control
        plane they lose their leader Lease in any outage longer than the renew deadline (10 s),
        exit and are restarted. (The lab runs them without leader election; kept running, some
        of their informers stayed stale for good after the outage.)"""
        state = self._require_running()
        record = next((p for p in state.processes if p.name == "kube-apiserver"), None)
        alive = record is not None and processes.is_alive(record)
        if not running:
            if record is None or not alive:
                return "already stopped"
            # Two seconds, then SIGKILL: an outage, not a drained shutdown (which takes 10 s).
            processes.stop(record, grace_seconds=2.0)
            return "stopped"
        if alive:
            return "already running"
        bins = binaries.BinarySet(
            Path(state.bin_dir), state.kubernetes_version, state.replaced_binaries
        )
        state = _fresh_internal_ports(state)
        ports = Ports(**state.ports)
        profile = PROFILES[state.profile]
        restarts = {
            "kube-apiserver": (
                apiserver_argv(bins, self.paths, ports, profile),
                f"{state.api_server}/readyz",
            ),
            "kube-controller-manager": (
                controller_manager_argv(bins, self.paths, ports, profile),
                f"https://127.0.0.1:{ports.controller_manager}/healthz",
            ),
            "kube-scheduler": (
                scheduler_argv(bins, self.paths, ports),
                f"https://127.0.0.1:{ports.scheduler}/healthz",
            ),
        }
        for name, (argv, health) in restarts.items():
            for old in (p for p in state.processes if p.name == name):
                processes.stop(old, grace_seconds=5.0)
            kept = tuple(p for p in state.processes if p.name != name)
            state = self._spawn(LabState(**{**_fields(state), "processes": kept}), name, argv)
            started = next(p for p in state.processes if p.name == name)
            wait_until(
                name,
                functools.partial(probe, health, self.paths),
                timeout=timeout,
                alive=functools.partial(processes.is_alive, started),
                log=self.paths.log(name),
            )
        return "started"

    def down(self, progress: Progress) -> list[str]:
        """Stop every process the lab started; returns the names of those that were running."""
        state = state_or_none(self.paths)
        if state is None or not any(processes.is_alive(p) for p in state.processes):
            if state is not None:
                self.paths.state_file.unlink(missing_ok=True)
            raise NotFoundError(f"no lab is running in {self.paths.root}")
        stopped = self._stop_all(state, progress)
        self.paths.state_file.unlink(missing_ok=True)
        shutil.rmtree(self.paths.etcd_data, ignore_errors=True)
        return stopped

    def _stop_all(self, state: LabState | None, progress: Progress = lambda _m: None) -> list[str]:
        if state is None:
            return []
        stopped = []
        # Reverse start order: kubelets and controllers first, etcd last.
        for record in reversed(state.processes):
            if processes.stop(record):
                progress(f"stopped {record.name} (pid {record.pid})")
                stopped.append(record.name)
        return stopped


def quorum_lost(etcd: dict[str, Any]) -> str:
    members, up = etcd["members"], etcd["up"]
    down = ", ".join(n for n in members if n not in up)
    return (
        f"etcd has no quorum: {len(up)} of {len(members)} control-plane nodes up ({down} down); "
        "the API server does not answer until a majority is back"
    )


def state_or_none(paths: LabPaths) -> LabState | None:
    try:
        return LabState.load(paths)
    except FireproofError:
        return None


def _fields(state: LabState) -> dict[str, Any]:
    return {name: getattr(state, name) for name in state.__dataclass_fields__}


def _all_ready(client: Any, expected: int) -> bool:
    try:
        with translate_errors():
            nodes = list(client.list(Node))
    except (KubeApiError, KubeUnreachableError):
        return False
    ready = [n for n in nodes if _ready(n) == "True"]
    return len(ready) >= expected


def _has_default_sa(client: Any) -> bool:
    try:
        with translate_errors():
            client.get(ServiceAccount, "default", namespace="default")
    except (KubeApiError, KubeUnreachableError):
        return False
    return True


def _ready(node: Node) -> str:
    conditions = (node.status.conditions if node.status else None) or []
    ready = next((c for c in conditions if c.type == "Ready"), None)
    return ready.status if ready else "Unknown"


def _node_status(node: Node, power: dict[str, dict[str, Any]]) -> NodeStatus:
    meta = node.metadata
    name = (meta.name if meta else None) or ""
    labels = (meta.labels if meta else None) or {}
    roles = sorted(k.split("/", 1)[1] for k in labels if k.startswith("node-role.kubernetes.io/"))
    status = node.status
    address = internal_ip(node) or ""
    taints = tuple(
        f"{t.key}{'=' + t.value if t.value else ''}:{t.effect}"
        for t in ((node.spec.taints if node.spec else None) or [])
    )
    sim = power.get(name, {})
    vm_status = str(sim.get("vm_status", "?"))
    ready = {"True": "Ready", "False": "NotReady"}.get(_ready(node), "NotReady (Unknown)")
    if node.spec and node.spec.unschedulable:
        ready += ",SchedulingDisabled"
    return NodeStatus(
        name=name,
        ready=ready,
        roles=",".join(roles) or "<none>",
        power=vm_status,
        kubelet=str(sim.get("kubelet", "?")),
        address=address,
        taints=taints,
        version=(status.nodeInfo.kubeletVersion if status and status.nodeInfo else "") or "",
        hypervisor_host=str(sim.get("hypervisor_host", "")),
        vmid=int(sim.get("vmid") or 0),
    )


INTERNAL_PORTS = ("controller_manager", "scheduler")
"""Ports only the lab itself talks to (health): free to move when a restart finds them taken."""


def _fresh_internal_ports(state: LabState) -> LabState:
    """The controllers' ports for a restart: the old ones if still free, else new ones. During
    an outage any process on the machine (another lab, a test) may take a port the stopped
    controllers had; restarting on it would fail with "address already in use" and leave the
    lab without controllers. The API server's port stays: the kubeconfigs name it."""
    moved: dict[str, int] = {}
    for key in INTERNAL_PORTS:
        try:
            require_free(state.ports[key], key)
        except UsageError:
            taken = set(state.ports.values()) | set(moved.values())
            moved[key] = allocate(1, taken)[0]
    if not moved:
        return state
    return LabState(**{**_fields(state), "ports": {**state.ports, **moved}})
