"""TensorFlow's and PyTorch's runs recorded and replayed exactly: the evidence `classify` needs about them.

A run is recorded (`oracle.frameworks.<backend>.record`) and the recording replayed by the
shadow at two precisions, doubled while an absorbed cancellation leaves outputs open; the
higher replay is the shadow, and the outputs both replays round alike are what ran,
evaluated exactly (the structural mismatch rule). A sweep's points are independent runs,
each recorded on its own when one of its components needs classifying: recording the
vmapped run would record vmap's batching, not the library's code. Nothing is recorded
unless asked for: a recording is one more run of the framework.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from oracle import budget, shadow
from oracle.floats import Format, round_array
from oracle.frameworks import backend, record

SHADOW_PART = "shadow"


def trace(case, framework: str, label: str, tree, inputs: dict, f: Format, prec: int, block: dict,
          max_precision: int):
    """(make_shadow, make_exact, traced) for one tf/torch run, each computed on first use; None, None, False where
    no recording can be replayed (said in `block["traces"][framework][label]`)."""
    def said() -> dict:  # the run's line in the reference block, made when a recording is tried
        return block.setdefault("traces", {}).setdefault(framework, {})

    if not case.sweeps:
        replays = cache(lambda: _recorded(case, framework, label, tree, inputs, f, prec, max_precision, said))
        return (lambda: replays()[1] if replays() else None,
                lambda: agreed(*replays(), f) if replays() else None, lambda: replays() is not None)
    counts: dict[str, int] = {}  # what the points that needed a trace said
    points = Points(lambda p: _recorded(case, framework, label, tree, {n: v[p] for n, v in inputs.items()}, f,
                                        prec, max_precision, said, counts), len(case.wrt) + 1, f)
    return lambda: points, lambda: points.exact, points.available


def _recorded(case, framework: str, label: str, tree, inputs: dict, f: Format, prec: int, max_precision: int,
              said, counts: dict | None = None):
    """The run recorded and replayed (low, high); None, said why, if it cannot be (`counts`: a sweep's point)."""
    out = None
    try:
        recording = record(tree, framework, inputs, case.wrt, f)
        out, short = budget.attempt(SHADOW_PART, lambda: _replays(case, recording, framework, inputs, f, prec,
                                                                  max_precision), share=0.5)
        text = f"replayed {len(out[0].ops)} operations" if out is not None else f"unavailable: {short}"
    except shadow.ShadowUnavailable as e:
        text = f"unavailable: {e}"
    except Exception as e:  # noqa: BLE001 - a run that cannot be recorded is classified from other evidence
        text = f"unavailable: {type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
    if counts is None:
        said()[label] = text
    else:  # a sweep: what the points that needed one said, counted
        counts[text] = counts.get(text, 0) + 1
        said()[label] = "; ".join(f"{t} at {n} point{'s' * (n != 1)}" for t, n in counts.items()) + \
            " (each point recorded on its own)"
    return out


def _replays(case, recording, framework: str, inputs: dict, f: Format, prec: int, max_precision: int):
    """The recording replayed at two precisions, doubled while an absorbed cancellation leaves outputs open."""
    rules = backend(framework).exact_rules()

    def replayed(p: int) -> shadow.Shadow:
        return shadow.replay(recording, rules, inputs, case.wrt, f, p, case.spec.tolerance_bits)

    out = (replayed(prec), replayed(2 * prec))
    while (out[0].absorbed or out[1].absorbed) and 4 * prec <= max_precision and any(
            any(v is None for v in a.ravel()) for a in agreed(*out, f)):
        prec *= 2
        out = (out[1], replayed(2 * prec))
    return out


def agreed(low: shadow.Shadow, high: shadow.Shadow, f: Format) -> list[np.ndarray]:
    """The recorded computation's exact outputs where two precisions round them alike; None elsewhere."""
    unsure = low.absorbed or high.absorbed
    return [np.where(_same_rounding(a, b, f) & ~(unsure & np.isnan(round_array(b, f))), b, None)
            for a, b in zip(low.exact_outputs, high.exact_outputs)]


def _same_rounding(a: np.ndarray, b: np.ndarray, f: Format) -> np.ndarray:
    ra, rb = round_array(a, f), round_array(b, f)
    return (ra == rb) | (np.isnan(ra) & np.isnan(rb))


class Points:
    """A sweep's traces: the shadow and exact outputs of each point's own recording, indexed like the sweep's
    outputs (point first), made when a component of that point asks."""

    def __init__(self, replay_point, outputs: int, f: Format):
        self._replay = cache(replay_point)  # point -> (low, high) or None
        self._asked: list[int] = []
        self.f = f
        self.exact = [_PointExact(self, k) for k in range(outputs)]

    def replays(self, point: int):
        if point not in self._asked:
            self._asked.append(point)
        return self._replay(point)

    def available(self) -> bool:
        """Traced: the points asked so far (or the first point) could be recorded and replayed."""
        return all(self.replays(p) is not None for p in (self._asked or [0]))

    def _shadow(self, point: int) -> shadow.Shadow | None:
        out = self.replays(point)
        return None if out is None else out[1]

    def root_cause(self, k: int, index: tuple = ()):
        s = self._shadow(index[0])
        return None if s is None else s.root_cause(k, index[1:])

    def spread_cancellation(self, k: int, index: tuple = (), bits: float = shadow.DEFAULT_THRESHOLD_BITS):
        s = self._shadow(index[0])
        return None if s is None else s.spread_cancellation(k, index[1:], bits)

    def amplification(self, k: int, index: tuple = (), bits: float = shadow.DEFAULT_THRESHOLD_BITS):
        s = self._shadow(index[0])
        return None if s is None else s.amplification(k, index[1:], bits)

    def departure(self, k: int, index: tuple = ()):
        s = self._shadow(index[0])
        return None if s is None else s.departure(k, index[1:])


class _PointExact:
    """Output k's exact value at a sweep component, from its point's recording (None where not settled)."""

    def __init__(self, points: Points, k: int):
        self.points, self.k = points, k

    def __getitem__(self, index: tuple):
        out = self.points.replays(index[0])
        return None if out is None else agreed(*out, self.points.f)[self.k][index[1:]]
