"""The agent's admin API on 127.0.0.1: the lab operator's switches.

Guarded by a bearer token kept in the lab's state directory (mode 0600). Power is not here: it
goes through the Proxmox API like a person using Proxmox. Here are what no hypervisor API
offers: network partitions, address changes, fault injection into the emulator, statistics.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from typing import Any

from aiohttp import web

from fireproof.lab.addresses import is_documentation_address
from fireproof.lab.agent.bmc import BmcFault, HostBmc
from fireproof.lab.agent.fleet import Fleet
from fireproof.lab.agent.quorum import EtcdQuorum
from fireproof.lab.proxmox.auth import Authenticator
from fireproof.lab.proxmox.model import Cluster, Fault, FaultKind, PveError, Vm

FLEET_KEY = web.AppKey("fleet", Fleet)
AUTH_KEY = web.AppKey("pve_auth", Authenticator)
KNOWN_PRIVILEGES = frozenset({"VM.Audit", "VM.PowerMgmt", "Sys.Audit", "VM.Config.Options"})
CLUSTER_KEY = web.AppKey("cluster", Cluster)
TOKEN_KEY = web.AppKey("token", str)
BMCS_KEY = web.AppKey("bmcs", dict[str, HostBmc])
QUORUM_KEY = web.AppKey("quorum", EtcdQuorum)


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
        # Where the VM runs now: an HA recovery restarts it on another host.
        "hypervisor_host": vm.host if vm else node.spec.hypervisor_host,
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


async def _host_power(request: web.Request) -> web.Response:
    cluster = request.app[CLUSTER_KEY]
    host = request.match_info["host"]
    if host not in cluster.hosts:
        return web.json_response({"error": f"unknown Proxmox host {host!r}"}, status=404)
    body = await _body(request)
    on = body.get("on")
    if not isinstance(on, bool):
        return web.json_response({"error": 'body must be {"on": true|false}'}, status=400)
    if on and host in cluster.hung:
        cluster.host_power(host, False)  # the lab's "restore" of a hung host: a power cycle
    changed = cluster.host_power(host, on)
    return web.json_response({"host": host, "on": on, "vms": [vm.name for vm in changed]})


def _host(request: web.Request) -> str:
    host = request.match_info["host"]
    if host not in request.app[CLUSTER_KEY].hosts:
        raise web.HTTPNotFound(
            text=json.dumps({"error": f"unknown Proxmox host {host!r}"}),
            content_type="application/json",
        )
    return host


async def _host_hang(request: web.Request) -> web.Response:
    host = _host(request)
    try:
        changed = request.app[CLUSTER_KEY].host_hang(host)
    except PveError as exc:
        return web.json_response({"error": exc.reason}, status=409)
    return web.json_response({"host": host, "vms": [vm.name for vm in changed]})


async def _bmc_fault(request: web.Request) -> web.Response:
    host = _host(request)
    bmc = request.app[BMCS_KEY].get(host)
    if bmc is None:
        return web.json_response({"error": f"host {host!r} has no BMC"}, status=404)
    body = await _body(request)
    kind = body.get("fault")
    try:
        bmc.fault = None if kind is None else BmcFault(str(kind))
    except ValueError:
        known = ", ".join(f.value for f in BmcFault)
        return web.json_response({"error": f"unknown BMC fault {kind!r} ({known})"}, status=400)
    return web.json_response({"host": host, "fault": kind})


async def _hosts(request: web.Request) -> web.Response:
    cluster = request.app[CLUSTER_KEY]
    bmcs = request.app[BMCS_KEY]
    return web.json_response(
        [
            {
                "name": host,
                "power": "on" if cluster.host_on[host] else "off",
                "hung": host in cluster.hung,
                "reachable": cluster.host_dead_since(host) is None,
                "bmc_fault": str(bmcs[host].fault) if host in bmcs and bmcs[host].fault else None,
            }
            for host in cluster.hosts
        ]
    )


async def _etcd(request: web.Request) -> web.Response:
    """Whether etcd has quorum: a majority of the control-plane VMs up."""
    return web.json_response(request.app[QUORUM_KEY].view().as_dict())


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
    if kind in (FaultKind.IGNORE_STOP, FaultKind.LOCKED, FaultKind.STOP_WARNINGS) and vmid is None:
        return web.json_response({"error": f"{kind} needs a vmid"}, status=400)
    fault = Fault(kind, host=host, vmid=vmid, seconds=float(body.get("seconds") or 0))
    cluster.faults.append(fault)
    return web.json_response(fault.as_dict())


async def _clear_faults(request: web.Request) -> web.Response:
    return web.json_response({"cleared": request.app[CLUSTER_KEY].clear_faults()})


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def _vms(request: web.Request) -> web.Response:
    cluster = request.app[CLUSTER_KEY]
    return web.json_response(
        {
            "vms": [
                {
                    "vmid": vm.vmid,
                    "name": vm.name,
                    "host": vm.host,
                    "status": vm.status,
                    "template": vm.template,
                    "smbios_uuid": vm.smbios_uuid,
                }
                for vm in sorted(cluster.vms.values(), key=lambda v: v.vmid)
            ]
        }
    )


async def _add_vm(request: web.Request) -> web.Response:
    """A VM that is no node's machine, as a person makes one in the Proxmox UI: a clone (new
    SMBIOS UUID, stopped) or a template. Names may repeat, as Proxmox allows."""
    cluster = request.app[CLUSTER_KEY]
    body = await _body(request)
    name, host, vmid = body.get("name"), body.get("host"), body.get("vmid")
    if not isinstance(name, str) or not name:
        return _error(400, "name must be a non-empty string")
    if host not in cluster.hosts:
        return _error(404, f"unknown Proxmox host {host!r} (hosts: {', '.join(cluster.hosts)})")
    if not isinstance(vmid, int) or not 100 <= vmid <= 999_999_999:
        return _error(400, "vmid must be an integer between 100 and 999999999")
    if vmid in cluster.vms:
        return _error(409, f"VM {vmid} already exists")
    template = bool(body.get("template"))
    vm = Vm(vmid, name, str(host), running=bool(body.get("running")) and not template)
    vm.template = template
    cluster.vms[vmid] = vm
    return web.json_response({"vmid": vmid, "name": name, "host": host, "template": template})


async def _remove_vm(request: web.Request) -> web.Response:
    cluster = request.app[CLUSTER_KEY]
    raw = request.match_info["vmid"]
    vmid = int(raw) if raw.isdigit() else -1
    vm = cluster.vms.get(vmid)
    if vm is None:
        return _error(404, f"unknown VMID {raw}")
    if vm.name in request.app[FLEET_KEY].nodes and not vm.template:
        return _error(400, f"VM {vmid} is node {vm.name}'s machine; only extra VMs are removed")
    del cluster.vms[vmid]
    return web.json_response({"removed": vmid})


async def _add_token(request: web.Request) -> web.Response:
    """A privilege-separated API token with exactly the given privileges."""
    body = await _body(request)
    token_id = body.get("token_id")
    privileges = body.get("privileges")
    if not isinstance(token_id, str) or "!" not in token_id or "@" not in token_id:
        return _error(400, "token_id must look like USER@REALM!TOKENID")
    if not isinstance(privileges, list) or not all(isinstance(p, str) for p in privileges):
        return _error(400, "privileges must be a list of strings")
    unknown = sorted(set(privileges) - KNOWN_PRIVILEGES)
    if unknown:
        return _error(
            400,
            f"unknown privilege(s) {', '.join(unknown)} "
            f"(known: {', '.join(sorted(KNOWN_PRIVILEGES))})",
        )
    secret = request.app[AUTH_KEY].add_token(token_id, frozenset(privileges))
    return web.json_response({"token_id": token_id, "secret": secret, "privileges": privileges})


async def _stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[FLEET_KEY].heartbeat_report())


def make_app(
    fleet: Fleet,
    cluster: Cluster,
    auth: Authenticator,
    token: str,
    bmcs: dict[str, HostBmc] | None = None,
    quorum: EtcdQuorum | None = None,
) -> web.Application:
    app = web.Application(middlewares=[_auth])
    if quorum is not None:
        app[QUORUM_KEY] = quorum
        app.router.add_get("/v1/etcd", _etcd)
    app[BMCS_KEY] = bmcs or {}
    app[FLEET_KEY] = fleet
    app[CLUSTER_KEY] = cluster
    app[AUTH_KEY] = auth
    app[TOKEN_KEY] = token
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/v1/nodes", _nodes)
    app.router.add_post("/v1/nodes/{name}/partition", _partition)
    app.router.add_post("/v1/nodes/{name}/address", _address)
    app.router.add_get("/v1/hosts", _hosts)
    app.router.add_post("/v1/hosts/{host}/power", _host_power)
    app.router.add_post("/v1/hosts/{host}/hang", _host_hang)
    app.router.add_post("/v1/hosts/{host}/bmc-fault", _bmc_fault)
    app.router.add_get("/v1/faults", _faults)
    app.router.add_post("/v1/faults", _add_fault)
    app.router.add_delete("/v1/faults", _clear_faults)
    app.router.add_get("/v1/stats/heartbeats", _stats)
    app.router.add_get("/v1/vms", _vms)
    app.router.add_post("/v1/vms", _add_vm)
    app.router.add_delete("/v1/vms/{vmid}", _remove_vm)
    app.router.add_post("/v1/pve-tokens", _add_token)
    return app
