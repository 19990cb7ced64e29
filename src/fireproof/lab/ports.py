"""Loopback ports for the lab's components."""

from __future__ import annotations

import contextlib
import errno
import socket

from fireproof.errors import UsageError


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_udp_ports(count: int) -> list[int]:
    """UDP ports free on 127.0.0.1 now (the BMCs' IPMI), distinct."""
    ports: list[int] = []
    while len(ports) < count:
        with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_DGRAM)) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in ports:
            ports.append(port)
    return ports


def require_free(port: int, flag: str) -> int:
    if not 1 <= port <= 65535:
        raise UsageError(f"{flag} {port} is not a TCP port (1-65535)")
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise UsageError(
                    f"port {port} on 127.0.0.1 is already in use",
                    hint=f"choose another {flag}, or omit it to pick a free port",
                ) from None
            raise UsageError(f"cannot use port {port} on 127.0.0.1: {exc.strerror}") from None
    return port


def allocate(count: int, exclude: set[int]) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in exclude and port not in ports:
            ports.append(port)
    return ports
