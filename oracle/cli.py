"""The `oracle` command line."""

from __future__ import annotations

import sys
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


@app.command()
def run(
    paths: list[Path] = PATHS,
    framework: list[str] | None = typer.Option(None, "--framework", "-f", help="Only these frameworks (tf, torch, jax); repeatable."),
    dtype: list[str] | None = typer.Option(None, "--dtype", "-d", help="Evaluate at these dtypes instead of the case's (float32, float64, float16); repeatable."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document instead of tables."),
    max_precision: int = typer.Option(4096, "--max-precision", help="Highest mpmath precision (bits) for certifying the reference."),
    max_elements: int = MAX_ELEMENTS,
) -> None:
    """Evaluate cases in each framework and compare with the certified reference.

    Examples:

      oracle run cases/seeds/naive-log-sigmoid.yaml

      oracle run cases/ --framework torch --dtype float64 --json > report.json

    Exit status: 0 when every case ran, 2 when any case file is invalid (the others still run).
    """
    for name, given, known in (("--framework", framework, case_io.FRAMEWORKS), ("--dtype", dtype, case_io.DTYPES)):
        unknown = sorted(set(given or []) - set(known))
        if unknown:
            typer.echo(f"error: {name} {', '.join(unknown)} unknown (known: {', '.join(known)})", err=True)
            raise typer.Exit(2)
    cases, errors = _load(paths, max_elements)
    cases, shape_errors = _shape_errors(cases) if cases else (cases, [])
    errors += shape_errors
    for e in errors:
        typer.echo(f"invalid: {e}", err=True)
    from oracle.runner import environment, error_result, run_case

    console = Console(width=None if sys.stdout.isatty() else 160)
    results = []
    for case in cases:
        try:
            result = run_case(case, framework, dtype, max_precision)
        except Exception as e:  # a bug or an unsupported construct in one case must not lose the others
            result = error_result(case, f"{type(e).__name__}: {e}")
            typer.echo(f"error: {case.file}: {result['error']}", err=True)
        results.append(result)
        if not json_out and "error" not in result:
            report.print_case(console, result)
    if json_out:
        used = sorted({r["framework"] for res in results for r in res["results"]})
        invalid = [{"file": e.file, "field": e.field, "line": e.line, "message": e.message} for e in errors]
        sys.stdout.write(report.dumps(report.document(environment(used), results, invalid)) + "\n")
    raise typer.Exit(2 if errors or any("error" in r for r in results) else 0)


@app.command()
def validate(paths: list[Path] = PATHS, max_elements: int = MAX_ELEMENTS) -> None:
    """Check case files (schema, inputs, formulas, shapes) without running any framework.

    Example: oracle validate cases/

    Exit status: 0 when every file is valid, 2 otherwise.
    """
    cases, errors = _load(paths, max_elements)
    cases, shape_errors = _shape_errors(cases) if cases else (cases, [])
    for e in errors + shape_errors:
        typer.echo(f"invalid: {e}", err=True)
    for case in cases:
        typer.echo(f"ok: {case.file} ({case.id})")
    raise typer.Exit(2 if errors or shape_errors else 0)


@app.command()
def schema() -> None:
    """Print the JSON Schema of the case format (for editor completion).

    Example: oracle schema > case.schema.json
    """
    typer.echo(report.dumps(case_io.json_schema()))


if __name__ == "__main__":
    app()
