"""Tests of the certified mpmath reference (oracle.reference) and of oracle.floats.

Every expected number here is independent of the code under test: closed forms
evaluated directly in mpmath at TRUTH_BITS bits (then correctly rounded with
round_to), mpmath.diff of those closed forms, or exact rationals worked out by hand.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from functools import cache

import mpmath
import numpy as np
import pytest
from mpmath import mp

from oracle.floats import error_bits, fmt, round_to, ulps
from oracle.formula import parse
from oracle.reference import compute
from oracle.reference.mp_eval import InexactLiteral, literal
from oracle.reference.program import trace

TRUTH_BITS = 320
DTYPES = ("float32", "float64")
F32 = fmt("float32")
F64 = fmt("float64")


# ------------------------------------------------------------------ helpers

def exact_number(v) -> Fraction:
    """A test input written as an int, an exactly representable float, a Fraction or a decimal string."""
    if isinstance(v, Fraction):
        return v
    if isinstance(v, str):
        return Fraction(Decimal(v))
    return Fraction(v)


def rounded_inputs(raw: dict, f) -> dict[str, np.ndarray]:
    """Each input correctly rounded (once) to the format, as the pipeline hands them to compute()."""
    out = {}
    for name, value in raw.items():
        exact = np.asarray(value, dtype=object)
        arr = np.empty(exact.shape, dtype=f.numpy)
        for index, x in np.ndenumerate(exact):
            arr[index] = round_to(exact_number(x), f)
        out[name] = arr
    return out


@cache
def _program(source: str, names: tuple, shapes: tuple, wrt: tuple):
    return trace(parse(source, set(names)), dict(zip(names, shapes)), list(wrt))


def reference(source: str, inputs: dict[str, np.ndarray], f, wrt=None, **kwargs):
    names = tuple(inputs)
    wrt = tuple(names if wrt is None else wrt)
    program = _program(source, names, tuple(inputs[n].shape for n in names), wrt)
    return compute(program, inputs, f, **kwargs)


def output(ref, name: str):
    (out,) = [o for o in ref.outputs if o.name == name]
    return out


def mp_inputs(inputs: dict[str, np.ndarray]) -> dict:
    """The exact (already rounded) inputs as mpf scalars or object arrays of mpf."""
    out = {}
    for name, arr in inputs.items():
        if arr.shape == ():
            out[name] = mpmath.mpf(float(arr))
        else:
            obj = np.empty(arr.shape, dtype=object)
            for index, x in np.ndenumerate(arr):
                obj[index] = mpmath.mpf(float(x))
            out[name] = obj
    return out


def as_object(x) -> np.ndarray:
    if isinstance(x, mpmath.matrix):
        x = x.tolist()
    arr = np.empty(np.shape(np.asarray(x, dtype=object)), dtype=object)
    arr[...] = np.asarray(x, dtype=object)
    return arr


def round_all(x, f) -> np.ndarray:
    x = as_object(x)
    out = np.empty(x.shape, dtype=f.numpy)
    for index, v in np.ndenumerate(x):
        out[index] = round_to(v, f)
    return out


def total(x):
    return mpmath.fsum(as_object(x).ravel().tolist())


def closed_diff(value_fn: Callable, x: dict, name: str) -> np.ndarray:
    """mpmath.diff of sum(closed-form value), per scalar component of input `name`."""
    base = as_object(x[name])
    grad = np.empty(base.shape, dtype=object)
    for index in np.ndindex(base.shape):
        def g(t, index=index):
            shifted = dict(x)
            if base.shape == ():
                shifted[name] = x[name] + t
            else:
                moved = base.copy()
                moved[index] = moved[index] + t
                shifted[name] = moved
            return total(value_fn(**shifted))
        grad[index] = mpmath.diff(g, 0)
    return grad


def assert_close(got: np.ndarray, truth: np.ndarray, tol: float, what: str):
    """Every component of `got` (mpf) within relative `tol` of `truth` (absolute when truth is 0)."""
    got, truth = as_object(got), as_object(truth)
    assert got.shape == truth.shape, what
    for index, t in np.ndenumerate(truth):
        g = got[index]
        assert mpmath.isfinite(g), f"{what}{list(index)}: {g} is not finite"
        err = abs(g - t) if t == 0 else abs(g - t) / abs(t)
        assert err <= tol, f"{what}{list(index)}: {mpmath.nstr(g, 30)} vs truth {mpmath.nstr(t, 30)} (err {mpmath.nstr(err, 3)})"


def matvec(a, b):
    return np.array([mpmath.fsum(a[i, k] * b[k] for k in range(a.shape[1])) for i in range(a.shape[0])], dtype=object)


def matmat(a, b):
    return np.array([[mpmath.fsum(a[i, k] * b[k, j] for k in range(a.shape[1])) for j in range(b.shape[1])]
                     for i in range(a.shape[0])], dtype=object)


def mpmat(a) -> mpmath.matrix:
    return mpmath.matrix(as_object(a).tolist())


def tril(a):
    return np.array([[a[i, j] if j <= i else mpmath.mpf(0) for j in range(a.shape[1])] for i in range(a.shape[0])],
                    dtype=object)


def sym(a):
    return (a + a.T) / 2


def normal_pdf(x):
    return mp.exp(-x * x / 2) / mp.sqrt(2 * mp.pi)


def normal_cdf(x):
    return mp.erfc(-x / mp.sqrt(2)) / 2


# ------------------------------------------------------------------ 1. values and gradients vs closed forms

@dataclass
class Case:
    source: str
    inputs: dict
    value: Callable  # closed form of the formula, in mpmath, keyword arguments = inputs
    grad: Callable | None  # closed-form gradient of sum(value): dict input -> value; None: mpmath.diff only
    dtypes: tuple = DTYPES
    expect: dict = field(default_factory=dict)  # extra checks: {"float32": {"value": inf}}


def case(id_, *args, **kwargs):
    return id_, Case(*args, **kwargs)


SPD3 = [["4", "1", "0.5"], ["1", "3", "0.25"], ["0.5", "0.25", "2"]]
L3 = [["2", "0", "0"], ["0.5", "3", "0"], ["-1", "0.25", "1.5"]]

CASES = [
    case("exp", "exp(x)", {"x": "1.5"}, lambda x: mp.exp(x), lambda x: {"x": mp.exp(x)}),
    case("exp-overflow", "exp(x)", {"x": 100}, lambda x: mp.exp(x), lambda x: {"x": mp.exp(x)},
         expect={"float32": {"value": math.inf, "grad.x": math.inf}}),
    case("exp-underflow", "exp(x)", {"x": -200}, lambda x: mp.exp(x), lambda x: {"x": mp.exp(x)},
         expect={"float32": {"value": 0.0, "grad.x": 0.0}}),
    case("exp-subnormal", "exp(x)", {"x": -103}, lambda x: mp.exp(x), lambda x: {"x": mp.exp(x)},
         dtypes=("float32",), expect={"float32": {"value": 2.0**-149}}),
    case("log", "log(x)", {"x": "0.3"}, lambda x: mp.log(x), lambda x: {"x": 1 / x}),
    case("log1p", "log1p(x)", {"x": "1e-5"}, lambda x: mp.log(1 + x), lambda x: {"x": 1 / (1 + x)}),
    case("expm1", "expm1(x)", {"x": "-0.7"}, lambda x: mp.exp(x) - 1, lambda x: {"x": mp.exp(x)}),
    case("expm1-tiny", "expm1(x)", {"x": "1e-10"}, lambda x: mp.exp(x) - 1, lambda x: {"x": mp.exp(x)}),
    case("sqrt", "sqrt(x)", {"x": 2}, lambda x: mp.sqrt(x), lambda x: {"x": 1 / (2 * mp.sqrt(x))}),
    case("tanh", "tanh(x)", {"x": "0.5"}, lambda x: (mp.exp(2 * x) - 1) / (mp.exp(2 * x) + 1),
         lambda x: {"x": 4 / (mp.exp(x) + mp.exp(-x)) ** 2}),
    case("sigmoid", "sigmoid(x)", {"x": -3}, lambda x: 1 / (1 + mp.exp(-x)),
         lambda x: {"x": mp.exp(-x) / (1 + mp.exp(-x)) ** 2}),
    case("sigmoid-subnormal", "sigmoid(x)", {"x": -100}, lambda x: 1 / (1 + mp.exp(-x)),
         lambda x: {"x": mp.exp(-x) / (1 + mp.exp(-x)) ** 2}),
    case("log_sigmoid", "log_sigmoid(x)", {"x": 3}, lambda x: -mp.log(1 + mp.exp(-x)),
         lambda x: {"x": 1 / (1 + mp.exp(x))}),
    case("log_sigmoid-neg", "log_sigmoid(x)", {"x": -50}, lambda x: -mp.log(1 + mp.exp(-x)),
         lambda x: {"x": 1 / (1 + mp.exp(x))}),
    case("softplus", "softplus(x)", {"x": "-2.5"}, lambda x: mp.log(1 + mp.exp(x)),
         lambda x: {"x": 1 / (1 + mp.exp(-x))}),
    case("logsumexp", "logsumexp(x)", {"x": [1, 2, "3.5"]},
         lambda x: mp.log(mpmath.fsum(mp.exp(v) for v in x)),
         lambda x: {"x": np.array([mp.exp(v) / mpmath.fsum(mp.exp(w) for w in x) for v in x], dtype=object)}),
    case("logsumexp-large", "logsumexp(x)", {"x": [1000, "1000.5"]},
         lambda x: mp.log(mpmath.fsum(mp.exp(v) for v in x)),
         lambda x: {"x": np.array([mp.exp(v) / mpmath.fsum(mp.exp(w) for w in x) for v in x], dtype=object)}),
    case("erf", "erf(x)", {"x": "0.3"}, lambda x: mp.erf(x), lambda x: {"x": 2 / mp.sqrt(mp.pi) * mp.exp(-x * x)}),
    case("erfc", "erfc(x)", {"x": 5}, lambda x: mp.erfc(x),
         lambda x: {"x": -2 / mp.sqrt(mp.pi) * mp.exp(-x * x)}),
    case("erfc-subnormal", "erfc(x)", {"x": 10}, lambda x: mp.erfc(x),
         lambda x: {"x": -2 / mp.sqrt(mp.pi) * mp.exp(-x * x)}),
    case("lgamma", "lgamma(x)", {"x": "3.7"}, lambda x: mp.log(mp.gamma(x)), lambda x: {"x": mp.digamma(x)}),
    case("lgamma-negative", "lgamma(x)", {"x": "-2.5"}, lambda x: mp.log(abs(mp.gamma(x))),
         lambda x: {"x": mp.digamma(x)}),
    case("lgamma-huge", "lgamma(x)", {"x": "1e30"}, lambda x: mp.log(mp.gamma(x)), lambda x: {"x": mp.digamma(x)}),
    case("digamma", "digamma(x)", {"x": "2.5"}, lambda x: mp.psi(0, x), lambda x: {"x": mp.psi(1, x)}),
    case("digamma-small", "digamma(x)", {"x": "0.01"}, lambda x: mp.psi(0, x), lambda x: {"x": mp.psi(1, x)}),
    case("ndtr", "ndtr(x)", {"x": -3}, normal_cdf, lambda x: {"x": normal_pdf(x)}),
    case("ndtr-center", "ndtr(x)", {"x": "0.25"}, normal_cdf, lambda x: {"x": normal_pdf(x)}),
    case("log_ndtr", "log_ndtr(x)", {"x": "1.5"}, lambda x: mp.log(normal_cdf(x)),
         lambda x: {"x": normal_pdf(x) / normal_cdf(x)}),
    case("log_ndtr-tail", "log_ndtr(x)", {"x": -40}, lambda x: mp.log(mp.erfc(-x / mp.sqrt(2)) / 2),
         lambda x: {"x": normal_pdf(x) / normal_cdf(x)}),
    case("pow-2.5", "x**2.5", {"x": 3}, lambda x: mp.sqrt(x) ** 5, lambda x: {"x": mp.mpf(5) / 2 * mp.sqrt(x) ** 3}),
    case("matvec", "matmul(A, b)", {"A": [["0.3", 2], ["-1.5", "0.7"]], "b": ["0.1", 3]},
         lambda A, b: matvec(A, b),
         lambda A, b: {"A": np.array([[b[0], b[1]], [b[0], b[1]]], dtype=object),
                       "b": np.array([A[0, 0] + A[1, 0], A[0, 1] + A[1, 1]], dtype=object)}),
    case("matmul-op", "A @ B", {"A": [["0.3", 2], ["-1.5", "0.7"]], "B": [[1, "0.2"], ["-0.4", 5]]},
         lambda A, B: matmat(A, B),
         lambda A, B: {"A": np.array([[B[k, 0] + B[k, 1] for k in range(2)]] * 2, dtype=object),
                       "B": np.array([[A[0, k] + A[1, k]] * 2 for k in range(2)], dtype=object)}),
    case("solve_triangular", "solve_triangular(L, b)", {"L": L3, "b": [1, "-0.3", 2]},
         lambda L, b: as_object(mpmath.lu_solve(mpmat(tril(L)), mpmath.matrix(list(b)))).ravel(),
         lambda L, b: (lambda x, u: {
             "L": np.array([[-u[i] * x[j] if j <= i else mpmath.mpf(0) for j in range(3)] for i in range(3)], dtype=object),
             "b": u})(as_object(mpmath.lu_solve(mpmat(tril(L)), mpmath.matrix(list(b)))).ravel(),
                      as_object(mpmath.lu_solve(mpmat(tril(L)).T, mpmath.matrix([1, 1, 1]))).ravel())),
    case("logdet", "logdet(A)", {"A": SPD3}, lambda A: mp.log(mp.det(mpmat(A))),
         lambda A: {"A": as_object(mp.inverse(mpmat(A)).T)}),
    case("logdet-cholesky", "2*sum(log(diag(cholesky(A))))", {"A": SPD3}, lambda A: mp.log(mp.det(mpmat(A))),
         lambda A: {"A": as_object(mp.inverse(mpmat(A)))}),
    # every framework reads cholesky's input as symmetric: the gradient is that of cholesky(sym(A))
    case("cholesky", "cholesky(A)", {"A": SPD3}, lambda A: as_object(mp.cholesky(mpmat(sym(A)))), None),
    case("mean", "mean(x)", {"x": [1, 2, "4.5"]}, lambda x: mpmath.fsum(x) / 3,
         lambda x: {"x": np.array([mpmath.mpf(1) / 3] * 3, dtype=object)}),
    case("mean-axis", "mean(X, axis=1)", {"X": [[1, "0.3", 2], ["-5", 7, "0.1"]]},
         lambda X: np.array([mpmath.fsum(row) / 3 for row in X], dtype=object),
         lambda X: {"X": np.full((2, 3), mpmath.mpf(1) / 3, dtype=object)}),
    case("max", "max(x)", {"x": [1, "5.5", 3]}, lambda x: max(x),
         lambda x: {"x": np.array([0, 1, 0], dtype=object)}),
    case("where", "where(x > 0, log(x), -x)", {"x": [2, -3]},
         lambda x: np.array([mp.log(v) if v > 0 else -v for v in x], dtype=object),
         lambda x: {"x": np.array([1 / v if v > 0 else mpmath.mpf(-1) for v in x], dtype=object)}),
    case("const-0.1pi", "0.1*pi*x", {"x": 2}, lambda x: mpmath.mpf(1) / 10 * mp.pi * x,
         lambda x: {"x": mp.pi / 10}),
    # a reference using float32(0.1) or float32(pi) would give exactly 0 here
    case("const-0.1-exact", "x - 0.1", {"x": "0.1"}, lambda x: x - mpmath.mpf(1) / 10, lambda x: {"x": mpmath.mpf(1)}),
    case("const-pi-exact", "x - pi", {"x": "3.14159265358979323846264338327950288"}, lambda x: x - mp.pi,
         lambda x: {"x": mpmath.mpf(1)}),
    case("const-e-exact", "(x - e) * 1e10", {"x": "2.71828182845904523536028747135266250"},
         lambda x: (x - mp.e) * 10**10, lambda x: {"x": mpmath.mpf(10) ** 10}),
]


@pytest.mark.parametrize("c, dtype", [pytest.param(c, dtype, id=f"{id_}-{dtype}")
                                      for id_, c in CASES for dtype in c.dtypes])
def test_against_closed_form(c: Case, dtype: str):
    f = fmt(dtype)
    inputs = rounded_inputs(c.inputs, f)
    ref = reference(c.source, inputs, f)
    assert [o.name for o in ref.outputs] == ["value"] + [f"grad.{n}" for n in inputs]

    with mp.workprec(TRUTH_BITS):
        x = mp_inputs(inputs)
        truth = {"value": as_object(c.value(**x))}
        numeric = {f"grad.{n}": closed_diff(c.value, x, n) for n in inputs}
        if c.grad is not None:
            analytic = c.grad(**x)
            for n in inputs:
                truth[f"grad.{n}"] = as_object(analytic[n])
                # the table's own gradient must match mpmath.diff of its value: checks the test data
                assert_close(numeric[f"grad.{n}"], truth[f"grad.{n}"], 2.0**-120, f"closed-form grad.{n} vs diff")
        else:
            truth.update(numeric)

    for name, t in truth.items():
        out = output(ref, name)
        assert out.rounded.dtype == f.numpy
        np.testing.assert_array_equal(out.rounded, round_all(t, f), err_msg=f"{name} rounded to {dtype}")
        assert (out.precision > 0).all(), f"{name} not certified: {out.precision}"
        # exact comes from a run at 2 * precision bits; cancellation (x - 0.1) costs some of them
        assert_close(out.exact, t, 2.0 ** -int(out.precision.min()), f"{name} exact")
        if name != "value":
            assert out.numeric_agrees.all(), f"{name}: mpmath.diff cross-check disagrees"
            assert_close(out.numeric, t, 2.0**-40, f"{name} numeric")
    for name, v in c.expect.get(dtype, {}).items():
        assert (output(ref, name).rounded == v).all(), f"{name}: expected {v}"
    # every output here is finite in exact arithmetic: no reason to report leaving the domain
    assert ref.domain == []


def test_digamma_half_integer_identities():
    """digamma(n + 1/2) = -euler - 2 log 2 + sum_{k<=n} 2/(2k-1); trigamma(n + 1/2) = pi^2/2 - sum 4/(2k-1)^2."""
    ref = reference("digamma(x)", {"x": np.float32(2.5)}, F32)
    with mp.workprec(TRUTH_BITS):
        value = -mp.euler - 2 * mp.log(2) + 2 + mpmath.mpf(2) / 3
        grad = mp.pi ** 2 / 2 - 4 - mpmath.mpf(4) / 9
    assert output(ref, "value").rounded == round_to(value, F32)
    assert output(ref, "grad.x").rounded == round_to(grad, F32)
    assert abs(output(ref, "value").exact[()] - value) < 2.0**-100
    assert abs(output(ref, "grad.x").exact[()] - grad) < 2.0**-100


def test_exp_overflow_keeps_exact_value():
    with mp.workprec(TRUTH_BITS):
        big = mpmath.mpf("2.6881171418161354484126255515800135873611118773741922e43")
        small = mpmath.mpf("1.38389652673673753064868145697908468540304758233947720939393e-87")
        huge = mpmath.mpf("68077552789821371894120965638550.3990539188857555102")  # lgamma(float64(1e30))
    ref = reference("exp(x)", {"x": np.float32(100)}, F32)
    value = output(ref, "value")
    assert value.rounded == np.float32(np.inf)
    assert mpmath.isfinite(value.exact[()])
    assert abs(value.exact[()] / big - 1) < 1e-30
    ref = reference("exp(x)", {"x": np.float32(-200)}, F32)
    value = output(ref, "value")
    assert value.rounded == 0 and value.exact[()] > 0
    assert abs(value.exact[()] / small - 1) < 1e-30
    ref = reference("lgamma(x)", {"x": np.float64(1e30)}, F64)
    assert abs(output(ref, "value").exact[()] / huge - 1) < 1e-40
    assert output(ref, "value").rounded == 6.807755278982137e31


def test_log_ndtr_tail_gradient_beyond_naive_float32():
    """ndtr(-40) underflows float32 (and float64): log(ndtr) naively is -inf; the reference is not."""
    ref = reference("log_ndtr(x)", {"x": np.float32(-40)}, F32)
    assert output(ref, "value").rounded == np.float32(-804.60844201375379)
    assert output(ref, "grad.x").rounded == np.float32(40.024968847207264)
    assert round_to(mp.erfc(40 / mp.sqrt(2)) / 2, F64) == 0.0  # the premise: ndtr(-40) is below float64


def test_exact_integer_literal_above_4096():
    """A formula literal like 5001 is exact in float32 and is inlined by trace(); the reference must accept it."""
    f = F32
    ref = reference("x * 5001", {"x": np.float32(3)}, f)
    assert output(ref, "value").rounded == np.float32(15003)
    assert output(ref, "grad.x").rounded == np.float32(5001)


def test_dyadic_literal_with_long_odd_part():
    """4097/4096 is a short dyadic (inline() passes it as a float32 literal) and exactly 1.000244140625."""
    ref = reference("x * 1.000244140625", {"x": np.float32(4096)}, F32)
    assert output(ref, "value").rounded == np.float32(4097)


# ------------------------------------------------------------------ 2. certification

def test_cancellation_needs_128_bits():
    x = np.float32(1e30)  # 2**99 < x < 2**100: x + 1 needs 100 significant bits
    assert 2**99 < int(x) < 2**100
    ref = reference("(x + 1) - x", {"x": x}, F32)
    value = output(ref, "value")
    assert value.rounded == np.float32(1.0)
    assert value.exact[()] == 1
    assert int(value.precision) == 128  # 64 bits gives 0; 128 and 256 agree on 1
    grad = output(ref, "grad.x")
    assert grad.rounded == 0 and int(grad.precision) == 64  # the poisoned zero does not reach the gradient


def test_cancellation_needs_212_bits_float64():
    x = np.float64(2.0**200)  # x + 1 needs 201 bits: 106 bits gives 0, 212 and 424 give 1
    ref = reference("(x + 1) - x", {"x": x}, F64)
    value = output(ref, "value")
    assert value.rounded == 1.0 and value.exact[()] == 1
    assert int(value.precision) == 212


def test_float64_normal_case_starts_at_106_bits():
    ref = reference("exp(x)", {"x": np.float64(1.5)}, F64)
    assert int(output(ref, "value").precision) == 106  # max(start=64, 2 * 53)


@pytest.mark.parametrize("source, x, f, bits", [
    pytest.param("(x + 1) - x", 2.0**300, F64, 424, id="float64-x=2**300"),
    pytest.param("(x*x + 1) - x*x", 2.0**100, F32, 256, id="float32-x=2**100-squared"),
])
def test_cancellation_beyond_two_agreeing_precisions(source, x, f, bits):
    """The true value is 1; two low precisions that both lose the 1 must not certify 0: a run whose
    subtraction cancels an absorbed addition to exactly 0 certifies nothing, so precision grows."""
    ref = reference(source, {"x": np.asarray(x, dtype=f.numpy)}, f)
    value = output(ref, "value")
    assert value.rounded == 1.0, f"certified {value.rounded} at {int(value.precision)} bits; the exact value is 1"
    assert int(value.precision) == bits


@pytest.mark.parametrize("source, z, truth, bits", [
    ("log(1 - sigmoid(z))", 200.0, -200.0, 512),  # sigmoid(200) == 1 below ~290 bits; 1 - 1 == 0
    ("exp(z) - 1", 1e-30, np.float32(1e-30), 128),  # exp(1e-30) == 1 at 64 bits
])
def test_saturated_function_then_cancellation_is_not_certified_early(source, z, truth, bits):
    """A function rounded onto its asymptote absorbs like an addition; the zero it cancels to must not certify."""
    ref = reference(source, {"z": np.float32(z)}, F32)
    value = output(ref, "value")
    assert value.rounded == truth and int(value.precision) == bits

@pytest.mark.parametrize("source, z, bits", [
    ("log(1 + z)", 2.0**-140, 256),  # 1 + 2**-140 == 1 below 141 bits: log(1) == 0 at 64 and 128 alike
    ("-log(1 / (1 + exp(-z)))", 90.0, 256),  # the sweep's z = 90: exp(-90) = 8.2e-40 absorbed by 1
])
def test_function_exposing_an_absorption_as_zero_is_not_certified_early(source, z, bits):
    """A function (not only a subtraction) that turns an absorbed sum into exactly 0 must not certify 0."""
    ref = reference(source, {"z": np.float32(z)}, F32)
    value = output(ref, "value")
    with mpmath.workprec(300):
        truth = round_to(mpmath.log1p(mpmath.exp(-mpmath.mpf(z))) if "exp" in source
                         else mpmath.log1p(mpmath.mpf(z)), F32)
    assert truth != 0 and value.rounded == truth and int(value.precision) == bits



def mpmath_engine(source: str, inputs: dict[str, np.ndarray], f, cap: int):
    """The mpmath engine alone (two agreeing precisions), as compute() runs it where Arb has no rule."""
    from oracle.reference import DIFF_LIMIT, START_PRECISION, _compute

    program = _program(source, tuple(inputs), tuple(inputs[n].shape for n in inputs), tuple(inputs))
    return _compute(program, inputs, f, START_PRECISION, cap, DIFF_LIMIT)


def test_cap_64_certifies_nothing():
    ref = mpmath_engine("(x + 1) - x", {"x": np.float32(1e30)}, F32, cap=64)
    assert ref.cap == 64
    for out in ref.outputs:
        assert (out.precision == 0).all(), out.name
        assert not out.certified.any()


def test_cap_128_certifies_only_what_64_bits_settle():
    ref = mpmath_engine("(x + 1) - x", {"x": np.float32(1e30)}, F32, cap=128)
    assert int(output(ref, "value").precision) == 0  # certifying 128 bits needs a 256-bit run
    assert int(output(ref, "grad.x").precision) == 64
    ref = mpmath_engine("(x + 1) - x", {"x": np.float32(1e30)}, F32, cap=256)
    assert int(output(ref, "value").precision) == 128
    assert output(ref, "value").rounded == 1


def test_a_ball_certifies_at_the_precision_it_ran():
    """x = float32(1e30) ~ 2**99.7: x + 1 needs ~100 bits. A 64-bit ball of (x + 1) - x is [1 +- 2**36], not
    certified; the 128-bit ball is [1 +- tiny], certified by that one run (agreement would need a 256-bit run too).
    The gradient, 1 - 1, is an exact 0 at any precision."""
    ref = reference("(x + 1) - x", {"x": np.float32(1e30)}, F32, cap=64)
    assert ref.engine == "arb"
    assert int(output(ref, "value").precision) == 0 and int(output(ref, "grad.x").precision) == 64
    ref = reference("(x + 1) - x", {"x": np.float32(1e30)}, F32, cap=128)
    assert int(output(ref, "value").precision) == 128 and output(ref, "value").rounded == 1


# ------------------------------------------------------------------ 3. domain

def test_log_at_zero_is_minus_infinity_with_domain_reason():
    ref = reference("log(x)", {"x": np.float32(0)}, F32)
    value = output(ref, "value")
    assert mpmath.isinf(value.exact[()]) and value.exact[()] < 0
    assert value.rounded == -np.inf
    assert ref.domain and "log" in ref.domain[0]
    assert "infinite" in ref.domain[0]


def test_log_of_negative_is_nan_with_domain_reason():
    ref = reference("log(x)", {"x": np.float32(-1)}, F32)
    assert np.isnan(output(ref, "value").rounded)
    assert mpmath.isnan(output(ref, "value").exact[()])
    assert ref.domain and "log" in ref.domain[0] and "NaN" in ref.domain[0]


def test_domain_reason_names_the_op_that_made_the_infinity():
    """The where() branch that is not taken (log(-1)) must not be blamed for the -inf that log(0) makes."""
    ref = reference("where(x > 0, log(x), 0) + log(y)", {"x": np.float32(-1), "y": np.float32(0)}, F32)
    assert output(ref, "value").rounded == -np.inf
    assert "log(0.0) is infinite" in ref.domain, ref.domain
    # the explanation a user sees picks the reason of the same kind as the output
    from oracle.classify import Evidence
    from oracle.compare import rows
    from oracle.frameworks import Evaluation

    evidence = Evidence("jax", F32, 5, {"flush_to_zero": True, "denormals_are_zero": True})
    row = rows(Evaluation("jax", "float32", np.float32(-np.inf), {"x": np.float32(0), "y": np.float32(-np.inf)}),
               ref, evidence)[0]
    assert row["verdict"] == "domain"
    assert row["explanation"] == "the reference is infinite here: log(0.0) is infinite"


def test_normal_case_has_empty_domain():
    ref = reference("log(x)", {"x": np.float32(2)}, F32)
    assert ref.domain == []
    assert output(ref, "value").rounded == np.float32(round_to(mp.log(2), F32))


# ------------------------------------------------------------------ 4. gradient cross-check

def test_abs_at_zero_gradient_check_disagrees():
    ref = reference("abs(x)", {"x": np.float32(0)}, F32)
    grad = output(ref, "grad.x")
    assert grad.numeric_agrees is not None
    assert not grad.numeric_agrees.any()
    assert grad.numeric[()] == 0  # central difference of |x| at 0


def test_where_log_at_zero_gradient_check_disagrees():
    ref = reference("where(x > 0, log(x), 0)", {"x": np.float32(0)}, F32)
    assert output(ref, "value").rounded == 0
    grad = output(ref, "grad.x")
    assert not grad.numeric_agrees.any()


def test_smooth_gradient_check_agrees():
    x = rounded_inputs({"x": ["0.3", -2, 7]}, F32)
    ref = reference("softplus(x) * sin(x)", x, F32)
    grad = output(ref, "grad.x")
    assert grad.numeric_agrees.shape == (3,)
    assert grad.numeric_agrees.all()
    assert ref.gradient_check.startswith("mpmath.diff on 3 scalar inputs")


def test_gradient_check_skipped_over_limit():
    x = rounded_inputs({"x": [1, 2, 3]}, F32)
    ref = reference("exp(x)", x, F32, diff_limit=2)
    assert ref.gradient_check.startswith("skipped")
    assert output(ref, "grad.x").numeric is None


# ------------------------------------------------------------------ 5. literals

def test_literal_short_dyadic():
    got = literal(0.5, "float32")
    assert got.shape == () and got[()] == mpmath.mpf(0.5)
    assert literal(-20.0, "float32")[()] == -20
    assert literal(np.float32(3.0), "float32")[()] == 3


def test_literal_known_constant_is_exact():
    with mp.workprec(300):
        got = literal(float(np.float32(2 / math.sqrt(math.pi))), "float32")[()]
        assert got == 2 / mp.sqrt(mp.pi)
        assert got != mpmath.mpf(float(np.float32(2 / math.sqrt(math.pi))))
        neg = literal(-float(np.float32(2 / math.sqrt(math.pi))), "float32")[()]
        assert neg == -2 / mp.sqrt(mp.pi)
        assert literal(float(np.float32(math.pi)), "float32")[()] == +mp.pi
        assert literal(math.pi, "float64")[()] == +mp.pi


def test_literal_unknown_rounded_constant_is_refused():
    with pytest.raises(InexactLiteral):
        literal(float(np.float32(0.1)), "float32")
    with pytest.raises(InexactLiteral):
        literal(0.1, "float64")


# ------------------------------------------------------------------ 6. oracle.floats

def test_round_to_ties_to_even():
    one = Fraction(1)
    assert round_to(one + Fraction(1, 2**24), F32) == 1.0  # halfway, 1.0 is even
    assert round_to(one + Fraction(3, 2**24), F32) == 1 + 2.0**-22  # halfway, 1 + 2**-22 is even
    assert round_to(one + Fraction(1, 2**24) + Fraction(1, 2**80), F32) == 1 + 2.0**-23  # just above halfway
    assert round_to(-(one + Fraction(1, 2**24)), F32) == -1.0
    assert round_to(one + Fraction(1, 2**53), F64) == 1.0
    assert round_to(one + Fraction(3, 2**53), F64) == 1 + 2.0**-51
    assert round_to(Fraction(1, 10), F32) == float(np.float32(0.1))
    assert round_to(Fraction(1, 10), F64) == 0.1
    assert round_to(mpmath.mpf(1) + mpmath.mpf(2) ** -24, F32) == 1.0  # mpf input


def test_round_to_subnormals():
    assert round_to(Fraction(1, 2**150), F32) == 0.0  # halfway between 0 and 2**-149: ties to 0
    assert round_to(Fraction(3, 2**151), F32) == 2.0**-149  # 1.5 * 2**-150 > half the smallest subnormal
    assert round_to(Fraction(3, 2**150), F32) == 2.0**-148  # 1.5 * 2**-149: tie, to even (2 * 2**-149)
    assert round_to(Fraction(5, 2**150), F32) == 2.0**-148  # 2.5 * 2**-149: tie, to even (2 * 2**-149)
    assert round_to(Fraction(1, 2**1075), F64) == 0.0
    assert round_to(Fraction(3, 2**1076), F64) == 5e-324
    tiny = round_to(-Fraction(1, 2**151), F32)
    assert tiny == 0.0 and math.copysign(1, tiny) == -1  # negative underflow keeps its sign
    assert round_to(Fraction(2**23 - 1, 2**149), F32) == float(np.float32(2.0**-126 - 2.0**-149))  # largest subnormal
    assert round_to(Fraction(2**24 - 1, 2**150), F32) == 2.0**-126  # tie between it and min normal: to even


def test_round_to_overflow():
    top = F32.max_finite
    assert top == Fraction(float(np.finfo(np.float32).max))
    assert round_to(top * (1 + Fraction(1, 2**25)), F32) == float(np.finfo(np.float32).max)
    assert round_to(top * (1 + Fraction(1, 2**24)), F32) == math.inf
    assert round_to(-top * (1 + Fraction(1, 2**24)), F32) == -math.inf
    assert round_to(F64.max_finite, F64) == float(np.finfo(np.float64).max)
    assert round_to(F64.max_finite * (1 + Fraction(1, 2**53)), F64) == math.inf
    assert round_to(mpmath.mpf("1e40"), F32) == math.inf
    assert round_to(math.inf, F32) == math.inf and math.isnan(round_to(math.nan, F32))


def test_ulps():
    f = F32
    sub = np.float32(2.0**-149)
    assert ulps(np.float32(0.0), np.float32(-0.0), f) == 0
    assert ulps(sub, -sub, f) == 2
    assert ulps(np.float32(1), np.nextafter(np.float32(1), np.float32(2)), f) == 1
    assert ulps(np.float32(1), np.float32(2), f) == 2**23
    assert ulps(np.float32(np.nan), np.float32(1), f) == 2**32
    assert ulps(np.float32(np.nan), np.float32(np.nan), f) == 0  # NaN equals NaN (documented)
    assert ulps(np.float32(1), np.float32(np.nan), f) == 2**32
    assert ulps(np.float32(np.inf), np.float32(np.nan), f) == 2**32
    assert ulps(np.float32(1), np.float32(np.inf), f) == 2**32
    assert ulps(np.float32(np.inf), np.float32(np.inf), f) == 0
    assert ulps(np.float32(-np.inf), np.float32(-np.inf), f) == 0
    assert ulps(np.float32(-np.inf), np.float32(np.inf), f) == 2**32
    biggest = np.finfo(np.float32).max
    assert ulps(biggest, -biggest, f) == 2 * (0x7F7FFFFF)
    got = ulps(np.array([0.0, 1.0, np.nan], np.float32), np.array([-0.0, 1.0, 2.0], np.float32), f)
    assert got.tolist() == [0, 0, 2**32]


def test_ulps_float64_extremes():
    f = F64
    big = np.finfo(np.float64).max
    assert ulps(big, -big, f) == 2 * 0x7FEFFFFFFFFFFFFF  # beyond int64: Python ints
    assert ulps(np.float64(0), big, f) == 0x7FEFFFFFFFFFFFFF
    assert ulps(np.float64(5e-324), np.float64(-5e-324), f) == 2
    assert ulps(np.float64(np.nan), np.float64(0), f) == 2**64
    assert ulps(np.float64(1), np.float64(np.inf), f) == 2**64
    assert ulps(np.float64(1), np.nextafter(1.0, 2.0), f) == 1


def test_error_bits():
    assert error_bits(0) == 0
    assert error_bits(1) == 1
    assert error_bits(3) == 2
    assert error_bits(2**32 - 1) == 32
    assert 32 < error_bits(2**32) < 32 + 1e-9


def test_a_cancellation_residue_of_an_exact_zero_is_not_a_nonzero_true_value():
    """d/dx [log(x*x) - 2 log(x)] = 2/x - 2/x = 0 exactly, but 2x/x^2 and 2/x round differently: a residue of
    ~2**-prec remains, shrinks as precision grows, and must not be reported as a tiny nonzero (an underflow)."""
    ref = reference("log(x*x) - 2*log(x)", {"x": np.float32(3)}, F32)
    grad = output(ref, "grad.x")
    assert grad.rounded == 0 and grad.exact[()] != 0  # the residue is there ...
    assert not grad.settled[()] and not grad.nonzero()[()]  # ... and known for what it is
    value = output(ref, "value")
    assert value.exact[()] == 0 and not value.nonzero()[()]


def test_rounding_far_outside_the_format_needs_no_giant_fraction():
    """exp(3.4e38) is a fine mpf (its exponent is a 129-bit integer); as a Fraction it would need 2**128 bits."""
    with mpmath.workprec(100):
        huge, tiny = mpmath.exp(mpmath.mpf("3.4e38")), mpmath.exp(mpmath.mpf("-3.4e38"))
        half_subnormal = mpmath.ldexp(1, -150)
        above_half = half_subnormal * (1 + mpmath.ldexp(1, -60))
        largest = (2 - mpmath.ldexp(1, -23)) * mpmath.ldexp(1, 127)
        halfway_up, below_halfway = largest + mpmath.ldexp(1, 103), largest + mpmath.ldexp(1, 102)
    assert round_to(huge, F32) == math.inf and round_to(-huge, F32) == -math.inf
    assert round_to(tiny, F32) == 0.0 and math.copysign(1, round_to(-tiny, F32)) == -1
    # at the edges the mpf path still rounds to nearest, ties to even, as the Fraction arithmetic does
    assert round_to(half_subnormal, F32) == 0.0  # a tie: to even, 0
    assert round_to(above_half, F32) == 2.0**-149
    assert round_to(halfway_up, F32) == math.inf  # halfway to 2**128: the tie goes to even, which overflows
    assert round_to(below_halfway, F32) == float(largest)
