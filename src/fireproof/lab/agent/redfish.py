"""Each emulated Proxmox host's BMC also speaks Redfish: HTTPS with Basic auth on 127.0.0.1.

The host's BMC is one machine with two protocols, as an iDRAC or an iLO is: the same chassis
power, the same user and password, the same faults as its IPMI side (:mod:`.bmc`). ClusterLabs'
``fence_redfish`` drives it unchanged.

Only what a power controller needs of the DMTF Redfish schema (DSP0266, DSP8010): the service
root, the ComputerSystem collection with the host as its one member, the system's
``PowerState``, and the ``#ComputerSystem.Reset`` action. It runs on the agent's event loop,
where the cluster model lives, so power is read and switched directly.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import ssl
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from fireproof.lab.agent.bmc import BmcFault, HostBmc

log = logging.getLogger("fireproof.lab.agent.redfish")

ROOT = "/redfish/v1"
SYSTEM_ID = "1"
"""The system's Id under Systems (HPE iLO's spelling; an iDRAC says System.Embedded.1)."""
SYSTEM = f"{ROOT}/Systems/{SYSTEM_ID}"
RESET = f"{SYSTEM}/Actions/ComputerSystem.Reset"
RESET_TYPES = ("On", "ForceOff", "GracefulShutdown", "ForceRestart", "PowerCycle", "Nmi")
OPEN_PATHS = frozenset({"/redfish", "/redfish/", ROOT, ROOT + "/"})
"""DSP0266: the service root answers without authentication (clients find the service)."""

PowerRead = Callable[[str], bool]
PowerSwitch = Callable[[str, bool], Any]
BMC_KEY = web.AppKey("bmc", HostBmc)
POWER_KEY = web.AppKey("power", tuple)


def _error(status: int, code: str, message: str, **headers: str) -> web.Response:
    """A Redfish error body (DSP0266 "Error responses"), with the Base registry's message id."""
    body = {"error": {"code": f"Base.1.8.{code}", "message": message}}
    return web.json_response(body, status=status, headers=headers)


def _authorized(request: web.Request, bmc: HostBmc) -> bool:
    header = request.headers.get("Authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    expected = bmc.users.get(user)  # a wrong password while the auth-failure fault holds
    return expected is not None and hmac.compare_digest(password.encode(), str(expected).encode())


@web.middleware
async def _faults_and_auth(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    bmc = request.app[BMC_KEY]
    if bmc.fault is BmcFault.UNREACHABLE:
        # Its network is down: the connection ends without an answer (a client sees it drop).
        if request.transport is not None:
            request.transport.abort()
        raise web.HTTPServiceUnavailable  # never sent: the connection is gone
    if request.path not in OPEN_PATHS and not _authorized(request, bmc):
        return _error(
            401,
            "InsufficientPrivilege",
            "There are insufficient privileges for the account or credentials associated with "
            "the current session to perform the requested operation.",
            **{"WWW-Authenticate": 'Basic realm="Redfish"'},
        )
    return await handler(request)


def _uuid(what: str, host: str) -> str:
    """Stable per host: the BMC's service and the system it manages are two things."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"fireproof-lab-{what}:{host}"))


async def _root(request: web.Request) -> web.Response:
    host = request.app[BMC_KEY].host
    return web.json_response(
        {
            "@odata.type": "#ServiceRoot.v1_5_0.ServiceRoot",
            "@odata.id": ROOT,
            "Id": "RootService",
            "Name": f"Root Service of {host}'s BMC",
            "RedfishVersion": "1.6.0",
            "UUID": _uuid("bmc", host),
            "Systems": {"@odata.id": f"{ROOT}/Systems"},
        }
    )


async def _systems(_request: web.Request) -> web.Response:
    return web.json_response(
        {
            "@odata.type": "#ComputerSystemCollection.ComputerSystemCollection",
            "@odata.id": f"{ROOT}/Systems",
            "Name": "Computer System Collection",
            "Members@odata.count": 1,
            "Members": [{"@odata.id": SYSTEM}],
        }
    )


async def _system(request: web.Request) -> web.Response:
    bmc = request.app[BMC_KEY]
    read, _switch = request.app[POWER_KEY]
    return web.json_response(
        {
            "@odata.type": "#ComputerSystem.v1_13_0.ComputerSystem",
            "@odata.id": SYSTEM,
            "Id": SYSTEM_ID,
            "Name": bmc.host,
            "SystemType": "Physical",
            "UUID": _uuid("system", bmc.host),
            "PowerState": "On" if read(bmc.host) else "Off",
            "Actions": {
                "#ComputerSystem.Reset": {
                    "target": RESET,
                    "ResetType@Redfish.AllowableValues": list(RESET_TYPES),
                }
            },
        }
    )


async def _reset(request: web.Request) -> web.Response:
    bmc = request.app[BMC_KEY]
    _read, switch = request.app[POWER_KEY]
    try:
        body = await request.json()
        kind = body["ResetType"]
    except (ValueError, KeyError, TypeError):
        return _error(400, "ActionParameterMissing", "The action requires the parameter ResetType.")
    if kind not in RESET_TYPES:
        return _error(
            400,
            "ActionParameterValueNotInList",
            f"The value {str(kind)[:40]!r} for the parameter ResetType is not in the list of "
            "acceptable values.",
        )
    ignored = bmc.fault is BmcFault.IGNORE_OFF and kind != "On"
    try:
        if ignored or kind == "Nmi":
            pass  # acknowledged; a stuck power controller (the fault) or a crash dump (Nmi)
        elif kind == "On":
            switch(bmc.host, True)
        elif kind in ("ForceOff", "GracefulShutdown"):
            switch(bmc.host, False)
        else:  # ForceRestart, PowerCycle
            switch(bmc.host, False)
            switch(bmc.host, True)
    except Exception as exc:  # the model refused: what a busy BMC answers
        log.warning("Redfish BMC of %s: %s failed: %s", bmc.host, kind, exc)
        return _error(503, "ServiceTemporarilyUnavailable", f"{kind} could not be carried out.")
    log.info("Redfish BMC of %s: %s%s", bmc.host, kind, " (ignored: fault)" if ignored else "")
    return web.Response(status=204)


def make_app(bmc: HostBmc, read: PowerRead, switch: PowerSwitch) -> web.Application:
    app = web.Application(middlewares=[_faults_and_auth])
    app[BMC_KEY] = bmc
    app[POWER_KEY] = (read, switch)
    for path in ("/redfish", ROOT):
        app.router.add_get(path, _root)
        app.router.add_get(path + "/", _root)
    app.router.add_get(f"{ROOT}/Systems", _systems)
    app.router.add_get(SYSTEM, _system)
    app.router.add_post(RESET, _reset)
    return app


async def serve(
    bmcs: dict[str, HostBmc],
    ports: dict[str, int],
    read: PowerRead,
    switch: PowerSwitch,
    cert: str,
    key: str,
) -> list[web.AppRunner]:
    """One HTTPS listener per host BMC that has a Redfish port."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    runners = []
    for host, port in sorted(ports.items()):
        runner = web.AppRunner(make_app(bmcs[host], read, switch), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port, ssl_context=context).start()
        runners.append(runner)
    if runners:
        where = ", ".join(f"{h} on tcp/{p}" for h, p in sorted(ports.items()))
        log.info("Redfish BMCs of %s", where)
    return runners
