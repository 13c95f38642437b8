"""Why a component is wrong: overflow, underflow, cancellation, ill-conditioning or mismatch.

One component (an element of the value or of a gradient) is classified from the
evidence gathered for its framework, by the first rule that applies:

1. inherent: the true value cannot be represented: it rounds to an infinity
   (overflow) or lies below the smallest normal number (underflow). No
   implementation can do better, so this holds even for a component that
   returned exactly the rounded value.
2. mismatch: the formula evaluated exactly (the shadow's mpmath side) is not the
   reference, and the framework's own float64 run reproduces its float32 result:
   the code computes another function (a clip, an epsilon, a where() trap).
3. the shadow's root cause is an overflow or underflow of an intermediate.
4. ill-conditioning: the error is within what the function's condition number
   allows, error <= log2(kappa) + MARGIN_BITS ulps of the result (a backward
   stable evaluation errs by kappa times a few roundings: 3 bits allow 16).
5. the root cause is a cancellation (or an operation made sensitive by an
   absorbed operand) in a well-conditioned function: a rewrite recovers it.
   An operation that is inaccurate at exactly rounded operands is a mismatch
   (its implementation is another function there).
6. otherwise uncertain, saying which evidence is missing or conflicting.

For the JAX framework the root cause is traced (the shadow replays JAX's float32
jaxpr); for TensorFlow and PyTorch it is inferred: from the shadow when JAX's
float32 run of the same formula fails the same way, else from the symptom (an
infinity where the true value is finite is an overflow; a zero or NaN alone
proves nothing), and the explanation says so.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import mpmath
import numpy as np

from oracle.floats import Format, nstr, round_to, ulps

MARGIN_BITS = 3
FAILURES = ("overflow", "underflow", "cancellation", "ill-conditioning", "mismatch")


@dataclass
class Evidence:
    """What is known about one framework's run beyond its own outputs, for one dtype.

    The shadow and the float64 rerun cost as much as the case itself: they are
    computed on first use, only when some component needs classifying."""

    framework: str
    f: Format
    tolerance_bits: float
    subnormals: dict[str, bool]
    kappa: list[np.ndarray] | None = None  # per output; None entries where not certified
    make_shadow: Callable[[], object | None] = lambda: None  # oracle.shadow.Shadow of the formula, if it can run
    make_float64: Callable[[], list[np.ndarray] | None] = lambda: None  # this framework at float64, per output
    # the shadow replays this framework's own computation (a callable: known once a recording was tried)
    traced: bool | Callable[[], bool] = False
    # what ran, evaluated exactly and certified like the reference (None where not certified); default: the
    # shadow's exact side, which runs at one precision only
    make_exact: Callable[[], list[np.ndarray] | None] | None = None

    @cached_property
    def shadow(self):
        return self.make_shadow()

    @cached_property
    def is_traced(self) -> bool:
        return self.traced() if callable(self.traced) else self.traced

    @cached_property
    def float64(self) -> list[np.ndarray] | None:
        return self.make_float64()

    @cached_property
    def exact(self) -> list[np.ndarray] | None:
        if self.make_exact is not None:
            return self.make_exact()
        return None if self.shadow is None else self.shadow.exact_outputs

    def formula_exact(self, k: int, index: tuple):
        return None if self.exact is None else self.exact[k][index]


@dataclass
class Verdict:
    verdict: str
    inherent: bool | None = None
    explanation: str = ""
    cause: dict | None = None


def ulp_of(x, f: Format):
    """The spacing of `f` at the exact real x (the subnormal spacing below the normal range)."""
    exponent = mpmath.frexp(x)[1] - 1 if x != 0 else f.emin
    return mpmath.ldexp(1, max(exponent, f.emin) - (f.precision - 1))


def relative_bits(got: float, exact, f: Format) -> float:
    """log2(1 + |got - exact| / ulp(exact)): the error in units of the true value's last place."""
    if not math.isfinite(got):
        return math.inf
    return float(mpmath.log(1 + abs(mpmath.mpf(got) - exact) / ulp_of(exact, f), 2))


def _close(a: float, b: float, ev: Evidence) -> bool:
    return math.log2(1 + int(ulps(a, b, ev.f))) <= ev.tolerance_bits


def _n(x) -> str:
    return nstr(x, 6) if not isinstance(x, (float, np.floating)) else f"{float(x):.6g}"


def classify(k: int, name: str, index: tuple, got: float, exact, rounded: float, ev: Evidence) -> Verdict:
    """The verdict for output `k` (`name`) at `index`, whose float result `got` is beyond tolerance
    or whose reference is not representable (see the module docstring for the rules)."""
    f = ev.f
    shown, reference = str(f.numpy.type(got)), str(f.numpy.type(rounded))  # shortest round-trip strings
    where = f"{name}{list(index) if index else ''}"
    if math.isinf(rounded):
        return Verdict("overflow", True, f"the true {where} = {_n(exact)} exceeds the largest {f.name} "
                                         f"({_n(float(f.max_finite))}): no {f.name} result can hold it; got {shown}")
    if exact != 0 and abs(exact) < float(f.min_normal):
        flushed = got == 0 and ev.subnormals["flush_to_zero"]
        return Verdict("underflow", True, f"the true {where} = {_n(exact)} is below the smallest normal {f.name} "
                                          f"({_n(float(f.min_normal))}); got {shown}"
                                          + (f" ({ev.framework} flushes subnormals to zero)" if flushed else ""))
    mismatch = _mismatch(k, index, got, exact, rounded, ev)
    if mismatch is not None:
        return mismatch
    blame = _blame(k, index, got, rounded, ev)
    cause = None if blame is None else _cause(blame, ev)
    if blame is not None and blame.kind in ("overflow", "underflow"):
        return Verdict(blame.kind, False, f"{_said(blame, ev)}; {where} = {shown} instead of {reference}", cause)
    kappa = None if ev.kappa is None else ev.kappa[k][index]
    bits = relative_bits(got, exact, f)
    if kappa is not None and mpmath.isfinite(bits) and kappa > 0:
        allowed = float(mpmath.log(kappa, 2)) + MARGIN_BITS if mpmath.isfinite(kappa) else math.inf
        if bits <= allowed:
            return Verdict("ill-conditioning", False,
                           f"{where} is ill-conditioned here (kappa = {_n(kappa)}): {bits:.1f} bits of error are within "
                           f"log2(kappa) + {MARGIN_BITS} = {allowed:.1f}, so {f.name} cannot do materially better; "
                           "use more precision or another parametrization", cause)
    if blame is not None and blame.kind in ("cancellation", "sensitivity"):
        if kappa is None:
            return Verdict("uncertain", None, f"{_said(blame, ev)}, but the condition number is not certified, so "
                                              "cancellation and ill-conditioning cannot be told apart", cause)
        return Verdict("cancellation", False, f"{_said(blame, ev)}; the function is well conditioned "
                                              f"(kappa = {_n(kappa)}), so {where} = {shown} instead of {reference} "
                                              "is the formula's loss, not float32's", cause)
    if blame is not None and blame.kind == "inaccurate":
        return Verdict("mismatch", False, f"{_said(blame, ev)}: the implementation is another function here", cause)
    if blame is None and math.isinf(got):  # an infinity for a finite true value: only an overflow makes one
        return Verdict("overflow", False, f"inferred from the symptom, not traced: {where} = {shown} where the true "
                                          f"value {_n(exact)} is finite, so an intermediate overflowed {f.name}")
    f64 = _float64(k, index, ev)
    return Verdict("uncertain", None, f"no rounding event explains {where} = {shown} (reference {reference})"
                   + ("" if f64 is None else f", and {ev.framework} at float64 gives {_n(f64)}")
                   + ("" if kappa is not None else "; the condition number is not certified"))


def _float64(k: int, index: tuple, ev: Evidence):
    if ev.float64 is None or ev.float64[k] is None:
        return None
    return float(ev.float64[k][index])


def _mismatch(k: int, index: tuple, got: float, exact, rounded: float, ev: Evidence) -> Verdict | None:
    """Another function, not a rounding effect: what ran, evaluated exactly, is not the reference.

    Traced (JAX's jaxpr, a tf/torch recording): structural, whatever float64 does, and
    the explanation names the op where the computation departs (a clamp that engaged, a
    NaN made from numbers). Untraced: the formula's exact value and float64 must agree."""
    formula = ev.formula_exact(k, index)
    if formula is not None and _close(round_to(formula, ev.f), rounded, ev):
        return None  # the formula is the function: the error is rounding (and float64 need not run)
    if formula is not None and ev.is_traced:
        try:
            departure = None if ev.shadow is None else ev.shadow.departure(k, index)
        except Exception:  # noqa: BLE001 - as in _blame: the mismatch stands, unlocated
            departure = None
        return Verdict("mismatch", False, f"the computation that ran is another function here: its operations "
                                          f"evaluated exactly give {_n(formula)}, the reference is {_n(exact)}"
                       + ("" if departure is None else f"; {departure.explanation}"),
                       None if departure is None else _cause(departure, ev))
    f64 = _float64(k, index, ev)
    f64_reproduces = None if f64 is None else (_close(round_to(f64, ev.f), got, ev)
                                               and not _close(round_to(f64, ev.f), rounded, ev))
    if formula is None:  # no exact evaluation of what the framework runs: float64 alone decides
        if f64_reproduces:
            return Verdict("mismatch", False, f"{ev.framework} at float64 reproduces {ev.f.numpy.type(got)} ({_n(f64)}), not the "
                                              f"reference {_n(exact)} (inferred: nothing else is known of this code)")
        return None
    if f64_reproduces is False:
        return None  # float64 does not reproduce the float result: the error is rounding
    return Verdict("mismatch", False, f"the formula itself is another function here: evaluated exactly it gives "
                                      f"{_n(formula)}, the reference is {_n(exact)}"
                   + ("" if f64 is None else f", and {ev.framework} at float64 gives {_n(f64)}"))


def _blame(k: int, index: tuple, got: float, rounded: float, ev: Evidence):
    """The shadow's root cause when it applies to this framework's failure."""
    if ev.shadow is None:
        return None
    if not ev.is_traced:  # a model of tf/torch: only when JAX's float32 run of the formula fails here too
        if not hasattr(ev.shadow, "outputs"):  # a sweep's untraced impl points (traces.Points): no model of its code
            return None
        modelled = float(ev.shadow.outputs[k][index])
        if _close(modelled, rounded, ev):
            return None
    try:
        return ev.shadow.root_cause(k, index) or ev.shadow.spread_cancellation(k, index, ev.tolerance_bits) \
            or ev.shadow.amplification(k, index, ev.tolerance_bits)
    except Exception:  # noqa: BLE001 - a defect in the path analysis costs this component its cause, not the case
        return None    # its rows: the other evidence still classifies it


def _said(blame, ev: Evidence) -> str:
    said = blame.explanation.rstrip(".")
    if ev.is_traced:
        if blame.kind == "underflow" and blame.flushed and not ev.subnormals["flush_to_zero"] and blame.op.inherent[
                blame.element]:  # 0 where the subnormal exists, from a framework that keeps subnormals
            exact = _n(blame.op.exact_value[blame.element])
            return (f"{blame.where} underflowed {ev.f.name} to zero: {blame.op.short} is exactly {exact}, a "
                    f"{ev.f.name} subnormal, but {ev.framework}, which keeps subnormals, returned 0 there (its kernel "
                    "computes through a value beyond the range)")
        return said
    if blame.kind == "underflow" and blame.flushed and not ev.subnormals["flush_to_zero"]:
        exact = _n(blame.op.exact_value[blame.element])
        said = (f"{blame.where} underflows {ev.f.name} (exact {exact}, below the smallest normal); {ev.framework} "
                "keeps subnormals, so precision is lost there instead of the flush to 0 that XLA does")
    return f"inferred, not traced (JAX's {ev.f.name} run of the same formula fails there too): {said}"


def _cause(blame, ev: Evidence) -> dict:
    op = blame.op
    return {"op": op.label, "where": op.where, "pass": op.direction, "kind": blame.kind,
            "operands": blame.operands, "traced": ev.is_traced, "source": op.source}
