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

from oracle import budget, report
from oracle import case as case_io
from oracle.case import CaseError

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode="rich",
                  help="Measure the float32 accuracy of log-probs, losses and KL terms in TensorFlow, PyTorch "
                       "and JAX against a certified mpmath reference.\n\nExample: [bold]oracle run cases/seeds/[/bold]"
                       "\n\nExit status (every command): 0 nothing to report; 1 findings you asked to fail on "
                       "(run/audit --fail-on, check: an unmet expectation, diff: a regression); 2 invalid input "
                       "(a case file, an option, a report) or something that could not be measured (a case that "
                       "could not run; for run, an error row its expect does not anticipate).")

PATHS = typer.Argument(..., help="Case files (.yaml) or folders searched recursively.", show_default=False)
MAX_ELEMENTS = typer.Option(case_io.DEFAULT_MAX_ELEMENTS, "--max-elements", help="Largest input array a case may make.")
FRAMEWORK = typer.Option(None, "--framework", "-f", help="Only these frameworks (tf, torch, jax); repeatable.")
DTYPE = typer.Option(None, "--dtype", "-d", help="Evaluate at these dtypes instead of the case's (float32, float64, float16); repeatable.")
TIMEOUT = typer.Option(budget.DEFAULT_TIMEOUT_S, "--timeout", min=0.001,
                       help="Seconds a case may run: its reference, condition numbers, gradient check and shadow get "
                            "shares of it (a part that runs out leaves uncertain rows saying so); past it the case "
                            "is an error.")
MAX_PRECISION = typer.Option(4096, "--max-precision", help="Highest mpmath precision (bits) for certifying the reference.")
FAIL_ON = typer.Option(None, "--fail-on", metavar="VERDICTS", help="Exit 1 when a row gets one of these verdicts "
                       "(comma-separated, repeatable; 'any': every verdict but ok). Default: none.")


@app.callback(invoke_without_command=True)
def _options(
    ctx: typer.Context,
    version: bool = typer.Option(False, "--version", help="Print oracle's version and the installed versions of "
                                 "the frameworks it would use (from package metadata), then exit."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show the frameworks' own logging and warnings "
                                 "(TensorFlow, absl, CUDA, numpyro), hidden by default."),
) -> None:
    """Options before the command: oracle [--version] [-v] COMMAND ..."""
    if version:
        from oracle.api import versions

        for name, installed in versions().items():
            typer.echo(f"{name} {installed or '(not installed)'}")
        raise typer.Exit(0)
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(0)
    if not verbose:
        from oracle import quiet

        quiet.silence()


def _fail_on(values: list[str] | None) -> frozenset[str]:
    """--fail-on's verdicts; exit 2 on an unknown one, before any case runs."""
    from oracle.api import fail_on

    try:
        return fail_on(values or [])
    except ValueError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None


def _load(paths: list[Path], max_elements: int) -> tuple[list, list[CaseError]]:
    missing = [p for p in paths if not p.exists()]
    cases, errors = case_io.load_all([p for p in paths if p.exists()], max_elements)
    errors += [CaseError(str(p), None, "no such file or folder") for p in missing]
    if not cases and not errors:
        errors.append(CaseError(", ".join(map(str, paths)), None, "no case files (*.yaml, *.yml) found"))
    return cases, errors


def _shape_errors(cases: list) -> tuple[list, list[CaseError]]:
    from oracle.api import check_shapes  # imports JAX

    return check_shapes(cases)


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
        typer.echo(report.visible(f"invalid: {e}"), err=True)
    return cases, errors


def _run_or_error(case, timeout: float | None = None, **options) -> dict:
    """The case's result (`options` are run_case's) within `timeout` seconds, or its error_result, said on stderr,
    when the tool crashed or the time ran out."""
    from oracle.api import run_one

    result = run_one(case, timeout=timeout, **options)
    if "error" in result:
        typer.echo(report.visible(f"error: {case.file}: {result['error']}"), err=True)
    return result


@app.command()
def run(
    paths: list[Path] = PATHS,
    framework: list[str] | None = FRAMEWORK,
    dtype: list[str] | None = DTYPE,
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document instead of tables."),
    max_precision: int = MAX_PRECISION,
    max_elements: int = MAX_ELEMENTS,
    fail_on: list[str] | None = FAIL_ON,
    wide: bool = typer.Option(False, "--wide", help="Show every table column, however wide (by default tables fit "
                              "the terminal, or 100 columns when output is not one, and say which columns they left out)."),
    timeout: float = TIMEOUT,
    exact_thresholds: bool = typer.Option(True, "--exact-thresholds/--grid-thresholds",
                                          help="Bisect each sweep threshold to adjacent values of the dtype (up to "
                                               "half the case's time, 60 s at most), or keep the grid's brackets."),
) -> None:
    """Evaluate cases in each framework and compare with the certified reference.

    Examples:

      oracle run cases/seeds/naive-log-sigmoid.yaml

      oracle run cases/ --framework torch --dtype float64 --json > report.json

      oracle run cases/ --fail-on overflow,mismatch

    Exit status: 0 every case ran and was measured; 1 a row got a --fail-on verdict; 2 an invalid file or
    option, a case that could not run, or an error row its expect does not anticipate (the others still run).
    """
    from oracle import api

    _check_choices(framework, dtype)
    failing = _fail_on(fail_on)
    cases, errors = _valid(paths, max_elements)
    console = Console(width=10**4 if wide else None if sys.stdout.isatty() else 100)

    def show(result: dict) -> None:
        if "error" in result:
            typer.echo(report.visible(f"error: {result['file']}: {result['error']}"), err=True)
        elif not json_out:
            report.print_case(console, result)

    doc = api.run(cases, frameworks=framework, dtypes=dtype, max_precision=max_precision, invalid=errors,
                  on_result=show, timeout=timeout, refine=exact_thresholds or None)
    if json_out:
        sys.stdout.write(report.dumps(doc) + "\n")
    raise typer.Exit(api.exit_status(doc, failing))


@app.command()
def validate(paths: list[Path] = PATHS, max_elements: int = MAX_ELEMENTS) -> None:
    """Check case files (schema, inputs, formulas, shapes) without running any framework.

    Example: oracle validate cases/

    Exit status: 0 when every file is valid, 2 otherwise.
    """
    cases, errors = _valid(paths, max_elements)
    for case in cases:
        typer.echo(report.visible(f"ok: {case.file} ({case.id})"))
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
    fail_on: list[str] | None = FAIL_ON,
    max_memory: float = typer.Option(8.0, "--max-memory", min=0,
                                     help="GiB of address space per worker (0: no cap); a case that needs more is "
                                          "an error, not the out-of-memory killer's choice."),
) -> None:
    """Audit a corpus in parallel worker processes and write OUT/report.json, report.md, report.html and junit.xml.

    Results stream to OUT/results.jsonl as each case finishes; a case that raises, times out or kills its worker
    is recorded as an error and the audit goes on.

    Examples:

      oracle audit cases/ --out audit/ --jobs 2

      oracle audit cases/ --out audit/ --resume

    Exit status: 0 when the audit ran (findings and crashed cases are data); 1 a row got a --fail-on verdict;
    2 when any case file is invalid (the others still run and are reported).
    """
    from oracle import audit

    _check_choices(framework, dtype)
    failing = _fail_on(fail_on)
    cases, errors = _valid(paths, max_elements)
    options = audit.Options(tuple(framework) if framework else None, tuple(dtype) if dtype else None,
                            max_precision, max_elements)
    invalid = _invalid(errors)
    started = time.monotonic()
    doc = audit.run(cases, out, paths, invalid, options, jobs, timeout, resume,
                    max_memory=int(max_memory * (1 << 30)) or None)
    results = doc["cases"]
    typer.echo(f"audited {len(results)} cases in {time.monotonic() - started:.0f} s: "
               f"{sum('error' in r for r in results)} errored, "
               f"{sum(map(report.has_findings, results))} with findings, "
               f"{len(invalid)} invalid files; reports in {out}/ (report.md, report.html, report.json, junit.xml)")
    raise typer.Exit(2 if invalid else 1 if any(row["verdict"] in failing for r in results
                                                  for row in r["results"]) else 0)


@app.command()
def check(
    paths: list[Path] = PATHS,
    framework: list[str] | None = FRAMEWORK,
    update: bool = typer.Option(False, "--update", help="Rewrite each case's expect to the verdicts observed with "
                                "the installed versions (the rest of the file is kept byte for byte)."),
    max_elements: int = MAX_ELEMENTS,
    timeout: float = TIMEOUT,
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
        result = _run_or_error(case, timeout, frameworks=framework)
        if "error" in result:
            tally["could not run"] += 1
            continue
        tally["cases without expect"] += "expectations" not in result
        for outcome in result.get("expectations", []):
            tally[{True: "held", False: "failed", None: "not checked"}[outcome["passed"]]] += 1
            versions.add(outcome["version"])
            if outcome["passed"] is not True:
                typer.echo(report.visible(line(case.file, case.id, outcome)))
        if update:
            tally[_update_expect(case, result)] += 1
            if case.regions is not None and (said := _update_regions(case, result)) != "unchanged":
                tally[said] += 1
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
        typer.echo(report.visible(f"{case.file} ({case.id}): {note}"))
    try:
        text = yamlio.read(case.file)
        new = expect.rewrite(text, want)
    except (OSError, UnicodeDecodeError, ValueError) as e:  # ValueError: YAML it cannot edit safely
        typer.echo(report.visible(f"error: {case.file}: expect not updated: {e}"), err=True)
        return "not updated"
    if new == text:
        return "unchanged"
    Path(case.file).write_bytes(new.encode())
    typer.echo(report.visible(f"updated: {case.file} ({case.id})"))
    return "updated"


def _update_regions(case, result: dict) -> str:
    """Write the observed regions into the case's `regions` field (oracle.regions); "updated", "unchanged" or,
    said why, "not updated" (never from bracketed boundaries)."""
    from oracle import expect, regions, yamlio

    want = regions.updated(case.regions, result)
    if want is None:
        typer.echo(report.visible(f"error: {case.file}: regions not updated: the bisection stopped short of exact "
                                  "boundaries (raise --timeout)"), err=True)
        return "not updated"
    try:
        text = yamlio.read(case.file)
        new = expect.rewrite(text, want, field="regions")
    except (OSError, UnicodeDecodeError, ValueError) as e:
        typer.echo(report.visible(f"error: {case.file}: regions not updated: {e}"), err=True)
        return "not updated"
    if new == text:
        return "unchanged"
    Path(case.file).write_bytes(new.encode())
    typer.echo(report.visible(f"updated: {case.file} ({case.id}): regions"))
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
            typer.echo(report.visible(f"error: {path}: not a readable report: {e}"), err=True)
            raise typer.Exit(2) from None
    changes = diff.compare(*docs)
    for text in diff.lines(changes, str(old), str(new)):
        typer.echo(report.visible(text))
    raise typer.Exit(1 if changes["regressed"] else 0)


@app.command()
def new(
    file: Path = typer.Argument(..., help="The case file to write (.yaml); never overwritten.", show_default=False),
    impl: str | None = typer.Option(None, "--impl", help="A distribution to audit, e.g. torch.distributions.Normal "
                                    "(tfp.distributions.*, numpyro.distributions.*): its log_prob against its "
                                    "density. Default: a formula case."),
) -> None:
    """Write a new case file from a template, with the schema comment for editors; it validates and runs as is.

    Examples:

      oracle new cases/my-first-case.yaml && oracle run cases/my-first-case.yaml

      oracle new cases/normal-tail.yaml --impl torch.distributions.Normal

    Exit status: 0 written; 2 the file exists, its suffix is not .yaml/.yml, or there is no template for --impl.
    """
    from oracle import scaffold

    if file.suffix not in (".yaml", ".yml") or file.exists():
        why = "exists (not overwritten)" if file.exists() else "is not a .yaml or .yml file"
        typer.echo(f"error: {file} {why}", err=True)
        raise typer.Exit(2)
    try:
        content = scaffold.text(file.stem, impl)
        scaffold.check(content, str(file))
    except (scaffold.ScaffoldError, CaseError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(content, encoding="utf-8")
    typer.echo(f"wrote {file}: edit its inputs (and title), then: oracle run {file}")


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
