"""Sockets inside a container's network namespace, made by the agent from the host.

A lab container has its own loopback (two guard replicas both listen on :9108), and nothing
else: the agent reaches in to probe it, and bridges a few host ports into it (the API server,
the Proxmox emulator) so that `127.0.0.1:PORT` inside means the same service as outside. A
socket keeps the namespace it was created in, so only its creation happens in a thread that
briefly joins the container's namespace; the rest is ordinary asyncio.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import logging
import os
import socket
import threading
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger(__name__)

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
T = TypeVar("T")


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))


def _in_namespace(pid: int, make: Callable[[], T]) -> T:
    """Run ``make`` in a fresh thread that joins the network namespace of ``pid``."""
    result: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            target = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
            try:
                _setns(target)
                try:
                    result.append(make())
                finally:
                    _setns(home)  # never leave a thread of the agent inside a container
            finally:
                os.close(target)
        except BaseException as exc:  # handed to the caller's thread
            failure.append(exc)
        finally:
            os.close(home)

    thread = threading.Thread(target=run, name=f"netns-{pid}", daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result[0]


def listener(pid: int, port: int) -> socket.socket:
    def make() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(64)
        sock.setblocking(False)
        return sock

    return _in_namespace(pid, make)


def unconnected(pid: int) -> socket.socket:
    def make() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        return sock

    return _in_namespace(pid, make)


async def http_get(pid: int, port: int, path: str, seconds: float) -> int:
    """Status code of ``GET path`` on the container's ``127.0.0.1:port`` (0: no answer)."""
    sock = await asyncio.to_thread(unconnected, pid)
    try:
        async with asyncio.timeout(seconds):
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
            reader, writer = await asyncio.open_connection(sock=sock)
            writer.write(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
            await writer.drain()
            line = await reader.readline()
            writer.close()
        parts = line.split()
        return int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else 0
    except (OSError, TimeoutError):
        return 0
    finally:
        sock.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (OSError, asyncio.IncompleteReadError):
        pass
    finally:
        with contextlib.suppress(OSError):
            writer.close()


class Bridge:
    """``127.0.0.1:PORT`` inside one container -> ``127.0.0.1:PORT`` on the host, per port."""

    def __init__(self, pid: int, ports: tuple[int, ...]) -> None:
        self.pid = pid
        self.ports = ports
        self._servers: list[asyncio.Server] = []
        self._writers: set[asyncio.StreamWriter] = set()

    async def open(self) -> None:
        for port in self.ports:
            sock = await asyncio.to_thread(listener, self.pid, port)
            server = await asyncio.start_server(functools.partial(self._connected, port), sock=sock)
            self._servers.append(server)

    async def _connected(
        self, port: int, inner_r: asyncio.StreamReader, inner_w: asyncio.StreamWriter
    ) -> None:
        try:
            outer_r, outer_w = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            inner_w.close()  # the service is down: the container sees a refused connection
            return
        self._writers |= {inner_w, outer_w}
        try:
            await asyncio.gather(_pipe(inner_r, outer_w), _pipe(outer_r, inner_w))
        finally:
            self._writers -= {inner_w, outer_w}

    def close(self) -> None:
        for server in self._servers:
            server.close()
        for writer in list(self._writers):
            with contextlib.suppress(OSError):
                writer.transport.abort()
        self._servers.clear()
