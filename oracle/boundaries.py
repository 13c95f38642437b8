"""Exact boundaries: where a certified verdict changes between two values of an input, down to two adjacent values
of the dtype; shared by `oracle hunt` (changes between screened samples) and sweeps (changes between grid points).

Values are ordinals (`oracle.floats.to_ordinals`: the dtype's values in order, as integers), so "adjacent" means
no value of the dtype lies between. A change is narrowed by certifying SPLIT evenly spaced ordinals between the
two that disagree with the runner itself (`run_case`: the certified reference and the classifier of `oracle
run`), all the changes of a step in one batched run, until every change lies between adjacent ordinals or the
time runs out (what is left is reported as bracketed, never guessed).

A sweep (`refine`) bisects each change between neighbouring grid points along each swept input; in a 2-input grid
along each axis with the other input held at its grid value. Its `regions` (in the sweep block) are the stretches
of one certified verdict (and inherent flag) along each such line, with exact ends where the bisection closed.
"""

from __future__ import annotations

import dataclasses
import time
from fractions import Fraction

import numpy as np

from oracle import budget
from oracle.case import Case
from oracle.floats import Format, fmt, ordinals_to_values, to_ordinals
from oracle.regions import KINDED, label_text

SPLIT = 15  # values certified between two that disagree: 4 bits of the gap per runner call
SWEEP_SPLIT = 3  # a step costs about as much per point as the grid did: 2 bits per step, few points...
WIDE_GAP, WIDE_SPLIT = 2**24, SPLIT  # ...but a gap of more than 12 such steps (float64, logspace decades) takes 4 bits


def sweep_split(gap: int) -> int:
    return SWEEP_SPLIT if gap <= WIDE_GAP else WIDE_SPLIT


MAX_CHANGES = 3  # verdict changes bisected inside one span (more: a flickering error, left as it is)
REFINE_PART = "exact thresholds"
REFINE_SHARE = 0.5  # of the time the case has left after its grid ran
REFINE_MAX_S = 60.0  # at most, also without a case deadline (the audit runs every sweep: two cases used 120 s)
STEP_POINTS = 48  # points one bisection step certifies, when several lines have changes left (a 2-input grid)
Key = tuple[str, str, str, str]  # framework, impl, dtype, output


def certify(case: Case, points: dict[str, np.ndarray], f: Format, frameworks: list[str],
            max_precision: int) -> dict[Key, list[tuple[str, float | None, bool | None]]]:
    """The runner's verdict, error bits and inherent flag per point and key: `points` gives every swept input of
    `case` its ordinals (equal lengths, taken together point by point); the other inputs are the case's own.
    One `run_case` over all the points (no refinement inside it)."""
    from oracle.runner import run_case

    inputs, sweeps = dict(case.inputs), {}
    for name, ordinals in points.items():
        inputs[name] = _exact(ordinals_to_values(np.asarray(ordinals, dtype=np.int64), f))
        sweeps[name] = dataclasses.replace(case.sweeps[name], values=inputs[name])
    point_case = dataclasses.replace(case, inputs=inputs, expect=None, regions=None, sweeps=sweeps, zipped=True)
    result = run_case(point_case, frameworks=frameworks, dtypes=[f.name], max_precision=max_precision, refine=False)
    return {(s["framework"], s["impl"], s["dtype"], s["output"]):
            list(zip(s["verdicts"], s["error_bits"], s.get("inherent") or [None] * len(s["verdicts"])))
            for s in result["sweep"]["series"]}


def wanted(spans: dict, known: dict, label, split=SPLIT, max_changes: int = MAX_CHANGES,
           flicker: dict | None = None) -> dict:
    """Per group (a key, or a key on one line of a grid): the ordinals to certify next. `spans[group]` are
    (lo, hi) ordinal intervals, `known[group]` the ordinals certified so far, `label(group, ordinal)` the certified
    verdict there; the first `max_changes` changes between neighbouring known ordinals inside each span that are
    not yet adjacent get `split` evenly spaced ordinals in between (`split` may be a function of the gap). With `flicker` (a dict to fill), a span with
    more changes than that is not bisected further but recorded there: an error hovering around the tolerance
    changes verdict at every other value, and bisecting each change would cost without end."""
    out: dict = {}
    for group, group_spans in spans.items():
        for lo, hi in group_spans:
            inside = sorted(o for o in known[group] if lo <= o <= hi)
            changes = [(a, b) for a, b in zip(inside, inside[1:]) if label(group, a) != label(group, b)]
            if flicker is not None and len(changes) > max_changes:  # an error hovering around the tolerance
                flicker.setdefault(group, set()).add((lo, hi))
                continue
            for a, b in changes[:max_changes]:
                if b - a > 1:
                    n = split(b - a) if callable(split) else split
                    out.setdefault(group, set()).update(between(int(a), int(b), n))
    return out


def between(a: int, b: int, n: int) -> set[int]:
    """Up to `n` evenly spaced integers strictly between a and b, in exact integer arithmetic (float64 ordinals
    are near 2^62, where a float linspace would round them back onto a and b)."""
    return {a + (b - a) * k // (n + 1) for k in range(1, n + 1)} - {a, b}


def stretches(ordinals: list[int], labels: list) -> list[tuple[int, int, object, bool, bool]]:
    """Runs of one label along sorted `ordinals`: (first, last, label, exact_from, exact_to); an end is exact where
    the neighbouring run starts at the adjacent ordinal, or where it is the end of the line."""
    out, start = [], 0
    for i in range(1, len(ordinals) + 1):
        if i == len(ordinals) or labels[i] != labels[start]:
            out.append([ordinals[start], ordinals[i - 1], labels[start], start == 0, i == len(ordinals)])
            if i < len(ordinals) and ordinals[i] - ordinals[i - 1] == 1:
                out[-1][4] = True
            if len(out) > 1 and out[-1][0] - out[-2][1] == 1:
                out[-1][3] = True
            start = i
    return [tuple(s) for s in out]


def _exact(values: np.ndarray) -> np.ndarray:
    out = np.empty(np.shape(values), dtype=object)
    for index, v in np.ndenumerate(np.asarray(values)):
        out[index] = Fraction(float(v))
    return out


def text_of(ordinal: int, f: Format) -> str:
    """The dtype's shortest round-trip text of the value at `ordinal`."""
    return str(ordinals_to_values(np.array(ordinal, dtype=np.int64), f)[()])


# sweeps


def refine(case: Case, block: dict, rounded: dict[str, dict[str, np.ndarray]], frameworks: list[str],
           max_precision: int) -> None:
    """Give a sweep block (`oracle.sweep.block`) exact boundaries: `regions` along each swept input, and each
    threshold its refined `regions`, `exact` and text. Bounded by REFINE_SHARE of the case's time left (at most
    REFINE_MAX_S); a bisection the time cuts short leaves its change bracketed and says so (`refined`)."""
    seconds = min(REFINE_MAX_S, max(REFINE_SHARE * budget.remaining(), 0.0))
    lines = {dtype: _lines(case, block, rounded[dtype], fmt(dtype)) for dtype in rounded}
    stopped = None
    started = time.monotonic()
    try:
        with budget.limit(REFINE_PART, seconds=seconds):
            for k, (dtype, state) in enumerate(lines.items()):  # each dtype an equal share of what is left
                until = time.monotonic() + (started + seconds - time.monotonic()) / (len(lines) - k)
                stopped = _bisect_lines(case, state, fmt(dtype), frameworks, max_precision, until) or stopped
    except budget.OutOfBudget as e:
        if e.part != REFINE_PART:
            raise
        stopped = "the time for exact thresholds ran out"
    block["regions"] = [r for dtype, state in lines.items() for r in _regions(state, fmt(dtype))]
    hovering = sum(len(spans) for state in lines.values() for line in state for spans in line.flicker.values())
    why = [f"the bisection stopped ({stopped})"] * (stopped is not None) + [
        f"{hovering} grid interval{'s' * (hovering > 1)} where the verdict flickers (an error around the "
        "tolerance) left bracketed"] * (hovering > 0)
    block["refined"] = "exact" if not why else "partly bracketed: " + "; ".join(why)
    _describe(case, block)


@dataclasses.dataclass
class _Line:
    """One line of a sweep along `name`, the other swept inputs held at `held` (ordinals); `labels[key][o]` the
    certified (verdict, inherent) at ordinal o along it."""

    name: str
    held: dict[str, int]
    grid: list[int]
    labels: dict[Key, dict[int, tuple]]
    flicker: dict[Key, set[tuple[int, int]]] = dataclasses.field(default_factory=dict)  # spans left bracketed


def _lines(case: Case, block: dict, rounded: dict[str, np.ndarray], f: Format) -> list[_Line]:
    """The grid's lines along each swept input, with the grid points' certified labels (from the series)."""
    names = list(case.sweeps)
    lengths = [len(case.sweeps[n].values) for n in names]
    ordinals = {n: to_ordinals(np.asarray(rounded[n], dtype=f.numpy), f).reshape(lengths) for n in names}
    series = [s for s in block["series"] if s["dtype"] == f.name]
    out = []
    for axis, name in enumerate(names):
        others = [k for k in range(len(names)) if k != axis]
        for held_index in np.ndindex(*[lengths[k] for k in others]):
            index = [slice(None)] * len(names)
            for k, j in zip(others, held_index):
                index[k] = j
            flat = np.arange(int(np.prod(lengths))).reshape(lengths)[tuple(index)]
            grid = ordinals[name][tuple(index)].tolist()
            line = _Line(name, {names[k]: int(ordinals[names[k]][tuple(index)][0]) for k in others}, grid, {})
            for s in series:
                inherent = s.get("inherent") or [None] * len(s["verdicts"])
                line.labels[_key(s)] = {o: (s["verdicts"][p], inherent[p]) for o, p in zip(grid, flat.tolist())}
            out.append(line)
    return out


def _key(s: dict) -> Key:
    return s["framework"], s["impl"], s["dtype"], s["output"]


def _bisect_lines(case: Case, lines: list[_Line], f: Format, frameworks: list[str], max_precision: int,
                  until: float) -> str | None:
    """Bisect every label change between neighbouring grid points on every line, all lines in one runner call per
    step; None when every change closed, else why not. A step starts only when the last one would still fit."""
    spans = {(k, i): [tuple(sorted(p)) for p in zip(line.grid, line.grid[1:])]
             for i, line in enumerate(lines) for k in line.labels}
    last = 0.0
    while True:
        flicker: dict = {}
        todo = wanted(spans, {(k, i): set(lines[i].labels[k]) for k, i in spans},
                      lambda group, o: lines[group[1]].labels[group[0]][o], split=sweep_split, flicker=flicker)
        for (key, i), flickering in flicker.items():
            lines[i].flicker.setdefault(key, set()).update(flickering)
        per_line: dict[int, set[int]] = {}
        for (_, i), points in todo.items():
            per_line.setdefault(i, set()).update(points)
        if not per_line:
            return None
        if time.monotonic() + last > until:
            return "the time for exact thresholds ran out"
        step = time.monotonic()
        order = [(i, o) for i in _first_lines(per_line) for o in sorted(per_line[i])]
        points = {line_name: np.array([o if lines[i].name == line_name else lines[i].held[line_name]
                                       for i, o in order], dtype=np.int64) for line_name in case.sweeps}
        for key, measured in certify(case, points, f, frameworks, max_precision).items():
            for (i, o), (verdict, _, inherent) in zip(order, measured):
                if key in lines[i].labels:
                    lines[i].labels[key][o] = (verdict, inherent)
        last = time.monotonic() - step


def _first_lines(per_line: dict[int, set[int]]) -> list[int]:
    """The lines one step bisects: the first ones, up to STEP_POINTS points (at least one line). A 2-input grid
    has a line per grid value of the other input; bisecting all of them at once made each step as costly as
    many grid runs, so the time ran out with no threshold closed. Line by line, the first lines close."""
    chosen, total = [], 0
    for i in sorted(per_line):
        if chosen and total + len(per_line[i]) > STEP_POINTS:
            break
        chosen.append(i)
        total += len(per_line[i])
    return chosen


def _regions(lines: list[_Line], f: Format) -> list[dict]:
    """The stretches of one certified label along each line, per key."""
    out = []
    for line in lines:
        for key, labels in line.labels.items():
            spans = line.flicker.get(key, ())  # their inside values are dropped: the change there stays bracketed
            ordinals = sorted(o for o in labels if not any(lo < o < hi for lo, hi in spans))
            for lo, hi, (verdict, inherent), exact_lo, exact_hi in stretches(ordinals, [labels[o] for o in ordinals]):
                fw, impl, dtype, output = key
                region = {"framework": fw, "impl": impl, "dtype": dtype, "output": output, "input": line.name,
                          "verdict": verdict, "inherent": inherent, "from": text_of(lo, f), "to": text_of(hi, f),
                          "exact_from": bool(exact_lo), "exact_to": bool(exact_hi),
                          "at": {n: text_of(o, f) for n, o in line.held.items()}}
                region["text"] = region_text(region)
                out.append(region)
    return out


def region_text(r: dict) -> str:
    held = "".join(f", {n} = {v}" for n, v in r["at"].items())
    exact = "exactly" if r["exact_from"] and r["exact_to"] else "bracketed by the grid"
    return (f"{r['framework']} {r['impl']} {r['dtype']} {r['output']}: {label_text(r['verdict'], r['inherent'])} "
            f"for {r['input']} from {r['from']} to {r['to']}{held} ({exact})")


def _describe(case: Case, block: dict) -> None:
    """Each threshold (a verdict other than ok, per series) gains the refined regions where it holds; in a 1-input
    sweep its text says them: `overflow for x > 88.72283 (exactly: from 88.72284 to 1000.0)`."""
    for t in block["thresholds"]:
        mine = [r for r in block["regions"] if (r["framework"], r["impl"], r["dtype"], r["output"]) ==
                (t["framework"], t["impl"], t["dtype"], t["output"]) and r["verdict"] == t["verdict"]]
        t["regions"] = [{k: r[k] for k in ("input", "from", "to", "exact_from", "exact_to", "inherent", "at")}
                        for r in mine]
        t["exact"] = bool(mine) and all(r["exact_from"] and r["exact_to"] for r in mine)
        if len(case.sweeps) != 1 or not mine:
            continue
        count = t["text"][t["text"].rfind(" ("):]  # "(3 of 21 points)"
        who = t["text"].split(":", 1)[0]
        t["text"] = " ".join(f"{who}: {t['verdict']} {_where(mine, block)}".split()) + count


def _where(mine: list[dict], block: dict) -> str:
    """Where a verdict holds along a 1-input sweep, from its refined regions (the verdict's kind, inherent or
    spurious, first when all its regions share it)."""
    values = block["axes"][0]["values"]
    first, last = min(values), max(values)
    kinds = {r["inherent"] if r["verdict"] in KINDED else None for r in mine}
    shared = "" if len(kinds) > 1 or None in kinds else " (inherent)" if kinds == {True} else " (spurious)"
    r = mine[0]
    pinned = "exactly" if r["exact_from"] and r["exact_to"] else "bracketed by the grid"
    if len(mine) == 1 and float(r["from"]) <= first and float(r["to"]) >= last:
        return f"{shared.strip()} at every point (from {r['from']} to {r['to']})".strip()
    if len(mine) == 1 and float(r["to"]) >= last and r["exact_from"]:
        return f"{shared.strip()} for {r['input']} > {_previous(r, block)} ({pinned}: from {r['from']} to {r['to']})"
    if len(mine) == 1 and float(r["from"]) <= first and r["exact_to"]:
        return f"{shared.strip()} for {r['input']} < {_next(r, block)} ({pinned}: from {r['from']} to {r['to']})"
    parts = [("" if shared or r["inherent"] is None or r["verdict"] not in KINDED else
              "inherent " if r["inherent"] else "spurious ")
             + f"from {r['from']} to {r['to']} ({'exactly' if r['exact_from'] and r['exact_to'] else 'bracketed by the grid'})"
             for r in mine]
    return f"{shared.strip()} for {r['input']} " + ", ".join(parts)


def _previous(r: dict, block: dict) -> str:
    """The value just before a region (the last of the region before it on the same line)."""
    return next((o["to"] for o in block["regions"] if _same_line(o, r) and _adjacent(o["to"], r["from"], r["dtype"])),
                r["from"])


def _next(r: dict, block: dict) -> str:
    return next((o["from"] for o in block["regions"] if _same_line(o, r) and _adjacent(r["to"], o["from"], r["dtype"])),
                r["to"])


def _same_line(a: dict, b: dict) -> bool:
    return all(a[k] == b[k] for k in ("framework", "impl", "dtype", "output", "input", "at"))


def _adjacent(a: str, b: str, dtype: str) -> bool:
    f = fmt(dtype)
    lo, hi = to_ordinals(np.array([float(a), float(b)], dtype=f.numpy), f).tolist()
    return hi - lo == 1
