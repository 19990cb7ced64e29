"""A simulated kubelet's start that races a reboot: the status report of a start begun under one
boot must not bring containers back under the next (the campaign's ledger caught exactly that:
a node's pods "wrote" again right after its VM was power-cycled, before it had booted)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from lightkube.models.core_v1 import Container, PodSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Pod

from fireproof.lab.agent.fleet import Fleet, SimNode
from fireproof.lab.agent.pods import PodRunner
from fireproof.lab.profiles import FAST
from fireproof.lab.topology import build_topology


class SlowApi:
    """Holds every status patch until released; records what it was sent."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.patches: list[dict[str, Any]] = []

    async def patch(self, _res: Any, _name: str, patch: dict[str, Any], **_kw: Any) -> None:
        self.patches.append(patch)
        await self.release.wait()

    async def create(self, *_a: Any, **_kw: Any) -> None:  # events
        return None


def _pod(node: str) -> Pod:
    return Pod(
        metadata=ObjectMeta(name="postgres-0", namespace="blog", uid=str(uuid.uuid4())),
        spec=PodSpec(containers=[Container(name="db", image="postgres:16")], nodeName=node),
    )


async def _start(cycle: bool) -> tuple[bool, list[str], SlowApi]:
    api = SlowApi()
    fleet = Fleet(api, build_topology("minimal", None).nodes, FAST, "v1.37.2")  # type: ignore[arg-type]
    runner = PodRunner(fleet)
    started: list[str] = []
    runner.on_started(lambda pod, node: started.append(node.spec.name))
    node: SimNode = next(n for n in fleet.nodes.values() if "worker" in n.spec.name)
    pod = _pod(node.spec.name)
    task = asyncio.create_task(runner.restart(("blog", "postgres-0"), pod, node, restarts=0))
    await asyncio.sleep(0)  # the patch is on its way
    if cycle:
        fleet.power_off(node.spec.name)  # the containers die with the VM...
        node.powered, node.boot_id = True, str(uuid.uuid4())  # ...and it is started again
    api.release.set()
    return await task, started, api


async def test_a_start_reported_across_a_power_cycle_starts_nothing() -> None:
    ok, started, _api = await _start(cycle=True)
    assert not ok
    assert started == []


async def test_a_start_without_a_power_cycle_starts_its_containers() -> None:
    ok, started, api = await _start(cycle=False)
    assert ok
    assert len(started) == 1
    # With the pod's UID, as the kubelet sends it: a pod recreated under the name is refused.
    assert api.patches[0]["metadata"]["uid"]
