"""report.md: an audit read as plain text or rendered by a code host. Summary tables (framework x verdict,
family x framework), then one section per case with findings: what went wrong, why, the fix, how to reproduce."""

from __future__ import annotations

import re
import shlex
from collections import Counter
from pathlib import Path

from oracle.audit import Options
from oracle.frameworks import BACKENDS
from oracle.report import has_findings, not_ok_rows, ordered, unmet_expectations, visible
from oracle.verdicts import SEVERITY

DEFAULTS = Options()

VERDICTS = SEVERITY[::-1]  # ok first, as report.html orders them; any other verdict comes after, sorted


def render(doc: dict) -> str:
    """The whole report.md of a JSON document (`oracle audit`'s report.json, or `oracle run --json`)."""
    cases = doc["cases"]
    parts = [_summary(doc), _framework_table(cases), _family_table(cases)]
    if doc.get("invalid"):
        parts.append(_invalid(doc["invalid"]))
    flagged = [result for result in cases if "error" in result or has_findings(result)]
    parts.append("## Findings\n\n" + ("Every case is ok." if not flagged else
                                      f"{len(flagged)} cases, each with a section below."))
    parts += [_section(result, doc["environment"].get("options", {})) for result in flagged]
    return "\n\n".join(parts) + "\n"


def family(result: dict) -> str:
    """The result's family (set by the audit); the case file's folder for a document that has none."""
    return result.get("family") or Path(result["file"]).parent.name


def cell(text: object) -> str:
    """Text safe in a table cell: one line, `|` escaped (and everything `text` escapes)."""
    return prose(text)


# What could make case text markup: emphasis, code, links, tables, strikethrough, backslashes; raw HTML and
# autolinks (`<` before a tag name, `/`, `!` or `?`) and entity references (`&` before a name or `#`).
_MARKUP = re.compile(r"[\\`*_\[\]|~]|<(?=[A-Za-z/!?])|&(?=[A-Za-z#])")


def prose(value: object) -> str:
    """Case text as Markdown prose: one line, control characters visible, markup characters backslash-escaped
    (CommonMark renders `\\<` as `<`), so a title carrying `<script>` or `[x](javascript:...)` stays text."""
    return _MARKUP.sub(lambda m: "\\" + m.group(), visible(" ".join(str(value).split())))


def code(value: object) -> str:
    """Case text as an inline code span: one line, control characters visible, fenced by more backticks than
    any run inside it (a backtick in a file name cannot close the span)."""
    content = visible(" ".join(str(value).split()))
    fence = "`" * (max((len(run) for run in re.findall("`+", content)), default=0) + 1)
    pad = " " if content.startswith("`") or content.endswith("`") else ""
    return f"{fence}{pad}{content}{pad}{fence}"


def _table(header: list[str], rows: list[list[object]], numeric: int = 0) -> str:
    """A Markdown table; the last `numeric` columns are right-aligned."""
    def line(cells) -> str:
        return "| " + " | ".join(cells) + " |"

    align = ["---"] * (len(header) - numeric) + ["--:"] * numeric
    return "\n".join([line(map(cell, header)), line(align), *(line(map(cell, row)) for row in rows)])


def _summary(doc: dict) -> str:
    cases = doc["cases"]
    env = doc["environment"]
    versions = ", ".join(f"{name} {version}" for name, version in env.get("versions", {}).items())
    errored = sum("error" in r for r in cases)
    findings = sum(has_findings(r) for r in cases)
    return (f"# oracle audit\n\n{len(cases)} cases: {findings} with findings, {errored} errored (the tool could not "
            f"run them). Invalid case files (not run): {len(doc.get('invalid', []))}.\n\nPython "
            f"{env.get('python', '?')} on {env.get('platform', '?')}; {versions}.")


def _framework_table(cases: list[dict]) -> str:
    """Rows (framework x impl x dtype x output) per framework and verdict."""
    rows = [row for result in cases for row in result["results"]]
    counts = Counter((row["framework"], row["verdict"]) for row in rows)
    frameworks = ordered({row["framework"] for row in rows}, BACKENDS)
    verdicts = ordered({row["verdict"] for row in rows}, VERDICTS)
    body = [[fw, *(counts[fw, v] for v in verdicts), sum(counts[fw, v] for v in verdicts)] for fw in frameworks]
    body.append(["all", *(sum(counts[fw, v] for fw in frameworks) for v in verdicts), len(rows)])
    return ("## Verdicts by framework\n\nRows: one per framework, impl, dtype and output (a tensor's row is its worst "
            "component; a sweep's, its worst point).\n\n" + _table(["framework", *verdicts, "rows"], body,
                                                                 len(verdicts) + 1))


def _family_table(cases: list[dict]) -> str:
    """Per family (the case's folder) and framework, the verdict counts of its rows; errored cases counted apart."""
    families = ordered({family(r) for r in cases}, ())
    frameworks = ordered({row["framework"] for r in cases for row in r["results"]}, BACKENDS)
    body = []
    for name in families:
        members = [r for r in cases if family(r) == name]
        cells = [_counts(Counter(row["verdict"] for r in members for row in r["results"] if row["framework"] == fw))
                 for fw in frameworks]
        body.append([name, len(members), *cells, sum("error" in r for r in members)])
    return ("## Verdicts by family\n\nCells count rows by verdict; \"errored\" counts cases the tool could not run."
            "\n\n" + _table(["family", "cases", *frameworks, "errored"], body))


def _counts(counter: Counter) -> str:
    return ", ".join(f"{counter[v]} {v}" for v in ordered(set(counter), VERDICTS)) or "-"


def _invalid(invalid: list[dict]) -> str:
    lines = [f"- {code(_located(e))}" + (f" ({prose(e['field'])})" if e.get("field") else "")
             + f": {prose(e['message'])}" for e in invalid]
    return "## Invalid files\n\nNot run:\n\n" + "\n".join(lines)


def _located(entry: dict) -> str:
    return f"{entry['file']}:{entry['line']}" if entry.get("line") else str(entry["file"])


def _section(result: dict, options: dict) -> str:
    """One case with findings (or an error): where it is, how to reproduce it, its failing rows and why."""
    parts = [f"### {prose(result['id'])}: {prose(result['title'])}",
             f"File {code(result['file'])}, family {prose(family(result))}"
             + (f", tags: {', '.join(map(prose, result['tags']))}" if result.get("tags") else "") + ".",
             f"Reproduce: {code(_reproduce(result, options))}"]
    if "error" in result:
        parts.append(f"**The tool could not run this case**: {prose(result['error'])}")
    rows = not_ok_rows(result)
    if rows:
        parts.append(_table(["framework", "impl", "dtype", "output", "got", "reference", "error bits", "kappa",
                             "verdict"],
                            [[r["framework"], r["impl"], r["dtype"], r["output"], r["got"] or "-", r["reference"] or "-",
                              r["error_bits"] or "-", r["kappa"] or "-",
                              r["verdict"] + (" (inherent)" if r.get("inherent") else "")] for r in rows]))
        parts.append("\n".join(line for row in rows for line in _why(row)))
    unmet = unmet_expectations(result)
    if unmet:
        parts.append("Expectations not met:\n\n" + "\n".join(f"- {prose(_unmet(e))}" for e in unmet))
    sweep = result.get("sweep")
    if sweep and sweep.get("thresholds"):
        axes = " x ".join(f"{prose(a['input'])} ({prose(a['spec'])}, {len(a['values'])} values)" for a in sweep["axes"])
        parts.append(f"Sweep over {axes}, {sweep['points']} points; where verdicts hold:\n\n"
                     + "\n".join(f"- {prose(t['text'])}" for t in sweep["thresholds"]))
    return "\n\n".join(parts)


def _unmet(e: dict) -> str:
    """An unmet expectation: its own message (who, expected, got, version), or those facts."""
    return e.get("message") or (f"{e['framework']} {e['impl']} {e['dtype']} {e['output']}: expected {e['expected']}, "
                                f"got {e['got']} ({e['version']})")


def _reproduce(result: dict, options: dict) -> str:
    """`oracle run` of this case on the frameworks with findings (an errored case: the audit's), with the audit's
    options that change results."""
    frameworks = ordered({r["framework"] for r in not_ok_rows(result)}
                          | {e["framework"] for e in unmet_expectations(result)}, BACKENDS) \
        or options.get("frameworks") or ()
    words = ["oracle", "run", result["file"], *(w for fw in frameworks for w in ("-f", fw)),
             *(w for dtype in options.get("dtypes") or () for w in ("-d", dtype))]
    for flag, name in (("--max-precision", "max_precision"), ("--max-elements", "max_elements")):
        if options.get(name, getattr(DEFAULTS, name)) != getattr(DEFAULTS, name):
            words += [flag, str(options[name])]
    return shlex.join(words)


def _why(row: dict) -> list[str]:
    """A row's explanation, root-cause op and rewrite, as list items."""
    lines = [f"- **{prose(' '.join(str(row[k]) for k in ('framework', 'impl', 'dtype', 'output')))}** "
             f"({prose(row['verdict'])}): " + (prose(row["explanation"]) or "no explanation")]
    cause = row.get("cause")
    if cause:
        lines.append(f"  - root cause: {code(cause['op'])} in {code(cause['where'])} ({prose(cause['pass'])} pass, "
                     f"{prose(cause['kind'])}" + ("" if cause.get("traced", True) else ", inferred") + ")")
    rewrite = row.get("rewrite")
    if rewrite:
        lines.append(f"  - rewrite {code(rewrite['before'])} -> {code(rewrite['after'])}: {rewrite['error_bits']} error bits"
                     + ("" if rewrite["within_tolerance"] else " (still beyond tolerance)"))
    return lines
