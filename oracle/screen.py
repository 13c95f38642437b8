"""The hunt's cheap test of many candidate inputs: every framework x impl, vectorised, against an approximation.

Candidates are screened, never reported: the approximation is the case's reference program run by JAX in
float64 (a float64 shortcut that is fine for ranking candidates and bracketing where behaviour changes,
and never a reported number). Where float64 itself cancels (StudentT's lgamma differences at large df), a
framework looks wrong against it where it is right, and the screen flickers; so the points where a framework
returns a finite value beyond tolerance of a finite truth (at most RECHECK per batch) get their truth again
from the reference program interpreted in mpmath at RECHECK_PREC bits (not certified: screening still). Everything
the hunt reports is certified afterwards by the runner.

A screened point gets, per framework x impl x output (its worst component), error bits against the float64
reference rounded to the dtype, and a class: what the true value does in the dtype (normal, overflow,
underflow, domain), what the framework returned (finite, zero, inf, nan, error) and whether that is within
tolerance. The hunt bisects where the class changes; the runner then names the verdict on each side.
"""

from __future__ import annotations

import numpy as np

from oracle.case import Case
from oracle.floats import Format, fmt, to_ordinals
from oracle.frameworks import evaluate

BUCKET = 64  # candidate counts are padded to a multiple: JAX compiles once per shape, not once per batch
RECHECK = 128  # suspect points per batch whose float64 truth is rechecked in mpmath (see Screen._suspects)
RECHECK_SIZES = (8, 32, RECHECK)  # a program is traced per size; suspects are padded to the next one
RECHECK_PREC = 128  # bits: beyond what float64 loses to lgamma differences or expm1-like cancellations
RECHECK_PART, RECHECK_S = "screen recheck", 5.0  # per batch; past it the float64 screen stands
TRUSTED = 0.9  # a recheck where float64 rounds to the dtype as 128 bits do at this share of the points ends them


class Screen:
    """Evaluates batches of candidate points (`{searched input: values of the dtype}`) for one case and dtype."""

    def __init__(self, case: Case, f: Format, frameworks: list[str], searched: list[str], fixed: dict):
        self.case, self.f, self.searched, self.fixed = case, f, searched, fixed
        self.runs = [(fw, label, tree) for fw in frameworks
                     for label, tree in ([("formula", case.formula)] if case.formula is not None else [])
                     + case.impls.get(fw, [])]
        self.outputs = ["value", *(f"grad.{name}" for name in case.wrt)]
        self.keys = [(fw, label, f.name, out) for fw, label, _ in self.runs for out in self.outputs]
        self.evaluated = self.rechecked = 0
        self.rechecking = True  # until a recheck finds float64 right nearly everywhere (then it is trusted)
        self._programs: dict = {}  # recheck size -> the reference program traced for that many points

    def __call__(self, points: dict[str, np.ndarray]) -> dict[tuple, tuple[np.ndarray, np.ndarray]]:
        """key -> (error bits per point, NaN where unmeasured; class per point)."""
        n = len(next(iter(points.values())))
        padded = -(-n // BUCKET) * BUCKET
        inputs = {}
        for name in self.case.inputs:
            if name in points:
                values = np.asarray(points[name], dtype=self.f.numpy)
                inputs[name] = np.concatenate([values, np.repeat(values[-1:], padded - n)])
            else:
                inputs[name] = np.stack([self.fixed[name]] * padded)
        wide = fmt("float64")
        truth = evaluate(self.case.reference, "jax", {k: v if k in self.case.integers else v.astype(wide.numpy)
                                                      for k, v in inputs.items()},
                         self.case.wrt, wide, batched=True)
        exact = None if truth.error else [np.array(truth.value)] + [np.array(truth.grads[n_]) for n_ in self.case.wrt]
        runs = []
        for fw, label, tree in self.runs:
            run = evaluate(tree, fw, inputs, self.case.wrt, self.f, self.case.max_elements, batched=True)
            runs.append((fw, label, run, None if run.error else [run.value] + [run.grads[n_] for n_ in self.case.wrt]))
        out = self._classify_all(runs, exact, padded, n)
        suspect = self._suspects(out, n)
        if exact is not None and len(suspect) and self.rechecking and self._recheck(inputs, exact, suspect):
            out = self._classify_all(runs, exact, padded, n)
        self.evaluated += n
        return out

    def _classify_all(self, runs: list, exact: list | None, padded: int, n: int) -> dict:
        out = {}
        for fw, label, run, got in runs:
            for k, name in enumerate(self.outputs):
                bits, classes = self._classify(None if got is None else got[k], None if exact is None else exact[k],
                                               padded, run.failed)
                out[(fw, label, self.f.name, name)] = (bits[:n], classes[:n])
        return out

    @staticmethod
    def _suspects(out: dict, n: int) -> np.ndarray:
        """Points where a framework returned a finite value beyond tolerance of a normal or subnormal float64
        truth: either the framework erred or float64 itself cancelled (lgamma differences at large df); the
        first RECHECK of them, by index."""
        flagged = np.zeros(n, bool)
        for _, classes in out.values():
            flagged |= np.array([c.endswith("/off") and c.split("/")[0] in ("normal", "subnormal")
                                 and c.split("/")[1] in ("finite", "zero") for c in classes], dtype=bool)
        return np.flatnonzero(flagged)[:RECHECK]

    def _recheck(self, inputs: dict, exact: list, suspect: np.ndarray) -> bool:
        """Replace the float64 truth at `suspect` points by the reference program interpreted in mpmath at
        RECHECK_PREC bits (uncertified: screening only); False when it cannot run or overruns RECHECK_S."""
        from mpmath import mp

        from oracle import budget
        from oracle.reference import _arguments
        from oracle.reference.mp_eval import Interpreter
        from oracle.reference.program import trace

        k = len(suspect)
        size = next(b for b in RECHECK_SIZES if b >= k)
        picked = np.concatenate([suspect, np.repeat(suspect[-1:], size - k)])
        sub = {name: value[picked] for name, value in inputs.items()}
        try:
            if size not in self._programs:
                self._programs[size] = trace(self.case.reference, {name: v.shape for name, v in sub.items()},
                                             self.case.wrt, batched=True)
            program = self._programs[size]
            with budget.limit(RECHECK_PART, seconds=RECHECK_S, interruptible=True), mp.workprec(RECHECK_PREC):
                outs = Interpreter(strong_zeros=program.strong_zeros).run(program.full,
                                                                          _arguments(program, sub, RECHECK_PREC))
        except budget.OutOfBudget as e:
            if e.part != RECHECK_PART:
                raise
            return False
        except Exception:  # noqa: BLE001 - a program the interpreter cannot run keeps the float64 screen
            return False
        agree = np.ones(k, bool)
        for j, values in enumerate(outs):
            wide = np.array([float(v) for v in np.asarray(values).ravel()]).reshape(np.shape(values))[:k]
            with np.errstate(over="ignore", under="ignore", invalid="ignore"):
                same = wide.astype(self.f.numpy) == exact[j][suspect].astype(self.f.numpy)
            agree &= (same | (np.isnan(wide) & np.isnan(exact[j][suspect]))).reshape(k, -1).all(axis=1)
            exact[j][suspect] = wide
        self.rechecked += k
        self.rechecking = agree.mean() < TRUSTED  # float64 rounds like 128 bits: the frameworks are what is wrong
        return True

    def _classify(self, got, exact, n: int, failed: dict | None) -> tuple[np.ndarray, np.ndarray]:
        f = self.f
        if got is None or exact is None:
            return np.full(n, np.nan), np.full(n, "error" if got is None else "screen-unavailable", dtype=object)
        got = np.asarray(got, dtype=f.numpy).reshape(n, -1)
        exact = np.asarray(exact, dtype=np.float64).reshape(n, -1)
        with np.errstate(over="ignore", under="ignore", invalid="ignore"):
            rounded = exact.astype(f.numpy)
        finite = np.isfinite(got) & np.isfinite(rounded)
        distance = np.abs(to_ordinals(np.where(finite, got, 0), f) - to_ordinals(np.where(finite, rounded, 0), f))
        same = (np.isinf(got) & (got == rounded)) | (np.isnan(got) & np.isnan(rounded))
        bits = np.where(finite, np.log2(1.0 + distance.astype(np.float64)), np.where(same, 0.0, float(f.width)))
        truth = np.select([~np.isfinite(exact), np.isinf(rounded), (exact != 0) & (rounded == 0),
                           (exact != 0) & (np.abs(exact) < float(f.min_normal))],
                          ["domain", "overflow", "underflow-to-zero", "subnormal"], "normal")
        returned = np.select([np.isnan(got), np.isinf(got), got == 0], ["nan", "inf", "zero"], "finite")
        within = np.where(bits <= self.case.spec.tolerance_bits, "ok", "off")
        worst = np.argmax(np.where(truth == "domain", -1.0, bits), axis=1)
        pick = np.arange(n), worst
        classes = np.array([f"{t}/{r}/{w}" for t, r, w in zip(truth[pick], returned[pick], within[pick])], dtype=object)
        point_bits = np.where(truth[pick] == "domain", np.nan, bits[pick])
        if failed:
            for p in failed:
                classes[p], point_bits[p] = "error", np.nan
        return point_bits, classes


def coarse(cls: str) -> str:
    """A class without its within-tolerance flag: for an output whose error hovers around the tolerance,
    where bisecting every flicker would say nothing."""
    return cls.rsplit("/", 1)[0]


def returned(cls: str) -> str:
    """What the framework returned, from a class (finite, zero, inf, nan; error)."""
    parts = cls.split("/")
    return parts[1] if len(parts) >= 2 else cls


def fixed_inputs(case: Case, f: Format, searched: list[str]) -> dict[str, np.ndarray]:
    """The inputs the hunt does not search, rounded once to the dtype (integer inputs stay integers)."""
    return case.rounded(f, {name: value for name, value in case.inputs.items() if name not in searched})
