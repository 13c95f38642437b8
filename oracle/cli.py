"""The `oracle` command line."""

from __future__ import annotations

import atexit
import os
import sys
import time
from collections import Counter
from pathlib import Path

import typer
from rich.console import Console

from oracle import case as case_io
from oracle import report
from oracle.case import CaseError

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode="rich",
                  help="Measure the float32 accuracy of log-probs, losses and KL terms in TensorFlow, PyTorch "
                       "and JAX against a certified mpmath reference.\n\nExample: [bold]oracle run cases/seeds/[/bold]")

PATHS = typer.Argument(..., help="Case files (.yaml) or folders searched recursively.", show_default=False)
MAX_ELEMENTS = typer.Option(case_io.DEFAULT_MAX_ELEMENTS, "--max-elements", help="Largest input array a case may make.")
FRAMEWORK = typer.Option(None, "--framework", "-f", help="Only these frameworks (tf, torch, jax); repeatable.")
DTYPE = typer.Option(None, "--dtype", "-d", help="Evaluate at these dtypes instead of the case's (float32, float64, float16); repeatable.")
MAX_PRECISION = typer.Option(4096, "--max-precision", help="Highest mpmath precision (bits) for certifying the reference.")


def _load(paths: list[Path], max_elements: int) -> tuple[list, list[CaseError]]:
    missing = [p for p in paths if not p.exists()]
    cases, errors = case_io.load_all([p for p in paths if p.exists()], max_elements)
    errors += [CaseError(str(p), None, "no such file or folder") for p in missing]
    if not cases and not errors:
        errors.append(CaseError(", ".join(map(str, paths)), None, "no case files (*.yaml, *.yml) found"))
    return cases, errors


def _shape_errors(cases: list) -> tuple[list, list[CaseError]]:
    from oracle.runner import check_shapes  # imports JAX

    good, errors = [], []
    for case in cases:
        try:
            check_shapes(case)
            good.append(case)
        except ValueError as e:
            field, _, message = str(e).partition(": ")
            line = case_io.line_in(case, field)
            errors.append(CaseError(case.file, field, message, line))
    return good, errors


def _invalid(errors: list[CaseError]) -> list[dict]:
    """Invalid files as the JSON document lists them."""
    return [{"file": e.file, "field": e.field, "line": e.line, "message": e.message} for e in errors]


def _check_choices(framework: list[str] | None, dtype: list[str] | None) -> None:
    """Exit 2 on an unknown --framework or --dtype, before any case runs."""
    for name, given, known in (("--framework", framework, case_io.FRAMEWORKS), ("--dtype", dtype, case_io.DTYPES)):
        unknown = sorted(set(given or []) - set(known))
        if unknown:
            typer.echo(f"error: {name} {', '.join(unknown)} unknown (known: {', '.join(known)})", err=True)
            raise typer.Exit(2)


def _valid(paths: list[Path], max_elements: int) -> tuple[list, list[CaseError]]:
    """The cases under `paths` that load and trace; the others are printed as invalid and returned."""
    cases, errors = _load(paths, max_elements)
    cases, shape_errors = _shape_errors(cases) if cases else (cases, [])
    errors += shape_errors
    for e in errors:
        typer.echo(f"invalid: {e}", err=True)
    return cases, errors


def _run_or_error(case, **options) -> dict:
    """The case's result (`options` are run_case's), or its error_result, said on stderr, when the tool crashed."""
    from oracle.runner import run_case

    try:
        return run_case(case, **options)
    except Exception as e:  # a bug or an unsupported construct in one case must not lose the others
        result = report.error_result(case, f"{type(e).__name__}: {e}")
        typer.echo(f"error: {case.file}: {result['error']}", err=True)
        return result


@app.command()
def run(
    paths: list[Path] = PATHS,
    framework: list[str] | None = FRAMEWORK,
    dtype: list[str] | None = DTYPE,
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document instead of tables."),
    max_precision: int = MAX_PRECISION,
    max_elements: int = MAX_ELEMENTS,
) -> None:
    """Evaluate cases in each framework and compare with the certified reference.

    Examples:

      oracle run cases/seeds/naive-log-sigmoid.yaml

      oracle run cases/ --framework torch --dtype float64 --json > report.json

    Exit status: 0 when every case ran, 2 when any case file is invalid (the others still run).
    """
    _check_choices(framework, dtype)
    cases, errors = _valid(paths, max_elements)
    from oracle.runner import environment

    console = Console(width=None if sys.stdout.isatty() else 160)
    results = []
    for case in cases:
        result = _run_or_error(case, frameworks=framework, dtypes=dtype, max_precision=max_precision)
        results.append(result)
        if not json_out and "error" not in result:
            report.print_case(console, result)
    if json_out:
        used = sorted({r["framework"] for res in results for r in res["results"]})
        sys.stdout.write(report.dumps(report.document(environment(used), results, _invalid(errors))) + "\n")
    raise typer.Exit(2 if errors or any("error" in r for r in results) else 0)


@app.command()
def validate(paths: list[Path] = PATHS, max_elements: int = MAX_ELEMENTS) -> None:
    """Check case files (schema, inputs, formulas, shapes) without running any framework.

    Example: oracle validate cases/

    Exit status: 0 when every file is valid, 2 otherwise.
    """
    cases, errors = _valid(paths, max_elements)
    for case in cases:
        typer.echo(f"ok: {case.file} ({case.id})")
    raise typer.Exit(2 if errors else 0)


@app.command("audit")
def audit_command(
    paths: list[Path] = PATHS,
    out: Path = typer.Option(..., "--out", "-o", help="Folder for results.jsonl and the reports (created if missing).",
                             show_default=False),
    jobs: int = typer.Option(os.cpu_count() or 1, "--jobs", "-j", min=1, help="Worker processes (default: all cores)."),
    timeout: float = typer.Option(300.0, "--timeout", min=0.001, help="Seconds a case may run before it is an error."),
    resume: bool = typer.Option(False, "--resume", help="Keep the cases already in OUT/results.jsonl with the same "
                                                        "content and environment; run only the others."),
    framework: list[str] | None = FRAMEWORK,
    dtype: list[str] | None = DTYPE,
    max_precision: int = MAX_PRECISION,
    max_elements: int = MAX_ELEMENTS,
) -> None:
    """Audit a corpus in parallel worker processes and write OUT/report.json, report.md, report.html and junit.xml.

    Results stream to OUT/results.jsonl as each case finishes; a case that raises, times out or kills its worker
    is recorded as an error and the audit goes on.

    Examples:

      oracle audit cases/ --out audit/ --jobs 2

      oracle audit cases/ --out audit/ --resume

    Exit status: 0 when the audit ran (findings and crashed cases are data), 2 when any case file is invalid
    (the others still run and are reported).
    """
    from oracle import audit

    _check_choices(framework, dtype)
    cases, errors = _valid(paths, max_elements)
    options = audit.Options(tuple(framework) if framework else None, tuple(dtype) if dtype else None,
                            max_precision, max_elements)
    invalid = _invalid(errors)
    started = time.monotonic()
    doc = audit.run(cases, out, paths, invalid, options, jobs, timeout, resume)
    results = doc["cases"]
    typer.echo(f"audited {len(results)} cases in {time.monotonic() - started:.0f} s: "
               f"{sum('error' in r for r in results)} errored, "
               f"{sum(map(report.has_findings, results))} with findings, "
               f"{len(invalid)} invalid files; reports in {out}/ (report.md, report.html, report.json, junit.xml)")
    raise typer.Exit(2 if invalid else 0)


@app.command()
def check(
    paths: list[Path] = PATHS,
    framework: list[str] | None = FRAMEWORK,
    update: bool = typer.Option(False, "--update", help="Rewrite each case's expect to the verdicts observed with "
                                "the installed versions (the rest of the file is kept byte for byte)."),
    max_elements: int = MAX_ELEMENTS,
) -> None:
    """Run cases and compare their verdicts with their expect field: regression tests for upstream fixes.

    Prints one line per expectation that failed or was not checked, with the version it was evaluated against.

    Examples:

      oracle check cases/

      oracle check cases/normal/ --framework torch --update

    Exit status: 0 when all hold (with --update: once written), 1 when any fails, 2 when a case is invalid or crashed.
    """
    from oracle.expect import line

    _check_choices(framework, None)
    cases, errors = _valid(paths, max_elements)
    tally: Counter = Counter()
    versions: set[str] = set()
    for case in cases:
        result = _run_or_error(case, frameworks=framework)
        if "error" in result:
            tally["could not run"] += 1
            continue
        tally["cases without expect"] += "expectations" not in result
        for outcome in result.get("expectations", []):
            tally[{True: "held", False: "failed", None: "not checked"}[outcome["passed"]]] += 1
            versions.add(outcome["version"])
            if outcome["passed"] is not True:
                typer.echo(line(case.file, case.id, outcome))
        if update:
            tally[_update_expect(case, result)] += 1
    said = ", ".join(f"{tally[k]} {k}" for k in ("held", "failed", "not checked"))
    others = "".join(f", {tally[k]} {k}" for k in ("cases without expect", "could not run", "updated",
                                                   "not updated") if tally[k])
    against = f"; evaluated against {', '.join(sorted(versions))}" if versions else ""
    typer.echo(f"checked {len(cases)} cases: expectations {said}{others}{against}")
    failed = tally["failed"] and not update
    raise typer.Exit(2 if errors or tally["could not run"] or tally["not updated"] else 1 if failed else 0)


def _update_expect(case, result: dict) -> str:
    """Write the expect field that `result` meets into the case file (only there); "updated", "unchanged" or,
    said why, "not updated"."""
    from oracle import expect, yamlio
    from oracle.frameworks import versions

    rows = result["results"]
    want, notes = expect.updated(case.expect, rows, versions({row["framework"] for row in rows}))
    for note in notes:
        typer.echo(f"{case.file} ({case.id}): {note}")
    try:
        text = yamlio.read(case.file)
        new = expect.rewrite(text, want)
    except (OSError, UnicodeDecodeError, ValueError) as e:  # ValueError: YAML it cannot edit safely
        typer.echo(f"error: {case.file}: expect not updated: {e}", err=True)
        return "not updated"
    if new == text:
        return "unchanged"
    Path(case.file).write_bytes(new.encode())
    typer.echo(f"updated: {case.file} ({case.id})")
    return "updated"


@app.command("diff")
def diff_command(
    old: Path = typer.Argument(..., help="The earlier report (oracle run --json, or an audit's report.json).",
                               show_default=False),
    new: Path = typer.Argument(..., help="The later report.", show_default=False),
) -> None:
    """Compare two reports (before and after an upgrade): rows fixed, regressed, changed, added, removed.

    Rows are keyed by case id, framework, impl, dtype and output; both runs' versions are printed first.

    Example: oracle diff before.json after.json

    Exit status: 1 when anything regressed (ok became another verdict, or a case now errors), else 0; 2 on a bad file.
    """
    from oracle import diff

    docs = []
    for path in (old, new):
        try:
            docs.append(diff.read(path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError, diff.ReportError) as e:
            typer.echo(f"error: {path}: not a readable report: {e}", err=True)
            raise typer.Exit(2) from None
    changes = diff.compare(*docs)
    for text in diff.lines(changes, str(old), str(new)):
        typer.echo(text)
    raise typer.Exit(1 if changes["regressed"] else 0)


@app.command()
def schema() -> None:
    """Print the JSON Schema of the case format (for editor completion).

    Example: oracle schema > case.schema.json
    """
    typer.echo(report.dumps(case_io.json_schema()))


def main() -> None:
    """The console entry point: `app`, then an immediate exit.

    Tearing the interpreter down after TensorFlow, PyTorch and JAX are loaded (freeing every module and the
    frameworks' C++ state) takes about 2 s and changes nothing anyone sees. So once the command has
    returned, exit handlers have run and output is flushed, the process ends at once. In-process callers
    (tests, the pytest plugin) use `app` and keep the normal exit."""
    try:
        app()
        code = 0
    except SystemExit as e:  # typer ends every command this way
        code = e.code
    if not isinstance(code, int):  # sys.exit's rules: None is success, anything else is printed and fails
        if code is not None:
            print(code, file=sys.stderr)
        code = 0 if code is None else 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (BrokenPipeError, ValueError):  # a reader that left (`| head`), or a stream already closed
            pass
    os._exit(code)


if __name__ == "__main__":
    main()


@app.command("hunt")
def hunt_command(
    paths: list[Path] = PATHS,
    budget: float = typer.Option(60.0, "--budget", min=1.0, help="Seconds of wall time per case (honoured within "
                                 "a few seconds: a certification that has started finishes)."),
    seed: int = typer.Option(0, "--seed", help="Seeds the sampling: the same seed gives the same hunt."),
    samples: int = typer.Option(4096, "--samples", min=16, help="Candidates screened per dtype (fewer if the budget "
                                "runs out first)."),
    summary_points: int = typer.Option(256, "--summary-points", min=0, help="Samples certified for the mean and "
                                       "max error bits (the first drawn)."),
    out: Path = typer.Option(Path("hunt"), "--out", "-o", help="Folder for the findings' case files."),
    framework: list[str] | None = FRAMEWORK,
    dtype: list[str] | None = DTYPE,
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document instead of text."),
    html: Path | None = typer.Option(None, "--html", help="Also write the hunt as a page with its plots."),
    max_precision: int = MAX_PRECISION,
    max_elements: int = MAX_ELEMENTS,
) -> None:
    """Search each case's search ranges for the worst error, the regions of each verdict (exact boundaries in
    the dtype) and mean/max error bits; write each finding as a case file ready for oracle check.

    Example: oracle hunt cases/hunt/softplus.yaml --budget 60 --out hunt/

    Exit status: 0 when every case was hunted, 2 when a file is invalid or a case cannot be hunted.
    """
    from oracle import hunt

    _check_choices(framework, dtype)
    cases, errors = _valid(paths, max_elements)
    from oracle.runner import environment

    options = hunt.Options(seed, budget, samples, framework, dtype, str(out), max_precision, summary_points)
    hunts, failed = [], 0
    for case in cases:
        try:
            block = hunt.hunt(case, options, progress=lambda text, c=case: typer.echo(f"hunt {c.id}: {text}", err=True))
        except hunt.HuntError as e:
            typer.echo(f"error: {e}", err=True)
            failed += 1
            continue
        hunts.append(block)
        if not json_out:
            for line in hunt.lines(block):
                typer.echo(line)
    used = sorted({s["framework"] for h in hunts for s in h["summary"]})
    doc = {"oracle_version": report.__version__, "environment": environment(used), "hunts": hunts,
           "invalid": _invalid(errors)}
    if json_out:
        sys.stdout.write(report.dumps(doc) + "\n")
    if html is not None:
        from oracle.report.hunt_html import render

        html.write_text(render(doc), encoding="utf-8")
    raise typer.Exit(2 if errors or failed else 0)
