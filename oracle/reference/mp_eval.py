"""An mpmath interpreter for jaxprs: every primitive at the current mpmath precision.

Arrays are numpy object arrays of `mpf` (float avals) or plain numpy arrays
(bool and integer avals). Float semantics are IEEE-like where mathematics is
silent: x/0 is a signed infinity, log of a negative number is NaN, and the first
operation that turns finite operands into an infinity or a NaN is recorded as
the reason the reference leaves the function's domain.

Float literals in a jaxpr come from JAX itself (the formula's constants arrive as
arguments). A literal is used exactly when it is a short dyadic number (1, 0.5,
3.0), or replaced by the exact constant it rounds (2/sqrt(pi) in erf's
derivative); any other literal is refused rather than silently trusted.
"""

from __future__ import annotations

import gc
import math
import operator
from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction

import mpmath
import numpy as np
from mpmath import libmp, mp

from oracle.floats import FORMATS, nstr, round_to, to_fraction
from oracle.reference import indexing, special
from oracle.reference.zeros import StrongZeros, backward


class UnsupportedPrimitive(NotImplementedError):
    def __init__(self, name: str):
        super().__init__(f"unsupported primitive '{name}' in the reference jaxpr")


MAX_WHILE = 10_000  # steps of one while loop: JAX's series and continued fractions stop far sooner


class InexactLiteral(ValueError):
    pass


@dataclass
class Trace:
    """What the interpreter noticed: where the exact computation left the finite numbers, and
    whether an addition absorbed an operand whose loss a later subtraction, or a function such as log,
    exposed as an exact 0.

    Two precisions that both absorb the same operand agree on a wrong value. Such a
    `hidden_cancellation` zero is replaced by NaN, so every output it reaches is NaN
    and reference.compute does not certify it from this run; a where() that
    discards it leaves the other outputs certifiable."""

    domain: list[str] = field(default_factory=list)
    hidden_cancellation: list[str] = field(default_factory=list)


NAN = mpmath.mpf("nan")
INF = mpmath.mpf("inf")
ZERO = mpmath.mpf(0)
ONE = mpmath.mpf(1)

# Constants that JAX's own rules write as rounded literals.
KNOWN_CONSTANTS = {
    "pi": lambda: +mp.pi, "2/sqrt(pi)": lambda: 2 / mp.sqrt(mp.pi), "1/sqrt(pi)": lambda: 1 / mp.sqrt(mp.pi),
    "sqrt(pi)": lambda: mp.sqrt(mp.pi), "sqrt(2)": lambda: mp.sqrt(2), "1/sqrt(2)": lambda: 1 / mp.sqrt(2),
    "sqrt(2/pi)": lambda: mp.sqrt(2 / mp.pi), "1/sqrt(2pi)": lambda: 1 / mp.sqrt(2 * mp.pi),
    "log(2)": lambda: mp.log(2), "1/log(2)": lambda: 1 / mp.log(2), "log(10)": lambda: mp.log(10),
    "log(2pi)/2": lambda: mp.log(2 * mp.pi) / 2, "log(pi)": lambda: mp.log(mp.pi), "e": lambda: +mp.e,
    "sqrt(pi)/2": lambda: mp.sqrt(mp.pi) / 2,  # erf_inv's derivative
}


def _known_literal(x: float, dtype: str):
    f = FORMATS[dtype]
    with mp.workprec(4 * f.precision + 64):
        for value in KNOWN_CONSTANTS.values():
            for sign in (1, -1):
                if round_to(sign * value(), f) == x:
                    return sign, value
    return None


def means_itself(q: Fraction) -> bool:
    """A literal surely meant as written: an integer below 2**24, or a dyadic with a short odd part (0.5, 0.375).

    A rounded constant (0.1, pi) has a 24- or 53-bit odd part; the chance that one is this short is ~2**-12.
    """
    numerator = abs(q.numerator)
    odd_part = numerator >> ((numerator & -numerator).bit_length() - 1) if numerator else 0
    integer_ok = q.denominator == 1 and numerator <= 2**24
    return integer_ok or (q.denominator & (q.denominator - 1) == 0 and odd_part < 2**12)


def literal(x, dtype: str):
    """A jaxpr literal as an exact value (see module docstring)."""
    if dtype == "bool" or "int" in dtype:
        return np.asarray(x)
    x = float(x)
    if not math.isfinite(x):
        return _scalar(mpmath.mpf(x))
    if means_itself(to_fraction(x)):
        return _scalar(mpmath.mpf(x))
    known = _known_literal(x, dtype)
    if known is None:
        raise InexactLiteral(f"literal {x!r} in the reference jaxpr is neither short nor a known constant; "
                             "refusing to treat a rounded constant as exact")
    sign, value = known
    return _scalar(sign * value())


def _scalar(x) -> np.ndarray:
    out = np.empty((), dtype=object)
    out[()] = x
    return out


def isfinite(x) -> bool:
    parts = getattr(x, "_mpf_", None)  # (sign, mantissa, exponent, bits): finite iff a mantissa, or zero itself
    return mpmath.isfinite(x) if parts is None else bool(parts[1]) or parts == libmp.fzero


def _isnan(x) -> bool:
    return mpmath.isnan(x)


# ---------------------------------------------------------------- elementwise

def _div(a, b):
    if b == 0:
        if a == 0 or _isnan(a):
            return NAN
        return INF if a > 0 else -INF
    return a / b


def _log(x):
    return NAN if x < 0 or _isnan(x) else (-INF if x == 0 else mp.log(x))


def _log1p(x):
    return NAN if x < -1 or _isnan(x) else (-INF if x == -1 else mp.log1p(x))


def _sqrt(x):
    return NAN if x < 0 or _isnan(x) else mp.sqrt(x)


def _rsqrt(x):
    return _div(ONE, _sqrt(x))


def _pow(x, y):
    if _isnan(x) or _isnan(y):
        return NAN
    if x == 0:
        return ONE if y == 0 else (ZERO if y > 0 else INF)
    if x < 0 and not mp.isint(y):
        return NAN
    return mp.power(x, y)


def _integer_pow(x, y):
    return _pow(x, mpmath.mpf(y))


def _logistic(x):
    return _div(ONE, 1 + mp.exp(-x))


def _lgamma(x):
    if _isnan(x):
        return NAN
    if mp.isinf(x):
        return INF
    if x <= 0 and mp.isint(x):
        return INF
    return mp.re(mp.loggamma(x))


def _digamma(x):
    if _isnan(x) or (x <= 0 and mp.isint(x)) or x == -INF:
        return NAN
    return INF if x == INF else mp.digamma(x)


def _polygamma(m, x):
    if _isnan(x) or (x <= 0 and mp.isint(x)):
        return NAN
    return mp.polygamma(int(m), x)


def _max(a, b):
    return NAN if _isnan(a) or _isnan(b) else (a if a >= b else b)


def _min(a, b):
    return NAN if _isnan(a) or _isnan(b) else (a if a <= b else b)


def _sign(x):
    return NAN if _isnan(x) else mpmath.mpf(mp.sign(x))


def _tanh(x):
    return mp.tanh(x) if isfinite(x) else (NAN if _isnan(x) else mp.sign(x) * ONE)


def _exp(x):
    return ZERO if x == -INF else mp.exp(x)


def _expm1(x):
    return -ONE if x == -INF else mp.expm1(x)


def _erfc(x):
    return mp.erfc(x) if isfinite(x) else (NAN if _isnan(x) else (ZERO if x > 0 else 2 * ONE))


def _trig(fn):
    return lambda x: fn(x) if isfinite(x) else NAN


def _inverse_trig(fn, lo, hi, edge=None):
    """An inverse function defined on [lo, hi]: NaN outside; at an open end (edge given) +-edge."""
    def apply(x):
        if _isnan(x) or x < lo or x > hi:
            return NAN
        if edge is not None and (x == lo or x == hi):
            return mp.sign(x) * edge
        return fn(x)
    return apply


def _atan(x):
    return mp.atan(x) if isfinite(x) else (NAN if _isnan(x) else mp.sign(x) * mp.pi / 2)


def _scaled_bessel(order: int):
    """exp(-|x|) I_order(x) (lax.bessel_i0e / bessel_i1e): 0 at +-inf, odd for order 1."""
    def apply(x):
        if _isnan(x):
            return NAN
        if mp.isinf(x):
            return ZERO
        return mp.besseli(order, x) * mp.exp(-abs(x))
    return apply


def _gamma_args_ok(a, x) -> bool:
    return not (_isnan(a) or _isnan(x)) and a > 0 and x >= 0


def _igamma(a, x):
    """Regularized lower incomplete gamma P(a, x); NaN for a <= 0 or x < 0, as XLA."""
    if not _gamma_args_ok(a, x):
        return NAN
    return ONE if mp.isinf(x) else (ZERO if x == 0 else mp.gammainc(a, 0, x, regularized=True))


def _igammac(a, x):
    """Regularized upper incomplete gamma Q(a, x) = 1 - P(a, x), computed directly (no cancellation)."""
    if not _gamma_args_ok(a, x):
        return NAN
    return ZERO if mp.isinf(x) else (ONE if x == 0 else mp.gammainc(a, x, mp.inf, regularized=True))


def _igamma_grad_a(a, x):
    """dP(a, x)/da, by mpmath.diff at the working precision (mpmath raises its own precision for the step);
    0 where P is constant in a (x = 0 or inf)."""
    if not _gamma_args_ok(a, x):
        return NAN
    if x == 0 or mp.isinf(x):
        return ZERO
    return mp.diff(lambda t: mp.gammainc(t, 0, x, regularized=True), a)


def _rem(x, y):
    """C's fmod, which lax.rem is: x - trunc(x / y) * y, with the sign of x. Exact at any precision: the result
    is a multiple of the smaller operand's last bit below |y|, so it has no more bits than the operands
    (mpmath.fmod takes the sign of y, as Python's % does)."""
    if not (isfinite(x) and isfinite(y)) or y == 0:
        return x if isfinite(x) and mp.isinf(y) else NAN
    if abs(x) < abs(y):
        return x
    (sx, mx, ex, _), (_, my, ey, _) = x._mpf_, y._mpf_
    if ex >= ey:  # |x| = mx 2**ex: reduce 2**(ex - ey) modulo my without building it
        r, e = mx * pow(2, ex - ey, my) % my, ey
    else:  # |x| >= |y| bounds ey - ex by x's mantissa length
        r, e = mx % (my << (ey - ex)), ex
    return mp.make_mpf(libmp.from_man_exp(-r if sx else r, e))


def _round(x, away: bool):
    """x to an integer, halfway cases away from zero or to even (lax.round's two rounding methods)."""
    if not isfinite(x):
        return x
    whole = mp.floor(abs(x))
    rest = abs(x) - whole  # exact: the fraction needs no more bits than x
    up = rest > 0.5 or (rest == 0.5 and (away or whole % 2 == 1))
    return mp.sign(x) * (whole + 1 if up else whole)


FLOAT_UNARY = {
    "neg": operator.neg, "abs": abs, "sign": _sign, "exp": _exp, "exp2": lambda x: mp.power(2, x),
    "log": _log, "log1p": _log1p, "expm1": _expm1, "sqrt": _sqrt, "rsqrt": _rsqrt,
    "cbrt": lambda x: mp.sign(x) * mp.cbrt(abs(x)), "tanh": _tanh, "logistic": _logistic, "sin": _trig(mp.sin), "cos": _trig(mp.cos),
    "tan": _trig(mp.tan), "erf": lambda x: mp.erf(x) if isfinite(x) else (NAN if _isnan(x) else mp.sign(x) * ONE),
    "erfc": _erfc, "lgamma": _lgamma, "digamma": _digamma, "square": lambda x: x * x,
    "floor": mp.floor, "ceil": mp.ceil, "atan": _atan, "asin": _inverse_trig(mp.asin, -1, 1),
    "acos": _inverse_trig(mp.acos, -1, 1), "atanh": _inverse_trig(mp.atanh, -1, 1, INF),
    "asinh": lambda x: mp.asinh(x) if isfinite(x) else x, "acosh": _inverse_trig(mp.acosh, 1, INF),
    "sinh": lambda x: mp.sinh(x) if isfinite(x) else x, "cosh": lambda x: mp.cosh(x) if isfinite(x) else abs(x),
    "erf_inv": _inverse_trig(mp.erfinv, -1, 1, INF), "bessel_i0e": _scaled_bessel(0), "bessel_i1e": _scaled_bessel(1),
}
FLOAT_BINARY = {
    "add": operator.add, "add_any": operator.add, "sub": operator.sub, "mul": operator.mul, "div": _div, "pow": _pow, "max": _max, "min": _min,
    "atan2": mp.atan2, "polygamma": _polygamma, "rem": _rem, "igamma": _igamma, "igammac": _igammac,
    "igamma_grad_a": _igamma_grad_a,
}
FLOAT_UNARY.update(special.UNARY)  # bessel_i0e, bessel_i1e, erf_inv
FLOAT_BINARY.update(special.BINARY)  # igamma, igammac, igamma_grad_a
# numpy's object loops call the operator in C: the same mpf arithmetic, without a Python frame per element
_ARITHMETIC = {"add": np.add, "add_any": np.add, "sub": np.subtract, "mul": np.multiply}
ABSORBING = ("add", "add_any", "sub")
# Functions that never reach 0, 1 or -1 at a finite nonzero argument: such a result means the
# precision absorbed the difference (logistic(200) == 1), as an addition absorbs an operand.
SATURATING = ("logistic", "tanh", "erf", "erfc", "exp", "expm1", "cos",
              "igamma", "igammac", "regularized_incomplete_beta", "bessel_i0e")


def _saturated(x: np.ndarray, out: np.ndarray) -> np.ndarray:
    x = np.broadcast_to(x, out.shape)
    special = (out == 0) | (out == 1) | (out == -1)
    return special & (x != 0) & _finite_mask(x)
COMPARE = {"eq": np.equal, "ne": np.not_equal, "lt": np.less, "le": np.less_equal, "gt": np.greater, "ge": np.greater_equal}
INTEGER = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "max": np.maximum, "min": np.minimum,
           "neg": np.negative, "abs": np.abs, "sign": np.sign, "rem": np.fmod,  # C's %: sign of the dividend
           "div": lambda a, b: np.sign(a) * np.sign(b) * (np.abs(a) // np.abs(b))}  # C's /: rounds toward 0
LOGICAL = {"and": np.logical_and, "or": np.logical_or, "not": np.logical_not, "xor": np.logical_xor}

_UFUNCS: dict = {}


def _ufunc(fn, nin: int):
    key = (fn, nin)
    if key not in _UFUNCS:
        _UFUNCS[key] = np.frompyfunc(fn, nin, 1)
    return _UFUNCS[key]


def _is_float(x: np.ndarray) -> bool:
    return x.dtype == object


def _finite_mask(x: np.ndarray) -> np.ndarray:
    return np.asarray(_ufunc(isfinite, 1)(x), dtype=bool)


@contextmanager
def paused_gc():
    """Pause Python's cyclic garbage collector: mpf arithmetic makes millions of objects and no cycles."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _equation_key(eqn, ins: list) -> tuple | None:
    """What makes an equation's result: its primitive, parameters and operand arrays (None if unhashable)."""
    try:
        key = (eqn.primitive, tuple(map(id, ins)), tuple(sorted(eqn.params.items())))
        hash(key)
    except TypeError:
        return None
    return key


class Interpreter:
    """Evaluate jaxprs in mpmath at the precision of the surrounding `mp.workprec`."""

    def __init__(self, strict_literals: bool = True, strong_zeros: bool = False):
        self.trace = Trace()
        # strong zeros (the reference): the backward pass's structural zeros stay 0 times NaN (oracle.reference.zeros)
        self.zeros = StrongZeros() if strong_zeros else None
        self.backward = False  # inside a backward-pass call (its equations' own name stacks do not say so)
        self.absorbed: dict[int, np.ndarray] = {}  # id -> array holding a value an addition absorbed (kept alive)
        # strict: a float literal must mean itself or a known constant (the reference);
        # lenient: a literal is the float it is (the shadow execution replays code as written)
        self.strict_literals = strict_literals

    def literal(self, x, dtype: str) -> np.ndarray:
        if self.strict_literals or dtype == "bool" or "int" in dtype:
            return literal(x, dtype)
        return _scalar(mpmath.mpf(float(x)))

    def run(self, closed, args: list[np.ndarray]) -> list[np.ndarray]:
        """Outputs of a closed jaxpr. Python's cyclic garbage collector is paused meanwhile: the run makes
        millions of mpf objects and no cycles, and collections re-scanning them took 40% of the time."""
        consts = [self.constant(c) for c in closed.consts]
        with paused_gc():
            return self.eval_jaxpr(closed.jaxpr, consts, args)

    def constant(self, c):
        c = np.asarray(c)
        if c.dtype.kind != "f":
            return c
        out = np.empty(c.shape, dtype=object)
        for index, x in np.ndenumerate(c):
            out[index] = self.literal(x, str(c.dtype))[()]
        return out

    def eval_jaxpr(self, jaxpr, consts: list, args: list) -> list:
        """Like jax.core.eval_jaxpr, except that an equation repeating an earlier one on the same operands (AD
        writes sin(x) twice, x * x thrice) is not computed again: the values are the same."""
        env: dict = {}
        literals: dict = {}
        seen: dict = {}

        def read(v):
            if type(v).__name__ == "Literal":
                key = (type(v.val), repr(v.val), str(v.aval.dtype))
                if key not in literals:
                    literals[key] = self.literal(v.val, str(v.aval.dtype))
                return literals[key]
            return env[v]

        for v, x in zip(jaxpr.constvars, consts):
            env[v] = x
        for v, x in zip(jaxpr.invars, args):
            env[v] = x
        for eqn in jaxpr.eqns:
            ins = [read(v) for v in eqn.invars]
            key = _equation_key(eqn, ins)
            if key is not None and key in seen:
                for v, x in zip(eqn.outvars, seen[key]):
                    env[v] = x
                continue
            outs = self.apply(eqn, ins) if self.zeros is None else self.apply_strong(eqn, ins)
            if key is not None:
                seen[key] = outs
            self.watch(eqn.primitive.name, ins, outs)
            for v, x in zip(eqn.outvars, outs):
                env[v] = x
        return [read(v) for v in jaxpr.outvars]

    def watch(self, name: str, ins: list, outs: list) -> None:
        """Track absorbed additions and saturated functions through one equation (see Trace)."""
        if name in ABSORBING:
            self.watch_absorption(name, ins, outs[0])
        elif name in SATURATING and _is_float(ins[0]) and _saturated(ins[0], outs[0]).any():
            self.absorbed[id(outs[0])] = outs[0]
        elif any(id(x) in self.absorbed for x in ins):
            self.watch_exposure(name, ins, outs[0])
            for x in outs:
                self.absorbed[id(x)] = x

    def watch_absorption(self, name: str, ins: list, out: np.ndarray) -> None:
        """Taint what an addition absorbed; record a subtraction of tainted operands that cancels to exactly 0."""
        if not all(_is_float(x) for x in ins):
            return
        a, b = (np.broadcast_to(x, out.shape) for x in ins)
        nonzero_a, nonzero_b = a != ZERO, b != ZERO
        tainted = any(id(x) in self.absorbed for x in ins)
        hidden = nonzero_a & nonzero_b & (out == ZERO) if tainted else False
        if np.any(hidden):  # poison the zero: outputs it reaches become NaN and are not certified at this precision
            out[hidden] = NAN
            self.trace.hidden_cancellation.append(f"{name} cancelled to 0 after an absorbed addition")
        # an infinite sum (-inf - 0.693 = -inf) is a limit that every precision agrees on, not an absorption
        if tainted or ((((out == a) & nonzero_b) | ((out == b) & nonzero_a)) & _finite_mask(out)).any():
            self.absorbed[id(out)] = out

    def watch_exposure(self, name: str, ins: list, out: np.ndarray) -> None:
        """A function that turns absorbed operands, all finite and nonzero, into exactly 0 exposes the absorption
        as a subtraction does: log(1 + 8e-40) is log(1) = 0 at every precision below 130 bits. Poison it.
        (exp(-inf) = 0 is exact: an infinite operand is a limit, not a rounding.)"""
        if name not in FLOAT_UNARY and name not in FLOAT_BINARY or not all(_is_float(x) for x in ins):
            return
        nonzero = np.logical_and.reduce([(np.broadcast_to(x, out.shape) != ZERO) & _finite_mask(x) for x in ins])
        hidden = nonzero & (out == ZERO)
        if np.any(hidden):
            out[hidden] = NAN
            self.trace.hidden_cancellation.append(f"{name} gave 0 from operands an addition had absorbed")

    def apply_strong(self, eqn, ins: list) -> list[np.ndarray]:
        """apply, keeping the backward pass's strong zeros (a call's body inherits its pass)."""
        outer = self.backward
        self.backward = outer or backward(eqn)
        try:
            outs = self.apply(eqn, ins)
            return self.zeros.after(self, eqn, ins, outs) if self.backward else outs
        finally:
            self.backward = outer

    def apply(self, eqn, ins: list) -> list[np.ndarray]:
        """One equation's outputs (always a list) from its operands."""
        rule = getattr(self, "p_" + eqn.primitive.name.replace("-", "_"), None)
        outs = rule(*ins, **eqn.params) if rule is not None else self.elementwise(eqn.primitive.name, ins)
        if not eqn.primitive.multiple_results:
            outs = [outs]
        return [np.asarray(x) if not isinstance(x, np.ndarray) else x for x in outs]

    def elementwise(self, name: str, ins: list) -> np.ndarray:
        if name in COMPARE:
            return COMPARE[name](*ins)
        if name in LOGICAL:
            return LOGICAL[name](*ins)
        if name in FLOAT_UNARY and len(ins) == 1 and _is_float(ins[0]):
            out = _ufunc(FLOAT_UNARY[name], 1)(ins[0])
        elif name in FLOAT_BINARY and len(ins) == 2 and _is_float(ins[0]) and _is_float(ins[1]):
            one = [x.shape == () and x[()] == ONE for x in ins] if name == "mul" else [False]
            if any(one):  # AD's `mul 1.0 y`: 1 * y is y, exactly
                return np.broadcast_to(ins[one[0]], np.broadcast_shapes(*(x.shape for x in ins)))
            out = _ARITHMETIC[name](*ins) if name in _ARITHMETIC else _ufunc(FLOAT_BINARY[name], 2)(*ins)
        elif name in INTEGER and not any(map(_is_float, ins)):
            return INTEGER[name](*ins)
        else:
            raise UnsupportedPrimitive(name)
        out = np.asarray(out, dtype=object)
        self.note_domain(name, ins, out)
        return out

    def note_domain(self, name: str, ins: list, out: np.ndarray) -> None:
        """Record ops that make a NaN or infinity out of finite operands (the first few)."""
        if len(self.trace.domain) >= 8:
            return
        bad = ~_finite_mask(out)
        if not bad.any():
            return
        finite_in = np.ones(out.shape, dtype=bool)
        for x in ins:
            finite_in &= np.broadcast_to(_finite_mask(x) if _is_float(x) else True, out.shape)
        culprit = bad & finite_in
        if culprit.any():
            index = tuple(int(i) for i in np.argwhere(culprit)[0])
            operands = ", ".join(nstr(np.broadcast_to(x, out.shape)[index], 8) for x in ins if _is_float(x))
            what = "undefined (NaN)" if _isnan(out[index]) else "infinite"
            self.trace.domain.append(f"{name}({operands}) is {what}")

    # ------------------------------------------------------------ structure

    def p_convert_element_type(self, x, new_dtype, **_):
        kind = np.dtype(new_dtype).kind
        if kind == "f":
            return x if _is_float(x) else np.asarray(_ufunc(lambda v: mpmath.mpf(int(v)), 1)(x), dtype=object)
        if _is_float(x):
            return np.asarray(_ufunc(lambda v: int(v) if isfinite(v) else 0, 1)(x)).astype(new_dtype)
        return x.astype(new_dtype)

    def p_stop_gradient(self, x, **_):
        return x

    def p_copy(self, x, **_):
        return x

    p_copy_p = p_copy
    p_optimization_barrier = p_copy

    def p_broadcast_in_dim(self, x, shape, broadcast_dimensions, **_):
        expanded = np.ones(len(shape), dtype=int)
        for src, dst in enumerate(broadcast_dimensions):
            expanded[dst] = x.shape[src]
        return np.broadcast_to(np.reshape(x, tuple(expanded)), tuple(shape))

    def p_reshape(self, x, new_sizes, **_):
        return np.reshape(x, tuple(new_sizes))

    def p_squeeze(self, x, dimensions, **_):
        return np.squeeze(x, axis=tuple(dimensions))

    def p_expand_dims(self, x, dimensions, **_):
        return np.expand_dims(x, tuple(dimensions))

    def p_transpose(self, x, permutation, **_):
        return np.transpose(x, permutation)

    def p_rev(self, x, dimensions, **_):
        return np.flip(x, axis=tuple(dimensions))

    def p_slice(self, x, start_indices, limit_indices, strides, **_):
        strides = strides or (1,) * x.ndim
        return x[tuple(slice(s, e, k) for s, e, k in zip(start_indices, limit_indices, strides))]

    def p_pad(self, x, padding_value, padding_config, **_):
        for axis, (lo, hi, interior) in enumerate(padding_config):
            n = x.shape[axis]
            size = n + max(n - 1, 0) * interior
            out_shape = list(x.shape)
            out_shape[axis] = size + max(lo, 0) + max(hi, 0)
            out = np.empty(out_shape, dtype=x.dtype)
            out[...] = padding_value[()]
            index = [slice(None)] * x.ndim
            index[axis] = slice(max(lo, 0), max(lo, 0) + size, interior + 1)
            out[tuple(index)] = x
            crop = [slice(None)] * x.ndim
            crop[axis] = slice(-min(lo, 0), out_shape[axis] + min(hi, 0))
            x = out[tuple(crop)]
        return x

    def p_concatenate(self, *xs, dimension, **_):
        return np.concatenate(xs, axis=dimension)

    def p_stack(self, *xs, axis, **_):
        return np.stack(xs, axis=axis)

    def p_unstack(self, x, axis, **_):
        return [np.take(x, i, axis=axis) for i in range(x.shape[axis])]

    def p_split(self, x, sizes, axis, **_):
        return np.split(x, np.cumsum(sizes)[:-1], axis=axis)

    def p_iota(self, dtype, shape, dimension, **_):
        values = np.arange(shape[dimension]).reshape([-1 if d == dimension else 1 for d in range(len(shape))])
        values = np.broadcast_to(values, shape)
        return values.astype(dtype) if np.dtype(dtype).kind != "f" else np.asarray(_ufunc(mpmath.mpf, 1)(values), dtype=object)

    def p_select_n(self, which, *cases):
        which = np.asarray(which).astype(int)
        shape = np.broadcast_shapes(which.shape, *(c.shape for c in cases))
        return np.choose(np.broadcast_to(which, shape), [np.broadcast_to(c, shape) for c in cases])

    def p_clamp(self, lo, x, hi):
        if not _is_float(x):  # integers (lax.switch clamps its index) stay integers
            return np.minimum(np.maximum(x, lo), hi).astype(x.dtype)
        return np.asarray(_ufunc(_min, 2)(_ufunc(_max, 2)(x, lo), hi), dtype=object)

    def p_round(self, x, rounding_method, **_):
        away = int(rounding_method) == 0  # lax.RoundingMethod.AWAY_FROM_ZERO; 1 is TO_NEAREST_EVEN
        return np.asarray(_ufunc(lambda v: _round(v, away), 1)(x), dtype=object)

    def p_regularized_incomplete_beta(self, a, b, x):
        out = np.asarray(_ufunc(special.regularized_incomplete_beta, 3)(a, b, x), dtype=object)
        self.note_domain("regularized_incomplete_beta", [a, b, x], out)
        return out

    def p_is_finite(self, x):
        return _finite_mask(x)

    def p_integer_pow(self, x, y):
        out = np.asarray(_ufunc(lambda v: _integer_pow(v, y), 1)(x), dtype=object)
        self.note_domain(f"integer_pow[y={y}]", [x], out)
        return np.asarray(out, dtype=object)

    # ------------------------------------------------------------ reductions

    def _reduce(self, x, axes, fn, empty):
        if not _is_float(x):
            return {"add": np.sum, "max": np.max, "min": np.min, "mul": np.prod}[fn](x, axis=tuple(axes))
        ufunc = _ufunc({"add": lambda a, b: a + b, "max": _max, "min": _min, "mul": lambda a, b: a * b}[fn], 2)
        out = x
        for axis in sorted(axes, reverse=True):
            if out.shape[axis] == 0:
                out = np.full(out.shape[:axis] + out.shape[axis + 1:], empty, dtype=object)
            else:
                out = ufunc.reduce(out, axis=axis)
        return np.asarray(out, dtype=object)

    def p_reduce_sum(self, x, axes, **_):
        return self._reduce(x, axes, "add", ZERO)

    def p_reduce_max(self, x, axes, **_):
        return self._reduce(x, axes, "max", -INF)

    def p_reduce_min(self, x, axes, **_):
        return self._reduce(x, axes, "min", INF)

    def p_reduce_prod(self, x, axes, **_):
        return self._reduce(x, axes, "mul", ONE)

    def p_reduce_or(self, x, axes, **_):
        return np.any(x, axis=tuple(axes))

    def p_reduce_and(self, x, axes, **_):
        return np.all(x, axis=tuple(axes))

    def _cumulative(self, x, axis, reverse, fn):
        """A running reduction along `axis` (from the end when `reverse`), in order."""
        x = np.flip(x, axis) if reverse else x
        out = np.asarray(fn.accumulate(x, axis=axis), dtype=object if _is_float(x) else x.dtype)
        return np.flip(out, axis) if reverse else out

    def p_cumsum(self, x, axis, reverse, **_):
        return self._cumulative(x, axis, reverse, np.add)

    def p_cumprod(self, x, axis, reverse, **_):
        return self._cumulative(x, axis, reverse, np.multiply)

    def p_cummax(self, x, axis, reverse, **_):
        return self._cumulative(x, axis, reverse, _ufunc(_max, 2) if _is_float(x) else np.maximum)

    def p_cummin(self, x, axis, reverse, **_):
        return self._cumulative(x, axis, reverse, _ufunc(_min, 2) if _is_float(x) else np.minimum)

    def p_argmax(self, x, axes, index_dtype, **_):
        return _first_nan_or(np.argmax(x, axis=axes[0]), x, axes[0]).astype(index_dtype)

    def p_argmin(self, x, axes, index_dtype, **_):
        return _first_nan_or(np.argmin(x, axis=axes[0]), x, axes[0]).astype(index_dtype)

    # ------------------------------------------------------------ linear algebra

    def p_dot_general(self, lhs, rhs, dimension_numbers, **_):
        (lc, rc), (lb, rb) = dimension_numbers
        lf = [d for d in range(lhs.ndim) if d not in lc and d not in lb]
        rf = [d for d in range(rhs.ndim) if d not in rc and d not in rb]
        l2 = np.transpose(lhs, [*lb, *lf, *lc])
        r2 = np.transpose(rhs, [*rb, *rc, *rf])
        batch = l2.shape[: len(lb)]
        k = int(np.prod([lhs.shape[d] for d in lc], dtype=int))
        m = int(np.prod([lhs.shape[d] for d in lf], dtype=int))
        n = int(np.prod([rhs.shape[d] for d in rf], dtype=int))
        a = np.reshape(l2, (*batch, m, k))
        b = np.reshape(r2, (*batch, k, n))
        if k == 0:
            out = np.full((*batch, m, n), ZERO, dtype=object)
        else:
            out = np.matmul(a, b)
        return np.reshape(out, (*batch, *[lhs.shape[d] for d in lf], *[rhs.shape[d] for d in rf]))

    def p_triangular_solve(self, a, b, left_side, lower, transpose_a, conjugate_a, unit_diagonal):
        if transpose_a:
            a, lower = np.swapaxes(a, -1, -2), not lower
        if not left_side:  # x op(a) = b  <=>  op(a)^T x^T = b^T
            a, lower, b = np.swapaxes(a, -1, -2), not lower, np.swapaxes(b, -1, -2)
        out = np.empty(np.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + b.shape[-2:], dtype=object)
        for index in np.ndindex(out.shape[:-2]):
            out[index] = self._substitute(a[index] if a.ndim > 2 else a, b[index] if b.ndim > 2 else b, lower, unit_diagonal)
        return out if left_side else np.swapaxes(out, -1, -2)

    def _substitute(self, t, b, lower: bool, unit: bool) -> np.ndarray:
        n = t.shape[0]
        x = np.empty(b.shape, dtype=object)
        for i in range(n) if lower else reversed(range(n)):
            known = range(i) if lower else range(i + 1, n)
            acc = b[i].copy()
            for j in known:  # x[j] first: an mpf times an array tries (and fails) to convert the array via repr()
                acc = acc - x[j] * t[i, j]
            x[i] = acc if unit else np.asarray(_ufunc(_div, 2)(acc, t[i, i]), dtype=object)
        if all(_finite_mask(t).ravel()):  # the matrix is finite: a non-finite x comes from this solve
            self.note_domain("triangular_solve", [b], x)
        return x

    def p_cholesky(self, x, **_):
        out = np.empty(x.shape, dtype=object)
        for index in np.ndindex(x.shape[:-2]):
            out[index] = self._cholesky(x[index])
        return out

    zero, nan = ZERO, NAN  # this interpreter's numbers (the ball interpreter's are Arb's)

    def _cholesky(self, a):
        """Lower Cholesky factor; a matrix that is not positive definite gives NaNs (as LAPACK via JAX)."""
        n = a.shape[0]
        lower = np.full((n, n), self.zero, dtype=object)
        for j in range(n):
            root = self._pivot_root(a[j, j] - sum((lower[j, k] ** 2 for k in range(j)), self.zero), j)
            if root is None:
                return np.full((n, n), self.nan, dtype=object)
            lower[j, j] = root
            # the column at once: numpy's object matmul adds the same products in the same order, in a C loop
            below = a[j + 1:, j] - lower[j + 1:, :j] @ lower[j, :j] if j else a[j + 1:, j]
            lower[j + 1:, j] = below / lower[j, j]
        return lower

    def _pivot_root(self, d, j: int):
        """The square root of Cholesky's pivot `d` (column j); None where the matrix is not positive definite."""
        if not d > 0:
            self.trace.domain.append(f"cholesky: matrix is not positive definite (pivot {j} is {nstr(d, 8)})")
            return None
        return mp.sqrt(d)

    def p_oracle_logabsdet(self, a):
        out = np.empty(a.shape[:-2], dtype=object)
        for index in np.ndindex(out.shape):
            det = mp.det(mpmath.matrix(a[index].tolist()))
            out[index] = _log(abs(det))
            if det == 0:
                self.trace.domain.append("logdet: the matrix is singular")
        return out

    def p_oracle_inverse(self, a):
        out = np.empty(a.shape, dtype=object)
        for index in np.ndindex(a.shape[:-2]):
            try:
                inv = mp.inverse(mpmath.matrix(a[index].tolist()))
                out[index] = np.array(inv.tolist(), dtype=object)
            except ZeroDivisionError:
                self.trace.domain.append("inverse: the matrix is singular")
                out[index] = np.full(a.shape[-2:], NAN, dtype=object)
        return out

    # ------------------------------------------------------------ calls

    def p_jit(self, *args, jaxpr, **_):
        return self.eval_jaxpr(jaxpr.jaxpr, [self.constant(c) for c in jaxpr.consts], list(args))

    p_pjit = p_jit
    p_closed_call = p_jit

    def p_custom_jvp_call(self, *args, call_jaxpr, **_):
        return self.p_jit(*args, jaxpr=call_jaxpr)

    def p_custom_vjp_call(self, *args, call_jaxpr=None, fun_jaxpr=None, **_):
        return self.p_jit(*args, jaxpr=call_jaxpr or fun_jaxpr)

    p_custom_vjp_call_jaxpr = p_custom_vjp_call

    def p_remat(self, *args, jaxpr, **_):
        return self.eval_jaxpr(jaxpr, [], list(args))

    p_checkpoint = p_remat

    # ------------------------------------------------------------ indexing, platform and control flow

    def p_gather(self, operand, indices, **params):
        return indexing.gather(operand, indices, **params)

    def p_scatter(self, operand, indices, updates, **params):
        return indexing.scatter(None, operand, indices, updates, **params)

    def p_scatter_add(self, operand, indices, updates, **params):
        return indexing.scatter(np.add, operand, indices, updates, **params)

    def p_scatter_mul(self, operand, indices, updates, **params):
        return indexing.scatter(np.multiply, operand, indices, updates, **params)

    def p_scatter_min(self, operand, indices, updates, **params):
        return indexing.scatter(_ufunc(_min, 2) if _is_float(operand) else np.minimum, operand, indices, updates,
                                **params)

    def p_scatter_max(self, operand, indices, updates, **params):
        return indexing.scatter(_ufunc(_max, 2) if _is_float(operand) else np.maximum, operand, indices, updates,
                                **params)

    def p_dynamic_slice(self, operand, *starts, slice_sizes):
        """XLA clamps each start so that the slice lies inside the operand."""
        at = [min(max(int(s), 0), n - k) for s, n, k in zip(starts, operand.shape, slice_sizes)]
        return operand[tuple(slice(a, a + k) for a, k in zip(at, slice_sizes))]

    def p_dynamic_update_slice(self, operand, update, *starts):
        at = [min(max(int(s), 0), n - k) for s, n, k in zip(starts, operand.shape, update.shape)]
        out = np.array(operand)
        out[tuple(slice(a, a + k) for a, k in zip(at, update.shape))] = update
        return out

    def p_empty2(self, dtype, **_):
        """A placeholder (for a residual the chosen branch does not use) that XLA lowers to 0."""
        return _scalar(ZERO) if np.dtype(dtype).kind == "f" else np.zeros((), dtype=dtype)

    def p_platform_index(self, platforms, **_):
        """lax.platform_dependent's choice: the CPU's branch, else the default (the last, written None); the
        frameworks run on the CPU."""
        for index, names in enumerate(platforms):
            if names is None or "cpu" in names:
                return np.asarray(index, dtype=np.int32)
        raise UnsupportedPrimitive(f"platform_index (no branch for the CPU among {platforms})")

    def p_cond(self, index, *args, branches, **_):
        """lax.cond / lax.switch: only the branch the (exact) index picks runs; switch clamps the index."""
        branch = branches[min(max(int(index), 0), len(branches) - 1)]
        return self.eval_jaxpr(branch.jaxpr, [self.constant(c) for c in branch.consts], list(args))

    def p_scan(self, *args, jaxpr, length, reverse, num_consts, num_carry, **_):
        """lax.scan: `length` (static) steps of the body over the leading axis of the scanned operands."""
        consts, carry = list(args[:num_consts]), list(args[num_consts:num_consts + num_carry])
        xs = args[num_consts + num_carry:]
        body_consts = [self.constant(c) for c in jaxpr.consts]
        steps = range(length - 1, -1, -1) if reverse else range(length)
        ys = []
        for i in steps:
            outs = self.eval_jaxpr(jaxpr.jaxpr, body_consts, [*consts, *carry, *(x[i, ...] for x in xs)])
            carry = outs[:num_carry]
            ys.append(outs[num_carry:])
        if reverse:
            ys.reverse()
        stacked = []
        for k, aval in enumerate(jaxpr.out_avals[num_carry:]):
            dtype = object if np.dtype(aval.dtype).kind == "f" else aval.dtype
            stacked.append(np.stack([y[k] for y in ys]).astype(dtype) if ys else np.empty((0, *aval.shape), dtype))
        return [*carry, *stacked]

    def p_while(self, *args, cond_jaxpr, body_jaxpr, cond_nconsts, body_nconsts, **_):
        """lax.while_loop with the exact predicate. JAX's special functions loop until a term is below a float
        tolerance or a fixed count; a loop still running after MAX_WHILE steps is refused, never cut short."""
        cond_consts, body_consts = list(args[:cond_nconsts]), list(args[cond_nconsts:cond_nconsts + body_nconsts])
        carry = list(args[cond_nconsts + body_nconsts:])
        cond_closed = [self.constant(c) for c in cond_jaxpr.consts]
        body_closed = [self.constant(c) for c in body_jaxpr.consts]
        for _ in range(MAX_WHILE):
            (go,) = self.eval_jaxpr(cond_jaxpr.jaxpr, cond_closed, [*cond_consts, *carry])
            if not bool(go):
                return carry
            carry = self.eval_jaxpr(body_jaxpr.jaxpr, body_closed, [*body_consts, *carry])
        raise UnsupportedPrimitive(f"while (still looping after {MAX_WHILE} steps)")

    def p_eigh(self, x, lower=True, sort_eigenvalues=True, subset_by_index=None, **_):
        """Eigenvectors (columns) and ascending eigenvalues of the symmetric matrix whose `lower` (or upper)
        triangle is given, by mpmath's eigsy (Householder tridiagonalisation, implicit QL) to the working
        precision. Each eigenvector's sign is the one that makes its largest component (the first of equal
        ones) positive; LAPACK's sign is arbitrary, and a consumer of eigh that depends on it is not a
        function of the matrix."""
        vectors = np.empty(x.shape, dtype=object)
        values = np.empty(x.shape[:-1], dtype=object)
        n = x.shape[-1]
        for index in np.ndindex(x.shape[:-2]):
            a = x[index]
            if not all(isfinite(v) for v in a.ravel()):
                vectors[index], values[index] = np.full((n, n), NAN, dtype=object), np.full(n, NAN, dtype=object)
                continue
            tri = np.tril(np.ones((n, n), dtype=bool)) if lower else np.triu(np.ones((n, n), dtype=bool))
            full = np.where(tri, a, a.T)
            e, q = mp.eigsy(mpmath.matrix(full.tolist()))
            q = np.array(q.tolist(), dtype=object)
            for j in range(n):
                column = [abs(v) for v in q[:, j]]
                if q[column.index(max(column)), j] < 0:
                    q[:, j] = -q[:, j]
            vectors[index], values[index] = q, np.array([e[i] for i in range(n)], dtype=object)
        if subset_by_index is not None and tuple(subset_by_index) != (0, n):
            lo, hi = subset_by_index
            vectors, values = vectors[..., lo:hi], values[..., lo:hi]
        return [vectors, values]


def _first_nan_or(index: np.ndarray, x: np.ndarray, axis: int) -> np.ndarray:
    """XLA's argmax/argmin pick the first NaN of a slice (numpy's object loop compares, and NaN never wins)."""
    if not _is_float(x):
        return index
    nan = np.asarray(_ufunc(_isnan, 1)(x), dtype=bool)
    return np.where(nan.any(axis=axis), np.argmax(nan, axis=axis), index)


def to_mp(x: np.ndarray) -> np.ndarray:
    """Exact mpf array of a numpy float array (every float16/32/64 value is an mpf); an integer or boolean
    array (an integer input: labels, lengths) stays as it is, as the interpreter holds integers."""
    if np.asarray(x).dtype.kind in "biu":
        return np.asarray(x)
    out = np.empty(np.shape(x), dtype=object)
    with mp.workprec(64):  # >= 53 bits: the conversion is exact
        for index, v in np.ndenumerate(np.asarray(x, dtype=np.float64)):
            out[index] = mpmath.mpf(float(v))
    return out

