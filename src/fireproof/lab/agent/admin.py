"""The agent's admin API on 127.0.0.1: power and reachability of simulated machines.

Guarded by a bearer token kept in the lab's state directory (mode 0600), so only a user who
can read the lab's files can flip its power switches. ``fireproof lab power-off|power-on``
talk to this; the hypervisor emulator of the lab will drive the same switches.
"""

from __future__ import annotations

import hmac
from typing import Any

from aiohttp import web

from fireproof.lab.agent.fleet import Fleet

FLEET_KEY = web.AppKey("fleet", Fleet)
TOKEN_KEY = web.AppKey("token", str)


@web.middleware
async def _auth(request: web.Request, handler: Any) -> web.StreamResponse:
    if request.path == "/healthz":
        response: web.StreamResponse = await handler(request)
        return response
    expected = "Bearer " + request.app[TOKEN_KEY]
    if not hmac.compare_digest(request.headers.get("Authorization", ""), expected):
        return web.json_response({"error": "unauthorized"}, status=401)
    authorized: web.StreamResponse = await handler(request)
    return authorized


async def _healthz(_request: web.Request) -> web.Response:
    return web.Response(text="ok")


def _node_view(fleet: Fleet, name: str) -> dict[str, Any]:
    node = fleet.nodes[name]
    return {
        "name": name,
        "role": str(node.spec.role),
        "address": node.spec.address,
        "hypervisor_host": node.spec.hypervisor_host,
        "vmid": node.spec.vmid,
        "power": "on" if node.powered else "off",
        "kubelet": "running" if node.active else ("partitioned" if node.powered else "off"),
        "boot_id": node.boot_id,
    }


async def _nodes(request: web.Request) -> web.Response:
    fleet = request.app[FLEET_KEY]
    return web.json_response({"nodes": [_node_view(fleet, n) for n in fleet.nodes]})


def _lookup(request: web.Request) -> str:
    name = request.match_info["name"]
    if name not in request.app[FLEET_KEY].nodes:
        raise web.HTTPNotFound(
            text=f'{{"error": "unknown node {name}"}}', content_type="application/json"
        )
    return name


async def _power(request: web.Request) -> web.Response:
    fleet = request.app[FLEET_KEY]
    name = _lookup(request)
    try:
        body = await request.json()
        state = body["state"]
    except (ValueError, KeyError, TypeError):
        return web.json_response({"error": 'body must be {"state": "on"|"off"}'}, status=400)
    if state == "off":
        fleet.power_off(name)
    elif state == "on":
        await fleet.power_on(name)
    else:
        return web.json_response({"error": f"unknown power state {state!r}"}, status=400)
    return web.json_response(_node_view(fleet, name))


async def _stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[FLEET_KEY].heartbeat_report())


def make_app(fleet: Fleet, token: str) -> web.Application:
    app = web.Application(middlewares=[_auth])
    app[FLEET_KEY] = fleet
    app[TOKEN_KEY] = token
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/v1/nodes", _nodes)
    app.router.add_post("/v1/nodes/{name}/power", _power)
    app.router.add_get("/v1/stats/heartbeats", _stats)
    return app
