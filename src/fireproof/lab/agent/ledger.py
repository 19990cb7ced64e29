"""What each VM's containers write, and to which volume: the evidence of a split brain.

A real kubelet's containers keep running while their node is cut off from the API server; only
losing power (or the kubelet seeing its pod deleted) stops them. So each simulated node keeps
its own view of the containers it started. While the VM is powered, every container with a
ReadWriteOnce volume "writes" a record to the ledger about every 200 ms. A partitioned node's
containers keep writing whatever the API server says about their pods: that is the danger the
ledger exists to catch. The format is one JSON object per line:
``{"t": <epoch seconds>, "volume": <PV name>, "node": …, "pod": "<ns>/<name>", "vm_running": …}``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from lightkube.resources.core_v1 import Pod

from fireproof.lab.agent.fleet import Fleet, SimNode
from fireproof.lab.agent.pods import Key, PodRunner, pod_key
from fireproof.lab.agent.storage import Storage

log = logging.getLogger(__name__)

EXCLUSIVE_MODES = frozenset({"ReadWriteOnce", "ReadWriteOncePod"})


@dataclass(frozen=True, slots=True)
class Container:
    uid: str
    volumes: tuple[str, ...]
    """PersistentVolume names of its exclusive (ReadWriteOnce) volumes."""


class Ledger:
    def __init__(
        self, fleet: Fleet, pods: PodRunner, storage: Storage, path: Path, period: float = 0.2
    ) -> None:
        self.fleet = fleet
        self.pods = pods
        self.storage = storage
        self.path = path
        self.period = period
        self.running: dict[str, dict[Key, Container]] = {}
        """node -> the containers its VM runs, as the node itself knows them."""
        pods.on_started(self._started)
        pods.on_pod_gone(self._gone)
        fleet.on_power_off(self._powered_off)
        fleet.on_reconnect(self._reconnected)

    def _exclusive_volumes(self, pod: Pod) -> tuple[str, ...]:
        names = []
        for _name, unique in self.storage.pod_volumes(pod):
            if unique is None:
                continue
            pv_name = unique.rsplit("^", 1)[-1]
            pv = self.storage.volumes.get(pv_name)
            modes = set((pv.spec.accessModes if pv and pv.spec else None) or [])
            if modes & EXCLUSIVE_MODES:
                names.append(pv_name)
        return tuple(names)

    def _started(self, pod: Pod, node: SimNode) -> None:
        volumes = self._exclusive_volumes(pod)
        uid = (pod.metadata.uid if pod.metadata else None) or ""
        containers = self.running.setdefault(node.spec.name, {})
        if volumes:
            containers[pod_key(pod)] = Container(uid, volumes)
        else:
            containers.pop(pod_key(pod), None)

    async def _gone(self, key: Key, node_name: str) -> None:
        node = self.fleet.nodes.get(node_name)
        # A kubelet that hears of the deletion stops the containers; a cut-off one never hears.
        if node is not None and node.active:
            self.running.get(node_name, {}).pop(key, None)

    def _powered_off(self, node: SimNode) -> None:
        self.running.pop(node.spec.name, None)

    def _reconnected(self, node: SimNode) -> None:
        # Back on the network, the kubelet resyncs and kills containers whose pod is gone (or is
        # now another pod under the same name).
        containers = self.running.get(node.spec.name, {})
        for key, container in list(containers.items()):
            pod = self.pods.cache.get(key)
            uid = (pod.metadata.uid if pod and pod.metadata else None) or ""
            bound = pod.spec.nodeName if pod and pod.spec else None
            if uid != container.uid or bound != node.spec.name:
                del containers[key]

    def write_once(self, out: TextIO) -> int:
        now = round(time.time(), 4)
        lines = []
        for name, containers in self.running.items():
            node = self.fleet.nodes.get(name)
            if node is None or not node.powered:
                continue
            for (namespace, pod), container in containers.items():
                for volume in container.volumes:
                    record = {
                        "t": now,
                        "volume": volume,
                        "node": name,
                        "pod": f"{namespace}/{pod}",
                        "vm_running": node.powered,
                    }
                    lines.append(json.dumps(record, separators=(",", ":")))
        if lines:
            out.write("\n".join(lines) + "\n")
            out.flush()
        return len(lines)

    async def run(self) -> None:
        with self.path.open("a", encoding="utf-8") as out:
            while True:
                try:
                    self.write_once(out)
                except OSError as exc:  # a full disk must not stop the kubelets
                    log.warning("ledger not written: %s", exc)
                await asyncio.sleep(self.period)
