"""The pipeline for one case: frameworks -> certified reference -> comparison, classification, rewrites."""

from __future__ import annotations

import platform
import sys
from functools import cache, partial

import numpy as np

from oracle import __version__, compare, formula, reference, rewrites, shadow
from oracle.case import Case
from oracle.classify import Evidence
from oracle.floats import Format, error_bits, fmt, ulps
from oracle.frameworks import evaluate, subnormal_mode, versions
from oracle.inputs import rounded
from oracle.reference import START_PRECISION
from oracle.reference.condition import condition_numbers
from oracle.reference.program import output_shape, trace


def run_case(case: Case, frameworks: list[str] | None = None, dtypes: list[str] | None = None,
             max_precision: int = reference.MAX_PRECISION) -> dict:
    """Evaluate `case` in each framework and dtype, compare with the reference for that dtype, and classify.

    `frameworks` narrows the case's own list; `dtypes` replaces it (float64 on request)."""
    frameworks = [fw for fw in case.spec.frameworks if frameworks is None or fw in frameworks]
    dtypes = dtypes or case.spec.dtypes
    shapes = {name: value.shape for name, value in case.inputs.items()}
    program = trace(case.reference, shapes, case.wrt)
    results, references = [], {}
    for dtype in dtypes:
        f = fmt(dtype)
        inputs = {name: rounded(value, f) for name, value in case.inputs.items()}
        ref = reference.compute(program, inputs, f, cap=max_precision)
        precision = max(int(o.precision.max(initial=0)) for o in ref.outputs)
        kappa = condition_numbers(program, inputs, max(precision, START_PRECISION))
        block = {"domain": ref.domain, "gradient_check": ref.gradient_check, "precision_bits": precision,
                 "condition": kappa.method, "subnormals": {}}
        make_shadow = cache(partial(_shadow, case, inputs, f, max(precision, START_PRECISION), block))
        for framework in frameworks:
            block["subnormals"][framework] = subnormal_mode(framework, f)
            evidence = Evidence(framework, f, case.spec.tolerance_bits, block["subnormals"][framework],
                                [np.where(a, k, None) for k, a in zip(kappa.kappa, kappa.agrees)],
                                make_shadow, partial(_float64, case, framework, inputs, f), traced=framework == "jax")
            evaluation = evaluate(case.formula, framework, inputs, case.wrt, f)
            rows = compare.rows(evaluation, ref, evidence)
            for row in rows:
                row["rewrite"] = _rewrite(case, framework, inputs, f, ref, row)
            results.extend(rows)
        references[dtype] = block
    return {"id": case.id, "file": case.file, "title": case.spec.title, "kind": case.spec.kind,
            "summed": program.summed, "reference": references, "results": results}


def _shadow(case: Case, inputs: dict, f: Format, prec: int, block: dict):
    """JAX's float32 computation of the formula replayed beside its exact values; None (said why) if it cannot run."""
    try:
        replay = shadow.run(case.formula, inputs, case.wrt, f, prec, case.spec.tolerance_bits)
    except shadow.ShadowUnavailable as e:
        block["shadow"] = f"unavailable: {e}"
        return None
    block["shadow"] = f"replayed {len(replay.ops)} operations"
    return replay


def _float64(case: Case, framework: str, inputs: dict, f: Format) -> list | None:
    """The same framework at float64 on the same (already rounded) inputs: is the float32 error a rounding effect?"""
    if f.width >= 64:
        return None
    wide = fmt("float64")
    run = evaluate(case.formula, framework, {n: v.astype(wide.numpy) for n, v in inputs.items()}, case.wrt, wide)
    if run.error is not None:
        return None
    return [run.value] + [run.grads[n] for n in case.wrt]


FIXABLE = ("overflow", "underflow", "cancellation")


def _rewrite(case: Case, framework: str, inputs: dict, f: Format, ref, row: dict) -> dict | None:
    """The best stable rewrite of the formula for a fixable row, verified in the same framework and dtype."""
    if row["verdict"] not in FIXABLE or row["inherent"]:
        return None
    best = None
    for suggestion in rewrites.suggest(case.spec.formula, set(case.inputs)):
        if row["verdict"] not in suggestion.fixes:
            continue
        tree = formula.parse(suggestion.formula, set(case.inputs))
        run = evaluate(tree, framework, inputs, case.wrt, f)
        output = next(o for o in ref.outputs if o.name == row["output"])
        got = None if run.error else (run.value if row["output"] == "value" else run.grads[row["output"][5:]])
        bits = None if got is None else error_bits(int(ulps(got, output.rounded, f).max()))
        verified = {"rule": suggestion.rule, "before": suggestion.before, "after": suggestion.after,
                    "formula": suggestion.formula, "error_bits": None if bits is None else repr(round(bits, 4)),
                    "within_tolerance": bits is not None and bits <= case.spec.tolerance_bits}
        if best is None or (bits is not None and (best[0] is None or bits < best[0])):
            best = (bits, verified)
    return None if best is None else best[1]


def check_shapes(case: Case) -> None:
    """Raise ValueError (naming formula or reference) when either fails to trace at the inputs' shapes."""
    shapes = {name: value.shape for name, value in case.inputs.items()}
    for field in ("formula", "reference"):
        try:
            output_shape(getattr(case, field), shapes)
        except Exception as e:  # JAX raises TypeError/ValueError with the shapes in the message
            raise ValueError(f"{field}: {str(e).splitlines()[0]}") from None


def environment(frameworks: list[str]) -> dict:
    import mpmath

    return {"python": sys.version.split()[0], "platform": platform.platform(),
            "versions": {"oracle": __version__, "numpy": np.__version__, "mpmath": mpmath.__version__,
                         "mpmath_backend": mpmath.libmp.BACKEND, **versions(frameworks)}}
