"""Rendering results: a rich table per case for people, one JSON document for machines."""

from __future__ import annotations

import json

from rich.console import Console
from rich.table import Table
from rich.text import Text

from oracle import __version__

STYLE = {"ok": "green", "error": "magenta", "uncertain": "yellow", "domain": "cyan", "ill-conditioning": "blue",
         **{v: "bold red" for v in ("overflow", "underflow", "cancellation", "mismatch")}}


def case_table(result: dict) -> Table:
    summed = " (gradients are of the sum of the formula's elements)" if result["summed"] else ""
    table = Table(title=f"{result['id']}: {result['title']}{summed}", title_justify="left", expand=False)
    for column, justify in [("framework", "left"), ("dtype", "left"), ("output", "left"), ("worst at", "left"),
                            ("got", "right"), ("reference", "right"), ("reference (20 digits)", "right"),
                            ("ulps", "right"), ("bits", "right"), ("kappa", "right"), ("verdict", "left")]:
        table.add_column(column, justify=justify, overflow="fold")
    for row in result["results"]:
        index = "" if not row["worst_index"] else str(row["worst_index"])
        table.add_row(row["framework"], row["dtype"], row["output"], index, row["got"] or "-", row["reference"] or "-",
                      row["reference_digits"] or "-", "-" if row["ulps"] is None else str(row["ulps"]),
                      row["error_bits"] or "-", row["kappa"] or "-",
                      Text(row["verdict"] + (" (inherent)" if row["inherent"] else ""), style=STYLE.get(row["verdict"], "")))
    return table


def print_case(console: Console, result: dict) -> None:
    console.print(case_table(result))
    for dtype, ref in result["reference"].items():
        console.print(f"  reference {dtype}: certified at {ref['precision_bits']} bits; gradient check: {ref['gradient_check']}; "
                      f"condition numbers: {ref['condition']}" + (f"; domain: {ref['domain'][0]}" if ref["domain"] else "")
                      + (f"; shadow: {ref['shadow']}" if "shadow" in ref else ""), style="dim", highlight=False)
    for row in result["results"]:
        if row["explanation"]:
            console.print(f"  {row['framework']} {row['dtype']} {row['output']}: {row['explanation']}", highlight=False)
        if row["rewrite"]:
            r = row["rewrite"]
            console.print(f"    rewrite {r['before']} -> {r['after']}: {r['error_bits']} bits", style="green" if
                          r["within_tolerance"] else "yellow", highlight=False)
    console.print()


def document(environment: dict, results: list[dict], invalid: list[dict]) -> dict:
    """The `--json` document (stable keys: extend, never rename)."""
    return {"oracle_version": __version__, "environment": environment, "cases": results, "invalid": invalid}


def dumps(doc: dict) -> str:
    return json.dumps(doc, indent=2)
