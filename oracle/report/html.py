"""report.html: one self-contained page (inline CSS, JS and SVG; nothing fetched) for a report document.

Everything in the document is untrusted text (titles, explanations and formulas come from case files):
every value is escaped on the way into HTML, JSON for the page's script is escaped for a <script>
element, and the script writes text only through textContent.
"""

from __future__ import annotations

import json
import re
import shlex
from collections import Counter
from html import escape

from oracle.frameworks import BACKENDS
from oracle.report import STYLE, _has_impls, _where, has_findings, ordered, unmet_expectations
from oracle.report.plot import Figure, figures, grid_ceiling, ramp_legend, series_label, verdict_class
from oracle.report.table import short_impls
from oracle.verdicts import SEVERITY

RICH_COLOURS = {"green": "#1a7f37", "magenta": "#a2238f", "yellow": "#9a6700", "cyan": "#0b7a8a", "blue": "#0969da",
                "bold red": "#cf222e"}  # report.STYLE's terminal colours, as the page draws them
COLOURS = {verdict: RICH_COLOURS[style] for verdict, style in STYLE.items()}  # the one table: badges, rows, points
OTHER_COLOUR = "#57606a"  # a verdict this version does not know


def render(doc: dict) -> str:
    """The whole page for a `--json` / report.json document."""
    cases = sorted(doc.get("cases", []), key=_rank)
    panels, plots = [], []
    anchors = _anchors(cases)
    for case, anchor in zip(cases, anchors):
        html, data = _panel(case, anchor, len(plots))
        panels.append(html)
        plots += data
    title = f"oracle report: {len(cases)} cases"
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{escape(title)}</title><style>{_css()}</style></head><body>"
            f"{_header(doc)}<main>{_summary(doc, cases)}{_filters(cases)}"
            f"<div id=\"cases\">{''.join(panels)}</div></main>"
            f"<script type=\"application/json\" id=\"plot-data\">{script_json(plots)}</script>"
            f"<script>{SCRIPT}</script></body></html>\n")


def _anchors(cases: list[dict]) -> list[str]:
    """Each panel's id: the case id (report.html#case-id links to it), or case-<n> where the id is not a
    usable, unique fragment (the document is untrusted)."""
    ids = [str(c.get("id", "")) for c in cases]
    usable = [bool(re.fullmatch(r"[a-z0-9][a-z0-9._-]*", i)) and ids.count(i) == 1 and i not in RESERVED for i in ids]
    return [i if ok else f"case-{n}" for n, (i, ok) in enumerate(zip(ids, usable))]


RESERVED = {"summary", "filters", "cases", "plot-data", "shown", "f-fw", "f-v", "f-tag", "f-reset"}  # the page's ids


def script_json(value: object) -> str:
    """JSON safe inside a <script> element: no `<`, `>` or `&` can end it or open a comment."""
    return (json.dumps(value, separators=(",", ":"), allow_nan=False)
            .replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _cell(value: object) -> str:
    return "-" if value is None or value == "" else _e(value)


def _severity(verdict: str) -> float:
    """Rank in SEVERITY; a verdict this version does not know ranks just above ok."""
    return SEVERITY.index(verdict) if verdict in SEVERITY else len(SEVERITY) - 1.5


def _worst(verdicts: list[str]) -> str:
    return min(verdicts, key=_severity, default="ok")


def _case_worst(case: dict) -> str:
    return "error" if case.get("error") else _worst([r["verdict"] for r in case.get("results", [])])


def _rank(case: dict) -> int:
    """Cases that could not run first, then findings (a verdict not ok or an expectation not met), then the rest."""
    if case.get("error"):
        return 0
    return 1 if has_findings(case) else 2


def _badge(verdict: str, text: str | None = None) -> str:
    return f'<span class="badge {verdict_class(verdict)}">{_e(verdict if text is None else text)}</span>'


def _header(doc: dict) -> str:
    env = doc.get("environment", {})
    versions = " · ".join(f"{_e(k)} {_e(v)}" for k, v in env.get("versions", {}).items())
    return (f'<header class="top"><h1>oracle report</h1><p>oracle {_e(doc.get("oracle_version", "?"))} · '
            f'schema {_e(doc.get("schema_version", "?"))} · Python {_e(env.get("python", "?"))} · '
            f'{_e(env.get("platform", "?"))}</p><p class="versions">{versions}</p></header>')


def _summary(doc: dict, cases: list[dict]) -> str:
    """Counts (cases, findings, errors, invalid files), the framework x verdict table, an index, invalid files."""
    rows = [r for c in cases for r in c.get("results", [])]
    failed = sum(len(unmet_expectations(c)) for c in cases)
    tiles = [("cases", len(cases), ""), ("with findings", sum(_rank(c) == 1 for c in cases), "warn"),
             ("could not run", sum(bool(c.get("error")) for c in cases), "bad"), ("rows", len(rows), ""),
             ("invalid files", len(doc.get("invalid", [])), "bad")]
    if any("expectations" in c for c in cases):
        tiles.append(("expectations not met", failed, "bad"))
    stats = "".join(f'<div class="tile {cls if n else ""}"><b>{n}</b><span>{_e(label)}</span></div>'
                    for label, n, cls in tiles)
    return (f'<section class="card" id="summary"><h2>Summary</h2><div class="tiles">{stats}</div>'
            f"{_counts_table(rows)}{_index(cases)}{_invalid(doc.get('invalid', []))}</section>")


def _counts_table(rows: list[dict]) -> str:
    """Rows per framework x verdict; a nonzero count is a button that sets both filters."""
    if not rows:
        return "<p>No result rows.</p>"
    counts = Counter((r["framework"], r["verdict"]) for r in rows)
    verdicts = ordered({v for _, v in counts}, SEVERITY[::-1])
    head = "".join(f"<th>{_badge(v)}</th>" for v in verdicts)
    body = []
    for fw in ordered({f for f, _ in counts}, BACKENDS):
        cells = "".join(f'<td><button class="count {verdict_class(v)}" data-set="{_e(script_json({"fw": fw, "v": v}))}"'
                        f' title="show {_e(fw)} rows with verdict {_e(v)}">{counts[fw, v]}</button></td>'
                        if counts[fw, v] else '<td class="zero">·</td>' for v in verdicts)
        body.append(f"<tr><th>{_e(fw)}</th>{cells}<td class=\"total\">{sum(counts[fw, v] for v in verdicts)}</td></tr>")
    return (f'<table class="counts"><caption>result rows by framework and verdict</caption><thead><tr><th></th>'
            f'{head}<th>total</th></tr></thead><tbody>{"".join(body)}</tbody></table>')


def _index(cases: list[dict]) -> str:
    """One line per case (findings first): its worst verdict per framework, linking to its panel."""
    frameworks = ordered({r["framework"] for c in cases for r in c.get("results", [])}, BACKENDS)
    lines = []
    for anchor, case in zip(_anchors(cases), cases):
        by_fw = {fw: [r["verdict"] for r in case.get("results", []) if r["framework"] == fw] for fw in frameworks}
        cells = "".join(f"<td>{_badge(_worst(v)) if v else ''}</td>" for v in by_fw.values())
        status = _badge("error", "could not run") if case.get("error") else ""
        lines.append(f'<tr data-case="{_e(anchor)}"><td><a href="#{_e(anchor)}">{_e(case.get("id", "?"))}</a> {status}'
                     f'</td>{cells}</tr>')
    head = "".join(f"<th>{_e(fw)}</th>" for fw in frameworks)
    return (f'<details class="index" open><summary>cases (worst verdict per framework)</summary><table class="index">'
            f'<thead><tr><th>case</th>{head}</tr></thead><tbody>{"".join(lines)}</tbody></table></details>')


def _invalid(invalid: list[dict]) -> str:
    if not invalid:
        return ""
    items = "".join(f"<li><code>{_e(i.get('file'))}{':' + _e(i['line']) if i.get('line') else ''}</code> "
                    f"{_e(i.get('field') or '')}: {_e(i.get('message'))}</li>" for i in invalid)
    return f'<h3>Invalid files (not run)</h3><ul class="invalid">{items}</ul>'


def _filters(cases: list[dict]) -> str:
    rows = [r for c in cases for r in c.get("results", [])]
    frameworks = ordered({r["framework"] for r in rows}, BACKENDS)
    verdicts = ordered({r["verdict"] for r in rows} | ({"error"} if any(c.get("error") for c in cases) else set()),
                        SEVERITY)
    tags = sorted({str(t) for c in cases for t in c.get("tags", [])})
    return ('<nav class="filters card" id="filters">'
            + _select("fw", "framework", frameworks) + _select("v", "verdict", verdicts, (("not-ok", "not ok"),))
            + _select("tag", "tag", tags)
            + '<button type="button" id="f-reset">show all</button><span id="shown" aria-live="polite"></span></nav>')


def _select(key: str, label: str, values: list[str], extra: tuple[tuple[str, str], ...] = ()) -> str:
    options = "".join(f'<option value="{_e(v)}">{_e(text)}</option>' for v, text in [*extra, *((v, v) for v in values)])
    return f'<label>{label} <select id="f-{key}"><option value="">all</option>{options}</select></label>'


def _panel(case: dict, anchor: str, first_plot: int) -> tuple[str, list[dict]]:
    """A case's panel and the hover data of its plots (numbered from `first_plot` in the page)."""
    worst = _case_worst(case)
    counts = Counter(r["verdict"] for r in case.get("results", []))
    badges = "".join(_badge(v, f"{v} {counts[v]}") for v in ordered(set(counts), SEVERITY))
    sweep_html, plots = sweep_section(case["sweep"], case.get("tolerance_bits"), first_plot) if case.get("sweep") \
        else ("", [])
    error = (f'<div class="error"><b>could not run:</b> <pre>{_e(case["error"])}</pre></div>'
             if case.get("error") else "")
    attributes = f'data-tags="{_e(script_json([str(t) for t in case.get("tags", [])]))}"' + (
        " data-error" if case.get("error") else "")
    html = (f'<section class="case card {verdict_class(worst)}" id="{anchor}" {attributes}>'
            f'<header><h2><a href="#{anchor}">{_e(case.get("id", "?"))}</a></h2><div class="badges">{badges}</div>'
            f'</header><p class="title">{_e(case.get("title", ""))}</p>{_meta(case)}{error}{_expectations(case)}'
            f"{_rows_table(case)}{_explanations(case)}{sweep_html}{_reference(case)}</section>")
    return html, plots


def _meta(case: dict) -> str:
    file = str(case.get("file", ""))
    tags = "".join(f'<button class="tag" data-set="{_e(script_json({"tag": str(t)}))}">{_e(t)}</button>'
                   for t in case.get("tags", []))
    return (f'<p class="meta"><span>file <code>{_e(file)}</code></span> <span>kind {_e(case.get("kind", "?"))}</span>'
            f' <span class="tags">{tags}</span></p>'
            f'<p class="reproduce">reproduce: <code>oracle run {_e(shlex.quote(file))}</code></p>')


def _rows_table(case: dict) -> str:
    rows = case.get("results", [])
    if not rows:
        return ""
    impls = _has_impls(case)
    many = any(sum(r.get("verdict_counts", {}).values()) > 1 for r in rows)
    columns = ["framework", *(["impl"] if impls else []), "dtype", "output", "worst at", "got", "reference",
               "error bits", "kappa", "verdict", *(["verdicts (all components)"] if many else [])]
    head = "".join(f"<th>{c}</th>" for c in columns)
    names = short_impls(rows) if impls else {}
    body = "".join(_row(r, names, many) for r in rows)
    return f'<div class="scroll"><table class="rows"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _row(row: dict, names: dict, many: bool) -> str:
    """One result row (`names`: the short impl names, empty when the case has no impls); the reference cell's
    tooltip has its 20 digits, the impl's its full name."""
    impl = row.get("impl", "formula")
    short = names.get((row["framework"], impl), impl)
    verdict = row["verdict"]
    inherent = " (inherent)" if row.get("inherent") else ""
    counts = ", ".join(f"{_e(n)} {_e(v)}" for v, n in row.get("verdict_counts", {}).items())
    cells = [(_e(row["framework"]), ""), *([(f'<span title="{_e(impl)}">{_e(short)}</span>', "")] if names else []),
             (_e(row["dtype"]), ""), (_e(row["output"]), ""),
             (_cell(_where(row)), ""), (_cell(row.get("got")), "num"),
             (f'<span title="{_e(row.get("reference_digits") or "")}">{_cell(row.get("reference"))}</span>', "num"),
             (_cell(row.get("error_bits")), "num"), (_cell(row.get("kappa")), "num"),
             (_badge(verdict, verdict + inherent), ""), *([(counts, "")] if many else [])]
    tds = "".join(f'<td class="{cls}">{html}</td>' if cls else f"<td>{html}</td>" for html, cls in cells)
    return f'<tr class="{verdict_class(verdict)}" data-fw="{_e(row["framework"])}" data-v="{_e(verdict)}">{tds}</tr>'


def _explanations(case: dict) -> str:
    """Per row: the explanation, the root-cause op and the rewrite, when there are any."""
    impls = _has_impls(case)
    items = []
    for row in case.get("results", []):
        if not (row.get("explanation") or row.get("cause") or row.get("rewrite")):
            continue
        who = " · ".join([row["framework"], *([row.get("impl", "formula")] if impls else []), row["dtype"],
                          row["output"]])
        items.append(f'<li data-fw="{_e(row["framework"])}" data-v="{_e(row["verdict"])}">{_badge(row["verdict"])} '
                     f'<span class="who">{_e(who)}</span> {_e(row.get("explanation") or "")}'
                     f'{_cause(row.get("cause"))}{_rewrite(row.get("rewrite"))}</li>')
    return f'<ul class="explanations">{"".join(items)}</ul>' if items else ""


def _cause(cause: dict | None) -> str:
    if not cause:
        return ""
    operands = ", ".join(_e(o[0] if isinstance(o, list) and o else o) for o in cause.get("operands", []))
    return (f'<div class="cause">{_how(cause)} root cause: <code>{_e(cause.get("op"))}</code> in '
            f'<code>{_e(cause.get("where"))}</code> · {_e(cause.get("pass", "?"))} pass · {_e(cause.get("kind", "?"))}'
            + (f" · operands {operands}" if operands else "") + "</div>")


def _how(cause: dict) -> str:
    """A badge: was the root cause traced in this framework's own computation (its ops replayed: JAX's jaxpr, a
    TF or torch recording), or inferred (where no trace could be made: from JAX's run of the same formula, or
    from the symptom)?"""
    if cause.get("traced"):
        return ('<span class="how traced" title="found by replaying this framework\'s own operations beside '
                'exact values">traced</span>')
    return ('<span class="how inferred" title="not traced in this framework: inferred from JAX\'s run of the '
            'same formula or from the symptom">inferred</span>')


def _rewrite(rewrite: dict | None) -> str:
    if not rewrite:
        return ""
    good = "good" if rewrite.get("within_tolerance") else "warn"
    return (f'<div class="rewrite {good}">rewrite <code>{_e(rewrite.get("before"))}</code> → '
            f'<code>{_e(rewrite.get("after"))}</code>: {_cell(rewrite.get("error_bits"))} bits, evaluating '
            f'<code>{_e(rewrite.get("formula", ""))}</code></div>')


def _expectations(case: dict) -> str:
    failed = unmet_expectations(case)
    if not failed:
        return ""
    items = "".join(f'<li data-fw="{_e(x.get("framework"))}" data-v="expectation">'
                    f'{_e(x.get("framework"))} · {_e(x.get("impl"))} · {_e(x.get("dtype"))} · {_e(x.get("output"))}: '
                    f'expected <b>{_e(x.get("expected"))}</b>, got <b>{_e(x.get("got"))}</b>'
                    f'{" (" + _e(x["version"]) + ")" if x.get("version") else ""}'
                    f'{": " + _e(x["message"]) if x.get("message") else ""}</li>' for x in failed)
    return f'<div class="expectations"><b>expectations not met</b><ul>{items}</ul></div>'


def _reference(case: dict) -> str:
    """The reference block's facts per dtype: certified precision, condition method, shadow, checks."""
    lines = []
    for dtype, ref in case.get("reference", {}).items():
        facts = [f"certified at {_e(ref.get('precision_bits', '?'))} bits",
                 f"condition numbers: {_e(ref.get('condition', '?'))}",
                 f"gradient check: {_e(ref.get('gradient_check', '?'))}"]
        facts += [f"shadow: {_e(ref['shadow'])}"] if "shadow" in ref else []
        facts += [f"shadow of {_e(label)}: {_e(said)}" for label, said in ref.get("impl_shadow", {}).items()]
        facts += [f"{_e(fw)} trace of {_e(label)}: {_e(said)}" for fw, labels in ref.get("traces", {}).items()
                  if fw != "jax" for label, said in labels.items()]
        facts += [f"domain: {_e(d)}" for d in ref.get("domain", [])]
        facts += [f"{_e(fw)} {'flushes' if mode.get('flush_to_zero') else 'keeps'} subnormals"
                  for fw, mode in ref.get("subnormals", {}).items() if isinstance(mode, dict)]
        lines.append(f"<li><b>{_e(dtype)}</b>: {' · '.join(facts)}</li>")
    return f'<div class="reference"><h3>reference</h3><ul>{"".join(lines)}</ul></div>' if lines else ""


def sweep_section(sweep: dict, tolerance: float | None, first_plot: int) -> tuple[str, list[dict]]:
    """The sweep's plots (hover data numbered from `first_plot`), verdict legend and thresholds: a result's
    `sweep` block in the audit's report, a hunt's `plot` block in `oracle hunt --html` (`hunt_html`). Where the
    block carries exact regions (a refined sweep, a hunt), each is shaded between its exact ends."""
    axes = sweep.get("axes", [])
    described = "; ".join(f"{_e(a.get('input'))}: {_e(a.get('spec'))}, {len(a.get('values', []))} values, "
                          f"{_e(a.get('scale', 'linear'))} scale" for a in axes)
    figs = figures(sweep, tolerance)
    html = "".join(_figure(f, first_plot + k) for k, f in enumerate(figs))
    if not figs:
        html = f"<p>a sweep over {len(axes)} inputs is not plotted (1 or 2 are).</p>"
    verdicts = ordered({str(v) for s in sweep.get("series", []) for v in s.get("verdicts", [])}, SEVERITY)
    legend = "".join(_badge(v) for v in verdicts) + (
        f" {ramp_legend(grid_ceiling(sweep))} <span class=\"na-key\">grey: not measurable</span>" if len(axes) == 2
        else ' <span class="na-key">shaded: where a verdict other than ok holds'
             + (' (exact regions, bisected to adjacent values of the dtype)' if sweep.get("regions") else '')
             + ' · × at the bottom: not measurable</span>')
    notes = [f"{_e(series_label(s))} · {_e(s['output'])}: {_e(s['note'])}" for s in sweep.get("series", [])
             if s.get("note")]
    return (f'<div class="sweep"><h3>sweep ({_e(sweep.get("points", "?"))} points)</h3><p class="axes">{described}</p>'
            f'<div class="figures">{html}</div><p class="legend">{legend}</p>{_thresholds(sweep)}'
            + (f'<ul class="notes">{"".join(f"<li>{n}</li>" for n in notes)}</ul>' if notes else "")
            + "</div>", [f.data for f in figs])


def _figure(fig: Figure, number: int) -> str:
    """A plot (one framework x impl x output) with its caption and its hover tooltip; the framework filter hides it."""
    return (f'<figure class="fig {fig.data["kind"]}" data-fw="{_e(fig.framework)}"><figcaption>{_e(fig.caption)}'
            f'</figcaption><div class="canvas" data-plot="{number}">{fig.svg}<div class="tip" hidden></div></div></figure>')


def _thresholds(sweep: dict) -> str:
    """The thresholds' sentences (each plot shades where its verdicts other than ok hold)."""
    items = "".join(f'<li data-fw="{_e(t.get("framework"))}">{_e(t.get("text", ""))}</li>'
                    for t in sweep.get("thresholds", []))
    return f'<ul class="thresholds">{items}</ul>' if items else ""


def _css() -> str:
    """The page's style; verdict colours come from COLOURS only (as `--c` on each `v-<verdict>` class)."""
    colours = "".join(f".v-{v}{{--c:{c}}}" for v, c in COLOURS.items()) + f".v-other{{--c:{OTHER_COLOUR}}}"
    return colours + CSS


CSS = """
*{box-sizing:border-box}
[hidden]{display:none!important}
body{margin:0;background:#f3f4f6;color:#1f2328;font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,
 "Helvetica Neue",Arial,"Liberation Sans",sans-serif}
code,pre,.num,.tip{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,"Liberation Mono",monospace;font-size:12.5px}
code{background:#eef0f3;border-radius:4px;padding:0 4px;overflow-wrap:anywhere}
a{color:#0969da;text-decoration:none}a:hover{text-decoration:underline}
header.top{background:#1f2937;color:#f9fafb;padding:14px 28px}
header.top h1{margin:0;font-size:22px}header.top p{margin:2px 0;color:#d1d5db}
header.top .versions{font-size:12.5px;color:#9ca3af}
main{max-width:1240px;margin:0 auto;padding:18px 20px 60px}
.card{background:#fff;border:1px solid #d0d7de;border-radius:10px;padding:14px 18px;margin-bottom:16px}
h2{font-size:18px;margin:0 0 8px}h3{font-size:14px;margin:12px 0 6px;color:#57606a;text-transform:uppercase;
 letter-spacing:.04em}
.tiles{display:flex;flex-wrap:wrap;gap:10px;margin-bottom:12px}
.tile{border:1px solid #d0d7de;border-radius:8px;padding:8px 16px;min-width:120px;background:#f6f8fa}
.tile b{display:block;font-size:24px}.tile span{color:#57606a}
.tile.warn b{color:#9a6700}.tile.bad b{color:#cf222e}
.badge{display:inline-block;background:var(--c);color:#fff;border-radius:999px;padding:0 9px;font-size:12px;
 font-weight:600;white-space:nowrap;margin:1px 2px}
table{border-collapse:collapse}
th,td{padding:4px 9px;border-bottom:1px solid #e5e7eb;text-align:left;vertical-align:baseline}
thead th{background:#f6f8fa;font-weight:600;font-size:12.5px;color:#57606a;position:sticky;top:0}
td.num{text-align:right;white-space:nowrap}
table.counts{margin:6px 0 12px}table.counts caption{text-align:left;color:#57606a;padding-bottom:4px}
table.counts td,table.counts th{text-align:center}table.counts tbody th{text-align:left}
button.count{border:0;border-radius:6px;background:var(--c);color:#fff;font-weight:600;min-width:36px;
 padding:2px 8px;cursor:pointer}
td.zero{color:#c0c4ca}td.total{font-weight:600}
details.index summary{cursor:pointer;color:#57606a;margin:6px 0}
table.index{font-size:13px}table.index td:first-child{max-width:520px;overflow-wrap:anywhere}
ul.invalid li{margin:3px 0}
nav.filters{position:sticky;top:0;z-index:5;display:flex;flex-wrap:wrap;gap:14px;align-items:center;
 box-shadow:0 2px 6px rgba(0,0,0,.06)}
nav.filters select,nav.filters button{font:inherit;padding:3px 6px;border:1px solid #d0d7de;border-radius:6px;
 background:#fff}
nav.filters select{max-width:240px}
nav.filters button{cursor:pointer}#shown{color:#57606a;margin-left:auto}
section.case{border-left:6px solid var(--c)}
section.case>header{display:flex;flex-wrap:wrap;justify-content:space-between;align-items:baseline;gap:8px}
section.case h2 a{color:#1f2328;overflow-wrap:anywhere}
.title{margin:0 0 6px;font-size:15px}
.meta,.reproduce{margin:3px 0;color:#57606a}.meta span{margin-right:12px}
button.tag{border:1px solid #d0d7de;background:#f6f8fa;border-radius:999px;font-size:12px;padding:0 8px;
 margin:0 3px 2px 0;cursor:pointer;color:#1f2328}
.error{background:#fff5f5;border:1px solid #f5c2c7;border-radius:8px;padding:8px 12px;margin:8px 0}
.error pre{margin:4px 0 0;white-space:pre-wrap;overflow-wrap:anywhere}
.expectations{background:#fff8e6;border:1px solid #f2d48a;border-radius:8px;padding:8px 12px;margin:8px 0}
.expectations ul{margin:4px 0;padding-left:20px}
.scroll{overflow-x:auto;margin:10px 0}
table.rows{font-size:13px;width:100%}
table.rows tbody tr:nth-child(even){background:#fafbfc}
table.rows tbody tr:not(.v-ok) td:first-child{box-shadow:inset 3px 0 var(--c)}
ul.explanations{list-style:none;padding:0;margin:8px 0}
ul.explanations li{padding:6px 10px;margin:4px 0;border-radius:6px;background:#f6f8fa;overflow-wrap:anywhere}
.who{font-weight:600}
.cause,.rewrite{margin:3px 0 0 14px;font-size:13px;color:#424a53}
.rewrite.good::before{content:"\\2714  ";color:#1a7f37}.rewrite.warn::before{content:"\\26a0  ";color:#9a6700}
.reference ul{margin:0;padding-left:18px;color:#57606a;font-size:13px}
.sweep .axes{color:#57606a;margin:0 0 6px}
.figures{display:flex;flex-wrap:wrap;gap:14px}
figure.fig{margin:0;border:1px solid #e5e7eb;border-radius:8px;padding:6px 8px;background:#fff;max-width:100%}
figure.fig figcaption{font-weight:600;font-size:13px}figure.fig.line{flex:0 1 346px}
section.case{scroll-margin-top:64px}section.case:target{outline:3px solid #0969da;outline-offset:2px}
.how{display:inline-block;border-radius:4px;padding:0 6px;font-size:11.5px;font-weight:600;margin-right:4px;
 border:1px solid}
.how.traced{color:#1a7f37;border-color:#1a7f37;background:#dafbe1}
.how.inferred{color:#57606a;border-color:#8c959f;background:#f6f8fa;border-style:dashed}
.canvas{position:relative}
svg.plot{display:block;max-width:100%;height:auto;font:11px system-ui,sans-serif;fill:#57606a}
svg.plot .label{font-size:12px;fill:#1f2328}
svg .frame{fill:none;stroke:#8c959f}svg .grid{stroke:#eaeef2}
svg .trace{fill:none;stroke:#8c959f;stroke-width:1.2}
svg [class|=v]{fill:var(--c);stroke:#fff;stroke-width:.6}
svg .hollow{fill:#fff;stroke:#424a53;stroke-width:1.2}
svg .na{stroke:#8c959f;stroke-width:1.3;fill:#d0d7de}
svg .tol{stroke:#9a6700;stroke-dasharray:5 4;stroke-width:1.2}
svg text.tol{paint-order:stroke;stroke:#fff;stroke-width:3px;stroke-dasharray:none}
svg text.tol{fill:#9a6700}
svg .region rect{fill:var(--c);fill-opacity:.13;stroke:none}
svg .region text{fill:var(--c);font-weight:600;paint-order:stroke;stroke:#fff;stroke-width:3px}
svg .guide{stroke:#1f2328;stroke-width:.8}
.tip{position:absolute;pointer-events:none;background:rgba(31,41,55,.94);color:#f9fafb;border-radius:6px;
 padding:5px 8px;font-size:12px;white-space:nowrap;z-index:3}
.legend{margin:6px 0;color:#57606a}.legend svg{vertical-align:middle}.na-key{font-size:12.5px}
ul.thresholds{font-size:13px;color:#424a53;margin:6px 0;padding-left:22px}
ul.notes{font-size:12.5px;color:#57606a}
@media print{nav.filters{display:none}section.case{break-inside:avoid}}
"""

SCRIPT = """
"use strict";
const plots = JSON.parse(document.getElementById("plot-data").textContent);
const pick = {fw: document.getElementById("f-fw"), v: document.getElementById("f-v"),
              tag: document.getElementById("f-tag")};
const all = (selector, root = document) => Array.from(root.querySelectorAll(selector));

function verdictMatches(verdict, wanted) {
  return !wanted || (wanted === "not-ok" ? verdict !== "ok" : verdict === wanted);
}

function keep(el, fw, v) {
  return (!fw || el.dataset.fw === fw) && (!("v" in el.dataset) || verdictMatches(el.dataset.v, v));
}

function apply() {
  const fw = pick.fw.value, v = pick.v.value, tag = pick.tag.value;
  const panels = all("section.case");
  let shown = 0;
  for (const panel of panels) {
    let rows = 0;
    for (const el of all("[data-fw]", panel)) {
      const on = keep(el, fw, v);
      el.toggleAttribute("hidden", !on);
      if (on && el.tagName === "TR") rows++;
    }
    const failed = "error" in panel.dataset && verdictMatches("error", v);
    const show = (!tag || JSON.parse(panel.dataset.tags).includes(tag)) && (rows > 0 || failed);
    panel.toggleAttribute("hidden", !show);
    for (const line of all('tr[data-case="' + panel.id + '"]')) line.toggleAttribute("hidden", !show);
    if (show) shown++;
  }
  document.getElementById("shown").textContent = "showing " + shown + " of " + panels.length + " cases";
}

function tipLines(data, canvas, p) {
  const fw = pick.fw.value;
  const series = data.series.filter(s => !fw || s.fw === fw);
  const say = (s, i) => s.label + ": " + (s.bits[i] === null ? "not measurable" : s.bits[i].toFixed(2) + " bits")
    + " \\u00b7 " + s.verdicts[i];
  if (data.kind === "line") {
    let best = -1;
    data.xs.forEach((x, i) => {
      if (x !== null && (best < 0 || Math.abs(x - p.x) < Math.abs(data.xs[best] - p.x))) best = i;
    });
    if (best < 0) return null;
    const guide = canvas.querySelector(".guide");
    guide.setAttribute("x1", data.xs[best]); guide.setAttribute("x2", data.xs[best]);
    guide.setAttribute("visibility", "visible");
    return [data.input + " = " + data.at[best], ...series.map(s => say(s, best))];
  }
  const [left, top, cw, ch, n0, n1] = data.box;
  const i0 = Math.floor((p.x - left) / cw), i1 = n1 - 1 - Math.floor((p.y - top) / ch);
  if (i0 < 0 || i1 < 0 || i0 >= n0 || i1 >= n1) return null;
  const i = i0 * n1 + i1;
  return [data.inputs[0] + " = " + data.at[0][i0] + ", " + data.inputs[1] + " = " + data.at[1][i1],
          ...series.map(s => say(s, i))];
}

function hover(event) {
  const canvas = event.currentTarget, svg = canvas.querySelector("svg"), tip = canvas.querySelector(".tip");
  const p = new DOMPoint(event.clientX, event.clientY).matrixTransform(svg.getScreenCTM().inverse());
  const lines = tipLines(plots[Number(canvas.dataset.plot)], canvas, p);
  tip.toggleAttribute("hidden", !lines);
  if (!lines) return;
  tip.replaceChildren(...lines.map(text => {
    const div = document.createElement("div");
    div.textContent = text;
    return div;
  }));
  const box = canvas.getBoundingClientRect();
  const x = event.clientX - box.left, y = event.clientY - box.top;
  tip.style.left = (x + 14 + tip.offsetWidth > box.width ? x - 14 - tip.offsetWidth : x + 14) + "px";
  tip.style.top = Math.max(0, y - tip.offsetHeight - 10) + "px";
}

function leave(event) {
  const canvas = event.currentTarget;
  canvas.querySelector(".tip").toggleAttribute("hidden", true);
  const guide = canvas.querySelector(".guide");
  if (guide) guide.setAttribute("visibility", "hidden");
}

for (const canvas of all(".canvas")) {
  canvas.addEventListener("mousemove", hover);
  canvas.addEventListener("mouseleave", leave);
}
for (const select of Object.values(pick)) select.addEventListener("change", apply);
document.getElementById("f-reset").addEventListener("click", () => {
  for (const select of Object.values(pick)) select.value = "";
  apply();
});
document.addEventListener("click", event => {
  const button = event.target.closest("[data-set]");
  if (!button) return;
  const wanted = JSON.parse(button.dataset.set);
  for (const key of Object.keys(pick)) pick[key].value = wanted[key] || "";
  apply();
  document.getElementById("filters").scrollIntoView();
});
apply();

function reveal() {
  // report.html#case-id: the panel is shown (filters that hide it are reset) and scrolled to
  const id = decodeURIComponent(location.hash.slice(1));
  const panel = id && document.getElementById(id);
  if (!panel || !panel.matches("section.case")) return;
  if (panel.hidden) {
    for (const select of Object.values(pick)) select.value = "";
    apply();
  }
  panel.scrollIntoView();
}
window.addEventListener("hashchange", reveal);
reveal();
"""
