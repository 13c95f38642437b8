"""Sweep plots as hand-built inline SVG: error bits against the swept inputs, no plotting library.

A 1-axis sweep gives small multiples: one small line plot per framework x impl x output, all on the same
axes (the same x scale and the same error-bits ceiling, so plots compare at a glance; nine series in one
plot were unreadable), points classed by verdict and each run of points with one verdict other than ok
shaded, its verdict written in place; a 2-axis grid gives one heatmap of error bits per framework x impl x
output. Points carry
`v-<verdict>` classes so that the page's one colour table styles them, and each figure returns the
data its hover tooltip reads (JSON in the page), so the SVG has no per-point text.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from html import escape

from oracle.regions import label_text
from oracle.report import STYLE

MARKERS = {"tf": "square", "torch": "triangle", "jax": "circle"}  # a framework's marker; others get a diamond
RAMP = ((0.0, (255, 255, 204)), (0.25, (254, 217, 118)), (0.5, (253, 141, 60)), (0.75, (227, 26, 28)),
        (1.0, (128, 0, 38)))  # error bits from 0 to the top of the scale (ColorBrewer YlOrRd)
DEFAULT_TOLERANCE = 5.0  # bits: the case format's default tolerance_bits
LINE = {"width": 330, "height": 210, "left": 44, "right": 10, "top": 10, "bottom": 40}  # one small multiple
GRID = {"width": 300, "height": 258, "left": 64, "right": 10, "top": 10, "bottom": 46}


@dataclass(frozen=True)
class Figure:
    """One plot of one series: a caption, its SVG, its hover data, and its framework (for the page's filter)."""

    caption: str
    svg: str
    data: dict
    framework: str


def verdict_class(verdict: object) -> str:
    """The CSS class of a verdict; the document is untrusted, so unknown verdicts share one class."""
    return f"v-{verdict}" if verdict in STYLE else "v-other"


def figures(sweep: dict, tolerance: float | None) -> list[Figure]:
    """The plots of a result's `sweep` block: lines for one axis, heatmaps for a grid, nothing beyond.
    `tolerance` is the case's tolerance in bits, None where the document does not say (the default, 5, is drawn)."""
    axes = sweep.get("axes", [])
    if len(axes) == 1:
        ceiling = _top_bits(sweep["series"])  # shared by every small multiple of the sweep
        outputs = list(dict.fromkeys(s["output"] for s in sweep["series"]))
        by_output = sorted(sweep["series"], key=lambda s: outputs.index(s["output"]))  # stable: series order within
        return [_line_figure(sweep, s, tolerance, ceiling) for s in by_output]
    if len(axes) == 2:
        top = _top_bits(sweep["series"])
        return [_grid_figure(sweep, s, top) for s in sweep["series"]]
    return []


def ramp_colour(fraction: float) -> str:
    """The heatmap colour of error bits at `fraction` of the scale's top."""
    fraction = min(max(fraction, 0.0), 1.0)
    for (lo, a), (hi, b) in zip(RAMP, RAMP[1:]):
        if fraction <= hi:
            t = (fraction - lo) / (hi - lo)
            return "#" + "".join(f"{round(x + (y - x) * t):02x}" for x, y in zip(a, b))
    raise AssertionError("unreachable: the ramp ends at 1")


def series_label(s: dict) -> str:
    return f"{s['framework']} · {s['impl']}"


def _marker(framework: str, x: float, y: float, cls: str, size: float = 3.2) -> str:
    """A point's marker: its shape says the framework, its class the verdict."""
    shape = MARKERS.get(framework, "diamond")
    if shape == "circle":
        return f'<circle class="{cls}" cx="{x:.1f}" cy="{y:.1f}" r="{size:.1f}"/>'
    if shape == "square":
        return f'<rect class="{cls}" x="{x - size:.1f}" y="{y - size:.1f}" width="{2 * size:.1f}" height="{2 * size:.1f}"/>'
    if shape == "triangle":
        return f'<path class="{cls}" d="M{x:.1f},{y - 1.2 * size:.1f}l{size:.1f},{2 * size:.1f}h{-2 * size:.1f}z"/>'
    return f'<path class="{cls}" d="M{x:.1f},{y - size:.1f}l{size:.1f},{size:.1f}l{-size:.1f},{size:.1f}l{-size:.1f},{-size:.1f}z"/>'


@dataclass(frozen=True)
class Scale:
    """A data axis: data value -> pixel, and its labelled ticks."""

    to_px: Callable[[float], float]
    ticks: list[tuple[float, str]]


def value_scale(kind: str, values: list[float], lo_px: float, hi_px: float) -> Scale:
    """Linear, log or symlog (linear within the smallest nonzero |value|, log beyond: float32 edges span
    +-3.4e38 through 0 and subnormals). A log scale with values <= 0 falls back to symlog."""
    if kind == "log" and min(values) > 0:
        transform, ticks, label = math.log10, _log_ticks(values), _power_label
    elif kind in ("log", "symlog"):
        near = min((abs(v) for v in values if v), default=1.0)
        transform, ticks, label = _symlog(near), _symlog_ticks(values, near), _power_label
    else:
        transform, ticks, label = float, _nice_ticks(min(values), max(values)), _plain_label
    lo, hi = transform(min(values)), transform(max(values))
    span = hi - lo or 1.0

    def to_px(v: float) -> float:
        return (lo_px + hi_px) / 2 if hi == lo else lo_px + (transform(v) - lo) / span * (hi_px - lo_px)

    return Scale(to_px, _spaced([(to_px(t), label(t)) for t in ticks if min(values) <= t <= max(values)]))


def _spaced(ticks: list[tuple[float, str]], gap: float = 46) -> list[tuple[float, str]]:
    """Ticks whose labels do not collide: 0 (or the first) first, then each tick at least `gap` px from those kept."""
    ordered = sorted(ticks, key=lambda t: t[1] != "0")
    kept: list[tuple[float, str]] = []
    for x, label in ordered:
        if all(abs(x - other) >= gap for other, _ in kept):
            kept.append((x, label))
    return sorted(kept)


def _symlog(near: float) -> Callable[[float], float]:
    def transform(v: float) -> float:
        return math.copysign(math.log10(abs(v) / near) + 1, v) if abs(v) >= near else v / near
    return transform


def _log_ticks(values: list[float]) -> list[float]:
    return [10.0 ** k for k in _stepped(math.ceil(math.log10(min(values))), math.floor(math.log10(max(values))), 8)]


def _symlog_ticks(values: list[float], near: float) -> list[float]:
    """0 and powers of ten on each side, a few per side."""
    big = max(abs(v) for v in values)
    powers = _stepped(math.ceil(math.log10(near)), math.floor(math.log10(big)), 6) if big >= near else []
    return [0.0] + [sign * 10.0 ** k for k in powers for sign in (-1, 1)]


def _stepped(lo: int, hi: int, most: int) -> list[int]:
    """Integers from lo to hi at a round step (1, 2, 5, 10, 20, ...), at most about `most` of them."""
    wanted = (hi - lo + 1) / most
    step = next(m * 10 ** k for k in range(4) for m in (1, 2, 5) if m * 10 ** k >= wanted)
    return list(range(math.ceil(lo / step) * step, hi + 1, step))


def _nice_ticks(lo: float, hi: float, most: int = 7) -> list[float]:
    """Ticks at 1, 2, 2.5 or 5 times a power of ten."""
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / (most - 1)
    magnitude = 10.0 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(lo / step) * step
    return [round(first + k * step, 12) for k in range(int((hi - first) / step + 1e-9) + 1)]


def _power_label(v: float) -> str:
    if v == 0:
        return "0"
    exponent = round(math.log10(abs(v)))
    return ("-" if v < 0 else "") + ("1" if exponent == 0 else f"1e{exponent}")


def _plain_label(v: float) -> str:
    return f"{v:.6g}"


def _top_bits(series: list[dict]) -> float:
    """The y axis's (or colour scale's) top: the largest error bits, at least 8, rounded up to a multiple of 4."""
    bits = [b for s in series for b in s["error_bits"] if _finite(b)]
    return 4.0 * math.ceil(max([8.0, *bits]) / 4)


def _finite(v: object) -> bool:
    return isinstance(v, int | float) and math.isfinite(v)


def _bits_step(top: float) -> int:
    """The y axis's tick step: about 8 ticks up to 80 bits (float64's maximum is 64)."""
    for step, limit in ((1, 8), (2, 16), (4, 40), (8, 80)):
        if top <= limit:
            return step
    return 16


def _text(x: float, y: float, text: str, cls: str = "", anchor: str = "middle", rotate: bool = False) -> str:
    turn = f' transform="rotate(-90 {x:.1f} {y:.1f})"' if rotate else ""
    return (f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{turn}'
            + (f' class="{cls}"' if cls else "") + f">{escape(text)}</text>")


def _axis_title(axis: dict) -> str:
    scale = axis.get("scale", "linear")
    return f"{axis['input']} ({axis.get('spec', 'sweep')}, {scale} scale)"


def _at_labels(values: list[float]) -> list[str]:
    return [f"{v:.6g}" for v in values]


def _line_figure(sweep: dict, s: dict, tolerance: float | None, ceiling: float) -> Figure:
    """Error bits of one series (framework x impl x output) against the swept input, on the sweep's shared axes."""
    (axis,) = sweep["axes"]
    box = LINE
    left, right = box["left"], box["width"] - box["right"]
    top, bottom = box["top"], box["height"] - box["bottom"]
    values = [float(v) for v in axis["values"]]
    xs = value_scale(axis.get("scale", "linear"), [v for v in values if math.isfinite(v)], left + 6, right - 6)

    def y(bits: float) -> float:
        return bottom - bits / ceiling * (bottom - top)

    px = [xs.to_px(v) if math.isfinite(v) else None for v in values]
    exact = [r for r in sweep.get("regions", []) if all(r.get(k) == s.get(k) for k in SERIES_KEYS)]
    shade = _exact_regions(exact, xs, (left, right, top, bottom)) if exact else _regions(s, px, (left, right, top, bottom))
    parts = [shade, _frame(left, right, top, bottom),
             *_x_ticks(xs, top, bottom), *_y_ticks(ceiling, y, left, right)]
    parts.append(_text((left + right) / 2, box["height"] - 5, _axis_title(axis), "label"))
    parts.append(_text(11, (top + bottom) / 2, "error bits", "label", rotate=True))
    tolerance_line, tolerance_label = _tolerance_line(tolerance, y, left, right)
    parts += [tolerance_line, _series(s, px, y, bottom), tolerance_label]
    parts.append(f'<line class="guide" x1="0" x2="0" y1="{top}" y2="{bottom}" visibility="hidden"/>')
    data = {"kind": "line", "input": axis["input"], "at": _at_labels(values),
            "xs": [None if p is None else round(p, 1) for p in px], "series": [_hover_series(s)]}
    caption = f"{series_label(s)} · {s['output']}"
    return Figure(caption, _svg(box, parts, f"error bits of {caption} against {axis['input']}"), data, s["framework"])


def _regions(s: dict, px: list[float | None], box: tuple[float, float, float, float]) -> str:
    """Each run of consecutive points with one verdict other than ok, shaded in the verdict's colour from
    half-way to its neighbours, its verdict written in place (inside its widest shade, or beside it when
    narrow): a threshold is where a shade starts or ends."""
    left, right, top, bottom = box
    runs: list[list] = []  # [verdict, first point, last point]
    for i, verdict in enumerate(s["verdicts"]):
        if px[i] is None:
            continue
        if runs and runs[-1][0] == verdict and runs[-1][2] == i - 1:
            runs[-1][2] = i
        else:
            runs.append([verdict, i, i])

    def edge(i: int, j: int) -> float:  # half-way from point i to point j, or the frame beyond the last point
        if 0 <= j < len(px) and px[j] is not None:
            return (px[i] + px[j]) / 2
        return left if j < i else right

    shaded = [(verdict, a, b, edge(a, a - 1), edge(b, b + 1)) for verdict, a, b in runs if verdict != "ok"]
    widest = {}  # a verdict is named once, at its widest run: thin runs of one verdict would repeat it
    for k, (verdict, _, _, x0, x1) in enumerate(shaded):
        if verdict not in widest or x1 - x0 > shaded[widest[verdict]][4] - shaded[widest[verdict]][3]:
            widest[verdict] = k
    out = []
    for k, (verdict, a, b, x0, x1) in enumerate(shaded):
        row = list(widest.values()).index(k) if k in widest.values() else 0
        label, room = str(verdict), 6.2 * len(str(verdict)) + 6
        # inside the shade where it fits, else just beside it (right, or left near the frame's right edge)
        x, anchor = ((x0 + 3, "start") if x1 - x0 >= room else (x1 + 3, "start") if x1 + room <= right
                     else (x0 - 3, "end"))
        y = top + (bottom - top) * (0.42 + 0.14 * (row % 3))  # mid-height: points sit at the top or the bottom
        out.append(f'<g class="region {verdict_class(verdict)}"><title>{escape(label)}: points {a + 1} to {b + 1}'
                   f'</title><rect x="{x0:.1f}" y="{top}" width="{max(x1 - x0, 1):.1f}" height="{bottom - top}"/>'
                   + (_text(x, y, label, anchor=anchor) if k in widest.values() else "") + "</g>")
    return "".join(out)


SERIES_KEYS = ("framework", "impl", "dtype", "output")


def _exact_regions(regions: list[dict], xs: Scale, box: tuple[float, float, float, float]) -> str:
    """A refined sweep's or a hunt's regions (`oracle.boundaries`) other than ok, each shaded from its first to its
    last value of the dtype (not half-way between grid points), its verdict written in the widest shade of each
    kind and its exact text in the tooltip: one `region exact` group per region."""
    left, right, top, bottom = box
    shaded = []
    for r in regions:
        verdict = str(r.get("verdict"))
        try:
            lo, hi = float(r["from"]), float(r["to"])
        except (KeyError, TypeError, ValueError):
            continue
        if verdict == "ok" or not (math.isfinite(lo) and math.isfinite(hi)):
            continue
        x0, x1 = sorted((min(max(xs.to_px(lo), left), right), min(max(xs.to_px(hi), left), right)))
        inherent = r.get("inherent") if r.get("inherent") in (True, False) else None  # the document is untrusted
        shaded.append((verdict, label_text(verdict, inherent), x0, x1, str(r.get("text", ""))))
    widest: dict[str, int] = {}
    for k, (_, label, x0, x1, _) in enumerate(shaded):
        if label not in widest or x1 - x0 > shaded[widest[label]][3] - shaded[widest[label]][2]:
            widest[label] = k
    out = []
    for k, (verdict, label, x0, x1, text) in enumerate(shaded):
        row = list(widest.values()).index(k) if k in widest.values() else 0
        room = 6.2 * len(label) + 6
        x, anchor = ((x0 + 3, "start") if x1 - x0 >= room else (x1 + 3, "start") if x1 + room <= right
                     else (x0 - 3, "end"))
        y = top + (bottom - top) * (0.42 + 0.14 * (row % 3))
        out.append(f'<g class="region exact {verdict_class(verdict)}"><title>{escape(text)}</title>'
                   f'<rect x="{x0:.1f}" y="{top}" width="{max(x1 - x0, 1):.1f}" height="{bottom - top}"/>'
                   + (_text(x, y, label, anchor=anchor) if k in widest.values() else "") + "</g>")
    return "".join(out)


def _svg(box: dict, parts: list[str], label: str) -> str:
    return (f'<svg class="plot" viewBox="0 0 {box["width"]} {box["height"]}" width="{box["width"]}" '
            f'height="{box["height"]}" role="img" aria-label="{escape(label)}">' + "".join(parts) + "</svg>")


def _frame(left: float, right: float, top: float, bottom: float) -> str:
    return f'<rect class="frame" x="{left}" y="{top}" width="{right - left}" height="{bottom - top}"/>'


def _x_ticks(xs: Scale, top: float, bottom: float) -> list[str]:
    return [f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{bottom}"/>' + _text(x, bottom + 15, label)
            for x, label in xs.ticks]


def _y_ticks(ceiling: float, y: Callable[[float], float], left: float, right: float) -> list[str]:
    step = _bits_step(ceiling)
    return [f'<line class="grid" x1="{left}" x2="{right}" y1="{y(b):.1f}" y2="{y(b):.1f}"/>'
            + _text(left - 6, y(b) + 4, str(b), anchor="end") for b in range(0, int(ceiling) + 1, step)]


def _tolerance_line(tolerance: float | None, y: Callable[[float], float], left: float, right: float) -> tuple[str, str]:
    """Where error bits stop being within tolerance: the line, and its label (drawn above the points)."""
    bits = DEFAULT_TOLERANCE if tolerance is None else tolerance
    said = f"{bits:g} bits: the default tolerance" if tolerance is None else f"tolerance {bits:g} bits"
    return (f'<line class="tol" x1="{left}" x2="{right}" y1="{y(bits):.1f}" y2="{y(bits):.1f}"/>',
            _text(right - 4, y(bits) - 4, said, "tol", anchor="end"))


def _series(s: dict, px: list[float | None], y: Callable[[float], float], bottom: float) -> str:
    """A series' trace (broken where bits are unmeasured) and its points; unmeasured points are grey crosses."""
    path, pen_down, points = [], False, []
    for x, bits, verdict in zip(px, s["error_bits"], s["verdicts"]):
        if x is None or not _finite(bits):
            pen_down = False
            if x is not None:
                points.append(f'<path class="na" d="M{x - 2.5:.1f},{bottom - 7.5:.1f}l5,5m0,-5l-5,5"/>')
            continue
        path.append(f"{'L' if pen_down else 'M'}{x:.1f},{y(bits):.1f}")
        pen_down = True
        points.append(_marker(s["framework"], x, y(bits), verdict_class(verdict)))
    trace = f'<path class="trace" d="{"".join(path)}"/>'
    return f'<g class="series" data-fw="{escape(str(s["framework"]))}">{trace}{"".join(points)}</g>'


def _hover_series(s: dict) -> dict:
    return {"label": series_label(s), "fw": s["framework"],
            "bits": [b if _finite(b) else None for b in s["error_bits"]], "verdicts": [str(v) for v in s["verdicts"]]}


def _grid_figure(sweep: dict, s: dict, ceiling: float) -> Figure:
    """A heatmap of one series' error bits over a 2-axis grid (point i is unravel_index(i, lengths))."""
    first, second = sweep["axes"]
    n0, n1 = len(first["values"]), len(second["values"])
    box = GRID
    left, right = box["left"], box["width"] - box["right"]
    top, bottom = box["top"], box["height"] - box["bottom"]
    cw, ch = (right - left) / max(n0, 1), (bottom - top) / max(n1, 1)
    cells = _cells(s["error_bits"], n0, n1, ceiling, (left, top, cw, ch))
    parts = [f'<g shape-rendering="crispEdges">{"".join(cells)}</g>', _frame(left, right, top, bottom)]
    parts += [_text(left + (i + 0.5) * cw, bottom + 14, label) for i, label in _index_ticks(first["values"], cw, 40)]
    parts += [_text(left - 5, top + (n1 - i - 0.5) * ch + 4, label, anchor="end")
              for i, label in _index_ticks(second["values"], ch, 15)]
    parts.append(_text((left + right) / 2, box["height"] - 8, _axis_title(first), "label"))
    parts.append(_text(12, (top + bottom) / 2, _axis_title(second), "label", rotate=True))
    data = {"kind": "grid", "inputs": [first["input"], second["input"]], "box": [left, top, cw, ch, n0, n1],
            "at": [_at_labels(first["values"]), _at_labels(second["values"])], "series": [_hover_series(s)]}
    caption = f"{series_label(s)} · {s['output']}"
    return Figure(caption, _svg(box, parts, f"error bits of {caption} over {first['input']} and {second['input']}"),
                  data, s["framework"])


def _cells(bits: list, n0: int, n1: int, ceiling: float, box: tuple[float, float, float, float]) -> list[str]:
    """The heatmap's rects, point i at cell unravel_index(i, (n0, n1)), y upwards; one rect per vertical run of
    cells of the same colour (the same picture in fewer bytes)."""
    left, top, cw, ch = box
    fills = [f' fill="{ramp_colour(b / ceiling)}"' if _finite(b) else ' class="na"' for b in bits[: n0 * n1]]
    out = []
    for i0 in range(n0):
        i1 = 0
        for fill, run in itertools.groupby(fills[i0 * n1:(i0 + 1) * n1]):
            k = len(list(run))
            out.append(f'<rect x="{left + i0 * cw:.1f}" y="{top + (n1 - i1 - k) * ch:.1f}" width="{cw + 0.1:.1f}" '
                       f'height="{k * ch + 0.1:.1f}"{fill}/>')
            i1 += k
    return out


def _index_ticks(values: list[float], cell: float, room: float) -> list[tuple[int, str]]:
    """Every k-th cell of an axis, labelled with its value, k such that labels get `room` px each."""
    step = max(1, math.ceil(room / cell))
    return [(i, f"{float(values[i]):.3g}") for i in range(0, len(values), step)]


def ramp_legend(ceiling: float) -> str:
    """The heatmaps' colour scale, 0 to `ceiling` bits, as a small SVG (steps, not a gradient: no ids to clash)."""
    steps = 48
    cells = "".join(f'<rect x="{10 + 5 * k}" y="2" width="5.2" height="12" fill="{ramp_colour(k / (steps - 1))}"/>'
                    for k in range(steps))
    return ('<svg class="ramp" viewBox="0 0 260 34" width="260" height="34" role="img" aria-label="error bits scale">'
            + cells + _text(10, 28, "0 bits", anchor="start") + _text(250, 28, f"{ceiling:g} bits", anchor="end")
            + "</svg>")


def grid_ceiling(sweep: dict) -> float:
    return _top_bits(sweep["series"])
