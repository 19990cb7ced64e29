"""``fireproof lab``: the local replica cluster."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from fireproof.cli import exitcodes
from fireproof.cli.params import NODE, FiniteFloat
from fireproof.cli.render import emit_json, progress, table
from fireproof.errors import UsageError
from fireproof.lab import binaries
from fireproof.lab.images import OWN_IMAGE_REPOSITORY
from fireproof.lab.profiles import PROFILES
from fireproof.lab.proxmox.model import FaultKind
from fireproof.lab.state import LabPaths, LabState, default_state_dir
from fireproof.lab.topology import MAX_HOSTS, MAX_WORKERS, TOPOLOGIES

if TYPE_CHECKING:
    from fireproof.lab.lab import Lab

state_dir_option = click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=default_state_dir,
    show_default="$FIREPROOF_LAB_DIR or ~/.local/state/fireproof/lab",
    help="Directory holding the lab's kubeconfig, certificates, logs and state.",
)
bin_dir_option = click.option(
    "--bin-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help=f"Use prebuilt control-plane binaries from DIR (also ${binaries.BIN_DIR_ENV}).",
)


def _lab(state_dir: Path) -> Lab:
    # The lab's machinery (clients, certificates) loads only for a command that uses it.
    from fireproof.lab.lab import Lab

    return Lab(state_dir)


@click.group()
def lab() -> None:
    """A local replica cluster: real control plane, simulated machines.

    The control plane is upstream etcd, kube-apiserver, kube-controller-manager and
    kube-scheduler on 127.0.0.1; kubelets are simulated by one process, so a machine can be
    powered off and its node falls silent exactly like a dead VM.
    """


kubernetes_option = click.option(
    "--kubernetes",
    "release",
    type=click.Choice(list(binaries.COMPAT_RELEASES)),
    default=None,
    help="Run an older release's kube-controller-manager beside the newest pin's API server "
    "(1.36: the last whose attach/detach controller reports `Multi-Attach error`; one minor "
    "older is within Kubernetes' version skew policy). `lab build --kubernetes 1.36` builds it.",
)


@lab.command()
@click.option("--rebuild", is_flag=True, help="Build again even if a verified set is cached.")
@kubernetes_option
def build(rebuild: bool, release: str | None) -> None:
    """Build the pinned Kubernetes control plane, and the lab's other Go programs (helm and
    krew for the chart's and the kubectl plugin's tests; Traefik, the lab's ingress; Pebble and
    pebble-challtestsrv, its ACME server) from the Go module proxy (once), and fetches the
    cert-manager and Traefik CustomResourceDefinitions that `lab up` installs.

    Binaries go to a cache outside the repository and are reused until the pin changes.
    Prints the directory that holds the control plane.
    """
    from fireproof.lab.gotools import LAB_FILES, LAB_TOOLS
    from fireproof.lab.gotools import build as build_tool

    bins, built = binaries.build(release=release, rebuild=rebuild, progress=progress)
    if not built:
        progress(f"Kubernetes {bins.version} binaries already built")
    if release is None:
        for tool in LAB_TOOLS:
            path, tool_built = build_tool(tool, rebuild=rebuild, progress=progress)
            if not tool_built:
                progress(f"{tool.name} already built: {path}")
        for files in LAB_FILES:
            path, fetched = files.fetch(progress)
            if not fetched:
                progress(f"{files.name} already fetched: {path}")
    click.echo(str(bins.directory))


@lab.command()
@state_dir_option
@click.option(
    "--profile",
    type=click.Choice(sorted(PROFILES)),
    default="fast",
    show_default=True,
    help="fast: seconds-scale heartbeats and evictions; real: upstream defaults.",
)
@click.option(
    "--topology",
    type=click.Choice(sorted(TOPOLOGIES)),
    default="tazlab",
    show_default=True,
    help="tazlab: 3 CP + 4 workers on 2 Proxmox hosts, VIP; minimal: 1 CP + 3 workers.",
)
@click.option(
    "--workers",
    type=click.IntRange(0, MAX_WORKERS),
    default=None,
    help="Override the topology's number of worker nodes.",
)
@click.option(
    "--hosts",
    type=click.IntRange(1, MAX_HOSTS),
    default=None,
    help="Proxmox hosts to spread the nodes over, round-robin (tazlab: 2, minimal: 1). With 3, "
    "the Proxmox cluster keeps quorum when a host dies, and Proxmox HA can fence it.",
)
@click.option(
    "--api-port",
    type=click.IntRange(1, 65535),
    default=None,
    help="kube-apiserver port on 127.0.0.1 (default: a free port).",
)
@bin_dir_option
@kubernetes_option
@click.option(
    "--timeout",
    type=FiniteFloat(1),
    default=180.0,
    show_default=True,
    help="Seconds to wait for each component to become ready.",
)
@click.option(
    "--own-image",
    default=OWN_IMAGE_REPOSITORY,
    show_default=True,
    metavar="REPOSITORY",
    help="Containers of this image run as real processes (fireproof's own, e.g. the chart's "
    "guard); every other container is simulated.",
)
@click.option(
    "--own-image-layout",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="fireproof's image as an OCI layout (`make image` writes dist/image/oci; default: "
    "$FIREPROOF_LAB_IMAGE): the chart's guard pods run inside it. Without one they run from "
    "this Python.",
)
@click.option(
    "--qdevice",
    is_flag=True,
    help="Give the Proxmox cluster a corosync QDevice (an external vote): without one, a "
    "2-host cluster that loses a host loses quorum and refuses every power action.",
)
@click.option(
    "--bmc",
    type=click.Choice(["ipmi", "redfish"]),
    default="ipmi",
    show_default=True,
    help="How the lab's fireproof.yaml fences a host through its BMC: IPMI (fence_ipmilan) or "
    "Redfish over HTTPS (fence_redfish). Every host BMC speaks both.",
)
def up(
    state_dir: Path,
    profile: str,
    topology: str,
    workers: int | None,
    hosts: int | None,
    api_port: int | None,
    bin_dir: Path | None,
    release: str | None,
    timeout: float,
    own_image: str,
    own_image_layout: Path | None,
    qdevice: bool,
    bmc: str,
) -> None:
    """Start the lab and wait until every node is Ready and its workloads run."""
    the_lab = _lab(state_dir)
    from fireproof.lab.lab import UpOptions

    options = UpOptions(
        profile=profile,
        topology=topology,
        workers=workers,
        hosts=hosts,
        api_port=api_port,
        bin_dir=bin_dir,
        release=release,
        ready_timeout=timeout,
        own_image=own_image,
        own_image_layout=own_image_layout,
        qdevice=qdevice,
        bmc=bmc,
    )
    state, started = the_lab.up(options, progress)
    if not started:
        click.echo(
            f"a lab is already running in {the_lab.paths.root} "
            f"(profile {state.profile}, topology {state.topology}); nothing started"
        )
    else:
        click.echo(
            f"lab is up: Kubernetes {state.kubernetes_version}, profile {state.profile}, "
            f"topology {state.topology}"
        )
    click.echo(f"  export KUBECONFIG={the_lab.paths.kubeconfig}")
    click.echo(f"  logs: {the_lab.paths.logs}/")


def _bmc_cell(bmc: dict[str, Any]) -> str:
    """The protocol fireproof.yaml fences with first, then the BMC's other side."""
    ports = bmc.get("ports") or {}
    other = [f"{kind} {port}" for kind, port in ports.items() if kind != bmc["type"] and port]
    return f"{bmc['type']} 127.0.0.1:{bmc['port']}" + (f" ({', '.join(other)})" if other else "")


def _acme_status(state: LabState, state_dir: Path) -> dict[str, str] | None:
    """Where the lab's ACME server answers, and the files a client needs to trust it."""
    if not state.acme_ports:
        return None
    acme = state.acme(LabPaths(state_dir))
    return {
        "directory": acme.directory_url,
        "root_certificate": str(acme.root_file),
        "listener_ca": str(acme.pki.acme_listener_ca.cert),
    }


@lab.command()
@state_dir_option
@click.option(
    "-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True
)
def status(state_dir: Path, output: str) -> None:
    """Show the lab's components and nodes."""
    st = _lab(state_dir).status()
    if output == "json":
        emit_json(
            {
                "state_dir": str(st.state_dir),
                "healthy": st.healthy,
                "problems": list(st.problems),
                "kubernetes_version": st.state.kubernetes_version,
                "replaced_binaries": st.state.replaced_binaries,
                "profile": st.state.profile,
                "topology": st.state.topology,
                "api_server": st.state.api_server,
                "components": [dataclasses.asdict(c) for c in st.components],
                "nodes": [dataclasses.asdict(n) for n in st.nodes],
                "hosts": list(st.hosts),
                "etcd": st.etcd,
                "acme": _acme_status(st.state, st.state_dir),
            }
        )
    else:
        click.echo(
            f"lab in {st.state_dir}: Kubernetes {st.state.kubernetes_version}, "
            f"profile {st.state.profile}, topology {st.state.topology}"
        )
        click.echo()
        click.echo(
            table(
                ["COMPONENT", "PID", "STATE", "ENDPOINT"],
                [
                    (c.name, c.pid, "running" if c.running else "STOPPED", c.endpoint)
                    for c in st.components
                ],
            )
        )
        click.echo()
        click.echo(
            table(
                ["NODE", "STATUS", "ROLES", "POWER", "KUBELET", "INTERNAL-IP", "TAINTS"],
                [
                    (
                        n.name,
                        n.ready,
                        n.roles,
                        n.power,
                        n.kubelet,
                        n.address,
                        ",".join(n.taints) or "<none>",
                    )
                    for n in st.nodes
                ],
            )
        )
        if st.hosts:
            click.echo()
            click.echo(
                table(
                    ["HOST", "POWER", "STATE", "BMC"],
                    [
                        (
                            h["name"],
                            h["power"],
                            "hung" if h["hung"] else "up" if h["reachable"] else "unreachable",
                            (_bmc_cell(h["bmc"]) if h["bmc"] else "none")
                            + (f" ({h['bmc_fault']})" if h["bmc_fault"] else ""),
                        )
                        for h in st.hosts
                    ],
                )
            )
        if (acme := _acme_status(st.state, st.state_dir)) is not None:
            click.echo()
            click.echo(f"ACME server (Pebble): {acme['directory']}")
            click.echo(f"  its root, for clients of the sites: {acme['root_certificate']}")
        for problem in st.problems:
            click.echo(f"problem: {problem}", err=True)
    if not st.healthy:
        sys.exit(1)


@lab.command()
@state_dir_option
def down(state_dir: Path) -> None:
    """Stop every process the lab started."""
    stopped = _lab(state_dir).down(progress)
    click.echo(f"lab stopped ({len(stopped)} processes)")


@lab.command("power-off")
@state_dir_option
@click.argument("node", type=NODE)
def power_off(state_dir: Path, node: str) -> None:
    """Stop NODE's VM through the Proxmox API (a hard stop, like pulling the plug).

    The node falls silent at once: no Lease, no status, no pod updates.
    """
    lab = _lab(state_dir)
    spec, upid = lab.power(node, on=False)
    click.echo(f"{node}: VM {spec.vmid} on {spec.hypervisor_host} stopped ({upid})")
    _quorum_note(lab, was=True)


@lab.command("power-on")
@state_dir_option
@click.argument("node", type=NODE)
def power_on(state_dir: Path, node: str) -> None:
    """Start NODE's VM through the Proxmox API: its kubelet boots and re-registers."""
    lab = _lab(state_dir)
    was = _quorate(lab)
    spec, upid = lab.power(node, on=True)
    click.echo(f"{node}: VM {spec.vmid} on {spec.hypervisor_host} running ({upid})")
    _quorum_note(lab, was=was)


@lab.command()
@state_dir_option
@click.argument("node", type=NODE)
def partition(state_dir: Path, node: str) -> None:
    """Cut NODE off the network: its kubelet falls silent but its VM keeps running.

    The VM stays `running` in Proxmox and keeps its volumes in use: the split-brain case
    that only fencing resolves safely.
    """
    _lab(state_dir).partition(node, cut=True)
    click.echo(f"{node}: partitioned (VM still running)")


@lab.command()
@state_dir_option
@click.argument("node", type=NODE)
def unpartition(state_dir: Path, node: str) -> None:
    """Reconnect NODE after `partition`."""
    _lab(state_dir).partition(node, cut=False)
    click.echo(f"{node}: reconnected")


@lab.command("host-off")
@state_dir_option
@click.argument("host")
def host_off(state_dir: Path, host: str) -> None:
    """Cut a whole Proxmox HOST's power: all its VMs stop at once, and the host drops out of its
    Proxmox cluster ("No route to host"), so nothing can verify its VMs off until `host-on`."""
    lab = _lab(state_dir)
    done = lab.agent().host_power(host, on=False)
    click.echo(f"{host}: power cut; stopped {', '.join(done['vms']) or 'no running VM'}")
    _quorum_note(lab, was=True)


@lab.command("host-hang")
@state_dir_option
@click.argument("host")
def host_hang(state_dir: Path, host: str) -> None:
    """Hang a whole Proxmox HOST: it stops answering (595) and its VMs die, but its power stays
    on and its BMC reads on. Only a power off through the BMC makes its VMs provably dead;
    `host-off` (or the BMC's power off) ends it."""
    lab = _lab(state_dir)
    done = lab.agent().host_hang(host)
    click.echo(f"{host}: hung; {', '.join(done['vms']) or 'no running VM'} stopped answering")
    _quorum_note(lab, was=True)


@lab.command("bmc-fault")
@state_dir_option
@click.argument("host")
@click.argument("fault", type=click.Choice(["unreachable", "auth-failure", "ignore-off", "none"]))
def bmc_fault(state_dir: Path, host: str, fault: str) -> None:
    """Break HOST's BMC: `unreachable` (no answer), `auth-failure` (the credentials are
    refused), `ignore-off` (power off is acknowledged but the host stays on); `none` repairs it."""
    _lab(state_dir).agent().bmc_fault(host, None if fault == "none" else fault)
    click.echo(f"{host}: BMC {'repaired' if fault == 'none' else fault}")


@lab.command("host-on")
@state_dir_option
@click.argument("host")
def host_on(state_dir: Path, host: str) -> None:
    """Restore HOST after `host-off` or `host-hang` (a power cycle): it rejoins and starts the
    VMs its failure stopped."""
    lab = _lab(state_dir)
    was = _quorate(lab)
    done = lab.agent().host_power(host, on=True)
    click.echo(f"{host}: back; started {', '.join(done['vms']) or 'no VM'}")
    _quorum_note(lab, was=was)


def _quorate(lab: Lab) -> bool:
    return bool(lab.agent().etcd()["quorate"])


def _quorum_note(lab: Lab, *, was: bool) -> None:
    """Say when a power change took etcd's quorum away, or gave it back: on the cluster the lab
    replays, that is the API itself going away or coming back."""
    from fireproof.lab.lab import quorum_lost

    etcd = lab.agent().etcd()
    if not etcd["quorate"]:
        click.echo(f"warning: {quorum_lost(etcd)}", err=True)
    elif not was:
        click.echo("etcd: a majority of the control plane is back; the API server starts again")


@lab.command()
@state_dir_option
@click.argument("action", type=click.Choice(["stop", "start"]))
def apiserver(state_dir: Path, action: str) -> None:
    """Stop kube-apiserver (an API outage: every client is refused) or start it again.

    The kubelets and any remediator keep running and see the outage as on a real cluster.
    `start` waits until it serves again, and starts kube-controller-manager and kube-scheduler
    afresh, as a real control plane's do after an outage longer than their leader election's
    renew deadline (10 s).
    """
    done = _lab(state_dir).apiserver(running=action == "start")
    click.echo(f"kube-apiserver {done}")


@lab.command("change-ip")
@state_dir_option
@click.argument("node", type=NODE)
@click.argument("new_ip")
def change_ip(state_dir: Path, node: str, new_ip: str) -> None:
    """Give NODE's VM a new address, leaving the `kubernetes` Endpoints stale.

    NEW_IP must be in a documentation range (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24).
    When NODE's kubelet runs, this returns once the Node's status shows NEW_IP.
    """
    spec, _view = _lab(state_dir).change_ip(node, new_ip)
    click.echo(
        f"{node}: address {spec.address} -> {new_ip}; the kubernetes Endpoints were not updated"
    )


@lab.group()
def fault() -> None:
    """Inject faults into the lab's Proxmox emulator."""


@fault.command("add")
@state_dir_option
@click.argument("kind", type=click.Choice([k.value for k in FaultKind]))
@click.option("--host", default=None, help="Proxmox host the fault applies to.")
@click.option("--vmid", type=int, default=None, help="VM the fault applies to.")
@click.option(
    "--seconds",
    type=FiniteFloat(0, 3600),
    default=0.0,
    help="Delay for latency; for host-unreachable, how long each 595 takes (at most 30).",
)
def fault_add(
    state_dir: Path, kind: str, host: str | None, vmid: int | None, seconds: float
) -> None:
    """Add a fault.

    \b
    api-error         every API call answers 500
    latency           every API call is delayed by --seconds
    hang              API calls never answer
    auth-failure      logins and tokens are refused (401)
    ignore-stop       --vmid's stop tasks end OK but the VM keeps running
    hang-tasks        power tasks never finish (optionally only --host / --vmid)
    host-unreachable  --host is dead to its cluster: offline, 595 "No route to host" (after
                      --seconds), its VMs read `unknown` after a while (8 s fast, 5 min real)
    locked            --vmid carries a backup lock: its power tasks fail "VM is locked (backup)"
    stop-warnings     --vmid's guest ignores quit: the stop kills it, task ends "WARNINGS: 1"
    """
    if kind == FaultKind.LATENCY and seconds <= 0:
        raise click.BadParameter("latency needs --seconds > 0", param_hint="--seconds")
    added = (
        _lab(state_dir)
        .agent()
        .add_fault({"kind": kind, "host": host, "vmid": vmid, "seconds": seconds})
    )
    click.echo(f"fault added: {_describe_fault(added)}")


@fault.command("list")
@state_dir_option
def fault_list(state_dir: Path) -> None:
    """List active faults."""
    faults = _lab(state_dir).agent().faults()
    if not faults:
        click.echo("no faults")
    for item in faults:
        click.echo(_describe_fault(item))


@fault.command("clear")
@state_dir_option
def fault_clear(state_dir: Path) -> None:
    """Remove every fault."""
    cleared = _lab(state_dir).agent().clear_faults()
    click.echo(f"cleared {cleared} fault(s)")


def _describe_fault(item: dict[str, object]) -> str:
    scope = [f"{k}={item[k]}" for k in ("host", "vmid") if item.get(k) is not None]
    if item.get("kind") in (FaultKind.LATENCY, FaultKind.HOST_UNREACHABLE) and item.get("seconds"):
        scope.append(f"seconds={item['seconds']}")
    return " ".join([str(item["kind"]), *scope])


@lab.group()
def vm() -> None:
    """Extra VMs in the Proxmox emulator: clones and templates that are no node's machine."""


@vm.command("list")
@state_dir_option
def vm_list(state_dir: Path) -> None:
    """Every VM of the emulator, with its SMBIOS UUID."""
    rows = [
        (
            str(v["vmid"]),
            str(v["name"]),
            str(v["host"]),
            "template" if v["template"] else str(v["status"]),
            str(v["smbios_uuid"]),
        )
        for v in _lab(state_dir).agent().vms()
    ]
    click.echo(table(("VMID", "NAME", "HOST", "STATUS", "SMBIOS UUID"), rows))


@vm.command("add")
@state_dir_option
@click.argument("name")
@click.option("--vmid", type=click.IntRange(100, 999_999_999), required=True)
@click.option("--host", default="pve-01", show_default=True, help="Proxmox host of the VM.")
@click.option("--template", is_flag=True, help="Make it a template (always stopped).")
@click.option("--running", is_flag=True, help="Start it (a clone is stopped by default).")
def vm_add(state_dir: Path, name: str, vmid: int, host: str, template: bool, running: bool) -> None:
    """Add a VM NAME, as a clone made in the Proxmox UI: a new SMBIOS UUID, no kubelet.

    Proxmox allows several VMs with one name; fireproof's inventory must not be fooled.
    """
    spec = {"name": name, "vmid": vmid, "host": host, "template": template, "running": running}
    added = _lab(state_dir).agent().add_vm(spec)
    kind = "template" if added["template"] else "VM"
    click.echo(f"added {kind} {added['vmid']} {added['name']!r} on {added['host']}")


@vm.command("remove")
@state_dir_option
@click.argument("vmid", type=int)
def vm_remove(state_dir: Path, vmid: int) -> None:
    """Remove an extra VM (a node's own VM cannot be removed)."""
    _lab(state_dir).agent().remove_vm(vmid)
    click.echo(f"removed VM {vmid}")


@lab.group()
def ledger() -> None:
    """The volume write ledger: which node wrote which volume, and when.

    While a pod with a ReadWriteOnce volume runs on a powered-on VM, the lab's kubelet appends
    a record to DIR/ledger.jsonl about every 200 ms, even while the node is partitioned (its
    VM still runs). A powered-off VM writes nothing.
    """


@ledger.command("check")
@state_dir_option
@click.option(
    "--file",
    "path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="A ledger file instead of the lab's DIR/ledger.jsonl.",
)
@click.option(
    "--window",
    type=FiniteFloat(min=0.01, max=60),
    default=1.0,
    show_default=True,
    help="Two nodes writing one volume this close together (seconds) is a split brain.",
)
@click.option(
    "--since",
    type=FiniteFloat(min=0),
    default=None,
    help="Only writes from this time on (seconds since the epoch).",
)
@click.option(
    "-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True
)
def ledger_check(
    state_dir: Path, path: Path | None, window: float, since: float | None, output: str
) -> None:
    """Report every split brain in the ledger; exit 1 if there is any (2: unreadable).

    A split brain is two different nodes writing the same volume within --window seconds.
    The check reads only the ledger, never a remediator's own records.
    """
    from fireproof.lab.ledger import check, read_ledger

    try:
        report = check(read_ledger(path or LabPaths(state_dir).ledger, since), window)
    except UsageError as exc:  # exit 1 means split brain: an unreadable ledger is not one
        click.echo(f"error: {exc.message}", err=True)
        if exc.hint:
            click.echo(f"hint: {exc.hint}", err=True)
        sys.exit(exitcodes.USAGE)
    if output == "json":
        emit_json({"window_seconds": window, **report.as_dict()})
    else:
        click.echo(
            f"{report.writes} writes to {report.volumes} volume(s) from {report.nodes} node(s); "
            f"{len(report.split_brains) or 'no'} split brain(s)"
        )
        if report.split_brains:
            click.echo(
                table(
                    ["VOLUME", "NODES", "FROM", "SECONDS", "PODS"],
                    [
                        (
                            sb.volume,
                            " + ".join(sb.nodes),
                            _utc(sb.first),
                            f"{sb.last - sb.first:.1f}",
                            ", ".join(sorted(sb.pods)),
                        )
                        for sb in report.split_brains
                    ],
                )
            )
    if report.split_brains:
        sys.exit(1)


def _utc(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


@lab.command("pve-token")
@state_dir_option
@click.argument("token_id")
@click.option(
    "--privilege",
    "privileges",
    multiple=True,
    help="A privilege to grant (repeat): VM.Audit, VM.PowerMgmt, Sys.Audit, VM.Config.Options.",
)
def pve_token(state_dir: Path, token_id: str, privileges: tuple[str, ...]) -> None:
    """Create a privilege-separated API token TOKEN_ID (USER@REALM!NAME) in the emulator.

    Prints the secret once, on stdout, as Proxmox's UI shows it once.
    """
    made = _lab(state_dir).agent().add_pve_token(token_id, list(privileges))
    click.echo(made["secret"])


@lab.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@state_dir_option
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def kubectl(state_dir: Path, args: tuple[str, ...]) -> None:
    """Run the lab's own kubectl (same version as the server) against the lab.

    Example: fireproof lab kubectl -- get pods -A
    """
    the_lab = _lab(state_dir)
    state = the_lab.load_state()
    exe = Path(state.bin_dir) / "kubectl"
    env = dict(os.environ, KUBECONFIG=str(the_lab.paths.kubeconfig))
    sys.exit(subprocess.run([str(exe), *args], env=env).returncode)


@lab.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@state_dir_option
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def helm(state_dir: Path, args: tuple[str, ...]) -> None:
    """Run the helm that `fireproof lab build` built, against the lab.

    The lab writes DIR/guard-values.yaml for fireproof's own chart (its Proxmox Secret exists),
    and runs the chart's guard pods as real processes:

    \b
      fireproof lab helm -- install fireproof charts/fireproof \\
        -n fireproof -f DIR/guard-values.yaml
    """
    from fireproof.lab.gotools import locate_helm

    the_lab = _lab(state_dir)
    the_lab.load_state()  # a readable error when no lab runs there
    paths = the_lab.paths
    # helm keeps caches and repositories under HOME; the lab's own stay in the state dir.
    env = dict(
        os.environ,
        KUBECONFIG=str(paths.kubeconfig),
        HELM_CACHE_HOME=str(paths.root / "helm" / "cache"),
        HELM_CONFIG_HOME=str(paths.root / "helm" / "config"),
        HELM_DATA_HOME=str(paths.root / "helm" / "data"),
    )
    sys.exit(subprocess.run([str(locate_helm()), *args], env=env).returncode)
