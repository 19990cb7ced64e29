"""The agent's admin API on 127.0.0.1: the lab operator's switches.

Guarded by a bearer token kept in the lab's state directory (mode 0600). Power is not here: it
goes through the Proxmox API like a person using Proxmox. Here are what no hypervisor API
offers: network partitions, address changes, fault injection into the emulator, statistics.
"""

from __future__ import annotations

import hmac
import ipaddress
from typing import Any

from aiohttp import web

from fireproof.lab.addresses import is_documentation_address
from fireproof.lab.agent.fleet import Fleet
from fireproof.lab.proxmox.model import Cluster, Fault, FaultKind

FLEET_KEY = web.AppKey("fleet", Fleet)
CLUSTER_KEY = web.AppKey("cluster", Cluster)
TOKEN_KEY = web.AppKey("token", str)


@web.middleware
async def _auth(request: web.Request, handler: Any) -> web.StreamResponse:
    if request.path != "/healthz":
        expected = "Bearer " + request.app[TOKEN_KEY]
        if not hmac.compare_digest(request.headers.get("Authorization", ""), expected):
            return web.json_response({"error": "unauthorized"}, status=401)
    response: web.StreamResponse = await handler(request)
    return response


async def _healthz(_request: web.Request) -> web.Response:
    return web.Response(text="ok")


def _node_view(request: web.Request, name: str) -> dict[str, Any]:
    fleet, cluster = request.app[FLEET_KEY], request.app[CLUSTER_KEY]
    node = fleet.nodes[name]
    vm = cluster.vm_by_name(name)
    return {
        "name": name,
        "role": str(node.spec.role),
        "address": node.address,
        "hypervisor_host": node.spec.hypervisor_host,
        "vmid": node.spec.vmid,
        "ha_managed": node.spec.ha_managed,
        "power": "on" if node.powered else "off",
        "vm_status": vm.status if vm else "unknown",
        "kubelet": "running" if node.active else ("partitioned" if node.powered else "off"),
        "boot_id": node.boot_id,
    }


async def _nodes(request: web.Request) -> web.Response:
    names = list(request.app[FLEET_KEY].nodes)
    return web.json_response({"nodes": [_node_view(request, n) for n in names]})


def _lookup(request: web.Request) -> str:
    name = request.match_info["name"]
    if name not in request.app[FLEET_KEY].nodes:
        raise web.HTTPNotFound(
            text=f'{{"error": "unknown node {name}"}}', content_type="application/json"
        )
    return name


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(
            text='{"error": "body must be JSON"}', content_type="application/json"
        ) from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(
            text='{"error": "body must be an object"}', content_type="application/json"
        )
    return body


async def _partition(request: web.Request) -> web.Response:
    name = _lookup(request)
    body = await _body(request)
    reachable = body.get("reachable")
    if not isinstance(reachable, bool):
        return web.json_response({"error": 'body must be {"reachable": true|false}'}, status=400)
    request.app[FLEET_KEY].set_reachable(name, reachable)
    return web.json_response(_node_view(request, name))


async def _address(request: web.Request) -> web.Response:
    name = _lookup(request)
    body = await _body(request)
    address = str(body.get("address", ""))
    try:
        ipaddress.IPv4Address(address)
    except ValueError:
        return web.json_response({"error": f"not an IPv4 address: {address!r}"}, status=400)
    if not is_documentation_address(address):
        return web.json_response(
            {
                "error": f"{address} is outside the lab's documentation ranges "
                "(192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24)"
            },
            status=400,
        )
    request.app[FLEET_KEY].set_address(name, address)
    return web.json_response(_node_view(request, name))


async def _faults(request: web.Request) -> web.Response:
    return web.json_response({"faults": [f.as_dict() for f in request.app[CLUSTER_KEY].faults]})


async def _add_fault(request: web.Request) -> web.Response:
    cluster = request.app[CLUSTER_KEY]
    body = await _body(request)
    try:
        kind = FaultKind(str(body.get("kind")))
    except ValueError:
        known = ", ".join(k.value for k in FaultKind)
        return web.json_response(
            {"error": f"unknown fault kind {body.get('kind')!r} (known: {known})"}, status=400
        )
    host = body.get("host")
    vmid = body.get("vmid")
    if host is not None and host not in cluster.hosts:
        return web.json_response({"error": f"unknown Proxmox host {host!r}"}, status=404)
    if vmid is not None and vmid not in cluster.vms:
        return web.json_response({"error": f"unknown VMID {vmid!r}"}, status=404)
    if kind is FaultKind.HOST_UNREACHABLE and host is None:
        return web.json_response({"error": "host-unreachable needs a host"}, status=400)
    if kind is FaultKind.IGNORE_STOP and vmid is None:
        return web.json_response({"error": "ignore-stop needs a vmid"}, status=400)
    fault = Fault(kind, host=host, vmid=vmid, seconds=float(body.get("seconds") or 0))
    cluster.faults.append(fault)
    return web.json_response(fault.as_dict())


async def _clear_faults(request: web.Request) -> web.Response:
    cluster = request.app[CLUSTER_KEY]
    cleared = len(cluster.faults)
    cluster.faults.clear()
    return web.json_response({"cleared": cleared})


async def _stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[FLEET_KEY].heartbeat_report())


def make_app(fleet: Fleet, cluster: Cluster, token: str) -> web.Application:
    app = web.Application(middlewares=[_auth])
    app[FLEET_KEY] = fleet
    app[CLUSTER_KEY] = cluster
    app[TOKEN_KEY] = token
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/v1/nodes", _nodes)
    app.router.add_post("/v1/nodes/{name}/partition", _partition)
    app.router.add_post("/v1/nodes/{name}/address", _address)
    app.router.add_get("/v1/faults", _faults)
    app.router.add_post("/v1/faults", _add_fault)
    app.router.add_delete("/v1/faults", _clear_faults)
    app.router.add_get("/v1/stats/heartbeats", _stats)
    return app
