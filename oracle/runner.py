"""The pipeline for one case: frameworks -> certified reference -> comparison rows."""

from __future__ import annotations

import platform
import sys

import numpy as np

from oracle import __version__, compare, reference
from oracle.case import Case
from oracle.floats import fmt
from oracle.frameworks import evaluate, versions
from oracle.inputs import rounded
from oracle.reference.program import output_shape, trace


def run_case(case: Case, frameworks: list[str] | None = None, dtypes: list[str] | None = None,
             max_precision: int = reference.MAX_PRECISION) -> dict:
    """Evaluate `case` in each framework and dtype and compare with the reference for that dtype.

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
        references[dtype] = {"domain": ref.domain, "gradient_check": ref.gradient_check,
                             "precision_bits": max(int(o.precision.max(initial=0)) for o in ref.outputs)}
        for framework in frameworks:
            evaluation = evaluate(case.formula, framework, inputs, case.wrt, f)
            results.extend(compare.rows(evaluation, ref, f, case.spec.tolerance_bits))
    return {"id": case.id, "file": case.file, "title": case.spec.title, "kind": case.spec.kind,
            "summed": program.summed, "reference": references, "results": results}


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
