"""The Proxmox VE HTTP API (``/api2/json``) over aiohttp.

Follows the real API's conventions: data in a ``{"data": …}`` envelope, errors as HTTP status
with the message in the reason phrase and ``{"data": null}`` (plus ``errors`` for parameter
problems), CSRF token required on writes authenticated by ticket, ``skiplock`` refused to
anyone but root@pam (so to every API token).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from http.cookies import CookieError, SimpleCookie
from typing import Any

from aiohttp import web

from fireproof.lab.proxmox.auth import Authenticator, Identity
from fireproof.lab.proxmox.model import Cluster, FaultKind, PveError
from fireproof.lab.proxmox.upid import Upid, parse_upid

log = logging.getLogger(__name__)
CLUSTER_KEY = web.AppKey("cluster", Cluster)
AUTH_KEY = web.AppKey("auth", Authenticator)
IDENTITY = "pve_identity"
PVE_VERSION = {"version": "8.4.1", "release": "8.4", "repoid": "2a5fa54a8503f96d"}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, reason: str, errors: dict[str, str] | None = None) -> web.Response:
    # Proxmox puts the message in the reason phrase; keep it on one line, as HTTP requires.
    phrase = reason.replace("\n", " ")[:200]
    if status in (401, 595):
        # pve-http-server answers these before any formatter runs: no body at all.
        return web.Response(status=status, reason=phrase)
    # pve-http-server >= 5.2 (Proxmox VE 8.3) repeats the message in the JSON body.
    body: dict[str, Any] = {"data": None, "message": reason.rstrip("\n") + "\n"}
    if errors:
        body["errors"] = errors
    return web.json_response(body, status=status, reason=phrase)


def _require(request: web.Request, privilege: str, path: str) -> None:
    """pve-access-control's permission check: 403 with the path and the privilege."""
    identity: Identity = request[IDENTITY]
    if not identity.may(privilege):
        raise PveError(403, f"Permission check failed ({path}, {privilege})")


def _data(value: Any) -> web.Response:
    return web.json_response({"data": value})


def _param_error(errors: dict[str, str]) -> PveError:
    return PveError(400, "Parameter verification failed.", errors)


async def _params(request: web.Request) -> dict[str, str]:
    params = dict(request.query)
    if request.method in ("POST", "PUT") and request.can_read_body:
        if request.content_type == "application/json":
            try:
                body = await request.json()
            except ValueError:
                raise _param_error({"body": "malformed JSON"}) from None
            if isinstance(body, dict):
                params.update({k: str(v) for k, v in body.items()})
        else:
            form = await request.post()
            params.update({k: str(v) for k, v in form.items()})
    return params


def _authenticate(request: web.Request) -> Identity:
    auth = request.app[AUTH_KEY]
    cluster = request.app[CLUSTER_KEY]
    header = request.headers.get("Authorization", "")
    if header:
        identity = auth.token_identity(header)
        if identity is None or cluster.fault(FaultKind.AUTH_FAILURE):
            raise PveError(401, "Authentication failed!")
        return identity
    ticket = None
    raw_cookie = request.headers.get("Cookie", "")
    if raw_cookie:
        try:
            jar: SimpleCookie = SimpleCookie()
            jar.load(raw_cookie)
            if "PVEAuthCookie" in jar:
                ticket = jar["PVEAuthCookie"].value
        except CookieError:
            # fence_pve sends a cookie line with attributes mixed in; fall back to a plain split.
            for part in raw_cookie.split(";"):
                name, _, value = part.strip().partition("=")
                if name == "PVEAuthCookie":
                    ticket = value
    if ticket is None:
        raise PveError(401, "No ticket")
    checked = auth.ticket_user(ticket)
    if checked is None or cluster.fault(FaultKind.AUTH_FAILURE):
        raise PveError(401, "permission denied - invalid PVE ticket")
    user, stamp = checked
    if request.method != "GET":
        csrf = request.headers.get("CSRFPreventionToken", "")
        if csrf != auth.csrf_token(user, stamp):
            raise PveError(401, "Permission denied - invalid csrf token")
    return Identity(user, via_ticket=True)


@web.middleware
async def _envelope(request: web.Request, handler: Handler) -> web.StreamResponse:
    cluster = request.app[CLUSTER_KEY]
    try:
        while cluster.fault(FaultKind.HANG):  # noqa: ASYNC110 - the fault list is plain data
            await asyncio.sleep(0.2)  # answers once the fault is cleared, if anyone still waits
        if latency := cluster.fault(FaultKind.LATENCY):
            await asyncio.sleep(latency.seconds)
        if cluster.fault(FaultKind.API_ERROR):
            raise PveError(500, "Internal Server Error")
        cluster.tick()
        if request.path != "/api2/json/access/ticket":
            request[IDENTITY] = _authenticate(request)
        return await handler(request)
    except PveError as exc:
        if exc.delay:
            await asyncio.sleep(exc.delay)
        return _error(exc.status, exc.reason, exc.errors)
    except web.HTTPNotFound:
        return _error(
            501, f"Method '{request.method} {request.path[len('/api2/json') :]}' not implemented"
        )
    except web.HTTPMethodNotAllowed:
        return _error(
            501, f"Method '{request.method} {request.path[len('/api2/json') :]}' not implemented"
        )


def _vmid(request: web.Request) -> int:
    raw = request.match_info["vmid"]
    if not raw.isdigit() or not 100 <= int(raw) <= 999_999_999:
        raise _param_error(
            {
                "vmid": f"type check ('integer') failed - got '{raw}'"
                if not raw.isdigit()
                else "value must be between 100 and 999999999"
            }
        )
    return int(raw)


async def ticket(request: web.Request) -> web.Response:
    params = await _params(request)
    missing = {
        k: "property is missing and it is not optional"
        for k in ("username", "password")
        if k not in params
    }
    if missing:
        raise _param_error(missing)
    username = params["username"]
    if "realm" in params and "@" not in username:
        username = f"{username}@{params['realm']}"
    auth = request.app[AUTH_KEY]
    issued = (
        None
        if request.app[CLUSTER_KEY].fault(FaultKind.AUTH_FAILURE)
        else auth.login(username, params["password"])
    )
    if issued is None:
        raise PveError(401, "authentication failure")
    user, ticket_value, csrf = issued
    return _data(
        {
            "ticket": ticket_value,
            "CSRFPreventionToken": csrf,
            "username": user,
            "cap": {"vms": {"VM.PowerMgmt": 1, "VM.Audit": 1}},
        }
    )


async def version(_request: web.Request) -> web.Response:
    return _data(PVE_VERSION)


async def nodes(request: web.Request) -> web.Response:
    cluster = request.app[CLUSTER_KEY]
    identity: Identity = request[IDENTITY]
    out = []
    # Listed only where the caller may audit the node, as pve-manager's index filters it.
    for host in cluster.hosts if identity.may("Sys.Audit") else []:
        offline = cluster.fault(FaultKind.HOST_UNREACHABLE, host=host) is not None
        out.append(
            {
                "node": host,
                "id": f"node/{host}",
                "type": "node",
                "status": "offline" if offline else "online",
                "level": "",
                "maxcpu": 16,
                "maxmem": 128 * 1024**3,
                "uptime": 0 if offline else 864000,
            }
        )
    return _data(out)


def _vm_summary(vm: Any) -> dict[str, Any]:
    return {
        "vmid": vm.vmid,
        "name": vm.name,
        "status": vm.status,
        "cpus": vm.cpus,
        "maxmem": vm.maxmem,
        "uptime": vm.uptime,
        "template": int(vm.template),
    }


async def cluster_status(request: web.Request) -> web.Response:
    """pve-cluster's ``/cluster/status``: the cluster (name, quorate) and each member (online),
    from pmxcfs's membership; Sys.Audit on ``/``."""
    cluster = request.app[CLUSTER_KEY]
    _require(request, "Sys.Audit", "/")
    out: list[dict[str, Any]] = [
        {
            "type": "cluster",
            "id": "cluster",
            "name": cluster.name,
            "nodes": len(cluster.hosts),
            "quorate": int(cluster.quorate),
            "version": len(cluster.hosts) + 1,
        }
    ]
    out += [
        {
            "type": "node",
            "id": f"node/{host}",
            "name": host,
            "nodeid": number,
            "online": int(cluster.online(host)),
            "local": int(number == 1),
            "level": "",
            "ip": f"192.0.2.{200 + number}",
        }
        for number, host in enumerate(cluster.hosts, 1)
    ]
    return _data(out)


async def qdevice_status(request: web.Request) -> web.Response:
    """``/cluster/config/qdevice``: an empty object without a QDevice (no corosync-qdevice
    socket), else the fields corosync-qdevice-tool reports."""
    cluster = request.app[CLUSTER_KEY]
    _require(request, "Sys.Audit", "/")
    if not cluster.qdevice:
        return _data({})
    return _data(
        {
            "Algorithm": "Fifty-Fifty split",
            "State": "Connected",
            "QNetd host": "192.0.2.250:5403",
            "Tie-breaker": "Node with lowest node ID",
        }
    )


async def cluster_resources(request: web.Request) -> web.Response:
    cluster = request.app[CLUSTER_KEY]
    identity: Identity = request[IDENTITY]
    kind = request.query.get("type")
    if kind not in (None, "vm", "node", "storage", "sdn"):
        raise _param_error(
            {
                "type": f"value '{kind}' does not have a value in the enumeration "
                "'vm, storage, node, sdn'"
            }
        )
    out: list[dict[str, Any]] = []
    now = time.monotonic()
    if kind in (None, "vm") and identity.may("VM.Audit"):
        for current in cluster.vms.values():
            # A lost host's VMs read as the cluster last saw them (pmxcfs), not as they are.
            lost = cluster.host_dead_since(current.host) is not None
            vm = cluster.last_seen.get(current.vmid, current) if lost else current
            entry = {
                **_vm_summary(vm),
                "id": f"qemu/{vm.vmid}",
                "type": "qemu",
                "node": vm.host,
                "maxcpu": vm.cpus,
            }
            dead_since = cluster.host_dead_since(vm.host)
            if (
                dead_since is not None
                and now - dead_since > cluster.timings.dead_host_status_seconds
            ):
                # pmxcfs dropped the dead member's state: what is left is the id and the host.
                entry = {k: v for k, v in entry.items() if k in ("id", "type", "node", "vmid")}
                entry["status"] = "unknown"
            elif vm.ha_managed:
                entry["hastate"] = "started" if vm.running else "stopped"
            out.append(entry)
    if kind in (None, "node") and identity.may("Sys.Audit"):
        out += [
            {
                "id": f"node/{h}",
                "type": "node",
                "node": h,
                "status": "offline" if cluster.host_dead_since(h) is not None else "online",
            }
            for h in cluster.hosts
        ]
    return _data(out)


async def ha_resources(request: web.Request) -> web.Response:
    cluster = request.app[CLUSTER_KEY]
    return _data(
        [
            {
                "sid": f"vm:{vm.vmid}",
                "type": "vm",
                "state": "started",
                "max_restart": 1,
                "max_relocate": 1,
            }
            for vm in cluster.vms.values()
            if vm.ha_managed
        ]
    )


async def ha_manager_status(request: web.Request) -> web.Response:
    """``/cluster/ha/status/manager_status`` (pve-manager's HA Status API, Sys.Audit on ``/``):
    the CRM's own record, node and service states included, and the quorum as it sees it."""
    cluster = request.app[CLUSTER_KEY]
    _require(request, "Sys.Audit", "/")
    ha = cluster.ha
    return _data(
        {
            "manager_status": ha.manager_status() if ha else {},
            "quorum": {
                "node": ha.master if ha and ha.master else cluster.hosts[0],
                "quorate": str(int(cluster.quorate)),
            },
        }
    )


async def ha_current(request: web.Request) -> web.Response:
    """``/cluster/ha/status/current``: quorum, master, each LRM and each service, one row each
    (what the Proxmox UI's HA panel shows)."""
    cluster = request.app[CLUSTER_KEY]
    _require(request, "Sys.Audit", "/")
    ha = cluster.ha
    quorate = cluster.quorate
    rows: list[dict[str, Any]] = [
        {
            "id": "quorum",
            "type": "quorum",
            "node": cluster.hosts[0],
            "quorate": int(quorate),
            "status": "OK" if quorate else "No quorum on node!",
        }
    ]
    if ha is None:
        return _data(rows)
    rows.append(
        {
            "id": "master",
            "type": "master",
            "node": ha.master,
            "status": f"{ha.master} (active, {ha.timestamp})" if ha.master else "none",
            "timestamp": ha.timestamp,
        }
    )
    for host in cluster.hosts:
        alive = cluster.online(host)
        rows.append(
            {
                "id": f"lrm:{host}",
                "type": "lrm",
                "node": host,
                "status": f"{host} (active)" if alive else f"{host} (old timestamp - dead?)",
            }
        )
    for sid, service in sorted(ha.services.items()):
        rows.append(
            {
                "id": f"service:{sid}",
                "type": "service",
                "sid": sid,
                "node": service.node,
                "state": service.state,
                "crm_state": service.state,
                "request_state": "started",
                "status": service.state,
            }
        )
    return _data(rows)


async def node_qemu(request: web.Request) -> web.Response:
    cluster = request.app[CLUSTER_KEY]
    host = request.match_info["node"]
    cluster.check_host(host)
    return _data([_vm_summary(vm) for vm in cluster.vms.values() if vm.host == host])


async def vm_status(request: web.Request) -> web.Response:
    cluster = request.app[CLUSTER_KEY]
    host, vmid = request.match_info["node"], _vmid(request)
    _require(request, "VM.Audit", f"/vms/{vmid}")
    vm = cluster.vm_on(host, vmid)
    extra: dict[str, Any] = {}
    if cluster.fault(FaultKind.LOCKED, host=host, vmid=vmid):
        extra["lock"] = "backup"
    ha: dict[str, Any] = {"managed": 0}
    if vm.ha_managed:
        ha = {"managed": 1, "state": "started" if vm.running else "stopped", "group": None}
    return _data(
        {
            **_vm_summary(vm),
            "qmpstatus": vm.status,
            "ha": ha,
            "agent": 0,
            "mem": vm.maxmem // 4 if vm.running else 0,
            "pid": 4000 + vm.vmid if vm.running else None,
            **extra,
        }
    )


async def vm_config(request: web.Request) -> web.Response:
    """``qm config``: the VM's name and ``smbios1``, which carries the SMBIOS UUID."""
    cluster = request.app[CLUSTER_KEY]
    host, vmid = request.match_info["node"], _vmid(request)
    _require(request, "VM.Audit", f"/vms/{vmid}")
    vm = cluster.vm_on(host, vmid)
    config: dict[str, Any] = {
        "name": vm.name,
        "smbios1": f"uuid={vm.smbios_uuid}",
        "cores": vm.cpus,
        "memory": str(vm.maxmem // 1024**2),
        "ostype": "l26",
        "scsihw": "virtio-scsi-single",
        "digest": hashlib.sha1(f"{vm.vmid}{vm.name}".encode(), usedforsecurity=False).hexdigest(),
    }
    if vm.template:
        config["template"] = 1
    if cluster.fault(FaultKind.LOCKED, host=host, vmid=vmid):
        config["lock"] = "backup"
    return _data(config)


async def vm_power(request: web.Request) -> web.Response:
    cluster = request.app[CLUSTER_KEY]
    identity: Identity = request[IDENTITY]
    action = request.match_info["action"]
    host = request.match_info["node"]
    vmid = _vmid(request)
    params = await _params(request)
    if params.get("skiplock") not in (None, "0") and identity.user != "root@pam":
        raise _param_error({"skiplock": "Only root may use this option."})
    timeout = params.get("timeout")
    if timeout is not None and (not timeout.isdigit() or action not in ("stop", "shutdown")):
        raise _param_error({"timeout": f"type check ('integer') failed - got '{timeout}'"})
    _require(request, "VM.PowerMgmt", f"/vms/{vmid}")
    upid = cluster.power_task(host, vmid, action, identity.user)
    log.info("%s %s vm %d by %s -> %s", host, action, vmid, identity.user, upid)
    return _data(str(upid))


def _upid_fields(upid: Upid) -> dict[str, Any]:
    """What Proxmox decodes from a UPID into a task's status and the task list."""
    return {
        "node": upid.node,
        "pid": upid.pid,
        "pstart": upid.pstart,
        "starttime": upid.starttime,
        "type": upid.type,
        "id": upid.id,
    }


async def task_status(request: web.Request) -> web.Response:
    cluster = request.app[CLUSTER_KEY]
    host = request.match_info["node"]
    raw = request.match_info["upid"]
    upid = parse_upid(raw)
    if upid is None:
        raise _param_error({"upid": f"unable to parse worker upid '{raw}'"})
    task = cluster.task(host, raw)
    identity: Identity = request[IDENTITY]
    if identity.user != upid.user:
        # Tasks.pm: the owner may read its task; anyone else needs Sys.Audit on the node.
        _require(request, "Sys.Audit", f"/nodes/{host}")
    body = {**_upid_fields(upid), "upid": raw, "user": upid.user, "status": task.status}
    if task.finished:
        body["exitstatus"] = task.exitstatus
    return _data(body)


TASK_SOURCES = ("archive", "active", "all")


async def node_tasks(request: web.Request) -> web.Response:
    """``GET /nodes/{node}/tasks``: the node's tasks, newest first (pve-manager Tasks.pm).

    ``source`` picks finished (``archive``, the default), running (``active``) or ``all``;
    ``vmid``, ``typefilter`` and ``userfilter`` narrow the list. Without Sys.Audit on the node
    a caller sees only its own tasks (a token only its token's). An active task has neither
    ``status`` nor ``endtime``.
    """
    cluster = request.app[CLUSTER_KEY]
    host = request.match_info["node"]
    cluster.check_host(host)
    params = await _params(request)
    source = params.get("source", "archive")
    if source not in TASK_SOURCES:
        known = "', '".join(TASK_SOURCES)
        raise _param_error({"source": f"value '{source}' does not have a value in the enumeration "
                            f"'{known}'"})  # fmt: skip
    for name in ("vmid", "limit", "start"):
        if name in params and not params[name].isdigit():
            raise _param_error({name: f"type check ('integer') failed - got '{params[name]}'"})
    identity: Identity = request[IDENTITY]
    auditor = identity.may("Sys.Audit")
    rows = []
    for task in sorted(cluster.tasks.values(), key=lambda t: -t.upid.starttime):
        upid = task.upid
        if upid.node != host:
            continue
        # A token sees its own tasks; a user its own and its tokens'.
        own = upid.user == identity.user or upid.user.startswith(identity.user + "!")
        if not (auditor or own):
            continue
        if (task.finished and source == "active") or (not task.finished and source == "archive"):
            continue
        if "vmid" in params and upid.id != params["vmid"]:
            continue
        if params.get("typefilter") and upid.type != params["typefilter"]:
            continue
        if params.get("userfilter") and params["userfilter"].lower() not in upid.user.lower():
            continue
        user, _, token = upid.user.partition("!")
        row = {**_upid_fields(upid), "upid": str(upid), "user": user}
        if token:
            row["tokenid"] = token
        if task.finished:
            row["status"] = task.exitstatus
            row["endtime"] = task.endtime
        rows.append(row)
    start = int(params.get("start", 0))
    limit = int(params.get("limit", 50)) or 50
    return _data(rows[start : start + limit])


def make_app(cluster: Cluster, auth: Authenticator) -> web.Application:
    app = web.Application(middlewares=[_envelope])
    app[CLUSTER_KEY] = cluster
    app[AUTH_KEY] = auth
    r = app.router
    p = "/api2/json"
    r.add_post(f"{p}/access/ticket", ticket)
    r.add_get(f"{p}/version", version)
    r.add_get(f"{p}/nodes", nodes)
    r.add_get(f"{p}/cluster/resources", cluster_resources)
    r.add_get(f"{p}/cluster/status", cluster_status)
    r.add_get(f"{p}/cluster/config/qdevice", qdevice_status)
    r.add_get(f"{p}/cluster/ha/resources", ha_resources)
    r.add_get(f"{p}/cluster/ha/status/manager_status", ha_manager_status)
    r.add_get(f"{p}/cluster/ha/status/current", ha_current)
    r.add_get(f"{p}/nodes/{{node}}/qemu", node_qemu)
    r.add_get(f"{p}/nodes/{{node}}/qemu/{{vmid}}/status/current", vm_status)
    r.add_get(f"{p}/nodes/{{node}}/qemu/{{vmid}}/config", vm_config)
    r.add_post(
        f"{p}/nodes/{{node}}/qemu/{{vmid}}/status/{{action:stop|start|shutdown|reset}}", vm_power
    )
    r.add_get(f"{p}/nodes/{{node}}/tasks", node_tasks)
    r.add_get(f"{p}/nodes/{{node}}/tasks/{{upid}}/status", task_status)
    return app
