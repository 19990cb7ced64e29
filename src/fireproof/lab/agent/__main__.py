"""Entry point of the lab agent process: ``python -m fireproof.lab.agent --state-dir DIR …``.

One asyncio process plays every machine of the lab: the Proxmox hosts and their API, each
VM's kubelet, the Longhorn-like storage, and the in-cluster path to the API server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import signal
from pathlib import Path

from aiohttp import web

from fireproof.kube import async_client, load_kubeconfig
from fireproof.lab.agent import redfish
from fireproof.lab.agent.admin import make_app
from fireproof.lab.agent.apipath import ApiPath
from fireproof.lab.agent.bmc import HostBmc, HostPower, serve_forever
from fireproof.lab.agent.containers import OWN_IMAGE, ProcessRunner, image_from_oci
from fireproof.lab.agent.fleet import Fleet
from fireproof.lab.agent.hypervisor import build_authenticator, build_cluster, serve, wire_power
from fireproof.lab.agent.ledger import Ledger
from fireproof.lab.agent.pods import PodRunner
from fireproof.lab.agent.powerlog import record_power
from fireproof.lab.agent.quorum import EtcdQuorum
from fireproof.lab.agent.storage import Storage
from fireproof.lab.exports import ProxmoxAccess, load_bmcs
from fireproof.lab.lab import Lab
from fireproof.lab.profiles import PROFILES
from fireproof.lab.state import LabPaths
from fireproof.lab.topology import build_topology

log = logging.getLogger("fireproof.lab.agent")


async def run(args: argparse.Namespace) -> None:
    paths = LabPaths(Path(args.state_dir))
    profile = PROFILES[args.profile]
    topology = build_topology(args.topology, args.workers, args.hosts)
    token = paths.agent_token.read_text().strip()
    access = ProxmoxAccess.load(paths.proxmox)
    kubeconfig = load_kubeconfig(paths.component_kubeconfig("agent"))
    client = async_client(kubeconfig, timeout=15)
    api_port = int(kubeconfig.cluster.server.rsplit(":", 1)[1])

    fleet = Fleet(client, topology.nodes, profile, args.kubelet_version)
    pods = PodRunner(fleet)
    storage = Storage(fleet, pods, profile.mount_timeout_seconds)
    api_path = ApiPath(fleet, pods, topology.vip)
    ledger = Ledger(fleet, pods, storage, paths.ledger)
    # fireproof's own image runs for real; inside, 127.0.0.1 reaches the API server and Proxmox.
    image = dataclasses.replace(OWN_IMAGE, repository=args.own_image)
    rootfs = Path(args.own_image_rootfs) if args.own_image_rootfs else None
    if rootfs is not None:
        # Read once at start, before any task runs: nothing waits on it.
        oci = json.loads(Path(args.own_image_config).read_text())  # noqa: ASYNC240
        image = image_from_oci(oci, image)
    processes = ProcessRunner(
        fleet,
        pods,
        paths.pods,
        image=image,
        api_port=api_port,
        bridged_ports=(api_port, access.port),
        rootfs=rootfs,
    )
    cluster = build_cluster(topology, profile, qdevice=args.qdevice)
    record_power(cluster, paths.power_log)
    wire_power(cluster, fleet)

    auth = build_authenticator(access)
    pve_runner, ticker = await serve(cluster, auth, access, paths.pki)
    log.info("Proxmox VE API on %s", access.url)
    power = HostPower(
        asyncio.get_running_loop(),
        read=lambda host: cluster.host_on[host],
        switch=cluster.host_power,
    )
    bmcs = {
        b.host: HostBmc(b.host, b.port, b.username, b.password, power)
        for b in load_bmcs(paths.bmc)
        if b.host in cluster.hosts
    }
    if bmcs:
        serve_forever(list(bmcs.values()))
    redfish_runners = await redfish.serve(
        bmcs,
        {b.host: b.redfish_port for b in load_bmcs(paths.bmc) if b.redfish_port and b.host in bmcs},
        read=lambda host: cluster.host_on[host],
        switch=cluster.host_power,
        cert=str(paths.pki.pve_serving.cert),
        key=str(paths.pki.pve_serving.key),
    )
    quorum = EtcdQuorum(
        tuple(n.name for n in topology.control_plane), fleet, Lab(paths.root).apiserver
    )
    admin = web.AppRunner(make_app(fleet, cluster, auth, token, bmcs, quorum), access_log=None)
    await admin.setup()
    await web.TCPSite(admin, "127.0.0.1", args.port).start()
    log.info("admin API on 127.0.0.1:%d", args.port)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    tasks = await fleet.start(progress=log.info)
    await storage.register_csi_nodes()
    tasks += [
        ticker,
        asyncio.create_task(pods.watch()),
        asyncio.create_task(pods.resync(max(profile.status_check_seconds, 1.0))),
        asyncio.create_task(storage.watch_claims()),
        asyncio.create_task(storage.watch_volumes()),
        asyncio.create_task(storage.watch_attachments()),
        asyncio.create_task(api_path.watch_endpoints()),
        asyncio.create_task(api_path.run()),
        asyncio.create_task(ledger.run()),
        asyncio.create_task(quorum.run()),
    ]
    log.info("ready: %d nodes on %d Proxmox hosts", len(fleet.nodes), len(cluster.hosts))
    await stop.wait()
    log.info("stopping")
    processes.close()
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    await admin.cleanup()
    for runner in redfish_runners:
        await runner.cleanup()
    await pve_runner.cleanup()
    await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="fireproof-lab-agent")
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--profile", required=True, choices=sorted(PROFILES))
    parser.add_argument("--topology", required=True)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--hosts", type=int, default=None)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--kubelet-version", required=True)
    parser.add_argument("--own-image", default=OWN_IMAGE.repository)
    parser.add_argument("--qdevice", action="store_true")
    parser.add_argument("--own-image-rootfs", default=None)
    parser.add_argument("--own-image-config", default=None)
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx2").setLevel(logging.WARNING)  # one line per request drowns the log
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
