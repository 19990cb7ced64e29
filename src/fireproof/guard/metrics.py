"""guard's Prometheus metrics and its /metrics, /healthz, /readyz endpoint.

The HTTP server runs in a thread of its own; it only reads the registry and two timestamps, and
never touches the Kubernetes client (whose HTTP core must stay on one thread).
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from fireproof.errors import UsageError

PHASE_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600)


class GuardMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.remediations = Counter(
            "fireproof_guard_remediations_total",
            "Remediations that ended, by result.",
            ["result"],
            registry=r,
        )
        self.phase_seconds = Histogram(
            "fireproof_guard_phase_duration_seconds",
            "Time from detection to the end of each remediation phase.",
            ["phase"],
            buckets=PHASE_BUCKETS,
            registry=r,
        )
        self.actions = Counter(
            "fireproof_guard_actions_total",
            "Writes to the cluster or the hypervisor, by action.",
            ["action"],
            registry=r,
        )
        self.fence_levels = Counter(
            "fireproof_guard_fence_level_total",
            "Machines verified off, by the fencing level that proved it: vm (the VM through "
            "its hypervisor) or host (the whole host through its own device, a BMC).",
            ["level"],
            registry=r,
        )
        self.fencing_failures = Counter(
            "fireproof_guard_fencing_failures_total",
            "Fencing attempts that did not verify the machine off (nothing was released).",
            ["device"],
            registry=r,
        )
        self._declare_state(r)
        self._declare_devices(r)
        self.last_look = 0.0
        """The guard clock's monotonic time of the last complete look at the cluster."""
        self.failing_looks = 0
        """Looks in a row that ended in an internal error."""

    def _declare_state(self, r: CollectorRegistry) -> None:
        self.dead_nodes = Gauge(
            "fireproof_guard_nodes_dead", "Nodes that currently look dead.", registry=r
        )
        self.hosts_dead = Gauge(
            "fireproof_guard_hosts_dead",
            "Hypervisor hosts that are lost (offline in their cluster) with nodes that look dead.",
            registry=r,
        )
        self.storm = Gauge(
            "fireproof_guard_storm_active",
            "1 while the storm gate holds every destructive action.",
            registry=r,
        )
        self.leader = Gauge(
            "fireproof_guard_leader", "1 while this process holds the guard Lease.", registry=r
        )
        self.refused = Counter(
            "fireproof_guard_refusals_total",
            "Remediations a safety gate held back, by gate.",
            ["gate"],
            registry=r,
        )
        self.oldest_open = Gauge(
            "fireproof_guard_remediation_oldest_seconds",
            "Age of the oldest remediation still under way (0: none; set by the leader).",
            registry=r,
        )
        self.internal_errors = Counter(
            "fireproof_guard_internal_errors_total",
            "Looks that ended in an unexpected error (a bug): logged with its type and message.",
            registry=r,
        )

    def _declare_devices(self, r: CollectorRegistry) -> None:
        self.poll_errors = Counter(
            "fireproof_guard_hypervisor_poll_errors_total",
            "Failed power polls of a fencing device.",
            ["device"],
            registry=r,
        )
        self.poll_seconds = Histogram(
            "fireproof_guard_hypervisor_poll_duration_seconds",
            "Latency of one power poll of a fencing device.",
            ["device"],
            registry=r,
        )


FAILING_LOOKS_NOT_READY = 3
"""Looks in a row ending in an internal error after which /readyz answers 503."""


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[IPv6]:PORT`` or ``:PORT`` (127.0.0.1); the host must be an address."""
    host, sep, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise UsageError(
            f"--metrics-address must be HOST:PORT, got {text!r}",
            hint="write an IPv6 address in brackets: [::1]:9108",
        )
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UsageError(f"--metrics-address must be HOST:PORT, got {text!r}")
    host = host or "127.0.0.1"
    if host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise UsageError(
                f"--metrics-address: {host!r} is not an IP address (nor localhost)"
            ) from None
    return host, int(port)


def serve(
    metrics: GuardMetrics, address: tuple[str, int], ready: Callable[[], bool]
) -> ThreadingHTTPServer:
    """Serve /metrics, /healthz (the process runs) and /readyz (it saw the cluster lately)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                body, ctype, code = generate_latest(metrics.registry), CONTENT_TYPE_LATEST, 200
            elif self.path == "/healthz":
                body, ctype, code = b"ok\n", "text/plain", 200
            elif self.path == "/readyz":
                ok = ready()
                body = b"ok\n" if ok else b"not ready: no recent look at the cluster\n"
                ctype, code = "text/plain", 200 if ok else 503
            else:
                body, ctype, code = b"not found\n", "text/plain", 404
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return  # scrapes are not news

    server_class = ThreadingHTTPServer
    if ":" in address[0]:

        class ServerV6(ThreadingHTTPServer):
            address_family = socket.AF_INET6

        server_class = ServerV6
    try:
        server = server_class(address, Handler)
    except OSError as exc:
        raise UsageError(
            f"cannot listen on {address[0]}:{address[1]} for metrics: {exc.strerror}"
        ) from None
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="guard-metrics", daemon=True).start()
    return server
