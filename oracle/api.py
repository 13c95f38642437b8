"""The Python API, for notebooks and test suites: `oracle.load` and `oracle.run`; `oracle run` is built on it.

    import oracle
    case = oracle.load({"id": "softplus-big", "title": "softplus at 100", "kind": "loss",
                        "inputs": {"x": 100.0}, "formula": "log(1 + exp(x))", "frameworks": ["torch"]})
    doc = oracle.run(case)                      # the `oracle run --json` document, as Python data
    [row["verdict"] for row in doc["cases"][0]["results"]]

`load` validates exactly as `oracle validate` does (a mapping is read as the same YAML a file holds), and
raises CaseError naming every bad field. `run` returns the same document as `--json`: bad files found under
a folder are listed in its `invalid`, a case the tool could not run carries its `error`. `exit_status` is the
command line's exit-code policy, for a test suite that wants the same answer.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from oracle import case as case_io
from oracle import report
from oracle.case import Case, CaseError
from oracle.verdicts import SEVERITY

Source = Case | str | Path | Mapping[str, Any]
DICT_FILE = "<dict>"  # what messages and reports call a case given as a mapping
FAIL_ON = tuple(v for v in SEVERITY if v != "ok")  # what --fail-on accepts, besides "any"
# what `oracle --version` lists: the distributions a run may use, read from package metadata (nothing imported)
DISTRIBUTIONS = ("numpy", "mpmath", "gmpy2", "tensorflow", "tensorflow-probability", "tf-keras", "keras", "torch",
                 "jax", "jaxlib", "numpyro", "optax")


def load(source: str | Path | Mapping[str, Any], max_elements: int = case_io.DEFAULT_MAX_ELEMENTS) -> Case:
    """One case from a file or a mapping of the case format's fields, validated as `oracle validate` does
    (schema, inputs, formulas, impls, expect, and that formula and reference trace at the inputs' shapes).

    A mapping is written as YAML text and read back through the file loader, so it means exactly what the
    same file would: numbers are their decimal text (repr), rounded once, correctly, to each dtype."""
    if isinstance(source, Mapping):
        case = case_io.loads(_yaml(source), DICT_FILE, max_elements)
    else:
        case = case_io.load(source, max_elements)
    _, errors = check_shapes([case])
    if errors:
        raise errors[0]
    return case


def _yaml(data: Mapping[str, Any]) -> str:
    import yaml

    def plain(x):  # numpy arrays and scalars become lists and numbers; anything else is left to YAML to refuse
        return plain(x.tolist()) if hasattr(x, "tolist") else {k: plain(v) for k, v in x.items()} \
            if isinstance(x, Mapping) else [plain(v) for v in x] if isinstance(x, (list, tuple)) else x

    try:
        return yaml.safe_dump(plain(data), sort_keys=False)
    except yaml.YAMLError as e:
        raise CaseError(DICT_FILE, None, f"not plain data (numbers, strings, lists, mappings): {e}") from None


def check_shapes(cases: list[Case]) -> tuple[list[Case], list[CaseError]]:
    """The cases whose formula and reference trace at their inputs' shapes (one abstract JAX trace each, which
    imports JAX), and a located CaseError for each of the others."""
    from oracle.runner import check_shapes as trace_shapes

    good, errors = [], []
    for case in cases:
        try:
            trace_shapes(case)
            good.append(case)
        except Exception as e:  # noqa: BLE001 - ValueError names its field; anything else is still this file's
            field, _, message = str(e).partition(": ")
            if type(e) is not ValueError or field not in ("formula", "reference"):
                field, message = "formula", f"cannot trace it: {type(e).__name__}: {str(e)[:300]}"
            errors.append(CaseError(case.file, field, message, case_io.line_in(case, field)))
    return good, errors


def collect(sources: Source | Iterable[Source], max_elements: int = case_io.DEFAULT_MAX_ELEMENTS
            ) -> tuple[list[Case], list[CaseError]]:
    """Cases from any mix of Case objects, files, folders (searched for *.yaml, *.yml) and mappings; the
    files and mappings that are invalid become CaseErrors and the rest still load."""
    if isinstance(sources, (Case, str, Path, Mapping)):
        sources = [sources]
    given, cases, errors = [], [], []
    for source in sources:
        if isinstance(source, Case):  # loaded already (load checks shapes): run as it is
            given.append(source)
        elif isinstance(source, Mapping):
            try:
                cases.append(case_io.loads(_yaml(source), DICT_FILE, max_elements))
            except CaseError as e:
                errors += case_io.each_error(e)
        elif not Path(source).exists():
            errors.append(CaseError(str(source), None, "no such file or folder"))
        else:
            found, bad = case_io.load_all([source], max_elements)
            cases += found
            errors += bad
    good, shape_errors = check_shapes(cases) if cases else ([], [])
    return given + good, errors + shape_errors


def run_one(case: Case, timeout: float | None = None, **options) -> dict:
    """The case's result (`options` are runner.run_case's) within `timeout` seconds (oracle.budget), or, when the
    tool itself raised or the time ran out, its error_result: one case's crash never loses the others."""
    from oracle import budget, runner

    try:
        with budget.limit(budget.CASE_PART, timeout):
            return runner.run_case(case, **options)
    except (Exception, budget.OutOfBudget) as e:  # a bug or an unsupported construct in one case
        message = budget.timed_out(timeout) if isinstance(e, budget.OutOfBudget) else f"{type(e).__name__}: {e}"
        return report.error_result(case, message)


def run(cases: Source | Iterable[Source], frameworks: list[str] | None = None, dtypes: list[str] | None = None,
        max_precision: int = 4096, max_elements: int = case_io.DEFAULT_MAX_ELEMENTS,
        invalid: Iterable[CaseError] = (), on_result: Callable[[dict], None] | None = None,
        timeout: float | None = None, refine: bool | None = True) -> dict:
    """Evaluate cases (a Case, a file, a folder, a mapping, or a list of them) and return the `--json` document.

    `frameworks` narrows each case's list, `dtypes` replaces it; `invalid` are errors found earlier (the
    command line's), listed with those found here; `on_result` sees each case's result as it is made; each case
    has `timeout` seconds (None: no limit); `refine`: sweeps' thresholds bisected to exact boundaries (None: only
    for cases that state `regions`; runner.run_case)."""
    from oracle.runner import environment

    found, errors = collect(cases, max_elements)
    results = []
    for case in found:
        results.append(run_one(case, timeout=timeout, frameworks=frameworks, dtypes=dtypes,
                               max_precision=max_precision, refine=refine))
        if on_result is not None:
            on_result(results[-1])
    used = sorted({r["framework"] for res in results for r in res["results"]})
    invalid_rows = [{"file": e.file, "field": e.field, "line": e.line, "message": e.message}
                    for e in [*invalid, *errors]]
    return report.document(environment(used), results, invalid_rows)


def fail_on(values: Iterable[str]) -> frozenset[str]:
    """--fail-on's verdicts (comma-separated, repeatable; `any`: every verdict but ok). ValueError names an
    unknown one, with the closest known."""
    chosen = {v.strip() for value in values for v in value.split(",") if v.strip()}
    for v in chosen - {*FAIL_ON, "any"}:
        close = difflib.get_close_matches(v, [*FAIL_ON, "any"], n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise ValueError(f"--fail-on: unknown verdict '{v}'; {hint}known: any, {', '.join(FAIL_ON)}")
    return frozenset(FAIL_ON) if "any" in chosen else frozenset(chosen)


def unexpected_errors(result: dict) -> list[dict]:
    """The `error` rows of a result that its `expect` does not anticipate: a framework raised or returned the
    wrong shape or dtype, so nothing was measured there. (An error the case expects is a known finding.)"""
    expected = {(e["framework"], e["impl"], e["dtype"], e["output"]) for e in result.get("expectations", [])
                if e["passed"] and e["got"] == "error"}
    return [row for row in result.get("results", []) if row["verdict"] == "error"
            and (row["framework"], row.get("impl", "formula"), row["dtype"], row["output"]) not in expected]


def exit_status(doc: dict, failing: Iterable[str] = ()) -> int:
    """`oracle run`'s exit code for a document: 2 when a file was invalid, a case could not run, or a row is an
    unexpected error; else 1 when a row's verdict is one of `failing` (--fail-on); else 0."""
    cases = doc["cases"]
    if doc["invalid"] or any("error" in c or unexpected_errors(c) for c in cases):
        return 2
    failing = frozenset(failing)
    return 1 if any(row["verdict"] in failing for c in cases for row in c["results"]) else 0


def versions() -> dict[str, str | None]:
    """oracle's and the installed versions of what it would run with (None: not installed), from package
    metadata: nothing is imported, so this answers in milliseconds even where TensorFlow takes seconds."""
    import platform

    from oracle import __version__

    out: dict[str, str | None] = {"oracle": __version__, "python": platform.python_version()}
    for name in DISTRIBUTIONS:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out
