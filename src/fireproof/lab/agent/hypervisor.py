"""The lab's Proxmox cluster inside the agent: VMs are the simulated nodes' machines.

Stopping a VM through the API powers its node off (silent at once); starting it boots the
node. The emulator serves HTTPS on 127.0.0.1 with the lab's own Proxmox CA.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl

from aiohttp import web

from fireproof.lab.agent.fleet import Fleet
from fireproof.lab.exports import ProxmoxAccess
from fireproof.lab.pki import LabPKI
from fireproof.lab.profiles import TimingProfile
from fireproof.lab.proxmox.api import make_app
from fireproof.lab.proxmox.auth import Authenticator, Credentials
from fireproof.lab.proxmox.ha import HaManager, HaTimings
from fireproof.lab.proxmox.model import Cluster, Timings, Vm
from fireproof.lab.topology import Topology


def build_cluster(topology: Topology, profile: TimingProfile, *, qdevice: bool = False) -> Cluster:
    hosts = sorted({n.hypervisor_host for n in topology.nodes})
    vms = [
        Vm(
            n.vmid,
            n.name,
            n.hypervisor_host,
            ha_managed=n.ha_managed,
            smbios_uuid=n.system_uuid,  # the node's kubelet reports the same systemUUID
        )
        for n in topology.nodes
    ]
    timings = Timings(
        profile.vm_task_seconds, profile.ha_stop_delay_seconds, profile.dead_host_status_seconds
    )
    cluster = Cluster(hosts, vms, timings, name=topology.name, qdevice=qdevice)
    if any(vm.ha_managed for vm in vms):
        ha = HaManager(
            HaTimings(
                profile.ha_round_seconds,
                profile.ha_fence_delay_seconds,
                profile.ha_agent_lock_seconds,
            ),
            members=lambda: cluster.hosts,
            quorate=lambda: cluster.quorate,
            alive=cluster.online,
            self_fence=cluster.ha_self_fence,
            recover=cluster.ha_recover,
        )
        for vm in vms:
            if vm.ha_managed:
                ha.add_service(vm.vmid, vm.host, vm.running)
        cluster.ha = ha
    return cluster


def wire_power(cluster: Cluster, fleet: Fleet) -> None:
    loop = asyncio.get_running_loop()
    boots: set[asyncio.Task[None]] = set()  # strong references until each boot finishes

    def off(vm: Vm) -> None:
        if vm.name in fleet.nodes:
            fleet.power_off(vm.name)

    def on(vm: Vm) -> None:
        if vm.name in fleet.nodes:
            task = loop.create_task(fleet.power_on(vm.name))
            boots.add(task)
            task.add_done_callback(boots.discard)

    cluster.on_power_off.append(off)
    cluster.on_freeze.append(off)  # a hung host's guest: silent, though never powered off
    cluster.on_power_on.append(on)


def build_authenticator(access: ProxmoxAccess) -> Authenticator:
    return Authenticator(
        Credentials(access.user, access.password, access.token_id, access.token_secret)
    )


async def serve(
    cluster: Cluster, auth: Authenticator, access: ProxmoxAccess, pki: LabPKI
) -> tuple[web.AppRunner, asyncio.Task[None]]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(pki.pve_serving.cert), str(pki.pve_serving.key))
    runner = web.AppRunner(make_app(cluster, auth), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", access.port, ssl_context=context).start()

    async def ticker() -> None:
        # Delayed effects (an HA stop taking hold) happen even when nobody is asking.
        while True:
            await asyncio.sleep(0.1)
            with contextlib.suppress(Exception):
                cluster.tick()

    return runner, asyncio.create_task(ticker())
