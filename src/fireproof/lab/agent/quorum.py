"""etcd quorum follows the control-plane VMs.

The lab runs one etcd and one kube-apiserver for the whole cluster, but on the cluster it
replays each control-plane VM runs an etcd member. When a majority of those VMs is off, hung
or cut off, etcd cannot commit anything, and every API server behind the VIP stops answering.
The agent plays that: it stops the lab's kube-apiserver while a majority of control-plane
nodes is down and starts it again (with the controllers, as after any outage) once a majority
is back. ``tazlab`` puts two of its three control planes on pve-01: losing pve-01 is a total
outage, as it would be there.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from fireproof.errors import FireproofError
from fireproof.lab.agent.fleet import Fleet

log = logging.getLogger(__name__)

Outage = Callable[[bool], str]
"""Stops (False) or starts (True) the lab's API server; returns what happened."""


@dataclass(frozen=True, slots=True)
class QuorumView:
    members: tuple[str, ...]
    up: tuple[str, ...]

    @property
    def quorate(self) -> bool:
        """Raft's rule: more than half of the members. No members: nothing to lose."""
        return not self.members or len(self.up) * 2 > len(self.members)

    def as_dict(self) -> dict[str, object]:
        return {"quorate": self.quorate, "members": list(self.members), "up": list(self.up)}

    def describe(self) -> str:
        down = sorted(set(self.members) - set(self.up))
        return (
            f"{len(self.up)} of {len(self.members)} control-plane nodes up ({', '.join(down)} down)"
        )


class EtcdQuorum:
    def __init__(self, members: tuple[str, ...], fleet: Fleet, outage: Outage) -> None:
        self.members = members
        self.fleet = fleet
        self.outage = outage
        self.lost = False
        """Whether the agent stopped the API server for a lost quorum (and owes its start)."""

    def view(self) -> QuorumView:
        # A member votes while its VM runs and reaches its peers: powered, not frozen by a
        # hung host (the fleet powers those off), not partitioned.
        up = tuple(n for n in self.members if n in self.fleet.nodes and self.fleet.nodes[n].active)
        return QuorumView(self.members, up)

    async def run(self, interval: float = 0.25) -> None:
        while True:
            await asyncio.sleep(interval)
            view = self.view()
            if view.quorate == (not self.lost):
                continue
            if not view.quorate:
                log.warning("etcd lost quorum: %s; the API server stops answering", view.describe())
            else:
                log.warning("etcd quorum is back (%s); the API server starts", view.describe())
            try:
                # Blocking work (processes, readiness probes) off the event loop: the kubelets
                # and the Proxmox API go on meanwhile.
                done = await asyncio.to_thread(self.outage, view.quorate)
            except FireproofError as exc:
                log.error("could not follow etcd quorum: %s", exc.message)
                continue  # tried again on the next round
            self.lost = not view.quorate
            log.info("kube-apiserver: %s", done)
