"""List-then-watch of several kinds at once, delivered as plain dicts to one callback.

The drill observes the cluster through this: every change arrives as it happens (watches, not
polling), with the wall-clock time it was received. The watches run in a private asyncio loop
on a background thread, so a synchronous caller can fault, heal and restore meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightkube.resources.coordination_v1 import Lease
from lightkube.resources.core_v1 import Endpoints, Event, Node, Pod
from lightkube.resources.storage_v1 import VolumeAttachment

from fireproof.kube.client import async_client, load_kubeconfig

KINDS: dict[str, tuple[Any, str | None]] = {
    "Node": (Node, None),
    "Pod": (Pod, "*"),
    "VolumeAttachment": (VolumeAttachment, None),
    "Event": (Event, "*"),
    "Lease": (Lease, "kube-node-lease"),
    "Endpoints": (Endpoints, "default"),  # the `kubernetes` Endpoints: the in-cluster API path
}
"""What the drill watches, and in which namespace ("*": all, None: cluster-scoped)."""


log = logging.getLogger(__name__)

OnList = Callable[[list[Any]], Awaitable[None]]
OnChange = Callable[[str, Any], Awaitable[None]]


async def follow(
    client: Any,
    resource: Any,
    on_list: OnList,
    on_change: OnChange,
    *,
    what: str,
    namespace: str | None = None,
    fields: dict[str, Any] | None = None,
    on_lost: Callable[[], None] | None = None,
) -> None:
    """List, then watch from the list's resourceVersion, forever. After any error (an API
    outage, an expired version) it lists again: ``on_list`` gets the whole current state, so
    whatever changed meanwhile, deletions included, is caught up. (lightkube's own watch retry
    does not survive a refused reconnect: its generator ends with the error.)"""
    scope: dict[str, Any] = {} if namespace is None else {"namespace": namespace}
    if fields:
        scope["fields"] = fields
    failures = 0
    while True:
        try:
            listing = client.list(resource, **scope)
            items = [item async for item in listing]
            await on_list(items)
            failures = 0
            async for change, item in client.watch(
                resource, resource_version=listing.resourceVersion, server_timeout=60, **scope
            ):
                await on_change(change, item)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # any lost list or watch is re-listed
            failures += 1
            if on_lost is not None:
                on_lost()
            if failures == 1 or failures % 30 == 0:
                log.warning("%s watch lost (%d): %s; listing again", what, failures, exc)
            await asyncio.sleep(min(0.5 * failures, 2.0))


@dataclass(frozen=True, slots=True)
class Change:
    kind: str
    type: str
    """``INITIAL`` (from the first list), ``ADDED``, ``MODIFIED`` or ``DELETED``."""
    obj: dict[str, Any]
    at: float
    """Wall-clock time (epoch seconds) the change was received."""


Sink = Callable[[Change], None]


class BackgroundWatches:
    """Follows several kinds (list, then watch, re-listed after any error) in a private asyncio
    loop on a thread of its own, until :meth:`stop`. Subclasses say what to follow and what to
    do with each listing and change; those callbacks run on the watch thread."""

    thread_name = "fireproof-watch"

    def __init__(self, kubeconfig: Path | None, context: str | None) -> None:
        self._config = load_kubeconfig(kubeconfig, context)
        self._loop: asyncio.AbstractEventLoop | None = None
        """Made by :meth:`start`: a watcher never started holds no loop to close."""
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._synced: set[str] = set()
        self._ready = threading.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.errors = 0
        """Watch connections lost and re-made (an API outage shows here)."""

    def kinds(self) -> dict[str, tuple[Any, str | None]]:
        """kind -> (resource, namespace: "*" all, None cluster-scoped)."""
        raise NotImplementedError

    def on_list(self, kind: str, items: list[Any]) -> None:
        raise NotImplementedError

    def on_change(self, kind: str, change: str, item: Any) -> None:
        raise NotImplementedError

    def on_lost(self, kind: str) -> None:
        """The kind's watch broke: what is known of it may be stale until the next list."""

    def start(self, timeout: float = 30.0) -> bool:
        """Start watching; True once every kind has been listed (within ``timeout``)."""
        self._loop = asyncio.new_event_loop()
        self._thread.start()
        return self._ready.wait(timeout)

    def stop(self) -> None:
        if self._loop is None or not self._thread.is_alive():
            return
        # One callback cancels every task: cancelling them one call at a time raced the loop's
        # own end (the loop could close between two calls: "Event loop is closed").
        with contextlib.suppress(RuntimeError):  # the loop already ended
            self._loop.call_soon_threadsafe(self._cancel_all)
        self._thread.join(timeout=10)

    def _cancel_all(self) -> None:
        for task in self._tasks:
            task.cancel()

    def _run(self) -> None:
        loop = self._loop
        assert loop is not None  # noqa: S101 - start() made it before the thread
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._main())
        finally:
            loop.close()

    async def _main(self) -> None:
        client = async_client(self._config, timeout=30.0)
        self._tasks = [asyncio.create_task(self._follow(client, kind)) for kind in self.kinds()]
        try:
            # return_exceptions: every task is waited for, cancelled or not, before the close.
            await asyncio.gather(*self._tasks, return_exceptions=True)
        finally:
            await client.close()

    async def _follow(self, client: Any, kind: str) -> None:
        resource, namespace = self.kinds()[kind]
        listed = 0

        async def on_list(items: list[Any]) -> None:
            nonlocal listed
            listed += 1
            if listed > 1:
                self.errors += 1  # a lost watch, listed again
            self.on_list(kind, items)
            self._mark_synced(kind)

        async def on_change(change: str, item: Any) -> None:
            self.on_change(kind, change, item)

        await follow(
            client,
            resource,
            on_list,
            on_change,
            what=kind,
            namespace=namespace,
            on_lost=lambda: self.on_lost(kind),
        )

    def _mark_synced(self, kind: str) -> None:
        self._synced.add(kind)
        if self._synced >= set(self.kinds()):
            self._ready.set()


class Watcher(BackgroundWatches):
    """Watches :data:`KINDS` for the drill, every change delivered as a plain dict."""

    def __init__(self, kubeconfig: Path | None, context: str | None, sink: Sink) -> None:
        super().__init__(kubeconfig, context)
        self._sink = sink

    def kinds(self) -> dict[str, tuple[Any, str | None]]:
        return KINDS

    def on_list(self, kind: str, items: list[Any]) -> None:
        for item in items:
            self._deliver(kind, "INITIAL", item)

    def on_change(self, kind: str, change: str, item: Any) -> None:
        self._deliver(kind, change, item)

    def _deliver(self, kind: str, change: str, item: Any) -> None:
        self._sink(Change(kind, change, item.to_dict(), time.time()))
