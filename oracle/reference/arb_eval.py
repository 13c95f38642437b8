"""A ball-arithmetic interpreter for jaxprs: every float is an Arb ball (python-flint) that provably
contains the exact value of the operation it came from.

Where mp_eval's two precisions only agree, a ball proves: when both endpoints of a
component's ball round to one float, that float is the correctly rounded exact
value (reference.compute's `arb` engine). Nothing here needs the absorption
heuristics of mp_eval: an absorbed and then cancelled operand is simply a wide ball.

IEEE conventions are those of mp_eval (x/0 is a signed infinity, log(0) = -inf, log(-1)
and inf - inf are NaN; the limits at the infinities come from mp_eval's own rules).
Every NaN or infinity here is decided, never a ball too wide to tell: a branch the
enclosure cannot decide (a comparison of overlapping balls, log of a ball around 0,
0 * inf with an inexact 0) raises `Undecided`, and the caller raises the precision.
A primitive without a ball rule raises UnsupportedPrimitive (the caller falls back
to mp_eval). The structural primitives (reshape, slice, select_n, ...) are mp_eval's:
they move objects and never look at their values.
"""

from __future__ import annotations

import itertools
import operator
import weakref

import mpmath
import numpy as np
from flint import arb, arb_mat, arf, ctx
from mpmath import libmp, mp

from oracle.reference import mp_eval
from oracle.reference.mp_eval import FLOAT_BINARY, FLOAT_UNARY, INTEGER, LOGICAL, UnsupportedPrimitive, _scalar, _ufunc


class Undecided(ArithmeticError):
    """The enclosure is too wide to decide a branch, a sign or a domain at this precision."""


NAN = arb.nan()
POS_INF, NEG_INF = arb.pos_inf(), arb.neg_inf()
ZERO, ONE = arb(0), arb(1)

# constants JAX writes as rounded literals (mp_eval.KNOWN_CONSTANTS), as balls
KNOWN_CONSTANTS = {
    "pi": lambda: arb.pi(), "2/sqrt(pi)": lambda: 2 / arb.pi().sqrt(), "1/sqrt(pi)": lambda: 1 / arb.pi().sqrt(),
    "sqrt(pi)": lambda: arb.pi().sqrt(), "sqrt(2)": lambda: arb(2).sqrt(), "1/sqrt(2)": lambda: 1 / arb(2).sqrt(),
    "sqrt(2/pi)": lambda: (2 / arb.pi()).sqrt(), "1/sqrt(2pi)": lambda: 1 / (2 * arb.pi()).sqrt(),
    "log(2)": lambda: arb(2).log(), "1/log(2)": lambda: 1 / arb(2).log(), "log(10)": lambda: arb(10).log(),
    "log(2pi)/2": lambda: (2 * arb.pi()).log() / 2, "log(pi)": lambda: arb.pi().log(), "e": lambda: arb.const_e(),
    "sqrt(pi)/2": lambda: arb.pi().sqrt() / 2,
}


# ---------------------------------------------------------------- scalars

def infinite(x) -> bool:
    """An infinity: Arb's ball with an infinite midpoint and a finite radius (-inf - [1.3 +- 1e-30] is one)."""
    return not x.is_nan() and not x.mid().is_finite() and x.rad().is_finite()


def exact(x) -> bool:
    """A single value: radius 0, or an infinity."""
    return x.rad() == 0 or infinite(x)


def special(x) -> bool:
    """An infinity or a NaN (never a finite ball, nor a finite midpoint with an infinite radius)."""
    return x.is_nan() or infinite(x)


def to_mpf(x):
    """The midpoint of a ball as an mpf, exactly (the value itself for an exact ball or an infinity)."""
    if x.is_nan():
        return mpmath.mpf("nan")
    mid = x.mid()
    if not mid.is_finite():
        return mpmath.mpf("inf") if mid > 0 else mpmath.mpf("-inf")
    man, exp = mid.man_exp()
    return mp.make_mpf(libmp.from_man_exp(int(man), int(exp)))  # exact: mpf() would round to mp.prec


def endpoints(x) -> tuple:
    """The ball's endpoints as exact mpf (one value for an exact ball or an infinity)."""
    if exact(x):
        return (to_mpf(x),)
    mid, rad = to_mpf(x)._mpf_, to_mpf(x.rad())._mpf_
    return mp.make_mpf(libmp.mpf_sub(mid, rad, 0)), mp.make_mpf(libmp.mpf_add(mid, rad, 0))


def from_mpf(x):
    """An mpf as an exact ball (mpmath's limits at the infinities are exact: 0, +-1, 2, +-inf, NaN)."""
    if mpmath.isnan(x):
        return NAN
    if mpmath.isinf(x):
        return POS_INF if x > 0 else NEG_INF
    sign, man, exp, _ = x._mpf_  # (mpf.man_exp drops the sign; a power 2**exp with exp < 0 is not exact in Arb)
    return arb(arf((-int(man) if sign else int(man), int(exp)))) if man else ZERO


def sign(x) -> int:
    """-1, 0 or 1, decided; Undecided for a ball that straddles or touches 0 without being 0."""
    if x > 0:
        return 1
    if x < 0:
        return -1
    if x.is_zero():
        return 0
    raise Undecided("sign of a ball around 0")


def _compare(op, negation):
    def compare(a, b):
        if a.is_nan() or b.is_nan():
            return op is operator.ne
        if op(a, b):
            return True
        if negation(a, b):
            return False
        raise Undecided("comparison of overlapping balls")
    return compare


_NEGATION = {operator.lt: operator.ge, operator.le: operator.gt, operator.gt: operator.le, operator.ge: operator.lt,
             operator.eq: operator.ne, operator.ne: operator.eq}  # on balls, "not a < b" is not "a >= b": both asked
COMPARE = {name: _ufunc(_compare(op, _NEGATION[op]), 2) for name, op in
           {"eq": operator.eq, "ne": operator.ne, "lt": operator.lt, "le": operator.le, "gt": operator.gt,
            "ge": operator.ge}.items()}


def _at_specials(name: str, fn):
    """Wrap a finite-ball rule: NaN and the infinities take mp_eval's rule (its limits are exact values)."""
    mp_rule = FLOAT_UNARY.get(name) or FLOAT_BINARY.get(name) or mp_eval.special.TERNARY.get(name)

    def rule(*xs):
        if all(x.is_finite() for x in xs):  # the common case, one C call per operand
            out = fn(*xs)
            if out.is_nan() and out is not NAN:  # Arb's own NaN says "indeterminate"; a rule's NaN is NAN itself
                raise Undecided(f"{name}: Arb could not enclose it at this precision")
            return out
        if any(x.is_nan() for x in xs):
            return NAN
        if any(infinite(x) for x in xs):  # decided when every endpoint of the other operands gives one value
            values = {mp_rule(*choice) for choice in itertools.product(*map(endpoints, xs))}
            if len(values) > 1 and not all(mpmath.isnan(v) for v in values):
                raise Undecided(f"{name} of an infinity and a ball that straddles a different limit")
            value = values.pop()
            if mpmath.isfinite(value) and not mpmath.isint(value):  # a rounded limit (atan2(inf, 1) = pi/2)
                raise Undecided(f"{name} at an infinity has a limit that is not an integer")
            return from_mpf(value)
        out = fn(*xs)
        if out.is_nan() and out is not NAN:  # Arb's own NaN says "indeterminate"; a rule's decided NaN is NAN itself
            raise Undecided(f"{name}: Arb could not enclose it at this precision")
        return out
    return rule


def _positive_domain(fn, at_zero, strict: bool = True):
    """fn on x > 0 (x >= 0 when not strict), `at_zero` at an exact 0, NaN below; Undecided for a ball around 0."""
    def rule(x):
        if x > 0 or (not strict and x >= 0):
            return fn(x)
        if x.is_zero():
            return at_zero
        if x < 0:
            return NAN
        raise Undecided("a ball around a domain boundary")
    return rule


def _div(a, b):
    if b.is_zero():
        s = sign(a)
        return NAN if s == 0 else (POS_INF if s > 0 else NEG_INF)
    if 0 in b:
        raise Undecided("division by a ball around 0")
    return a / b


def _log1p(x):
    if x > -1:
        return x.log1p()
    if exact(x) and x == -1:
        return NEG_INF
    if x < -1:
        return NAN
    raise Undecided("log1p of a ball around -1")


def _lgamma(x):
    if x > 0:
        return x.lgamma()
    if x.is_integer() and exact(x):
        return POS_INF
    if x.contains_integer():
        raise Undecided("lgamma of a ball around a pole")
    return (arb.pi() / abs(x.sin_pi())).log() - (1 - x).lgamma()  # reflection


def _digamma(x):
    if x > 0:
        return x.digamma()
    if x.is_integer() and exact(x):
        return NAN
    if x.contains_integer():
        raise Undecided("digamma of a ball around a pole")
    return (1 - x).digamma() - arb.pi() * x.cot_pi()  # reflection


def _polygamma(m, x):
    if not (exact(m) and m.is_integer() and m >= 0):
        raise Undecided("polygamma of a non-integer order")
    order = int(m.unique_fmpz())
    if order == 0:
        return _digamma(x)
    if x.contains_integer() and not x > 0:
        if exact(x):
            return NAN
        raise Undecided("polygamma of a ball around a pole")
    factorial = arb(order + 1).gamma()
    shift = 0 if x > 0 else int(mpmath.ceil(-to_mpf(x))) + 1
    if shift > 10_000:
        raise UnsupportedPrimitive("polygamma far left of 0")
    # psi_m(x) = psi_m(x + n) - (-1)^m m! sum_{k<n} (x + k)^-(m+1); psi_m(y) = (-1)^(m+1) m! zeta(m+1, y) for y > 0
    series = sum((1 / (x + k) ** (order + 1) for k in range(shift)), ZERO)
    return (-1) ** (order + 1) * factorial * (arb(order + 1).zeta(x + shift) + series)


def _pow(x, y):
    if x.is_zero():
        s = sign(y)
        return ONE if s == 0 else (ZERO if s > 0 else POS_INF)
    if x > 0:
        return x ** y
    if exact(y) and y.is_integer():
        n = int(y.unique_fmpz())
        return x ** n if n >= 0 else _div(ONE, x ** -n)
    if x < 0:
        if y.contains_integer():
            raise Undecided("negative base to a ball around an integer")
        return NAN
    raise Undecided("power of a ball around 0")


def _odd_scaled_i1(x):
    s = sign(x)
    return ZERO if s == 0 else s * abs(x).bessel_i(1, scaled=True)


def _erf_inv(x):
    if abs(x) < 1:
        return x.erfinv()
    if exact(x) and abs(x) == 1:
        return POS_INF if x > 0 else NEG_INF
    if abs(x) > 1:
        return NAN
    raise Undecided("erf_inv of a ball around +-1")


def _gamma_args(fn):
    def rule(a, x):
        if not a > 0 or x < 0:
            if a <= 0 or x < 0:
                return NAN
            raise Undecided("incomplete gamma at a ball around its domain's edge")
        if x.is_zero():
            return fn(a, None)
        if not x > 0:
            raise Undecided("incomplete gamma at a ball around 0")
        return fn(a, x)
    return rule


def _beta(a, b, x):
    if not (a > 0 and b > 0 and x >= 0 and x <= 1):
        if a <= 0 or b <= 0 or x < 0 or x > 1:
            return NAN
        raise Undecided("incomplete beta at a ball around its domain's edge")
    if x.is_zero():
        return ZERO
    if exact(x) and x == 1:
        return ONE
    if x > 0.5:
        return 1 - (1 - x).beta_lower(b, a, 1)
    return x.beta_lower(a, b, 1)


def _erfc(x):
    """Arb's erfc only bounds the tail far out (erfc(7e39) at 106 bits is [+/- 5e-1981384919...]); there
    erfc(x) = Q(1/2, x^2), the regularized upper incomplete gamma function, which Arb evaluates."""
    out = x.erfc()
    if x > 0 and 0 in out:
        return (x * x).gamma_upper(arb(0.5), 1)
    return out


def _max(a, b):
    return NAN if a.is_nan() or b.is_nan() else a.max(b)


def _min(a, b):
    return NAN if a.is_nan() or b.is_nan() else a.min(b)


def _float_sign(x):
    return arb(sign(x))


def _floor(x):
    return x.floor()


def _closed_domain(fn, lo, hi):
    """fn on the closed interval [lo, hi] (asin, acos, acosh), NaN certainly outside, Undecided across an end."""
    def rule(x):
        if (lo is None or x >= lo) and (hi is None or x <= hi):
            return fn(x)
        if (lo is not None and x < lo) or (hi is not None and x > hi):
            return NAN
        raise Undecided("a ball across a domain boundary")
    return rule


def _atanh(x):
    """atanh on (-1, 1), +-inf at exactly +-1 (mp_eval's edge), NaN beyond."""
    if x > -1 and x < 1:
        return x.atanh()
    if exact(x) and abs(x) == 1:
        return POS_INF if x > 0 else NEG_INF
    if x < -1 or x > 1:
        return NAN
    raise Undecided("atanh of a ball around +-1")


def _rem(x, y):
    """C's fmod (lax.rem), x - trunc(x / y) y: continuous except where x / y crosses a nonzero integer, where
    it jumps by y. Exact operands take mp_eval's exact rule; a ball whose quotient straddles such an integer
    is Undecided (the precision rises until it does not, or the mpmath engine decides)."""
    if y.is_zero():
        return NAN
    if 0 in y:
        raise Undecided("rem by a ball around 0")
    if exact(x) and exact(y):
        return from_mpf(mp_eval._rem(to_mpf(x), to_mpf(y)))
    if abs(x) < abs(y):
        return x
    whole = {_truncate(e) for e in map(from_mpf, endpoints(x / y))}
    if len(whole) > 1:
        raise Undecided("rem where the quotient straddles an integer")
    return x - whole.pop() * y


FINITE_UNARY = {
    "neg": operator.neg, "abs": abs, "sign": _float_sign, "exp": lambda x: x.exp(), "exp2": lambda x: arb(2) ** x,
    "log": _positive_domain(lambda x: x.log(), NEG_INF), "log1p": _log1p, "expm1": lambda x: x.expm1(),
    "sqrt": _positive_domain(lambda x: x.sqrt(), ZERO, strict=False),
    "rsqrt": _positive_domain(lambda x: x.rsqrt(), POS_INF),
    "cbrt": lambda x: sign(x) * abs(x).root(3), "tanh": lambda x: x.tanh(),
    "logistic": lambda x: 1 / (1 + (-x).exp()), "sin": lambda x: x.sin(), "cos": lambda x: x.cos(),
    "tan": lambda x: x.tan(), "erf": lambda x: x.erf(), "erfc": _erfc, "lgamma": _lgamma,
    "digamma": _digamma, "square": lambda x: x ** 2, "floor": _floor, "ceil": lambda x: x.ceil(),
    "bessel_i0e": lambda x: abs(x).bessel_i(0, scaled=True), "bessel_i1e": _odd_scaled_i1, "erf_inv": _erf_inv,
    "sinh": lambda x: x.sinh(), "cosh": lambda x: x.cosh(), "asinh": lambda x: x.asinh(), "atan": lambda x: x.atan(),
    "asin": _closed_domain(lambda x: x.asin(), -1, 1), "acos": _closed_domain(lambda x: x.acos(), -1, 1),
    "acosh": _closed_domain(lambda x: x.acosh(), 1, None), "atanh": _atanh,
}
FINITE_BINARY = {
    "div": _div, "pow": _pow, "max": _max, "min": _min, "atan2": lambda y, x: arb.atan2(y, x),
    "polygamma": _polygamma,
    "igamma": _gamma_args(lambda a, x: ZERO if x is None else x.gamma_lower(a, 1)),
    "igammac": _gamma_args(lambda a, x: ONE if x is None else x.gamma_upper(a, 1)),
    "rem": _rem,
}
UNARY = {name: _ufunc(_at_specials(name, fn), 1) for name, fn in FINITE_UNARY.items()}
BINARY = {name: _ufunc(fn if name in ("max", "min") else _at_specials(name, fn), 2) for name, fn in FINITE_BINARY.items()}
BETA = _ufunc(_at_specials("regularized_incomplete_beta", _beta), 3)


def _atan_with_limits(rule):
    """atan's limits at +-inf are +-pi/2, which `_at_specials` (integer limits only) leaves undecided at every
    precision: here they are exact balls of pi/2."""
    def atan(x):
        if infinite(x):
            return arb.pi() / 2 if x > 0 else -arb.pi() / 2
        return rule(x)
    return atan


UNARY["atan"] = _ufunc(_atan_with_limits(_at_specials("atan", FINITE_UNARY["atan"])), 1)
# +, -, * run in numpy's C loop over arb's own operators; the few NaNs they give are then decided
ARITHMETIC = {"add": np.add, "add_any": np.add, "sub": np.subtract, "mul": np.multiply}


def _above(bound):
    return lambda x: np.asarray(np.greater(x, bound), dtype=bool).all()


def _away_from_zero(a, b):
    return (np.asarray(np.greater(b, 0), dtype=bool) | np.asarray(np.less(b, 0), dtype=bool)).all()


# Rules whose answer, when every operand is finite and the guard holds everywhere, is one Arb method: numpy then
# calls the method in C over the whole array, without the rule's Python frame per element (3-5x faster). Where
# an operand is not finite, the guard fails somewhere, or Arb gives its indeterminate NaN, the rule runs instead.
DIRECT = {
    "exp": (arb.exp, None), "expm1": (arb.expm1, None), "sin": (arb.sin, None), "cos": (arb.cos, None),
    "tanh": (arb.tanh, None), "erf": (arb.erf, None), "neg": (operator.neg, None), "log": (arb.log, _above(0)),
    "log1p": (arb.log1p, _above(-1)), "sqrt": (arb.sqrt, _above(0)), "rsqrt": (arb.rsqrt, _above(0)),
    "lgamma": (arb.lgamma, _above(0)), "digamma": (arb.digamma, _above(0)), "div": (operator.truediv, _away_from_zero),
}
_IS_FINITE = np.frompyfunc(arb.is_finite, 1, 1)


def _direct(name: str, ins: list, finite) -> tuple[np.ndarray | None, bool]:
    """(DIRECT's method over the arrays `ins`, whether every result ball is finite), or (None, False) where the rule
    must decide (see DIRECT). `finite(array)` says whether every ball of an operand is finite."""
    method, guard = DIRECT[name]
    if not all(finite(x) for x in ins) or (guard is not None and not guard(*ins)):
        return None, False
    out = np.asarray(_ufunc(method, len(ins))(*ins), dtype=object)
    if np.asarray(_IS_FINITE(out), dtype=bool).all():
        return out, True
    return (None, False) if np.asarray(_IS_NAN(out), dtype=bool).any() else (out, False)


def _decide_nan(a, b, out):
    """A NaN from arb's +, -, *: IEEE's NaN when its operands are exact (inf - inf, 0 * inf), else undecided."""
    if out.is_nan() and not (a.is_nan() or b.is_nan()) and not (exact(a) and exact(b)):
        raise Undecided("arithmetic of an infinity and an inexact ball")
    return out


_DECIDE = _ufunc(_decide_nan, 3)
_IS_NAN = _ufunc(arb.is_nan, 1)


def _is_finite(x):
    if x.is_nan():
        return False
    if x.is_finite():
        return True
    if exact(x):
        return False
    raise Undecided("a ball with an infinite radius")


# ---------------------------------------------------------------- interpreter

class BallInterpreter(mp_eval.Interpreter):
    """Evaluate jaxprs in Arb balls at the precision of `ball_precision(prec)`."""

    def __init__(self):
        super().__init__(strict_literals=True)
        # id -> (weak reference to the array, every ball in it finite): arrays are never changed once made, so
        # each is checked at most once, and +, -, * of finite arrays are known finite without a pass
        self.finite: dict[int, tuple[weakref.ref, bool]] = {}

    def all_finite(self, x: np.ndarray) -> bool:
        entry = self.finite.get(id(x))
        if entry is None or entry[0]() is not x:  # (an id reused after its array died is a different array)
            entry = (weakref.ref(x), bool(np.asarray(_IS_FINITE(x), dtype=bool).all()))
            self.finite[id(x)] = entry
        return entry[1]

    def known_finite(self, x: np.ndarray) -> None:
        self.finite[id(x)] = (weakref.ref(x), True)

    def watch(self, name, ins, outs):  # a ball carries its own error: no absorption bookkeeping
        return None

    def note_domain(self, name, ins, out):  # the mpmath run that checks every ball names the domain
        return None

    def literal(self, x, dtype: str) -> np.ndarray:
        if dtype == "bool" or "int" in dtype:
            return np.asarray(x)
        x = float(x)
        if x != x or x in (float("inf"), float("-inf")) or mp_eval.means_itself(mp_eval.to_fraction(x)):
            return _scalar(arb(x) if x == x else NAN)
        known = mp_eval._known_literal(x, dtype)
        if known is None:
            mp_eval.literal(x, dtype)  # raises InexactLiteral with mp_eval's message
        sign_, value = known
        name = next(key for key, fn in mp_eval.KNOWN_CONSTANTS.items() if fn is value)
        return _scalar(sign_ * KNOWN_CONSTANTS[name]())

    def elementwise(self, name: str, ins: list) -> np.ndarray:
        floats = [mp_eval._is_float(x) for x in ins]
        if name in COMPARE and all(floats) and ins[0] is ins[1]:  # x != x: a value equals itself unless NaN
            nan = np.asarray(_IS_NAN(ins[0]), dtype=bool)
            return {"eq": ~nan, "le": ~nan, "ge": ~nan, "ne": nan}.get(name, np.zeros(nan.shape, bool))
        if name in COMPARE and all(floats):
            return np.asarray(COMPARE[name](*ins), dtype=bool)
        if name in mp_eval.COMPARE:
            return mp_eval.COMPARE[name](*ins)
        if name in LOGICAL:
            return LOGICAL[name](*ins)
        if not any(floats) and name in INTEGER:
            return INTEGER[name](*ins)
        if all(floats) and name in DIRECT:
            out, finite = _direct(name, ins, self.all_finite)
            if out is not None:
                if finite:
                    self.known_finite(out)
                return out
        if all(floats) and len(ins) == 1 and name in UNARY:
            return np.asarray(UNARY[name](ins[0]), dtype=object)
        if all(floats) and len(ins) == 2 and name in ARITHMETIC:
            out = np.asarray(ARITHMETIC[name](*ins), dtype=object)
            if self.all_finite(ins[0]) and self.all_finite(ins[1]):  # Arb's +, -, * of finite balls: finite
                self.known_finite(out)
            elif np.asarray(_IS_NAN(out), dtype=bool).any():
                _DECIDE(*ins, out)
            return out
        if all(floats) and len(ins) == 2 and name in BINARY:
            return np.asarray(BINARY[name](*ins), dtype=object)
        raise UnsupportedPrimitive(name)

    def p_dot_general(self, lhs, rhs, **params):
        out = super().p_dot_general(lhs, rhs, **params)
        if np.asarray(_IS_NAN(out), dtype=bool).any() and not all(exact(v) for v in (*lhs.ravel(), *rhs.ravel())):
            raise Undecided("a product of infinities and inexact balls in dot_general")
        return out

    def p_regularized_incomplete_beta(self, a, b, x):
        return np.asarray(BETA(a, b, x), dtype=object)

    def p_convert_element_type(self, x, new_dtype, **_):
        kind = np.dtype(new_dtype).kind
        if kind == "f":
            return x if mp_eval._is_float(x) else np.asarray(_ufunc(lambda v: arb(int(v)), 1)(x), dtype=object)
        if mp_eval._is_float(x):
            return np.asarray(_ufunc(_truncate, 1)(x)).astype(new_dtype)
        return x.astype(new_dtype)

    def p_iota(self, dtype, shape, dimension, **_):
        values = mp_eval.Interpreter.p_iota(self, "int64", shape, dimension)
        return values.astype(dtype) if np.dtype(dtype).kind != "f" else np.asarray(_ufunc(arb, 1)(values), dtype=object)

    def p_clamp(self, lo, x, hi):
        return np.asarray(BINARY["min"](BINARY["max"](x, lo), hi), dtype=object)

    def p_is_finite(self, x):
        return np.asarray(_ufunc(_is_finite, 1)(x), dtype=bool)

    def p_integer_pow(self, x, y):
        return np.asarray(BINARY["pow"](x, arb(y)), dtype=object)

    def _reduce(self, x, axes, fn, empty):
        if not mp_eval._is_float(x):
            return super()._reduce(x, axes, fn, empty)
        ufunc = {"add": np.add, "mul": np.multiply, "max": _ufunc(_max, 2), "min": _ufunc(_min, 2)}[fn]
        ball_empty = {"add": ZERO, "mul": ONE, "max": NEG_INF, "min": POS_INF}[fn]
        out = x
        for axis in sorted(axes, reverse=True):
            if out.shape[axis] == 0:
                out = np.full(out.shape[:axis] + out.shape[axis + 1:], ball_empty, dtype=object)
            else:
                out = ufunc.reduce(out, axis=axis)
        out = np.asarray(out, dtype=object)
        if fn in ("add", "mul") and np.asarray(_IS_NAN(out), dtype=bool).any() and not np.asarray(_IS_NAN(x), bool).any():
            if not all(exact(v) for v in x.ravel()):
                raise Undecided("a sum or product of infinities and inexact balls")
        return out

    def p_argmax(self, x, axes, index_dtype, **_):
        return self._arg_extreme(x, axes[0], index_dtype, operator.gt, operator.ge)

    def p_argmin(self, x, axes, index_dtype, **_):
        return self._arg_extreme(x, axes[0], index_dtype, operator.lt, operator.le)

    def _arg_extreme(self, x, axis, index_dtype, beats, ties):
        """The first index of the extreme along `axis`, decided: the winner certainly beats every ball before it
        and certainly beats or exactly ties every ball after it (an exact tie goes to the first, as in XLA);
        Undecided when no ball is certain. The first NaN wins, as in XLA."""
        if not mp_eval._is_float(x):
            return super().p_argmax(x, [axis], index_dtype) if beats is operator.gt else \
                super().p_argmin(x, [axis], index_dtype)
        moved = np.moveaxis(x, axis, -1)
        out = np.empty(moved.shape[:-1], dtype=index_dtype)
        for index in np.ndindex(out.shape):
            row = moved[index]
            nan = [i for i, v in enumerate(row) if v.is_nan()]
            if nan:  # XLA picks the first NaN (a ball's NaN is decided, never a ball too wide to tell)
                out[index] = nan[0]
                continue
            winner = next((i for i, v in enumerate(row)
                           if all(beats(v, w) for w in row[:i])
                           and all(beats(v, w) or (ties(v, w) and exact(v) and exact(w) and v == w) for w in row[i + 1:])),
                          None)
            if winner is None:
                raise Undecided("argmax/argmin of overlapping balls")
            out[index] = winner
        return out

    def p_eigh(self, *_, **__):  # mp_eval's rule runs mpmath's eigsy, which would turn the balls into mpf
        raise UnsupportedPrimitive("eigh (python-flint has no enclosure of a symmetric matrix's eigenvectors)")

    def p_round(self, x, rounding_method, **_):
        return np.asarray(_ufunc(lambda v: _round(v, int(rounding_method) == 0), 1)(x), dtype=object)

    def p_cummax(self, x, axis, reverse, **_):
        return self._cumulative(x, axis, reverse, BINARY["max"] if mp_eval._is_float(x) else np.maximum)

    def p_cummin(self, x, axis, reverse, **_):
        return self._cumulative(x, axis, reverse, BINARY["min"] if mp_eval._is_float(x) else np.minimum)

    def p_scatter_max(self, operand, indices, updates, **params):
        return mp_eval.indexing.scatter(BINARY["max"] if mp_eval._is_float(operand) else np.maximum, operand, indices,
                                        updates, **params)

    def p_scatter_min(self, operand, indices, updates, **params):
        return mp_eval.indexing.scatter(BINARY["min"] if mp_eval._is_float(operand) else np.minimum, operand, indices,
                                        updates, **params)

    def _substitute(self, t, b, lower: bool, unit: bool) -> np.ndarray:
        """The exact solution's enclosure, by Arb's certified solver (the triangle's zeros are exact); the
        interpreter's p_triangular_solve has already reduced every form to this one."""
        n = t.shape[0]
        keep = np.tril(np.ones((n, n), bool)) if lower else np.triu(np.ones((n, n), bool))
        t = np.where(keep, t, ZERO)
        if unit:
            t[np.diag_indices(n)] = ONE
        return _solve(t, b)

    zero, nan = ZERO, NAN

    def _pivot_root(self, d, j: int):
        """A pivot's root where the ball is certainly positive; None (NaNs, as LAPACK) where it is certainly not."""
        if d > 0:
            return d.sqrt()
        if d <= 0 or d.is_nan():
            return None
        raise Undecided("cholesky pivot around 0")

    def p_oracle_logabsdet(self, a):
        out = np.empty(a.shape[:-2], dtype=object)
        for index in np.ndindex(out.shape):
            det = _matrix(a[index]).det()
            out[index] = NEG_INF if det.is_zero() else (abs(det).log() if 0 not in det else _undecided("det around 0"))
        return out

    def p_oracle_inverse(self, a):
        out = np.empty(a.shape, dtype=object)
        for index in np.ndindex(a.shape[:-2]):
            try:
                out[index] = np.array(_matrix(a[index]).inv(nonstop=False).tolist(), dtype=object).reshape(a.shape[-2:])
            except ZeroDivisionError:
                raise Undecided("inverse of a matrix Arb cannot prove invertible") from None
        return out


def _undecided(why: str):
    raise Undecided(why)


def _matrix(a: np.ndarray):
    if any(not v.is_finite() for v in a.ravel()):
        raise UnsupportedPrimitive("linear algebra on non-finite entries")
    return arb_mat(a.tolist())


def _solve(t: np.ndarray, b: np.ndarray) -> np.ndarray:
    vector = b.ndim == 1
    rhs = b[:, None] if vector else b
    if any(not v.is_finite() for v in rhs.ravel()):
        raise UnsupportedPrimitive("triangular_solve with non-finite entries")
    try:
        x = _matrix(t).solve(arb_mat(rhs.tolist()))
    except ZeroDivisionError:
        raise Undecided("a triangular matrix Arb cannot prove nonsingular") from None
    out = np.array(x.tolist(), dtype=object).reshape(rhs.shape)
    return out[:, 0] if vector else out


def _round(x, away: bool):
    """lax.round of a ball: rounding to an integer is monotone, so when both endpoints round to one integer every
    point between does; a ball across a half-integer (where it jumps) is Undecided. NaN and infinities pass."""
    if special(x):
        return x
    values = set()
    for e in endpoints(x):  # an endpoint may carry more bits than mpmath's working precision: keep them all
        with mp.workprec(max(mp.prec, e._mpf_[3] + 8)):
            values.add(mp_eval._round(e, away))
    if len(values) > 1:
        raise Undecided("round of a ball across a half-integer")
    return from_mpf(values.pop())


def _truncate(v) -> int:
    if not v.is_finite():
        return 0
    ends = {int(e) for e in endpoints(v)}  # int() truncates an mpf exactly (abs() would round it to mp.prec)
    if len(ends) > 1:
        raise Undecided("conversion to an integer of a ball around an integer boundary")
    return ends.pop()


def inputs(x: np.ndarray) -> np.ndarray:
    """Exact balls of a numpy float array; an integer array (an integer input) stays as it is."""
    if np.asarray(x).dtype.kind in "biu":
        return np.asarray(x)
    x = np.asarray(x, dtype=np.float64)
    out = np.asarray(_ufunc(arb, 1)(x.astype(object)), dtype=object).reshape(x.shape)
    out[np.isnan(x)] = NAN  # the one NaN object: a rule's decided NaN, never Arb's "indeterminate"
    return out


def constant(value, prec: int):
    """A formula constant (Fraction, "pi", "e", "inf") as a ball."""
    if value == "pi":
        return arb.pi()
    if value == "e":
        return arb.const_e()
    if value == "inf":
        return POS_INF
    return arb(value.numerator) / arb(value.denominator)


class precision:
    """Arb's working precision (a global of python-flint) for a block, restored afterwards."""

    def __init__(self, bits: int):
        self.bits = bits

    def __enter__(self):
        self.saved = ctx.prec
        ctx.prec = self.bits

    def __exit__(self, *exc):
        ctx.prec = self.saved
