"""SLO verdicts: each passes or fails with its measured value and threshold.

A verdict is decided as soon as it can be (a workload Running elsewhere in time, a threshold
passed without it); whatever is undecided at the drill's timeout fails with "not reached within
timeout". A timed-out drill never passes an SLO it did not see met.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from fireproof.drill.spec import Slo, SloKind
from fireproof.drill.timeline import Observer
from fireproof.report.phases import NODE_READY


@dataclass(frozen=True, slots=True)
class SloResult:
    slo: str
    kind: str
    passed: bool | None
    """None while undecided."""
    measured: float | None
    threshold: float | None
    unit: str
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _result(slo: Slo, passed: bool | None, measured: float | None, detail: str) -> SloResult:
    unit = "volumes" if slo.kind is SloKind.NO_DOUBLE_ATTACH else "s"
    threshold = 0.0 if slo.kind is SloKind.NO_DOUBLE_ATTACH else slo.threshold
    return SloResult(slo.label, slo.kind.value, passed, measured, threshold, unit, detail)


def evaluate(
    slo: Slo,
    observer: Observer,
    elapsed: float,
    nodes: list[str],
    *,
    final: bool,
    recovered: bool = False,
) -> SloResult:
    """The SLO's state ``elapsed`` seconds after the fault; ``final`` decides what is open.
    ``recovered``: the drill's recovery is over (a workload never short by then never was)."""
    threshold = slo.threshold or 0.0
    if slo.kind is SloKind.NO_DOUBLE_ATTACH:
        doubled = observer.double_attach_max
        if doubled:
            return _result(
                slo, False, doubled, f"{doubled} volume(s) attached to two nodes at once"
            )
        return _result(slo, True if final else None, 0, "never two nodes on one volume")
    if slo.kind is SloKind.RUNNING_ELSEWHERE:
        assert slo.workload is not None  # noqa: S101 - the spec parser requires it
        entry = observer.running_elsewhere(slo.workload.label)
        if entry is not None:
            return _result(slo, entry.t <= threshold, entry.t, entry.evidence)
        if not observer.affected(slo.workload.label):
            return _result(slo, True, 0.0, "never unavailable: no pod of it on the drill's nodes")
        if elapsed > threshold or final:
            return _result(slo, False, None, _missed(elapsed, threshold, final))
        return _result(slo, None, None, "waiting")
    if slo.kind is SloKind.MAX_UNAVAILABLE:
        assert slo.workload is not None  # noqa: S101 - the spec parser requires it
        assert observer.t0 is not None  # noqa: S101 - evaluated only after the fault
        seconds = round(observer.unavailable_seconds(slo.workload.label, observer.t0 + elapsed), 2)
        if seconds > threshold:
            return _result(slo, False, seconds, f"unavailable for {seconds:g} s")
        if observer.running_elsewhere(slo.workload.label) is not None or final:
            return _result(slo, True, seconds, f"unavailable for {seconds:g} s at most")
        return _result(slo, None, seconds, "waiting")
    if slo.kind is SloKind.READY:
        assert slo.workload is not None  # noqa: S101 - the spec parser requires it
        label = slo.workload.label
        whole = observer.whole(label)
        if whole is not None:
            return _result(slo, whole.t <= threshold, whole.t, whole.evidence)
        if not observer.short_since_fault(label):
            if final or recovered:
                return _result(slo, True, 0.0, "never short of a Ready replica")
            return _result(slo, None, None, "waiting")
        if elapsed > threshold or final:
            return _result(slo, False, None, _missed(elapsed, threshold, final))
        return _result(slo, None, None, "waiting")
    # node_ready_within: every named node Ready again after the fault.
    targets = [slo.node] if slo.node else nodes
    times = [observer.first(NODE_READY, f"node/{n}") for n in targets]
    if all(times):
        worst = max(e.t for e in times if e is not None)
        return _result(slo, worst <= threshold, worst, "Ready=True")
    if elapsed > threshold or final:
        return _result(slo, False, None, _missed(elapsed, threshold, final))
    return _result(slo, None, None, "waiting")


def _missed(elapsed: float, threshold: float, final: bool) -> str:
    if final and elapsed <= threshold:
        return "not reached within timeout"
    return f"not reached within {threshold:g} s"
