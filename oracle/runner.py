"""The pipeline for one case: frameworks -> certified reference -> comparison, classification, rewrites."""

from __future__ import annotations

import platform
import sys
from functools import cache, partial

import jax
import jax.numpy as jnp
import numpy as np

from oracle import __version__, budget, compare, formula, reference, report, rewrites, shadow, sweep, traces
from oracle.case import Case
from oracle.classify import Evidence
from oracle.floats import Format, error_bits, fmt, ulps
from oracle.frameworks import evaluate, native_ops, subnormal_mode, versions
from oracle.frameworks import jax as jax_backend
from oracle.reference import START_PRECISION
from oracle.reference.condition import condition_numbers
from oracle.reference.mp_eval import InexactLiteral, UnsupportedPrimitive
from oracle.reference.program import trace

# Frameworks are evaluated in this order and reported in the case's: torch's imports (its own, and the sympy
# and torch._dynamo its meta tensors load) call inspect.getmodule, which walks sys.modules, so they are slower
# once TensorFlow's modules are loaded. Torch first made a three-framework run_case 0.26 s faster (medians of 4).
LOAD_ORDER = ("torch", "jax", "tf")


def run_case(case: Case, frameworks: list[str] | None = None, dtypes: list[str] | None = None,
             max_precision: int = reference.MAX_PRECISION, refine: bool | None = None) -> dict:
    """Evaluate `case` in each framework and dtype, compare with the reference for that dtype, and classify.

    Per framework, the formula (rows labelled "formula") and each of the framework's
    impls (rows labelled by the impl's label) run; a framework with neither runs nothing.
    `frameworks` narrows the case's own list; `dtypes` replaces it (float64 on request).

    A sweep case runs once over all its points (a leading axis, vmapped everywhere): its
    rows describe the worst point, and its `sweep` block every point (`oracle.sweep`); with `refine` (None: when the
    case states `regions` to check), each verdict change between neighbouring grid points is bisected to adjacent
    values of the dtype (`oracle.boundaries`)."""
    frameworks = [fw for fw in case.spec.frameworks if frameworks is None or fw in frameworks]
    dtypes = dtypes or case.spec.dtypes
    batched = bool(case.sweeps)
    exact_inputs = case.batched_inputs()
    program = trace(case.reference, {name: value.shape for name, value in exact_inputs.items()}, case.wrt,
                    batched=batched, integers=case.integers)
    results, references, series, swept = [], {}, [], {}
    for dtype in dtypes:
        budget.check()  # the case's own deadline, at a point where no framework is half way through anything
        f = fmt(dtype)
        inputs = case.rounded(f, exact_inputs)  # integer inputs stay integers
        swept[dtype] = {name: inputs[name] for name in case.sweeps}
        ref = _reference(program, inputs, f, max_precision)
        precision = ref.precision
        prec = max(precision, START_PRECISION)
        try:
            if precision == 0:
                raise ValueError("no component of the reference is certified")
            kappa, short = budget.attempt(KAPPA_PART, partial(condition_numbers, program, inputs, prec,
                                                              over=case.perturbed), share=0.5)
            if kappa is None:
                raise ValueError(short)
            kappas, method = [np.where(a, k, None) for k, a in zip(kappa.kappa, kappa.agrees)], kappa.method
        except (UnsupportedPrimitive, InexactLiteral, NotImplementedError, ValueError,
                ArithmeticError) as e:  # second derivatives
            kappas, method = None, f"unavailable: {type(e).__name__}: {e}"  # of this reference are out of reach
        block = {"domain": ref.domain, "gradient_check": ref.gradient_check, "precision_bits": precision,
                 "condition": method, "subnormals": {}, "engine": ref.engine, "engine_check": ref.second_opinion}
        formula_exact = cache(partial(_exact, case, case.formula, inputs, f, max_precision))
        formula_shadow = cache(partial(_shadow, case, case.formula, "formula", inputs, f, prec, block, formula_exact))
        rows_of, series_of, modes = {}, {}, {}
        for framework in sorted(frameworks, key=LOAD_ORDER.index):
            runs = ([("formula", case.formula)] if case.formula is not None else []) + case.impls.get(framework, [])
            if not runs:
                continue
            modes[framework] = subnormal_mode(framework, f)
            rows_of[framework], series_of[framework] = [], []
            for label, tree in runs:
                budget.check()
                make_shadow, make_exact, traced = _diagnosis(case, framework, label, tree, inputs, f, prec, block,
                                                             max_precision, formula_shadow, formula_exact)
                evidence = Evidence(framework, f, case.spec.tolerance_bits, modes[framework], kappas,
                                    make_shadow, partial(_float64, case, tree, framework, inputs, f),
                                    traced=traced, make_exact=make_exact)
                evaluation = evaluate(tree, framework, inputs, case.wrt, f, case.max_elements, batched)
                detail: dict = {}
                rows = compare.rows(evaluation, ref, evidence, impl=label, detail=detail)
                if ref.precision == 0 and ref.ran_out:  # nothing certified: no reference value, no error to show
                    for row in rows:
                        row.update(reference=None, reference_digits=None, ulps=None, error_bits=None,
                                   within_tolerance=False)
                _attach_rewrites(case, framework, inputs, f, ref, rows if label == "formula" else [], detail)
                if batched:
                    series_of[framework] += sweep.series(evaluation, label, detail, [o.name for o in ref.outputs],
                                                         case.points)
                    for row in rows:
                        row["worst_point"] = sweep.worst_point(case, row, swept[dtype])
                rows_of[framework].extend({**row, "rewrite": row.get("rewrite")} for row in rows)
        _note_better_runs([row for fw in rows_of for row in rows_of[fw]])
        for framework in (fw for fw in frameworks if fw in rows_of):  # reported in the case's order
            block["subnormals"][framework] = modes[framework]
            results += rows_of[framework]
            series += series_of[framework]
        references[dtype] = block
    result = {**report.header(case), "summed": program.summed, "reference": references, "results": results}
    if batched:
        result["sweep"] = sweep.block(case, series, swept)
        if refine or (refine is None and case.regions is not None):
            from oracle import boundaries

            boundaries.refine(case, result["sweep"], swept, frameworks, max_precision)
    if case.expect is not None:  # the verdicts the case should get, at the versions installed
        result["expectations"] = case.expect.check(result, versions({row["framework"] for row in results}))
    if case.regions is not None:  # the verdict regions a sweep should get (oracle.regions)
        from oracle import regions

        result.setdefault("expectations", []).extend(
            regions.check(case.regions, result, versions({row["framework"] for row in results})))
    return result


# Shares of the time a case has left (oracle.budget), given to each expensive part as it starts: the reference
# first (its gradient check gets half of what the reference leaves), then condition numbers, then each shadow
# replay and exact evaluation the classification asks for. A part that runs out leaves the rest intact.
REFERENCE_SHARE, KAPPA_PART, EXACT_PART, SHADOW_PART = 0.5, "kappa", "exact formula", traces.SHADOW_PART


def _reference(program, inputs: dict, f: Format, cap: int) -> reference.Reference:
    """The certified reference, or, when not one precision finished within its budget or mpmath cannot hold the
    exact values (exp nested six deep), one that certifies nothing and says why."""
    try:
        ref, short = budget.attempt(reference.REFERENCE_PART, lambda: reference.compute(program, inputs, f, cap=cap),
                                    share=REFERENCE_SHARE)
    except (ArithmeticError, MemoryError) as e:  # OverflowError: int too big to convert, deep in mpmath
        ref, short = None, f"mpmath cannot evaluate the exact reference: {type(e).__name__}: {e}"
    return ref if ref is not None else reference.unavailable(program, f, cap, short)


def _note_better_runs(rows: list[dict]) -> None:
    """An ill-conditioned row whose output another run (framework or impl) of the case gets within tolerance in
    the same dtype says so: the dtype could do better there, by that route."""
    for row in rows:
        if row["verdict"] != "ill-conditioning":
            continue
        better = [r for r in rows if r["output"] == row["output"] and r["verdict"] == "ok"
                  and (r["framework"], r["impl"]) != (row["framework"], row["impl"])]
        if better:
            best = min(better, key=lambda r: float(r["error_bits"]))
            row["explanation"] += (f"; but {best['framework']} {best['impl']} reaches the reference in {row['dtype']} "
                                   f"({best['error_bits']} bits), so another computation does better here")


def _diagnosis(case: Case, framework: str, label: str, tree: formula.Node, inputs: dict, f: Format, prec: int,
               block: dict, max_precision: int, formula_shadow, formula_exact):
    """What explains one run's errors: (make_shadow, make_exact, traced), each computed on first use.

    JAX's own computation is replayed from its jaxpr; TensorFlow's and PyTorch's from a
    recording of the ops they ran (`oracle.traces`). Where no recording can be replayed (an
    op without an exact rule), the formula's JAX shadow serves as a model of tf/torch
    (`traced` False: explanations say the cause is inferred), and an impl has none."""
    if framework == "jax":
        if label == "formula":
            return formula_shadow, lambda: _outputs(formula_exact()), True
        make_exact = cache(partial(_exact, case, tree, inputs, f, max_precision))
        return (cache(partial(_shadow, case, tree, label, inputs, f, prec, block, make_exact)),
                lambda: _outputs(make_exact()), True)
    make_shadow, make_exact, traced = traces.trace(case, framework, label, tree, inputs, f, prec, block, max_precision)
    if label != "formula":  # no model of library code: what the recording says, or nothing
        return make_shadow, make_exact, traced
    return (lambda: make_shadow() if traced() else formula_shadow(),  # else the formula's JAX shadow as a model
            lambda: make_exact() if traced() else _outputs(formula_exact()), traced)


def _shadow(case: Case, tree: formula.Node, label: str, inputs: dict, f: Format, prec: int, block: dict,
            make_exact):
    """JAX's float computation of the formula (or of a JAX impl) replayed beside its exact values; None (said why)
    if it cannot run. The formula's outcome is `shadow` in the reference block, an impl's `impl_shadow.<label>`.

    The exact side runs at the precision that certified `tree` itself (`make_exact`), not only the
    reference's: log(1 + exp(-50)) needs more bits as written than as log1p(exp(-50))."""
    exact = make_exact()
    if exact is not None:
        prec = max(prec, 2 * exact.precision)
    try:
        replay, short = budget.attempt(SHADOW_PART, lambda: shadow.run(tree, inputs, case.wrt, f, prec,
                                                                       case.spec.tolerance_bits,
                                                                       batched=bool(case.sweeps)), share=0.5)
    except shadow.ShadowUnavailable as e:
        said, replay = f"unavailable: {e}", None
    except Exception as e:  # an impl's library call the shadow cannot trace: no traced cause, the rest still classifies
        if label == "formula":
            raise
        said, replay = f"unavailable: {type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}", None
    else:
        said = f"replayed {len(replay.ops)} operations" if replay is not None else f"unavailable: {short}"
    if label == "formula":
        block["shadow"] = said
    else:
        block.setdefault("impl_shadow", {})[label] = said
    block.setdefault("traces", {}).setdefault("jax", {})[label] = said  # every framework's, in one place
    return replay


def _exact(case: Case, tree: formula.Node, inputs: dict, f: Format, cap: int) -> reference.Reference | None:
    """What JAX runs for `tree` (its own ops and library code), evaluated exactly and certified like the
    reference; None where the interpreter cannot run it."""
    try:
        program = trace(tree, {n: v.shape for n, v in inputs.items()}, case.wrt,
                        ops={**jax_backend.OPS, **native_ops("jax")}, batched=bool(case.sweeps), integers=case.integers)
        exact, _ = budget.attempt(EXACT_PART, lambda: reference.compute(program, inputs, f, cap=cap, diff_limit=0),
                                  share=0.5)
        return exact
    except Exception:  # noqa: BLE001 - no certified evaluation: classification falls back on other evidence
        return None


def _outputs(exact: reference.Reference | None) -> list[np.ndarray] | None:
    """The certified exact outputs; None at components no precision up to the cap settled."""
    return None if exact is None else [np.where(o.certified, o.exact, None) for o in exact.outputs]


def _float64(case: Case, tree: formula.Node, framework: str, inputs: dict, f: Format) -> list | None:
    """The same framework at float64 on the same (already rounded) inputs: is the float32 error a rounding effect?"""
    if f.width >= 64:
        return None
    wide = fmt("float64")
    run = evaluate(tree, framework, {n: v if n in case.integers else v.astype(wide.numpy) for n, v in inputs.items()},
                   case.wrt, wide,
                   case.max_elements, bool(case.sweeps))
    if run.error is not None:
        return None
    outputs = [run.value] + [run.grads[n] for n in case.wrt]
    if any(np.asarray(o).dtype != wide.numpy for o in outputs):  # never read another dtype as float64
        return None
    return outputs


FIXABLE = ("overflow", "underflow", "cancellation")


def _attach_rewrites(case: Case, framework: str, inputs: dict, f: Format, ref, rows: list[dict],
                     detail: dict) -> None:
    """Give each fixable row the stable rewrite of the formula that does best on its output, verified in the
    same framework and dtype at the components that failed with the row's verdict (`detail`, from
    compare.rows). Each candidate rewrite is evaluated once, for all rows."""
    fixable = [row for row in rows if row["verdict"] in FIXABLE and not row["inherent"]]
    if not fixable:
        return
    candidates = [s for s in rewrites.suggest(case.spec.formula, set(case.inputs))
                  if any(row["verdict"] in s.fixes for row in fixable)]
    runs = [evaluate(formula.parse(s.formula, set(case.inputs)), framework, inputs, case.wrt, f,
                     batched=bool(case.sweeps)) for s in candidates]
    outputs = {o.name: o for o in ref.outputs}
    for row in fixable:
        best = None
        for suggestion, run in zip(candidates, runs):
            if row["verdict"] not in suggestion.fixes:
                continue
            got = None if run.error else (run.value if row["output"] == "value" else run.grads[row["output"][5:]])
            failed = detail[row["output"]][0] == row["verdict"]
            bits = None if got is None else error_bits(int(ulps(got, outputs[row["output"]].rounded, f)[failed].max()))
            if best is None or (bits is not None and (best[0] is None or bits < best[0])):
                best = (bits, suggestion)
        if best is not None:
            bits, suggestion = best
            row["rewrite"] = {"rule": suggestion.rule, "before": suggestion.before, "after": suggestion.after,
                              "formula": suggestion.formula, "error_bits": None if bits is None else repr(round(bits, 4)),
                              "within_tolerance": bits is not None and bits <= case.spec.tolerance_bits}


def check_shapes(case: Case) -> None:
    """Raise ValueError (naming formula or reference) when either fails to trace at the inputs' shapes, or
    would compute a tensor of more elements than the case's cap (`--max-elements`, as for inputs).

    One abstract JAX trace (nothing is computed or allocated) answers both. Impls are
    not traced here (that would import their frameworks): each is traced without
    running just before it runs (`frameworks.evaluate`)."""
    avals = {name: jax.ShapeDtypeStruct(shape, jnp.dtype(case.integers.get(name, "float32")))
             for name, shape in case.shapes.items()}
    ops = {**formula.OPERATORS, **jax_backend.OPS, **native_ops("jax"),  # a reference may call jax library code
           "constant": lambda v: jnp.float32(0)}
    for field in ("formula", "reference"):
        tree = getattr(case, field)
        if tree is None:
            continue
        try:
            jaxpr = jax.make_jaxpr(partial(formula.evaluate, tree, ops=ops))(avals)
        except Exception as e:  # JAX raises TypeError/ValueError with the shapes in the message
            raise ValueError(f"{field}: {str(e).splitlines()[0]}") from None
        kinds = {np.dtype(a.dtype).kind for a in jaxpr.out_avals}
        if kinds != {"f"}:  # `z != e` traces to a bool: no framework's gradient or reference means anything there
            raise ValueError(f"{field}: it computes {', '.join(str(a.dtype) for a in jaxpr.out_avals)}, not a real "
                             "number (a comparison or a logical expression is not a log-prob, loss or KL)")
        size, shape = jax_backend.largest_in_jaxpr(jaxpr)
        if case.sweeps:  # every value gets a leading axis of the points
            size, shape = size * case.points, (case.points, *shape)
        if size > case.max_elements:
            raise ValueError(f"{field}: it computes a tensor of {size} elements (shape {list(shape)}, by broadcasting "
                             f"or a product of its inputs), more than the cap of {case.max_elements} (--max-elements)")


def environment(frameworks: list[str]) -> dict:
    import mpmath

    return {"python": sys.version.split()[0], "platform": platform.platform(),
            "versions": {"oracle": __version__, "numpy": np.__version__, "mpmath": mpmath.__version__,
                         "mpmath_backend": mpmath.libmp.BACKEND, **versions(frameworks)}}
