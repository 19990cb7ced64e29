"""Prove guard safe: random faults against a lab with two guard replicas, and invariants checked
against the lab's own evidence after every run (Jepsen's way: never trust the system under test).

Setup: one `tazlab` lab, guard running as two replicas (one leader), the incident's workloads
plus extra ReadWriteOnce StatefulSets spread over the workers. Each run draws, from the seed,
one fault or a combination of two (power-off or partition of a worker, a whole Proxmox host's
power cut or hang, optionally with its BMC unreachable, refusing the credentials or ignoring
power off for a while, each Proxmox emulator fault held during the remediation, kube-apiserver
stopped for 10-40 s, the guard leader SIGKILLed, a node that comes back before guard acts, a
storm of more failure domains than max_unhealthy), then clears them and checks:

1. no split brain: the lab's write ledger shows no two nodes writing one volume;
2. fencing before release: no release (out-of-service taint, force-deleted pod, deleted
   VolumeAttachment) while the node's VM was running (the audit log against the emulator's
   power history); a hung host's VMs count as running until its BMC powered it off, so a node
   on a dead host may be released only once its host was proven off;
3. nothing done in a storm (counted in failure domains: a dead host's nodes are one), nothing
   done to a node the run did not take down;
4. everything recovers: within a budget after the clear, every node Ready, uncordoned,
   untainted, no remediation left, every workload ready;
5. exactly once: no VM fenced twice in one death, across guard kills and leader changes;
6. the control plane never crashes: no component logged a panic during the run (nothing
   restarts one in the lab, so the campaign restarts the control plane after it).

Usage: python benchmarks/fault_campaign.py --runs N --seed S [--profile fast|real]
                                            [--json OUT] [--only RUN]
Exit status 1 when any invariant was violated; each violation names the seed and run that
replays it alone (`--seed S --only RUN`).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import yaml
from lightkube.resources.coordination_v1 import Lease

from _campaign_checks import (
    INVARIANTS,
    Violation,
    check_run,
    control_plane_panics,
    crashed,
    not_recovered,
    percentiles,
)
from _campaign_faults import (
    HOST_FAULTS,
    TIMINGS,
    Fault,
    Injector,
    LabShape,
    domains_of,
    draw,
    killed_nodes,
    lab_cli,
)
from fireproof.kube import Cluster, KubeApiError, KubeUnreachableError, translate_errors
from fireproof.lab.state import LabPaths

from _lab import FIREPROOF, running_lab

GUARD_TOKEN = "root@pam!guard"  # noqa: S105 - a token's name, not its secret
GUARD_KUBE_USER = "fireproof-lab-admin"  # guard --config uses the lab's admin kubeconfig
LEASE = "fireproof-guard-campaign"
MAX_UNHEALTHY = 2
LEASE_STALE = {"fast": 6.0, "real": 40.0}
"""guard's lease_stale_seconds in each profile (the campaign's guard.yaml)."""
STORM_GRACE = 4.0
"""guard's confirm_seconds (2) and two polls (1 s each): its fair chance to see a storm whole."""

EXTRA_WORKLOADS = """
apiVersion: v1
kind: Namespace
metadata: {name: campaign}
"""
STATEFULSET = """
apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: {name}, namespace: campaign}}
spec:
  serviceName: {name}
  replicas: 2
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      affinity:
        podAntiAffinity:
          preferredDuringSchedulingIgnoredDuringExecution:
          - weight: 100
            podAffinityTerm:
              labelSelector: {{matchLabels: {{app: {name}}}}}
              topologyKey: kubernetes.io/hostname
      containers:
      - name: db
        image: docker.io/library/redis:7
        volumeMounts: [{{name: data, mountPath: /data}}]
  volumeClaimTemplates:
  - metadata: {{name: data}}
    spec:
      accessModes: [ReadWriteOnce]
      storageClassName: longhorn
      resources: {{requests: {{storage: 1Gi}}}}
"""


def say(message: str) -> None:
    print(message, flush=True)


class Guards:
    """Two guard replicas, restarted after a kill like a Deployment would."""

    def __init__(self, config: Path, work: Path) -> None:
        self.config = config
        self.work = work
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, count: int = 2) -> None:
        while len(self.processes) < count:
            name = f"guard-{uuid.uuid4().hex[:6]}"
            log = (self.work / f"{name}.log").open("wb")
            argv = ["guard", "run", "--config", str(self.config), "--metrics-address", ""]
            self.processes[name] = subprocess.Popen(
                [FIREPROOF, *argv, "--id", name],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "XDG_STATE_HOME": str(self.work / "state" / name)},
            )

    def kill_leader(self, cluster: Cluster) -> str | None:
        try:
            with translate_errors():
                lease = cluster.client.get(Lease, LEASE, namespace="kube-system")
        except (KubeApiError, KubeUnreachableError):
            return None
        holder = lease.spec.holderIdentity if lease.spec else None
        process = self.processes.pop(holder or "", None)
        if process is None:
            return None
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        return holder

    def stop(self) -> None:
        for process in self.processes.values():
            process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def guard_config(state_dir: Path, work: Path, profile: str) -> Path:
    created = lab_cli(
        state_dir, "pve-token", GUARD_TOKEN, "--privilege", "VM.Audit", "--privilege",
        "VM.PowerMgmt", "--privilege", "Sys.Audit",
    )  # fmt: skip
    if created.returncode != 0:
        raise SystemExit(f"cannot create guard's Proxmox token: {created.stderr}")
    secret = work / "guard-token"
    secret.write_text(created.stdout.strip())
    secret.chmod(0o600)
    doc = yaml.safe_load((state_dir / "fireproof.yaml").read_text())
    doc["devices"]["lab-proxmox"].update(
        {"token_id": GUARD_TOKEN, "token_secret": {"file": str(secret)}}
    )
    guard: dict[str, Any] = {"lease_name": LEASE, "max_unhealthy": str(MAX_UNHEALTHY)}
    if profile == "fast":
        doc["devices"]["lab-proxmox"].update(
            {"timeout_seconds": 2, "retries": 0, "verify_timeout_seconds": 8}
        )
        doc["remediation"] = {"workload_timeout_seconds": 30, "recover_timeout_seconds": 40}
        guard.update(
            lease_stale_seconds=LEASE_STALE["fast"],
            retry_backoff_seconds=1,
            storm_cooldown_seconds=5,
            lease_duration_seconds=6,
        )
    doc["guard"] = guard
    path = work / "guard.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def lab_shape(state_dir: Path) -> LabShape:
    status = json.loads(lab_cli(state_dir, "status", "-o", "json").stdout)
    nodes = status["nodes"]
    hosts: dict[str, list[str]] = {}
    for node in nodes:
        hosts.setdefault(node["hypervisor_host"], []).append(node["name"])
    vmids = {n["name"]: int(n["vmid"]) for n in nodes}
    planes = [n for n in nodes if "control-plane" in n["roles"]]
    survivable = tuple(
        sorted(h for h in hosts if 2 * sum(n["hypervisor_host"] != h for n in planes) > len(planes))
    )
    return LabShape(
        workers=tuple(n["name"] for n in nodes if "control-plane" not in n["roles"]),
        hosts={h: tuple(sorted(ns)) for h, ns in hosts.items()},
        vmids=vmids,
        max_unhealthy=MAX_UNHEALTHY,
        survivable=survivable,
    )


def wait_recovered(cluster: Cluster, budget: float) -> tuple[float | None, list[str]]:
    """Seconds until everything is back (None: not within ``budget``), and what was still
    missing the last time something was (the slowest part)."""
    started = time.monotonic()
    problems: list[str] = []
    last: list[str] = []
    while time.monotonic() - started < budget:
        problems = not_recovered(cluster)
        if not problems:
            return time.monotonic() - started, last
        last = problems
        time.sleep(0.5)
    return None, problems


def force_restore(state_dir: Path, shape: LabShape, *, control_plane: bool) -> None:
    """Put the lab back by hand after a run that did not recover (so the next run is clean).
    ``control_plane``: a component crashed; nothing restarts it in the lab (on a real node the
    kubelet restarts a static pod), so restart the control plane."""
    if control_plane:
        lab_cli(state_dir, "apiserver", "stop")
        lab_cli(state_dir, "apiserver", "start")
    lab_cli(state_dir, "fault", "clear")
    for host in shape.hosts:
        lab_cli(state_dir, "host-on", host)
    kubectl = [FIREPROOF, "lab", "kubectl", "--state-dir", str(state_dir), "--"]
    for node in (n for ns in shape.hosts.values() for n in ns):
        lab_cli(state_dir, "unpartition", node)
        lab_cli(state_dir, "power-on", node)
        for args in (
            ["taint", "node", node, "node.kubernetes.io/out-of-service-"],
            ["annotate", "node", node, "fireproof.io/remediation-", "fireproof.io/cordoned-at-"],
            ["uncordon", node],
        ):
            subprocess.run([*kubectl, *args], capture_output=True, timeout=60)


def one_run(
    run: int,
    seed: int,
    faults: list[Fault],
    *,
    state_dir: Path,
    cluster: Cluster,
    guards: Guards,
    shape: LabShape,
    profile: str,
) -> dict[str, Any]:
    timing = TIMINGS[profile]
    paths = LabPaths(state_dir)
    injector = Injector(state_dir, lambda: guards.kill_leader(cluster), say)
    panics = control_plane_panics(paths)
    t0 = injector.start(faults)
    held = max([timing.hold] + [f.delay + f.hold + 2 for f in faults if f.hold])
    time.sleep(held)
    cleared = injector.clear(faults)
    guards.start()  # a killed leader's replacement, as its Deployment would start one
    took, problems = wait_recovered(cluster, timing.settle)
    if took is not None and took > 30:
        say(f"  slow recovery: last still missing {problems[:4]}")
    crashes = crashed(panics, control_plane_panics(paths))
    violations: list[Violation] = list(crashes)
    if took is None:
        violations.append(
            Violation(4, f"not recovered {timing.settle:.0f} s after the clear: {problems[:6]}")
        )
    if took is None or crashes:
        force_restore(state_dir, shape, control_plane=bool(crashes))
        wait_recovered(cluster, timing.settle)
    killed = killed_nodes(faults, shape, LEASE_STALE[profile])
    domains = domains_of(faults, killed, shape)
    down_at = {f"host/{f.target}": t0 + f.delay for f in faults if f.kind in HOST_FAULTS}
    storm = len(set(domains.values())) > shape.max_unhealthy
    violations += check_run(
        paths,
        t0=t0,
        cleared=cleared,
        guard_user=GUARD_TOKEN,
        guard_kube_user=GUARD_KUBE_USER,
        killed=killed,
        domains=domains,
        down_at=down_at,
        max_unhealthy=shape.max_unhealthy,
        grace=STORM_GRACE,
    )
    return {
        "run": run,
        "seed": seed,
        "faults": [f.as_dict() for f in faults],
        "storm": storm,
        "outcome": "violation" if violations else "ok",
        "recovered_after_clear_seconds": None if took is None else round(took, 2),
        "violations": [v.as_dict() for v in violations],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profile", choices=sorted(TIMINGS), default="fast")
    parser.add_argument("--json", type=Path, default=None, help="write the campaign's document")
    parser.add_argument("--only", type=int, default=None, help="replay this one run alone")
    args = parser.parse_args()
    runs = [args.only] if args.only is not None else list(range(1, args.runs + 1))
    started = time.monotonic()
    with running_lab("--profile", args.profile) as state_dir:
        work = state_dir.parent
        cluster = Cluster.connect(state_dir / "kubeconfig")
        kubectl = [FIREPROOF, "lab", "kubectl", "--state-dir", str(state_dir), "--"]
        manifests = EXTRA_WORKLOADS + "".join(
            "---\n" + STATEFULSET.format(name=n) for n in ("vault", "ledger")
        )
        subprocess.run([*kubectl, "apply", "-f", "-"], input=manifests.encode(), check=True)
        shape = lab_shape(state_dir)
        guards = Guards(guard_config(state_dir, work, args.profile), work)
        guards.start()
        if wait_recovered(cluster, 180)[0] is None:
            raise SystemExit("the lab's workloads never became ready")
        say(f"campaign: seed {args.seed}, {len(runs)} run(s), profile {args.profile}")
        say(f"lab: {state_dir}")
        results = []
        try:
            for run in runs:
                rng = random.Random(f"{args.seed}:{run}")  # noqa: S311 - replayable, not secret
                faults = draw(rng, shape, TIMINGS[args.profile])
                say(f"run {run}: " + " + ".join(f"{f.kind} {f.target}".strip() for f in faults))
                result = one_run(
                    run,
                    args.seed,
                    faults,
                    state_dir=state_dir,
                    cluster=cluster,
                    guards=guards,
                    shape=shape,
                    profile=args.profile,
                )
                for v in result["violations"]:
                    say(f"  VIOLATION {v['invariant']} ({v['name']}): {v['detail']}")
                say(f"  {result['outcome']}, recovered {result['recovered_after_clear_seconds']} s "
                    "after the clear")  # fmt: skip
                results.append(result)
                if args.json:  # after every run: a campaign cut short keeps what it measured
                    write_document(args, results)
        finally:
            guards.stop()
            cluster.close()
    return report(results, args, time.monotonic() - started)


def report(results: list[dict[str, Any]], args: argparse.Namespace, seconds: float) -> int:
    kinds = Counter(f["kind"] for r in results for f in r["faults"])
    violations = violations_of(results)
    times = recovery_times(results)
    say("")
    say(f"runs: {len(results)}, faults: {sum(kinds.values())}, in {seconds / 60:.1f} min")
    say("faults by kind: " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())))
    by_invariant = Counter(v["invariant"] for v in violations)
    for number, name in INVARIANTS.items():
        say(f"  invariant {number} ({name}): {by_invariant.get(number, 0)} violation(s)")
    for v in violations:
        say(f"    run {v['run']} ({v['replay']}): {v['detail']}")
    say(f"recovery after the clear (s): {percentiles(times)}")
    if args.json:
        write_document(args, results)
    return 1 if violations else 0


def violations_of(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {**v, "run": r["run"], "seed": r["seed"], "replay": f"--seed {r['seed']} --only {r['run']}"}
        for r in results
        for v in r["violations"]
    ]


def recovery_times(results: list[dict[str, Any]]) -> list[float]:
    return [
        r["recovered_after_clear_seconds"]
        for r in results
        if r["recovered_after_clear_seconds"] is not None
    ]


def write_document(args: argparse.Namespace, results: list[dict[str, Any]]) -> None:
    document = {
        "seed": args.seed,
        "profile": args.profile,
        "faults_by_kind": dict(Counter(f["kind"] for r in results for f in r["faults"])),
        "runs": results,
        "violations": violations_of(results),
        "recovery_seconds": percentiles(recovery_times(results)),
    }
    args.json.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    sys.exit(main())
