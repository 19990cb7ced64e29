"""`fireproof drill`: run a fire drill from a spec, render a saved run, compare runs."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from fireproof.cli import exitcodes
from fireproof.cli.context import load_target, target_options
from fireproof.cli.fence import confirm_or_abort
from fireproof.cli.render import emit_json, progress, table, terminal_safe
from fireproof.errors import NotFoundError, UsageError
from fireproof.files import RUN_DOCUMENT_LIMIT, read_text
from fireproof.jsontext import dumps

if TYPE_CHECKING:  # the drill engine and its clients load when a drill runs, not for --help
    from fireproof.drill import LabHooks, SpecError
    from fireproof.drill.spec import DrillSpec, ProxmoxFaultSpec
    from fireproof.fencing import Machine
    from fireproof.wiring import Target

GAME_DAY_SCHEMA = "https://fireproof.dev/schemas/drill-game-day-1.json"


@click.group()
def drill() -> None:
    """Fire drills: power a node off (or partition it), watch the recovery, judge the SLOs.

    \b
      fireproof drill run drills/traefik-worker-power-off.yaml --lab --yes
      fireproof drill report RUN.json --html report.html
      fireproof drill compare before.json after.json --html compare.html
    """


class _LabHooks:
    """The lab's partition and emulator faults, for drills run with `--lab`."""

    def __init__(self, state_dir: Path | None) -> None:
        from fireproof.lab.lab import Lab  # the CLI may know the lab; drill never does
        from fireproof.lab.state import default_state_dir

        self._lab = Lab(state_dir or default_state_dir())
        try:
            self.profile = self._lab.load_state().profile
        except NotFoundError as exc:
            # The lab's own hint names `lab`'s --state-dir; here the flag is --lab-dir.
            raise NotFoundError(
                exc.message,
                hint="start one with `fireproof lab up`, or pass its directory as --lab-dir "
                "(default: $FIREPROOF_LAB_DIR or the default lab dir)",
            ) from None

    def partition(self, node: str, cut: bool) -> None:
        self._lab.partition(node, cut=cut)

    def add_proxmox_fault(self, fault: ProxmoxFaultSpec, machine: Machine) -> None:
        body: dict[str, Any] = {"kind": fault.kind, "host": fault.host, "vmid": fault.vmid}
        if fault.kind in ("ignore-stop", "locked", "stop-warnings") and fault.vmid is None:
            body["vmid"] = machine.vmid
        if fault.kind == "host-unreachable" and fault.host is None:
            body["host"] = machine.host
        body["seconds"] = 1.0 if fault.kind == "latency" else 0.0
        self._lab.agent().add_fault(body)

    def clear_proxmox_faults(self) -> None:
        self._lab.agent().clear_faults()

    def host_hang(self, host: str) -> None:
        self._lab.agent().host_hang(host)

    def change_ip(self, node: str, address: str) -> None:
        self._lab.change_ip(node, address)

    def host_restore(self, host: str) -> None:
        self._lab.agent().host_power(host, on=True)  # a hung host: power-cycled


def _spec_error(exc: SpecError) -> NoReturn:
    """A spec that cannot run as written: exit 2, nothing touched."""
    click.echo(f"error: {exc.message}", err=True)
    if exc.hint:
        click.echo(f"hint: {exc.hint}", err=True)
    sys.exit(exitcodes.USAGE)


def _write(path: Path, text: str) -> None:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}") from None
    progress(f"wrote {path}")


def _read_runs(path: Path) -> list[dict[str, Any]]:
    """The runs of a saved document: one drill's run, or a game day's ``runs``."""
    text = read_text(path, limit=RUN_DOCUMENT_LIMIT, what="drill run document")
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{path}: not a drill run (JSON): {exc}") from None
    except RecursionError:
        raise UsageError(f"{path}: nested too deeply to be a drill run") from None
    runs: list[Any] = [doc]
    if isinstance(doc, dict) and isinstance(doc.get("runs"), list) and doc["runs"]:
        runs = doc["runs"]
    for run in runs:
        if not isinstance(run, dict) or not {"spec", "timeline", "slos", "verdict"} <= set(run):
            raise UsageError(
                f"{path}: not a drill run: expected the keys spec, timeline, slos, verdict"
            )
        _check_run_schema(path, run)
    return runs


def _check_run_schema(path: Path, doc: dict[str, Any]) -> None:
    """A run document from outside is untrusted: it must follow run.schema.json before any
    renderer reads it; the error names the JSON path of the first violation."""
    from importlib.resources import files

    import jsonschema

    schema = json.loads(files("fireproof.drill").joinpath("run.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(doc))
    if error is not None:
        where = error.json_path
        raise UsageError(
            f"{path}: not a valid drill run at {terminal_safe(where)}: "
            f"{terminal_safe(error.message)[:300]}",
            hint="write run documents with `fireproof drill run --save`",
        )


def _write_outputs(runs: list[dict[str, Any]], html: Path | None, junit: Path | None) -> None:
    if html is None and junit is None:
        return
    from fireproof.report import render_html, render_junit

    for path, render in ((html, render_html), (junit, render_junit)):
        if path is not None:
            _write(path, render(runs))


def _print_run(run: dict[str, Any]) -> None:
    click.echo(f"\ndrill {terminal_safe(run['spec']['name'])}: timeline (T+0 = the fault)")
    rows = [
        (f"{e['t']:.1f}", e["phase"], terminal_safe(e["object"]), terminal_safe(e["evidence"])[:90])
        for e in run["timeline"]
    ]
    click.echo(table(["T+ (s)", "PHASE", "OBJECT", "EVIDENCE"], rows))
    click.echo("\nSLOs:")
    for r in run["slos"]:
        shown = "not reached" if r["measured"] is None else f"{r['measured']:g} {r['unit']}"
        word = "PASS" if r["passed"] else "FAIL"
        click.echo(
            f"  {word}  {terminal_safe(r['slo'])}: measured {shown}, threshold "
            f"{r['threshold']:g} {r['unit']} ({terminal_safe(r['detail'])})"
        )
    for note in [*run["recovery"]["errors"], *run["restore"]["problems"]]:
        click.echo(f"  note: {terminal_safe(note)}")
    click.echo(f"verdict: {run['verdict']} ({run['seconds']:g} s)")


output_options = [
    click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text"),
    click.option(
        "--html",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Also write a self-contained HTML report here.",
    ),
    click.option(
        "--junit",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Also write JUnit XML here (one testcase per SLO).",
    ),
]


def _outputs(fn: Any) -> Any:
    for option in reversed(output_options):
        fn = option(fn)
    return fn


@drill.command("run")
@target_options
@click.argument(
    "spec_paths", metavar="SPEC.yaml...", nargs=-1, required=True, type=click.Path(path_type=Path)
)
@click.option(
    "--lab-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The lab that lab-only faults (partition, proxmox_fault) act on, when --config names "
    "a lab's cluster (--lab implies its own).",
)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--dry-run", is_flag=True, help="Check the spec against the cluster, show the plan.")
@click.option(
    "--save",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the run document (JSON) here, for `drill report` and `drill compare`.",
)
@_outputs
def drill_run(
    config_path: Path | None,
    lab: bool,
    kubeconfig: Path | None,
    context: str | None,
    spec_paths: tuple[Path, ...],
    lab_dir: Path | None,
    yes: bool,
    dry_run: bool,
    save: Path | None,
    output: str,
    html: Path | None,
    junit: Path | None,
) -> None:
    """Run the drill in SPEC.yaml: fault, recovery, timeline, SLO verdicts; restore at the end.

    Several specs make a game day: they run in order, each starting from the steady state the
    one before restored (nodes Ready and untainted, the workloads with all replicas Ready),
    with one combined verdict and report.

    Exit code 0 when every SLO passes, 3 when any fails (like `doctor --fail-on`), 4 when a
    drill could not start (no steady state within its steady_timeout, 180 s by default), 2
    for a spec that cannot run as written (nothing is touched). Ctrl-C still restores.
    """
    from fireproof.drill.spec import SpecError, load_spec
    from fireproof.drill.steady import DrillNotStarted

    _check_writable(save=save, html=html, junit=junit)  # before the fault, not after it
    try:
        specs = [load_spec(path) for path in spec_paths]  # every spec is checked before any runs
        target = load_target(config_path, lab, kubeconfig, context)
        hooks: LabHooks | None = _LabHooks(lab_dir) if lab or lab_dir else None
    except SpecError as exc:
        _spec_error(exc)
    quiet = output == "json"
    runs: list[dict[str, Any]] = []
    stopped: int | None = None
    for spec in specs:
        try:
            run = _one_drill(target, spec, hooks, yes=yes, dry_run=dry_run, quiet=quiet)
        except SpecError as exc:
            if not runs:
                _spec_error(exc)
            click.echo(f"error: {exc.message}", err=True)
            stopped = exitcodes.USAGE
            break
        except DrillNotStarted as exc:
            click.echo(f"error: {exc.message}", err=True)
            if exc.hint:
                click.echo(f"hint: {exc.hint}", err=True)
            stopped = exitcodes.NOT_STARTED
            break
        if run is None:  # a dry run
            continue
        runs.append(run)
        if run["interrupted"]:
            break
    if not runs:
        if stopped is not None:
            sys.exit(stopped)
        return
    _finish(runs, save=save, html=html, junit=junit, quiet=quiet, stopped=stopped)


def _one_drill(
    target: Target,
    spec: DrillSpec,
    hooks: LabHooks | None,
    *,
    yes: bool,
    dry_run: bool,
    quiet: bool,
) -> dict[str, Any] | None:
    """Wait for the steady state, plan, confirm, run one drill (None for a dry run)."""
    from fireproof.drill import DrillRunner, plan_drill
    from fireproof.drill.plan import Unsteady
    from fireproof.drill.steady import DrillNotStarted

    try:
        plan = plan_drill(target, spec, hooks)
    except Unsteady:
        if dry_run:
            raise
        # A drill right after another: its replacement still starting, a node still booting.
        _wait_steady_before(target, spec)
        try:
            plan = plan_drill(target, spec, hooks)
        except Unsteady as exc:
            raise DrillNotStarted(exc.message, hint=exc.hint) from None
    confirm_or_abort(plan.steps, yes or dry_run, f"run drill {spec.name}", err=quiet)
    if dry_run:
        return None
    progress(f"drill {spec.name}: fault at T+0")
    # SIGTERM (a CI job cancelled) restores like Ctrl-C does.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    return DrillRunner(target, plan, hooks, lambda line: progress(terminal_safe(line))).run()


def _wait_steady_before(target: Target, spec: DrillSpec) -> None:
    from fireproof.drill.steady import DrillNotStarted, wait_steady

    nodes = [t.node for t in spec.targets if t.node is not None]
    try:
        _waited, left = wait_steady(
            target.cluster,
            spec.workloads,
            nodes,
            timeout=spec.steady_timeout,
            progress=lambda line: progress(line),
        )
    except NotFoundError:
        return  # an unknown workload or node: the plan says which, with its line
    if left:
        raise DrillNotStarted(
            f"drill {spec.name} did not start: no steady state within {spec.steady_timeout:g} s "
            f"({'; '.join(left)})",
            hint="a drill starts from a healthy cluster: see `fireproof doctor`",
        )


def _finish(
    runs: list[dict[str, Any]],
    *,
    save: Path | None,
    html: Path | None,
    junit: Path | None,
    quiet: bool,
    stopped: int | None,
) -> None:
    document: dict[str, Any] = runs[0] if len(runs) == 1 else _game_day(runs)
    if save is not None:
        _write(save, dumps(document, indent=2) + "\n")
    _write_outputs(runs, html, junit)
    if quiet:
        emit_json(document)
    else:
        for run in runs:
            _print_run(run)
        if len(runs) > 1:
            _print_game_day(document)
    if any(r["interrupted"] for r in runs):
        sys.exit(exitcodes.INTERRUPTED)
    if stopped is not None:
        sys.exit(stopped)
    sys.exit(exitcodes.OK if all(r["verdict"] == "pass" for r in runs) else exitcodes.FINDINGS)


def _game_day(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "$schema": GAME_DAY_SCHEMA,
        "runs": runs,
        "seconds": round(sum(float(r["seconds"]) for r in runs), 1),
        "verdict": "pass" if all(r["verdict"] == "pass" for r in runs) else "fail",
    }


def _print_game_day(document: dict[str, Any]) -> None:
    click.echo("\ngame day:")
    rows = [
        (
            terminal_safe(r["spec"]["name"]),
            r["spec"]["fault"],
            r["spec"]["recovery"],
            f"{sum(1 for s in r['slos'] if s['passed'])}/{len(r['slos'])}",
            f"{r['seconds']:g}",
            r["verdict"],
        )
        for r in document["runs"]
    ]
    click.echo(table(["DRILL", "FAULT", "RECOVERY", "SLOS PASSED", "SECONDS", "VERDICT"], rows))
    click.echo(f"verdict: {document['verdict']} ({document['seconds']:g} s)")


def _check_writable(**paths: Path | None) -> None:
    """Each output path can be written: a drill that ran for minutes must not lose its report
    to a typo in a directory name."""
    for flag, path in paths.items():
        if path is None:
            continue
        parent = path.parent if str(path.parent) else Path(".")
        if path.is_dir():
            raise UsageError(f"--{flag} {path}: is a directory, not a file")
        if not parent.is_dir():
            raise UsageError(f"--{flag} {path}: the directory {parent} does not exist")
        writable = os.access(path, os.W_OK) if path.exists() else os.access(parent, os.W_OK)
        if not writable:
            raise UsageError(f"--{flag} {path}: not writable")


@drill.command("report")
@click.argument("run_path", metavar="RUN.json", type=click.Path(path_type=Path))
@_outputs
def drill_report(run_path: Path, output: str, html: Path | None, junit: Path | None) -> None:
    """Render a saved run (`drill run --save` or `-o json`) again: text, JSON, HTML, JUnit.
    A game day's document renders every drill and the summary."""
    runs = _read_runs(run_path)
    _write_outputs(runs, html, junit)
    document = runs[0] if len(runs) == 1 else _game_day(runs)
    if output == "json":
        emit_json(document)
        return
    for run in runs:
        _print_run(run)
    if len(runs) > 1:
        _print_game_day(document)


def _ratio(ratio: float | None, at_least: float | None) -> str:
    if ratio is not None:
        return f"{ratio:.2f}x"
    return f">= {at_least:g}x faster" if at_least is not None else "-"


@drill.command("compare")
@click.argument("run_paths", metavar="RUN.json...", nargs=-1, type=click.Path(path_type=Path))
@_outputs
def drill_compare(
    run_paths: tuple[Path, ...], output: str, html: Path | None, junit: Path | None
) -> None:
    """Show saved runs side by side: phase times, SLO results, ratio of times to recovery.

    The first run is the baseline ("before guard"), the others are compared to it.
    """
    if len(run_paths) < 2:
        raise click.UsageError("give at least two runs to compare")
    from fireproof.report import compare_runs

    runs = [run for p in run_paths for run in _read_runs(p)]
    _write_outputs(runs, html, junit)
    comparison = compare_runs(runs)
    if output == "json":
        emit_json(comparison)
        return
    headers = ["PHASE (first, s)", *(terminal_safe(r["name"]) for r in comparison["runs"])]
    rows = [
        [row["phase"], *("-" if t is None else f"{t:.1f}" for t in row["times"])]
        for row in comparison["phases"]
    ]
    rows.append(
        [
            "time to recovery",
            *("never" if t is None else f"{t:.1f}" for t in comparison["recovery_seconds"]),
        ]
    )
    rows.append(
        [
            "ratio to the first",
            *(
                _ratio(x, least)
                for x, least in zip(
                    comparison["ratio_to_first"],
                    comparison["faster_than_first_at_least"],
                    strict=True,
                )
            ),
        ]
    )
    rows.append(["verdict", *(r["verdict"] for r in comparison["runs"])])
    click.echo(table(headers, rows))
