"""The in-cluster path to the API server: phase 1 of the incident."""

from __future__ import annotations

import re

from fireproof.doctor.facts import internal_ip, is_control_plane, name, node_ready, ns, ref
from fireproof.doctor.model import Check, Context, Finding, Severity
from fireproof.kube.snapshot import Snapshot

API_ERROR = re.compile(
    r"(dial tcp [0-9.\[\]:a-f]+:(443|6443)|https://[0-9.]+:(443|6443)|kubernetes\.default)"
    r".*(no route to host|connection refused|i/o timeout|connection reset|timed out)",
    re.IGNORECASE,
)


def _live(snap: Snapshot) -> dict[str, str]:
    """InternalIP -> node of every Ready control-plane node."""
    return {
        ip: name(n)
        for n in snap.get("nodes")
        if is_control_plane(n) and node_ready(n) == "True" and (ip := internal_ip(n))
    }


def stale_endpoints(snap: Snapshot, ctx: Context) -> list[Finding]:
    current = snap.endpoints or []
    live = _live(snap)
    if not live and not ctx.vip:
        return []  # no control-plane node is labelled or Ready: nothing to compare against
    targets = set(live) | ({ctx.vip} if ctx.vip else set())
    fix = "fireproof heal api-endpoints" + (" --to vip" if ctx.vip else " --to nodes")
    if not set(current) & targets:
        return [
            Finding(
                "FP-A1",
                Severity.CRITICAL,
                "the `kubernetes` Endpoints name no live control-plane address: every in-cluster "
                "API client (CoreDNS, kube-proxy, CSI managers) fails",
                ("Endpoints/default/kubernetes", *(f"Node/{n}" for n in sorted(live.values()))),
                (
                    f"Endpoints: {', '.join(current) or '(empty)'}",
                    "Ready control-plane addresses: "
                    + (", ".join(f"{ip} ({n})" for ip, n in sorted(live.items())) or "none"),
                    *((f"configured VIP: {ctx.vip}",) if ctx.vip else ()),
                ),
                fix,
            )
        ]
    return []


def api_clients_crash_looping(snap: Snapshot, ctx: Context) -> list[Finding]:
    findings = []
    for pod in snap.get("pods"):
        for status in (pod.status.containerStatuses if pod.status else None) or []:
            waiting = status.state.waiting if status.state else None
            if not waiting or waiting.reason != "CrashLoopBackOff":
                continue
            last = status.lastState.terminated if status.lastState else None
            message = (last.message if last else None) or ""
            if not API_ERROR.search(message):
                continue
            findings.append(
                Finding(
                    "FP-A2",
                    Severity.CRITICAL,
                    f"{ns(pod)}/{name(pod)} crash-loops because it cannot reach the API server",
                    (ref("Pod", pod), "Endpoints/default/kubernetes"),
                    (
                        f"container {status.name}: CrashLoopBackOff, {status.restartCount} "
                        "restarts",
                        f"last termination: {message.strip()[:300]}",
                        f"kubernetes Endpoints: {', '.join(snap.endpoints or []) or '(empty)'}",
                    ),
                    "fix the API path first (see FP-A1: fireproof heal api-endpoints), then the "
                    "pod recovers with its next restart",
                )
            )
            break
    return findings


CHECKS = (
    Check(
        "FP-A1",
        "stale-api-endpoints",
        Severity.CRITICAL,
        "API path",
        ("nodes",),
        stale_endpoints,
        "Pods reach the API server through the `kubernetes` Service (10.96.0.1), whose "
        "Endpoints must name live control-plane addresses or the VIP. When the control-plane "
        "machines change address (DHCP, re-IP) and nothing updates the Endpoints, CoreDNS, "
        "kube-proxy and CSI managers lose the API and crash-loop. The check compares the "
        "Endpoints with the InternalIPs of Ready control-plane nodes and the configured VIP.",
    ),
    Check(
        "FP-A2",
        "api-clients-crash-looping",
        Severity.CRITICAL,
        "API path",
        ("pods",),
        api_clients_crash_looping,
        "A pod in CrashLoopBackOff whose last termination message is an API connection error "
        "(`dial tcp 10.96.0.1:443: connect: no route to host` and the like) is a symptom of a "
        "broken API path, not of the pod itself: restarting it changes nothing.",
    ),
)
