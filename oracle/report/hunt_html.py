"""`oracle hunt --html`: the hunt as one self-contained page, with the report's own sweep plots.

Per hunt: what ran, the regions other than ok, the findings, and per dtype the certified summary samples'
error bits against the searched input (one plot per output and framework x impl, each region other than
ok shaded between its exact ends), drawn by `html.sweep_section` like a sweep. Static: the report's script
needs its filters and hover data, which this page does not have. Everything from the document is escaped.
"""

from __future__ import annotations

from html import escape

from oracle.report.html import _css, sweep_section


def render(doc: dict) -> str:
    sections, plots = [], 0
    for hunt in doc.get("hunts", []):
        parts = [f"<h2>{escape(str(hunt.get('id')))} <small>{escape(str(hunt.get('file')))}</small></h2>",
                 f"<p>{escape(str(hunt.get('samples')))} candidates screened, {escape(str(hunt.get('certified')))} "
                 f"points certified, {escape(str(hunt.get('wall_s')))} s (stopped by "
                 f"{escape(str(hunt.get('stopped_by')))})</p>"]
        for dtype, block in hunt.get("plot", {}).items():
            html, data = sweep_section(block, None, plots)
            parts.append(f"<h3>{escape(str(dtype))}: certified samples</h3>{html}")
            plots += len(data)
        regions = [r for r in hunt.get("regions", []) if not r.get("verdict") == r.get("verdict_at_to") == "ok"]
        parts.append("<h3>regions</h3><ul>" + "".join(f"<li>{escape(str(r.get('text')))}</li>" for r in regions)
                     + "</ul><h3>findings</h3><ul>" + "".join(
                         f"<li>{escape(' '.join(str(f.get(k)) for k in ('framework', 'impl', 'dtype', 'output')))}: "
                         f"{escape(str(f.get('verdict')))}, {escape(str(f.get('error_bits')))} bits at "
                         f"{escape(', '.join(f'{n} = {v}' for n, v in f.get('inputs', {}).items()))}: "
                         f"<code>{escape(str(f.get('case_file')))}</code></li>" for f in hunt.get("findings", []))
                     + "</ul>")
        sections.append(f'<section class="case">{"".join(parts)}</section>')
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>oracle hunt: {len(sections)} cases</title><style>{_css()}</style></head><body><main>"
            f"{''.join(sections)}</main></body></html>\n")
