"""Run the selected checks against one snapshot."""

from __future__ import annotations

from collections.abc import Iterable

from fireproof.doctor.model import Check, CheckResult, Context, NotChecked, Report
from fireproof.doctor.registry import BY_ID, CHECKS
from fireproof.errors import UsageError
from fireproof.kube.snapshot import Snapshot


def select(only: Iterable[str] = (), skip: Iterable[str] = ()) -> list[Check]:
    only, skip = [c.upper() for c in only], [c.upper() for c in skip]
    for check_id in [*only, *skip]:
        if check_id not in BY_ID:
            raise UsageError(f"unknown check id {check_id!r}", hint=f"known: {', '.join(BY_ID)}")
    chosen = [BY_ID[c] for c in only] if only else list(CHECKS)
    return [c for c in chosen if c.id not in skip]


def run_checks(checks: list[Check], snap: Snapshot, ctx: Context, cluster: str) -> Report:
    results = []
    for check in checks:
        missing = [k for k in check.needs if k in snap.missing]
        if missing:
            reason = "; ".join(f"{k}: {snap.missing[k]}" for k in missing)
            if all("not served" in snap.missing[k] for k in missing):
                reason = f"{', '.join(missing)} not served by this cluster"
            results.append(CheckResult(check, (), not_checked=reason))
            continue
        if check.id == "FP-A1" and snap.endpoints is None:
            reason = snap.missing.get("endpoints", "the kubernetes Endpoints are unreadable")
            results.append(CheckResult(check, (), not_checked=reason))
            continue
        try:
            findings = tuple(check.run(snap, ctx))
        except NotChecked as exc:
            results.append(CheckResult(check, (), not_checked=str(exc)))
            continue
        results.append(CheckResult(check, findings))
    return Report(tuple(results), snap.requests, cluster, snap.taken_at)
