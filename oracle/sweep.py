"""Sweeps: what a case evaluated at many points says, per framework, impl and output.

The runner evaluates a sweep case once, with a leading axis of points (`Case.batched_inputs`),
and compares every component as usual. This module turns the per-component verdicts
and error bits into the `sweep` block of a result: one series per framework x impl x
dtype x output (the worst component of each point), and the thresholds where a verdict
holds, named by the swept inputs' values ("jax formula value: overflow for z <= -89").
"""

from __future__ import annotations

import numpy as np

from oracle.case import Case
from oracle.frameworks import Evaluation
from oracle.verdicts import SEVERITY

UNMEASURED = ("error", "domain", "uncertain")  # no error bits: the framework raised, or no certified reference
RANK = {v: k for k, v in enumerate(SEVERITY)}


def series(evaluation: Evaluation, impl: str, detail: dict, outputs: list[str], points: int) -> list[dict]:
    """Per point, each output's worst verdict and largest error bits (null where unmeasured)."""
    out = []
    for name in outputs:
        if name not in detail:  # the framework raised for every point, or the output is empty
            verdicts, bits = np.full(points, "error" if evaluation.error else "ok", dtype=object), np.full(points, np.nan)
            inherent = [None] * points
        else:
            component_verdicts, component_bits, component_inherent = detail[name]
            flat_verdicts = component_verdicts.reshape(points, -1)
            flat_bits = np.where(np.isin(flat_verdicts, UNMEASURED), np.nan, component_bits.reshape(points, -1))
            verdicts = np.array([min(row, key=RANK.__getitem__) for row in flat_verdicts], dtype=object)
            bits = np.array([np.nan if np.isnan(row).all() else np.nanmax(row) for row in flat_bits])
            inherent = [_inherent(row[row_verdicts == v]) for row, row_verdicts, v
                        in zip(component_inherent.reshape(points, -1), flat_verdicts, verdicts)]
        out.append({"framework": evaluation.framework, "impl": impl, "dtype": evaluation.dtype, "output": name,
                    "vectorised": evaluation.vectorised, "note": evaluation.note,
                    "error_bits": [None if np.isnan(b) else round(float(b), 4) for b in bits],
                    "verdicts": verdicts.tolist(), "inherent": inherent})
    return out


def _inherent(flags: np.ndarray) -> bool | None:
    """A point's worst verdict is inherent when every component with it is (one spurious component makes the
    point's failure spurious); None where the classifier said neither (ok, error, or not classified)."""
    said = [bool(x) for x in flags if x is not None]
    return None if not said else all(said)


def block(case: Case, all_series: list[dict], rounded: dict[str, dict[str, np.ndarray]]) -> dict:
    """The result's `sweep` block; `rounded[dtype][input]` are the swept values as evaluated in that dtype."""
    axes = [{"input": name, "spec": s.kind, "scale": s.scale, "values": [float(v) for v in s.values]}
            for name, s in case.sweeps.items()]
    thresholds = [] if case.zipped else [t for s in all_series for t in _thresholds(s, case, rounded[s["dtype"]])]
    return {"axes": axes, "points": case.points, "series": all_series, "thresholds": thresholds}


def worst_point(case: Case, row: dict, rounded: dict[str, np.ndarray]) -> dict[str, str] | None:
    """The swept inputs' values at a row's worst component (its first index is the point)."""
    if not row.get("worst_index"):
        return None
    point = row["worst_index"][0]
    return {name: str(rounded[name][point]) for name in case.sweeps}


def _thresholds(s: dict, case: Case, rounded: dict[str, np.ndarray]) -> list[dict]:
    """One entry per verdict other than ok: where along the sweep it holds."""
    verdicts = np.array(s["verdicts"], dtype=object)
    who = f"{s['framework']} {s['impl']} {s['output']}"
    names = list(case.sweeps)
    lengths = [len(case.sweeps[n].values) for n in names]
    out = []
    for verdict in sorted(set(verdicts.tolist()) - {"ok"}, key=RANK.__getitem__):
        hit = verdicts == verdict
        count = f"{int(hit.sum())} of {len(hit)} points"
        if len(names) == 1:
            where, at = _interval(names[0], hit, rounded[names[0]])
        else:  # a grid: the box the verdict's points span, per axis
            grid = hit.reshape(lengths)
            spans = []
            for axis, name in enumerate(names):
                along = grid.any(axis=tuple(k for k in range(len(names)) if k != axis))
                spans.append(_span(name, along, _axis_values(rounded[name], axis, lengths)))
            where, at = " and ".join(spans) + " (the box its points span)", float(rounded[names[0]][hit][0])
        out.append({"framework": s["framework"], "impl": s["impl"], "dtype": s["dtype"], "output": s["output"],
                    "verdict": verdict, "input": names[0], "at": at,
                    "text": f"{who}: {verdict} {where} ({count})"})
    return out


def _axis_values(values: np.ndarray, axis: int, lengths: list[int]) -> np.ndarray:
    """One axis's values out of the flattened grid."""
    return np.moveaxis(values.reshape(lengths), axis, 0).reshape(lengths[axis], -1)[:, 0]


def _interval(name: str, hit: np.ndarray, values: np.ndarray) -> tuple[str, float]:
    """Where along a 1-D sweep `hit` holds: one run is an interval (open-ended at a sweep's end, since
    nothing is known beyond it), several runs are a span. Returns the text and the changing point."""
    index = np.flatnonzero(hit)
    lo, hi = int(index[0]), int(index[-1])
    if hi - lo + 1 != len(index):
        return _span(name, hit, values) + ", not all points in between", float(values[lo])
    if lo == hi:
        return f"at {name} = {str(values[lo])}", float(values[lo])
    if lo == 0 and hi == len(hit) - 1:
        return "at every point", float(values[lo])
    increasing = values[-1] >= values[0]
    if lo == 0:  # the verdict holds up to a change between values[hi] and values[hi + 1]
        op = "<=" if increasing else ">="
        return f"for {name} {op} {str(values[hi])} (changes between {str(values[hi])} and {str(values[hi + 1])})", \
            float(values[hi])
    if hi == len(hit) - 1:
        op = ">=" if increasing else "<="
        return f"for {name} {op} {str(values[lo])} (changes between {str(values[lo - 1])} and {str(values[lo])})", \
            float(values[lo])
    return f"for {name} from {str(values[lo])} to {str(values[hi])}", float(values[lo])


def _span(name: str, hit: np.ndarray, values: np.ndarray) -> str:
    if hit.all():
        return f"for every {name}"
    chosen = values[hit]
    lo, hi = chosen.min(), chosen.max()
    return f"for {name} = {str(lo)}" if lo == hi else f"for {name} between {str(lo)} and {str(hi)}"
