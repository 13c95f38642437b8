"""Compare a framework's outputs with the certified reference, one row per output tensor.

Each component gets a verdict; a tensor's row describes its worst component:
the first verdict present in SEVERITY, and among those the largest ULP error.
Components beyond tolerance, and those whose true value the dtype cannot hold,
are classified (overflow, underflow, ...) by `oracle.classify`.
"""

from __future__ import annotations

from collections import Counter

import mpmath
import numpy as np

from oracle.classify import FAILURES, Evidence, Verdict, classify
from oracle.floats import Format, error_bits, nstr, ulps
from oracle.frameworks import Evaluation
from oracle.reference import OutputReference, Reference
from oracle.verdicts import SEVERITY

MAX_LISTED = 100  # components listed per class in a row


def _component_verdicts(ref: OutputReference, reference: Reference, distance: np.ndarray,
                        tolerance_bits: float) -> np.ndarray:
    verdicts = np.full(ref.rounded.shape, "ok", dtype=object)
    verdicts[np.vectorize(error_bits, otypes=[float])(distance) > tolerance_bits] = "wrong"
    unrepresentable = np.isinf(ref.rounded) | ((ref.rounded == 0) & ref.nonzero())
    verdicts[unrepresentable & np.vectorize(mpmath.isfinite, otypes=[bool])(ref.exact)] = "wrong"
    non_finite = np.vectorize(lambda v: not mpmath.isfinite(v), otypes=[bool])(ref.exact)
    if reference.domain:
        verdicts[non_finite] = "domain"
    verdicts[~ref.certified] = "uncertain"
    if ref.numeric_agrees is not None:
        verdicts[~ref.numeric_agrees] = "uncertain"
    return verdicts


def _explain(verdict: str, index: tuple, ref: OutputReference, reference: Reference, f: Format,
             failed: dict[int, str] | None) -> str:
    if verdict == "error":
        return f"raised at {len(failed)} of {ref.rounded.shape[0]} points, first at point {min(failed)}: " \
               f"{failed[min(failed)]}"
    if verdict == "uncertain":
        if ref.disagrees is not None and ref.disagrees[index]:
            return (f"Arb's enclosure proves {ref.rounded[index]} but mpmath rounds to another {f.name} value "
                    f"({reference.second_opinion}): a bug in one of the two libraries")
        if ref.numeric_agrees is not None and not ref.numeric_agrees[index]:
            return (f"AD reference {nstr(ref.exact[index], 8)} and numerical derivative "
                    f"{nstr(ref.numeric[index], 8)} disagree (non-differentiable point or a where-gradient trap)")
        if reference.ran_out:  # the work budget or mpmath's range stopped it, not a disagreement
            return f"reference not certified: {reference.ran_out}"
        return f"reference not certified: successive precisions up to {reference.cap} bits rounded to different {f.name} values"
    if verdict == "domain":
        kind = "undefined" if mpmath.isnan(ref.exact[index]) else "infinite"
        # a where() may discard some non-finite intermediates: prefer a reason of the same kind
        reason = next((r for r in reference.domain if kind in r), reference.domain[0])
        return f"the reference is {kind} here: {reason}"
    return ""


def _digits(x) -> str:
    return nstr(x, 20) if mpmath.isfinite(x) else str(float(x))


def _without_values(base: dict, verdict: str, explanation: str = "") -> dict:
    """A row with nothing to compare: the framework failed, or the output is empty."""
    return {**base, "worst_index": None, "got": None, "reference": None, "reference_digits": None, "ulps": None,
            "error_bits": None, "within_tolerance": verdict == "ok", "verdict": verdict, "inherent": None,
            "explanation": explanation, "cause": None, "kappa": None, "precision_bits": None,
            "verdict_counts": {verdict: 1} if verdict == "error" else {}, "components": {}}


def rows(evaluation: Evaluation, reference: Reference, evidence: Evidence, impl: str = "formula",
         detail: dict | None = None) -> list[dict]:
    """One result row per output tensor of `evaluation` against `reference`; `impl` labels what ran
    ("formula", or an impl's label). `detail`, if given, receives each output's per-component verdicts
    and error bits (what a sweep plots)."""
    f, tolerance_bits = evidence.f, evidence.tolerance_bits
    out = []
    for k, ref in enumerate(reference.outputs):
        base = {"framework": evaluation.framework, "impl": impl, "dtype": f.name, "output": ref.name,
                "shape": list(ref.rounded.shape)}
        if evaluation.error is not None:
            out.append(_without_values(base, "error", evaluation.error))
            continue
        got = np.asarray(evaluation.value if ref.name == "value" else evaluation.grads[ref.name.removeprefix("grad.")])
        if got.dtype != f.numpy or got.shape != ref.rounded.shape:  # never cast a framework's answer silently
            out.append(_without_values(base, "error", f"returned {got.dtype}{list(got.shape)}, expected "
                                                      f"{f.name}{list(ref.rounded.shape)}"))
            continue
        if got.size == 0:
            out.append(_without_values(base, "ok"))
            continue
        distance = ulps(got, ref.rounded, f)
        verdicts = _component_verdicts(ref, reference, distance, tolerance_bits)
        if evaluation.failed:  # sweep points where the framework raised
            verdicts[list(evaluation.failed)] = "error"
        exact = np.where(ref.nonzero() | (ref.rounded != 0), ref.exact, mpmath.mpf(0))  # drop cancellation residues
        classified = {index: classify(k, ref.name, index, float(got[index]), exact[index], float(ref.rounded[index]),
                                      evidence)
                      for index in (tuple(int(j) for j in i) for i in np.argwhere(verdicts == "wrong"))}
        for index, v in classified.items():
            verdicts[index] = v.verdict
        verdict = next(v for v in SEVERITY if (verdicts == v).any())
        index = max((tuple(int(i) for i in k) for k in np.argwhere(verdicts == verdict)), key=lambda k: distance[k])
        bits = error_bits(int(distance[index]))
        why = classified.get(index) or Verdict(verdict, explanation=_explain(verdict, index, ref, reference, f,
                                                                             evaluation.failed))
        if detail is not None:  # per component: verdict, error bits, inherent (None where not classified)
            inherent = np.full(verdicts.shape, None, dtype=object)
            for i, v in classified.items():
                inherent[i] = v.inherent
            detail[ref.name] = (verdicts, np.vectorize(error_bits, otypes=[float])(distance), inherent)
        kappa = None if evidence.kappa is None else evidence.kappa[k][index]
        out.append({
            **base,
            "worst_index": list(index),
            "got": str(got[index]),  # shortest string that round-trips in the dtype
            "reference": str(ref.rounded[index]),
            "reference_digits": _digits(ref.exact[index]),
            "ulps": int(distance[index]),
            "error_bits": repr(round(bits, 4)),
            "within_tolerance": bool(bits <= tolerance_bits),
            "verdict": verdict,
            "inherent": why.inherent,
            "explanation": why.explanation,
            "cause": why.cause,
            "kappa": None if kappa is None else nstr(kappa, 4),
            "precision_bits": int(ref.precision.max()),
            "verdict_counts": dict(Counter(verdicts.ravel().tolist())),
            "components": _components(verdicts),
        })
    return out


def _components(verdicts: np.ndarray) -> dict[str, list]:
    """Each failure class's component indices (the first MAX_LISTED), for tensors with more than one element."""
    if verdicts.size == 1:
        return {}
    return {v: [list(map(int, i)) for i in np.argwhere(verdicts == v)[:MAX_LISTED]]
            for v in FAILURES if (verdicts == v).any()}
