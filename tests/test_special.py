"""Special functions (i0e, i1e, gammainc, gammaincc, betainc, polygamma, xlogy, xlog1py, lbeta, erfinv):
the certified reference against truths computed independently of oracle.reference.special.

Values come from closed forms (Bessel asymptotic series, finite sums for integer orders,
Bernstein polynomials, the integral of I0) or from mpmath directly; gradients from closed-form
derivatives, each checked against mpmath.diff of the value at TRUTH_BITS first.
"""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
from mpmath import mp
from test_reference import F32, F64, TRUTH_BITS, assert_close, closed_diff, output, reference, round_all, rounded_inputs

from oracle.floats import fmt
from oracle.formula import FormulaError, parse


def bessel_scaled_asymptotic(nu: int, x):
    """exp(-x) I_nu(x) for large x: (2 pi x)^-1/2 sum_k (-1)^k a_k(nu) / x^k, a_k = prod_j (4nu^2 - (2j-1)^2) / (k! 8^k);
    the neglected e^-2x part and the 60th term are far below 2**-300 at x = 1e4."""
    total, term = mpmath.mpf(0), mpmath.mpf(1)
    for k in range(1, 61):
        total += term
        term = -term * (4 * nu * nu - (2 * k - 1) ** 2) / (k * 8 * x)
    return total / mp.sqrt(2 * mp.pi * x)


def i0e_integral(x):
    """exp(-|x|) I0(x) = (1/pi) int_0^pi exp(|x| (cos t - 1)) dt."""
    return mp.quad(lambda t: mp.exp(abs(x) * (mp.cos(t) - 1)), [0, mp.pi / 2, mp.pi]) / mp.pi


def lower_gamma_series(n: int, x):
    """P(n, x) = e^-x sum_{k >= n} x^k / k! for integer n and x <= 1 (no cancellation; the terms past
    k = n + 300 add less than 2**-2000 relative). mpmath.nsum's extrapolation is off by 2**-67 here."""
    return mp.exp(-x) * mpmath.fsum(x ** k / mp.factorial(k) for k in range(n, n + 300))


def upper_gamma_integer(n: int, x):
    """Q(n, x) = e^-x sum_{k < n} x^k / k! for integer n."""
    return mp.exp(-x) * mpmath.fsum(x ** k / mp.factorial(k) for k in range(n))


def beta_bernstein(a: int, b: int, x):
    """I_x(a, b) = sum_{j >= a} C(a+b-1, j) x^j (1-x)^(a+b-1-j) for integer a, b."""
    n = a + b - 1
    return mpmath.fsum(mp.binomial(n, j) * x ** j * (1 - x) ** (n - j) for j in range(a, n + 1))


def beta_upper_bernstein(a: int, b: int, x):
    """1 - I_x(a, b): the complementary sum, without cancellation near x = 1."""
    n = a + b - 1
    return mpmath.fsum(mp.binomial(n, j) * x ** j * (1 - x) ** (n - j) for j in range(a))


def beta_density(a, b, x):
    return x ** (a - 1) * (1 - x) ** (b - 1) / mp.beta(a, b)


def gamma_density(a, x):
    return x ** (a - 1) * mp.exp(-x) / mp.gamma(a)


# id, formula, inputs, wrt, value(**x), {input: closed-form gradient(**x)} (None: mpmath.diff of the value)
CASES = [
    ("i0e", "i0e(x)", {"x": "2.5"}, ["x"], i0e_integral,
     {"x": lambda x: mp.exp(-abs(x)) * (mp.besseli(1, x) - mp.sign(x) * mp.besseli(0, x))}),
    ("i0e-negative", "i0e(x)", {"x": "-0.75"}, ["x"], i0e_integral, None),
    ("i0e-1e4", "i0e(x)", {"x": 10000}, ["x"], lambda x: bessel_scaled_asymptotic(0, x),
     {"x": lambda x: bessel_scaled_asymptotic(1, x) - bessel_scaled_asymptotic(0, x)}),
    ("i1e-1e4", "i1e(x)", {"x": 10000}, ["x"], lambda x: bessel_scaled_asymptotic(1, x),
     {"x": lambda x: bessel_scaled_asymptotic(0, x) - bessel_scaled_asymptotic(1, x) * (1 + 1 / x)}),
    ("i1e", "i1e(x)", {"x": "-3.5"}, ["x"], lambda x: mp.exp(-abs(x)) * mp.besseli(1, x), None),
    # JAX's own i1e derivative is 1/2 for |x| <= 2**-23; the truth is 1/2 - 3x/2 + ...
    ("i1e-small", "i1e(x)", {"x": "1e-4"}, ["x"], lambda x: mp.exp(-abs(x)) * mp.besseli(1, x), None),
    ("gammainc", "gammainc(a, x)", {"a": "2.5", "x": "1.75"}, ["a", "x"],
     lambda a, x: mp.gammainc(a, 0, x, regularized=True), {"x": gamma_density}),
    ("gammainc-100-1", "gammainc(a, x)", {"a": 100, "x": 1}, ["a", "x"],
     lambda a, x: mp.gammainc(a, 0, x, regularized=True), {"x": gamma_density}),
    ("gammainc-large-x", "gammainc(a, x)", {"a": "0.5", "x": 30}, ["a", "x"],
     lambda a, x: mp.gammainc(a, 0, x, regularized=True), {"x": gamma_density}),
    ("gammaincc-tail", "gammaincc(a, x)", {"a": 3, "x": 50}, ["a", "x"],
     lambda a, x: mp.gammainc(a, x, mp.inf, regularized=True), {"x": lambda a, x: -gamma_density(a, x)}),
    ("betainc", "betainc(a, b, x)", {"a": 2, "b": 3, "x": "0.3"}, ["x"], lambda a, b, x: beta_bernstein(2, 3, x),
     {"x": beta_density}),
    ("betainc-near-0", "betainc(a, b, x)", {"a": 2, "b": 3, "x": "1e-10"}, ["x"],
     lambda a, b, x: beta_bernstein(2, 3, x), {"x": beta_density}),
    ("betainc-near-1", "1 - betainc(a, b, x)", {"a": 2, "b": 3, "x": 1 - 2.0**-20}, ["x"],
     lambda a, b, x: beta_upper_bernstein(2, 3, x), {"x": lambda a, b, x: -beta_density(a, b, x)}),
    ("betainc-power", "betainc(a, b, x)", {"a": "2.5", "b": 1, "x": "0.7"}, ["x"], lambda a, b, x: x ** a,
     {"x": lambda a, b, x: a * x ** (a - 1)}),
    # trigamma(n + 1/2) = pi^2/2 - sum_{k<=n} 4/(2k-1)^2
    ("polygamma", "polygamma(1, x)", {"x": "2.5"}, ["x"], lambda x: mp.psi(1, x),
     {"x": lambda x: mp.polygamma(2, x)}),
    ("polygamma-negative", "polygamma(2, x)", {"x": "-2.75"}, ["x"], lambda x: mp.psi(2, x),
     {"x": lambda x: mp.psi(3, x)}),
    ("xlogy", "xlogy(x, y)", {"x": "1.5", "y": "0.3"}, ["x", "y"], lambda x, y: x * mp.log(y),
     {"x": lambda x, y: mp.log(y), "y": lambda x, y: x / y}),
    ("xlogy-zero", "xlogy(x, y)", {"x": 0, "y": "0.3"}, ["y"], lambda x, y: mpmath.mpf(0), {"y": lambda x, y: x / y}),
    ("xlog1py", "xlog1py(x, y)", {"x": 3, "y": "1e-20"}, ["x", "y"], lambda x, y: x * mp.log1p(y),
     {"x": lambda x, y: mp.log1p(y), "y": lambda x, y: x / (1 + y)}),
    ("lbeta", "lbeta(a, b)", {"a": "2.5", "b": 4}, ["a", "b"], lambda a, b: mp.log(mp.beta(a, b)),
     {"a": lambda a, b: mp.digamma(a) - mp.digamma(a + b), "b": lambda a, b: mp.digamma(b) - mp.digamma(a + b)}),
    # JAX's betaln uses a rounded series here; the reference's lgamma sum cancels ~20 bits, which precision absorbs
    ("lbeta-large", "lbeta(a, b)", {"a": 1000000, "b": "2.5"}, ["a", "b"], lambda a, b: mp.log(mp.beta(a, b)),
     {"a": lambda a, b: mp.digamma(a) - mp.digamma(a + b), "b": lambda a, b: mp.digamma(b) - mp.digamma(a + b)}),
    ("erfinv", "erfinv(x)", {"x": "0.5"}, ["x"], lambda x: mp.erfinv(x),
     {"x": lambda x: mp.sqrt(mp.pi) / 2 * mp.exp(mp.erfinv(x) ** 2)}),
    ("erfinv-tail", "erfinv(x)", {"x": 1 - 2.0**-24}, ["x"], lambda x: mp.erfinv(x),
     {"x": lambda x: mp.sqrt(mp.pi) / 2 * mp.exp(mp.erfinv(x) ** 2)}),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_special_against_independent_truth(case, dtype):
    _, source, raw, wrt, value, grads = case
    f = fmt(dtype)
    inputs = rounded_inputs(raw, f)
    ref = reference(source, inputs, f, wrt=wrt)
    # Arb has every rule but igamma_grad_a (gammainc's derivative in a), where the mpmath engine certifies
    assert ref.engine == ("mpmath-agreement" if "gamma" in source and "a" in wrt else "arb"), ref.second_opinion
    with mp.workprec(TRUTH_BITS):
        x = {name: mpmath.mpf(float(v)) for name, v in inputs.items()}
        truth = {"value": value(**x)}
        for name in wrt:
            numeric = closed_diff(value, x, name)
            if grads is not None and name in grads:
                truth[f"grad.{name}"] = grads[name](**x)
                assert_close(numeric, truth[f"grad.{name}"], 2.0**-100, f"closed-form grad.{name} vs diff")
            else:
                truth[f"grad.{name}"] = numeric[()]
    for name, t in truth.items():
        out = output(ref, name)
        assert (out.precision > 0).all(), f"{name} not certified"
        assert out.rounded[()] == round_all(t, f)[()], f"{name}: {out.rounded} vs truth {mpmath.nstr(t, 25)}"
        assert_close(out.exact, np.asarray(t, dtype=object), 2.0 ** -int(out.precision.min()), f"{name} exact")
        if name != "value":
            assert out.numeric_agrees.all(), f"{name}: mpmath.diff cross-check disagrees"
    assert ref.domain == []


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gamma_tails_against_finite_sums(dtype):
    """gammainc(100, 1) ~ 4e-159 (below float32's range) and gammaincc(3, 50) ~ 2.5e-19 from their integer-order sums."""
    f = fmt(dtype)
    lower = reference("gammainc(a, x)", rounded_inputs({"a": 100, "x": 1}, f), f, wrt=["x"])
    upper = reference("gammaincc(a, x)", rounded_inputs({"a": 3, "x": 50}, f), f, wrt=["x"])
    with mp.workprec(TRUTH_BITS):
        assert output(lower, "value").rounded[()] == round_all(lower_gamma_series(100, mpmath.mpf(1)), f)[()]
        assert output(upper, "value").rounded[()] == round_all(upper_gamma_integer(3, mpmath.mpf(50)), f)[()]
        assert_close(output(upper, "value").exact, upper_gamma_integer(3, mpmath.mpf(50)), 2.0**-60, "Q(3, 50)")


def test_special_domain_edges():
    """Outside the domain the reference is NaN and says which operation left it; at the edges it is the limit."""
    ref = reference("erfinv(x)", {"x": np.float64(1.0)}, F64)
    assert output(ref, "value").rounded[()] == np.inf
    ref = reference("gammainc(a, x)", {"a": np.float64(-1.0), "x": np.float64(2.0)}, F64, wrt=["x"])
    assert np.isnan(output(ref, "value").rounded[()])
    assert any("igamma" in d for d in ref.domain)
    ref = reference("betainc(a, b, x)", {"a": np.float32(2), "b": np.float32(3), "x": np.float32(1)}, F32, wrt=["x"])
    assert output(ref, "value").rounded[()] == 1


def test_gammainc_saturation_is_not_a_certified_zero():
    """1 - gammainc(1, 60) = e^-60: gammainc rounds to 1 at low precision, so the difference must not be certified as 0."""
    ref = reference("1 - gammainc(a, x)", {"a": np.float64(1), "x": np.float64(60)}, F64, wrt=["x"])
    with mp.workprec(TRUTH_BITS):
        assert output(ref, "value").rounded[()] == round_all(mp.exp(-60), F64)[()]


@pytest.mark.parametrize("source", ["polygamma(x, y)", "polygamma(1.5, y)", "polygamma(-1, y)", "polygamma(65, y)"])
def test_polygamma_order_is_an_integer_literal(source):
    with pytest.raises(FormulaError, match="integer literal"):
        parse(source, {"x", "y"})


@pytest.mark.parametrize("framework", ["tf", "torch", "jax"])
def test_every_framework_runs_the_special_functions(framework):
    """Each op table has every new function, with scipy's argument order: float64 values and gradients near the
    reference (torch has no betainc: its row is an error that says so)."""
    from oracle.frameworks import evaluate

    source = ("i0e(y) + i1e(x) + erfinv(x) + gammainc(a, y) + gammaincc(b, y) + polygamma(1, y) + xlogy(x, y) "
              "+ xlog1py(x, y) + lbeta(a, b)")
    inputs = rounded_inputs({"a": "2.5", "b": 3, "x": "0.3", "y": 4}, F64)
    ref = reference(source, inputs, F64, wrt=["x", "y"])
    got = evaluate(parse(source, set(inputs)), framework, inputs, ["x", "y"], F64)
    assert got.error is None, got.error
    for name, value in [("value", got.value), ("grad.x", got.grads["x"]), ("grad.y", got.grads["y"])]:
        truth = float(output(ref, name).rounded)
        # 1e-9: an argument-order slip is off by far more; torch's float64 sum here is off by 3e-11 relative
        assert abs(float(value) - truth) <= 1e-9 * abs(truth), (name, float(value), truth)
    beta = evaluate(parse("betainc(a, b, x)", set(inputs)), framework, inputs, ["x"], F64)
    if framework == "torch":
        assert "no regularized incomplete beta" in beta.error
    else:
        truth = float(output(reference("betainc(a, b, x)", inputs, F64, wrt=["x"]), "value").rounded)
        assert abs(float(beta.value) - truth) <= 1e-12 * truth
