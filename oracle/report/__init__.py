"""Rendering results: a rich table per case for people, one JSON document for machines."""

from __future__ import annotations

import json

from rich.console import Console

from oracle import __version__

STYLE = {"ok": "green", "error": "magenta", "uncertain": "yellow", "domain": "cyan", "ill-conditioning": "blue",
         **{v: "bold red" for v in ("overflow", "underflow", "cancellation", "mismatch")}}


def visible(text: object) -> str:
    """`text` with every control or other unprintable character shown as its escape (an ESC from a case title
    becomes `\\x1b`): what a case file says reaches a terminal as text, never as a command to it."""
    text = str(text)
    return text if text.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def header(case) -> dict:
    """What every result of a case starts with (`case` is an oracle.case.Case)."""
    return {"id": case.id, "file": case.file, "title": case.spec.title, "kind": case.spec.kind,
            "tags": list(case.spec.tags), "digest": case.digest, "tolerance_bits": case.spec.tolerance_bits}


def error_result(case, message: str) -> dict:
    """The result of a case the tool could not run (it raised, timed out or killed its worker): recorded, not lost."""
    return {**header(case), "summed": None, "reference": {}, "results": [], "error": message}


def not_ok_rows(result: dict) -> list[dict]:
    """The rows of a result whose verdict is not ok: its findings."""
    return [row for row in result.get("results", []) if row["verdict"] != "ok"]


def unmet_expectations(result: dict) -> list[dict]:
    """The expectations (issue 6) a result did not meet (passed is None where none applies to the version)."""
    return [e for e in result.get("expectations", []) if e["passed"] is False]


def has_findings(result: dict) -> bool:
    """A verdict that is not ok, or an unmet expectation: what the reports detail and JUnit fails."""
    return bool(not_ok_rows(result) or unmet_expectations(result))


def ordered(names: set[str], first: tuple[str, ...]) -> list[str]:
    """`names` in the order of `first`, then any others (a verdict or framework a newer version made) sorted."""
    return [n for n in first if n in names] + sorted(names - set(first))


def _where(row: dict) -> str:
    """The worst component: the swept inputs' values in a sweep (then its index within the point), else its index."""
    if row.get("worst_point"):
        inner = row["worst_index"][1:]
        return ", ".join(f"{k}={v}" for k, v in row["worst_point"].items()) + (f" {inner}" if inner else "")
    return "" if not row["worst_index"] else str(row["worst_index"])


def _has_impls(result: dict) -> bool:
    """Does the case audit library calls (rows not labelled "formula")? Then tables show the impl label."""
    return any(row.get("impl", "formula") != "formula" for row in result["results"])


def print_case(console: Console, result: dict) -> None:
    """A case's table and notes; every string that came from the case file is made `visible` on the way."""
    from oracle.report.table import case_table, natural_width, short_impls

    table, dropped = case_table(result, console)
    width = console.width
    console.width = max(width, natural_width(console, table))  # wider than the console, never a number broken
    console.print(table, crop=False)
    console.width = width
    console = _Visible(console)
    if dropped:
        console.print(f"  not shown to fit {width} columns: {', '.join(dropped)} (--wide shows them)",
                      style="dim", highlight=False, markup=False)
    for dtype, ref in result["reference"].items():
        engine = f" by {ref['engine']} ({ref['engine_check']})" if "engine" in ref else ""
        console.print(f"  reference {dtype}: certified at {ref['precision_bits']} bits{engine}; gradient check: {ref['gradient_check']}; "
                      f"condition numbers: {ref['condition']}" + (f"; domain: {ref['domain'][0]}" if ref["domain"] else "")
                      + (f"; shadow: {ref['shadow']}" if "shadow" in ref else "")
                      + "".join(f"; shadow of {label}: {said}" for label, said in ref.get("impl_shadow", {}).items())
                      + "".join(f"; {fw} trace of {label}: {said}" for fw, labels in ref.get("traces", {}).items()
                                if fw != "jax" for label, said in labels.items()),
                      style="dim", highlight=False, markup=False)
    if "sweep" in result:
        _print_sweep(console, result["sweep"])
    impls, names = _has_impls(result), short_impls(result["results"])
    for row in result["results"]:
        if row["explanation"]:
            who = f"{row['framework']} {names[row['framework'], row['impl']]}" if impls else row["framework"]
            console.print(f"  {who} {row['dtype']} {row['output']}: {row['explanation']}", highlight=False, markup=False)
        if row["rewrite"]:
            r = row["rewrite"]
            console.print(f"    rewrite {r['before']} -> {r['after']}: {r['error_bits']} bits", style="green" if
                          r["within_tolerance"] else "yellow", highlight=False, markup=False)
    console.print()


class _Visible:
    """A console whose print shows control characters in plain strings as escapes (tables are made visible cell
    by cell in case_table)."""

    def __init__(self, console: Console):
        self._console = console

    def print(self, *objects, **options) -> None:
        self._console.print(*(visible(o) if isinstance(o, str) else o for o in objects), **options)


def _print_sweep(console: Console, sweep: dict) -> None:
    """A sweep's summary: its axes, how each framework ran it, and where each verdict other than ok holds."""
    axes = " x ".join(f"{a['input']} ({a['spec']}, {len(a['values'])} points)" for a in sweep["axes"])
    total = f" = {sweep['points']} points" if len(sweep["axes"]) > 1 else ""
    console.print(f"  sweep over {axes}{total}; the rows above describe the worst point",
                  style="dim", highlight=False, markup=False)
    for note in dict.fromkeys(f"{s['framework']} {s['impl']}: {s['note']}" for s in sweep["series"] if s["note"]):
        console.print(f"  {note}", style="yellow", highlight=False, markup=False)
    for threshold in sweep["thresholds"]:
        console.print(f"  {threshold['text']}", style=STYLE.get(threshold["verdict"], ""), highlight=False, markup=False)
    if sweep.get("refined", "exact") != "exact":  # the thresholds say "bracketed by the grid"; this says why
        console.print(f"  exact thresholds: {sweep['refined']}", style="dim", highlight=False, markup=False)


SCHEMA_VERSION = 1  # of the JSON document; raised when a key changes meaning (keys are only ever added)


def document(environment: dict, results: list[dict], invalid: list[dict]) -> dict:
    """The `--json` document and the audit's report.json (stable keys: extend, never rename)."""
    return {"schema_version": SCHEMA_VERSION, "oracle_version": __version__, "environment": environment,
            "cases": results, "invalid": invalid}


def dumps(doc: dict) -> str:
    return json.dumps(doc, indent=2)
