"""A case's rows as a terminal table that fits: numbers are never broken across lines, impl names are short.

A row's cells are drawn from the `--json` row. A number split over two lines (`-9.9900538448015` /
`981432e+39`) reads as two numbers, so numeric cells never wrap; instead the table drops its least needed
columns until it fits the console (100 columns when output is not a terminal), and says which it dropped
(`oracle run --wide` keeps them all). Impl names are shown short: a label as written, a bare call's dotted
name by its last two parts (`tfp.distributions.Gamma.log_prob` -> `Gamma.log_prob`) unless two of one
framework's impls would then read the same; the JSON keeps the full name.
"""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from oracle.report import STYLE, _where, visible

# (column, justify, is a number); optional columns are dropped, in DROP's order, until the table fits
COLUMNS = [("framework", "left", False), ("impl", "left", False), ("dtype", "left", False),
           ("output", "left", False), ("worst at", "left", True), ("got", "right", True),
           ("reference", "right", True), ("reference (20 digits)", "right", True), ("ulps", "right", True),
           ("bits", "right", True), ("kappa", "right", True), ("verdict", "left", False)]
DROP = ("reference (20 digits)", "ulps", "kappa", "dtype", "worst at")


def short_impls(rows: list[dict]) -> dict[tuple[str, str], str]:
    """(framework, impl) -> the name a table shows: the last two dotted parts of a dotted name, unless that
    would make two of one framework's impls read the same (then the full name)."""
    names = {(row["framework"], row.get("impl", "formula")) for row in rows}
    short = {key: ".".join(key[1].split(".")[-2:]) for key in names}
    clash = {(fw, s) for (fw, _), s in short.items() if sum(1 for (f, _), t in short.items() if f == fw and t == s) > 1}
    return {key: key[1] if (key[0], s) in clash else s for key, s in short.items()}


def summed_note(result: dict) -> str:
    """What the title says when gradients are of a sum: of the formula's elements, or (a case that audits
    impls only) of the output's."""
    if not result["summed"]:
        return ""
    has_formula = any(row.get("impl", "formula") == "formula" for row in result["results"])
    return f" (gradients are of the sum of the {'formula' if has_formula else 'output'}'s elements)"


def _cells(result: dict) -> list[dict[str, Text]]:
    """Each row's cells as Text (never read as rich markup)."""
    names = short_impls(result["results"])
    out = []
    for row in result["results"]:
        verdict = row["verdict"] + (" (inherent)" if row.get("inherent") else "")
        cells = {"framework": row["framework"], "impl": names[(row["framework"], row.get("impl", "formula"))],
                 "dtype": row["dtype"], "output": row["output"], "worst at": _where(row), "got": row["got"] or "-",
                 "reference": row["reference"] or "-", "reference (20 digits)": row["reference_digits"] or "-",
                 "ulps": "-" if row["ulps"] is None else str(row["ulps"]), "bits": row["error_bits"] or "-",
                 "kappa": row["kappa"] or "-"}
        out.append({**{k: Text(visible(v)) for k, v in cells.items()},
                    "verdict": Text(verdict, style=STYLE.get(row["verdict"], ""))})
    return out


def _table(title: str, columns: list[tuple[str, str, bool]], cells: list[dict]) -> Table:
    table = Table(title=escape(visible(title)), title_justify="left", expand=False, box=box.SIMPLE_HEAD, pad_edge=False,
                  collapse_padding=True)
    for name, justify, number in columns:
        whole = number or name in ("framework", "dtype", "output", "verdict")  # only impl names may fold
        table.add_column(name, justify=justify, no_wrap=whole, overflow="ignore" if whole else "fold",
                         min_width=max([len(name), *(len(row[name]) for row in cells)]) if whole else 12)
    for row in cells:
        table.add_row(*(row[name] for name, _, _ in columns))
    return table


def case_table(result: dict, console: Console) -> tuple[Table, list[str]]:
    """The table of a result's rows for `console`'s width, and the columns it left out to fit. When even the
    fewest columns are too wide (a 60-column terminal), print it at its natural_width: wider than the
    console rather than break a number."""
    cells = _cells(result)
    columns = [c for c in COLUMNS if c[0] != "impl" or any(row.get("impl", "formula") != "formula"
                                                           for row in result["results"])]
    if not any(row["worst at"].plain for row in cells):
        columns = [c for c in columns if c[0] != "worst at"]
    if len({row["dtype"].plain for row in cells}) == 1:  # one dtype: the reference line below names it
        optional = DROP
    else:
        optional = tuple(d for d in DROP if d != "dtype")
    title = f"{result['id']}: {result['title']}{summed_note(result)}"
    dropped: list[str] = []
    table = _table(title, columns, cells)
    for name in optional:
        if natural_width(console, table) <= console.width:
            break
        if any(c[0] == name for c in columns):
            columns = [c for c in columns if c[0] != name]
            dropped.append(name)
            table = _table(title, columns, cells)
    return table, dropped


def natural_width(console: Console, table: Table) -> int:
    """The table's natural width (what it takes without wrapping any cell)."""
    wide = console.options.update(width=10**6, max_width=10**6)
    return table.__rich_measure__(console, wide).maximum
