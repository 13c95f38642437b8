"""The exact interpreter's rules for rem, round, floor/ceil/sign, gather/scatter, dynamic slices, platform_index/cond
and eigh, each against independent truth: Python's exact rationals (Fraction) and integer arithmetic, numpy
indexing of the same object arrays, mpmath's polynomial roots, and closed-form log-pmfs for the numpyro
distributions whose replay needed them.
"""

from __future__ import annotations

import math
from fractions import Fraction

import jax
import jax.numpy as jnp
import mpmath
import numpy as np
import pytest
from jax import lax
from mpmath import mp

from oracle import formula, shadow
from oracle.floats import fmt
from oracle.reference import mp_eval
from oracle.reference.mp_eval import Interpreter, UnsupportedPrimitive, to_mp

PREC = 200
F32 = fmt("float32")


def interpret(fn, *args):
    """fn's jaxpr evaluated exactly on the exact values of `args` (numpy float32 or integer arrays)."""
    closed = jax.make_jaxpr(fn)(*args)
    exact = [to_mp(a) if np.asarray(a).dtype.kind == "f" else np.asarray(a) for a in args]
    with mp.workprec(PREC):
        outs = Interpreter().run(closed, exact)
    return outs if len(outs) > 1 else outs[0]


def fraction(v) -> Fraction:
    return Fraction(float(v))


def mpf_to_fraction(v) -> Fraction:
    sign, man, exp, _ = v._mpf_
    return (-1) ** sign * Fraction(int(man)) * Fraction(2) ** exp


# ------------------------------------------------------------------ rem, round, floor, ceil, sign

def c_fmod(x: Fraction, y: Fraction) -> Fraction:
    q = x / y
    return x - (math.floor(q) if q >= 0 else math.ceil(q)) * y


REM = [(7.5, 2.0), (-7.5, 2.0), (7.5, -2.0), (-7.5, -2.0), (1e30, 3.0), (3.0, 1e-30), (2.0**-140, 0.1), (5.0, 0.1),
       (-1e38, 7.0), (0.0, 3.0), (3.0, 3.0)]


def test_float_rem_is_c_fmod_exactly():
    x = np.array([a for a, _ in REM], dtype=np.float32)
    y = np.array([b for _, b in REM], dtype=np.float32)
    got = interpret(lax.rem, x, y)
    for k in range(len(REM)):
        truth = c_fmod(fraction(x[k]), fraction(y[k]))
        assert mpf_to_fraction(got[k]) == truth, (x[k], y[k])
        assert float(truth) == float(np.asarray(lax.rem(x[k], y[k])))  # XLA's fmod is exact too


def test_float_rem_special_values():
    x = np.array([1.0, np.inf, np.nan, 2.5, -2.5], dtype=np.float32)
    y = np.array([0.0, 2.0, 2.0, np.inf, -np.inf], dtype=np.float32)
    got = interpret(lax.rem, x, y)
    assert all(mpmath.isnan(v) for v in got[:3])
    assert list(got[3:]) == [2.5, -2.5]


def test_integer_rem_and_div_truncate_toward_zero():
    a = np.array([-7, 7, -7, 7, 6], dtype=np.int32)
    b = np.array([2, -2, -2, 2, 3], dtype=np.int32)
    rem, div = interpret(lambda a, b: (lax.rem(a, b), lax.div(a, b)), a, b)
    assert list(rem) == [int(math.fmod(p, q)) for p, q in zip(a, b)] == [-1, 1, -1, 1, 0]
    assert list(div) == [int(p / q) for p, q in zip(a, b)] == [-3, -3, 3, 3, 2]


ROUND = [0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 2.4999998, 3.7, -3.7, 8388607.5, 1e30, 0.0, -0.25]


@pytest.mark.parametrize("method", [lax.RoundingMethod.AWAY_FROM_ZERO, lax.RoundingMethod.TO_NEAREST_EVEN])
def test_round_both_methods(method):
    x = np.array(ROUND, dtype=np.float32)
    got = interpret(lambda v: lax.round(v, method), x)
    for k, v in enumerate(x):
        q = fraction(v)
        if method == lax.RoundingMethod.TO_NEAREST_EVEN:
            truth = round(q)  # Python rounds a Fraction's halves to even
        else:
            truth = (1 if q >= 0 else -1) * math.floor(abs(q) + Fraction(1, 2))
        assert got[k] == truth, (v, method)
    assert list(np.asarray(lax.round(x, method))) == [float(v) for v in got]


def test_floor_ceil_sign():
    x = np.array([2.5, -2.5, -0.0, 1e-40, -3.0, np.inf, -np.inf], dtype=np.float32)
    floor, ceil, sign = interpret(lambda v: (jnp.floor(v), jnp.ceil(v), jnp.sign(v)), x)
    for k, v in enumerate(x[:5]):
        q = fraction(v)
        assert (floor[k], ceil[k], sign[k]) == (math.floor(q), math.ceil(q), (q > 0) - (q < 0))
    assert list(floor[5:]) == list(ceil[5:]) == [mpmath.inf, -mpmath.inf]
    assert list(sign[5:]) == [1, -1]
    assert mpmath.isnan(interpret(jnp.sign, np.float32(np.nan))[()])


def test_inverse_and_hyperbolic_functions():
    x = np.array([0.5, 1.0, 2.0, -0.5, np.inf], dtype=np.float32)
    names = ("atan", "asin", "acos", "atanh", "asinh", "acosh", "sinh", "cosh", "erf_inv")
    got = dict(zip(names, interpret(lambda v: tuple(getattr(lax, n)(v) for n in names), x)))
    with mp.workprec(PREC):
        half, two = mpmath.mpf(0.5), mpmath.mpf(2)
        assert got["atan"][1] == mp.pi / 4 and got["atan"][4] == mp.pi / 2
        assert abs(mp.tan(got["atan"][2]) - 2) < mpmath.mpf(2) ** (-PREC + 4)
        assert got["asin"][0] == mp.pi / 6 and got["acos"][0] == mp.pi / 3 and got["asin"][1] == mp.pi / 2
        assert mpmath.isnan(got["asin"][2]) and mpmath.isnan(got["acos"][4])
        assert abs(got["atanh"][0] - mp.log(3) / 2) < mpmath.mpf(2) ** (-PREC + 4)
        assert got["atanh"][1] == mpmath.inf and mpmath.isnan(got["atanh"][2])
        assert abs(got["asinh"][1] - mp.log(1 + mp.sqrt(2))) < mpmath.mpf(2) ** (-PREC + 4)
        assert abs(got["acosh"][2] - mp.log(2 + mp.sqrt(3))) < mpmath.mpf(2) ** (-PREC + 4)
        assert mpmath.isnan(got["acosh"][0]) and got["acosh"][4] == mpmath.inf
        assert abs(got["sinh"][3] - (mp.exp(-half) - mp.exp(half)) / 2) < mpmath.mpf(2) ** (-PREC + 4)
        assert abs(got["cosh"][2] - (mp.exp(two) + mp.exp(-two)) / 2) < mpmath.mpf(2) ** (-PREC + 4)
        assert got["sinh"][4] == got["cosh"][4] == mpmath.inf
        assert abs(mp.erf(got["erf_inv"][0]) - half) < mpmath.mpf(2) ** (-PREC + 4)
        assert got["erf_inv"][1] == mpmath.inf and mpmath.isnan(got["erf_inv"][2])


def test_scaled_bessel_functions_are_their_series():
    x = np.array([1.5, -3.0, 0.0, np.inf], dtype=np.float32)
    i0e, i1e = interpret(lambda v: (lax.bessel_i0e(v), lax.bessel_i1e(v)), x)
    with mp.workprec(PREC):
        for k, v in enumerate(x[:3]):
            v = mpmath.mpf(float(v))
            i0 = mpmath.nsum(lambda j, v=v: (v / 2) ** (2 * j) / mp.factorial(j) ** 2, [0, mpmath.inf])
            i1 = mpmath.nsum(lambda j, v=v: (v / 2) ** (2 * j + 1) / (mp.factorial(j) * mp.factorial(j + 1)),
                             [0, mpmath.inf])
            assert abs(i0e[k] - i0 * mp.exp(-abs(v))) < mpmath.mpf(2) ** (-PREC + 8)
            assert abs(i1e[k] - i1 * mp.exp(-abs(v))) < mpmath.mpf(2) ** (-PREC + 8)
    assert i0e[3] == i1e[3] == 0


def test_incomplete_gamma_closed_forms():
    a = np.array([1.0, 2.0, 2.0, 0.0, 1.5], dtype=np.float32)
    x = np.array([0.75, 3.0, 0.0, 1.0, 2.0], dtype=np.float32)
    p, q, da = interpret(lambda a, x: (lax.igamma(a, x), lax.igammac(a, x), lax.igamma_grad_a(a, x)), a, x)
    with mp.workprec(PREC):
        tol = mpmath.mpf(2) ** (-PREC + 8)
        x0, x1 = mpmath.mpf(0.75), mpmath.mpf(3)
        assert abs(p[0] - (1 - mp.exp(-x0))) < tol and abs(q[0] - mp.exp(-x0)) < tol  # P(1, x) = 1 - e^-x
        assert abs(q[1] - mp.exp(-x1) * (1 + x1)) < tol  # Q(2, x) = e^-x (1 + x)
        assert p[2] == 0 and q[2] == 1 and mpmath.isnan(p[3]) and mpmath.isnan(q[3])

        def by_quadrature(s, t):  # P(s, t) from its integral, independently of mpmath.gammainc
            return mp.quad(lambda u: u ** (s - 1) * mp.exp(-u), [0, t]) / mp.gamma(s)

        two, a4 = mpmath.mpf(2), mpmath.mpf(1.5)
        assert abs(p[4] - by_quadrature(a4, two)) < tol
        assert abs(da[4] - mpmath.diff(lambda s: by_quadrature(s, two), a4)) < mpmath.mpf(2) ** -100


def test_scan_runs_its_body_length_times_in_either_direction():
    xs = np.array([0.5, -1.25, 3.0, 0.125], dtype=np.float32)

    def running(reverse):
        return lambda c, v: lax.scan(lambda carry, x: (carry * x + 1, carry), c, v, reverse=reverse)

    for reverse in (False, True):
        final, seen = interpret(running(reverse), np.float32(2.0), xs)
        carry, truth = Fraction(2), [None] * 4
        for i in (reversed(range(4)) if reverse else range(4)):
            truth[i] = carry
            carry = carry * fraction(xs[i]) + 1
        assert mpf_to_fraction(final[()]) == carry
        assert [mpf_to_fraction(v) for v in seen] == truth


def test_cumulative_reductions_in_both_directions():
    x = np.array([[0.5, -1.25, 3.0], [2.0, 0.125, -4.0]], dtype=np.float32)
    for reverse in (False, True):
        got = interpret(lambda v, reverse=reverse: (lax.cumsum(v, 1, reverse), lax.cumprod(v, 1, reverse), lax.cummax(v, 1, reverse),
                                   lax.cummin(v, 0, reverse)), x)
        q = [[fraction(v) for v in row] for row in x]
        order = [2, 1, 0] if reverse else [0, 1, 2]
        for r in range(2):
            acc = {"sum": Fraction(0), "prod": Fraction(1), "max": None}
            for j in order:
                acc["sum"] += q[r][j]
                acc["prod"] *= q[r][j]
                acc["max"] = q[r][j] if acc["max"] is None else max(acc["max"], q[r][j])
                assert [mpf_to_fraction(got[k][r, j]) for k in range(3)] == [acc["sum"], acc["prod"], acc["max"]]
        for j in range(3):
            first, second = (1, 0) if reverse else (0, 1)
            assert mpf_to_fraction(got[3][first, j]) == q[first][j]
            assert mpf_to_fraction(got[3][second, j]) == min(q[0][j], q[1][j])


def test_while_loop_runs_to_its_exact_exit_and_a_runaway_loop_is_refused(monkeypatch):
    def series(x):  # sum of x**k / k! while the term exceeds 2**-30
        def body(state):
            total, term, k = state
            return total + term, term * x / (k + 1), k + 1
        return lax.while_loop(lambda s: s[1] > 2.0**-30, body, (jnp.float32(0), jnp.float32(1), jnp.float32(0)))

    total, term, k = interpret(series, np.float32(0.75))
    want, t, n = Fraction(0), Fraction(1), 0
    while t > Fraction(1, 2**30):
        want, t, n = want + t, t * Fraction(3, 4) / (n + 1), n + 1
    assert k[()] == n == 12  # the exact predicate stops where the rational series does
    for got, exact in ((total, want), (term, t)):
        assert abs(mpf_to_fraction(got[()]) - exact) <= exact * Fraction(1, 2 ** (PREC - 8))
    monkeypatch.setattr(mp_eval, "MAX_WHILE", 100)  # the cap's logic, without 10000 steps of a unit test
    with pytest.raises(UnsupportedPrimitive, match="still looping after 100 steps"):
        interpret(lambda x: lax.while_loop(lambda c: c > -1, lambda c: c + 1, x), np.float32(0))


def test_integer_clamp_stays_integer():
    got = interpret(lambda i: lax.clamp(0, i, 2), np.int32(7))
    assert got.dtype == np.int32 and got == 2


# ------------------------------------------------------------------ gather and scatter

X = np.arange(24, dtype=np.float32).reshape(2, 3, 4) / 8 - 1  # exact in float32


def exact(a) -> np.ndarray:
    return to_mp(np.asarray(a))


@pytest.mark.parametrize("name, fn, numpy_fn", [
    ("integer array", lambda x: x[:, jnp.array([2, 0, 2])], lambda x: x[:, [2, 0, 2]]),
    ("integer scalar", lambda x: x[1, 2, 3], lambda x: x[1, 2, 3]),
    ("two index arrays", lambda x: x[jnp.array([1, 0]), :, jnp.array([3, 1])], lambda x: x[[1, 0], :, [3, 1]]),
    ("take_along_axis", lambda x: jnp.take_along_axis(x, jnp.array([[[3], [0], [1]], [[2], [2], [0]]]), axis=2),
     lambda x: np.take_along_axis(x, np.array([[[3], [0], [1]], [[2], [2], [0]]]), axis=2)),
    ("clip", lambda x: x.at[:, :, jnp.array([5, -9])].get(mode="clip"), lambda x: x[:, :, [3, 0]]),
])
def test_gather_is_numpy_indexing(name, fn, numpy_fn):
    got = interpret(fn, X)
    truth = numpy_fn(exact(X))
    assert got.shape == np.shape(truth)
    assert all(a == b for a, b in zip(np.ravel(got), np.ravel(truth))), name


def test_gather_fill_mode_fills_out_of_bounds_slices():
    x = X[0, 0]
    got = interpret(lambda v: v.at[jnp.array([1, 7, -1])].get(mode="fill", fill_value=-0.5), x)
    assert list(got[:1]) == [x[1]] and got[1] == -0.5  # -1 counts from the end: numpy's x[-1]
    assert got[2] == x[-1]
    filled = interpret(lambda v: v.at[jnp.array([9])].get(mode="fill"), x)
    assert mpmath.isnan(filled[0])


def test_scatter_add_is_the_gather_transpose():
    """The gradient of sum(w * x[i]) with repeated indices adds w at each repeated position (np.add.at)."""
    index = np.array([2, 0, 2, 2])
    w = np.array([0.5, -1.0, 0.25, 3.0], dtype=np.float32)
    got = interpret(jax.grad(lambda x, w: jnp.sum(w * x[index])), X[0, 0], w)
    truth = np.full(4, mpmath.mpf(0), dtype=object)
    np.add.at(truth, index, exact(w))
    assert list(got) == list(truth) == [-1, 0, 3.75, 0]


@pytest.mark.parametrize("op, combine", [("add", np.add), ("mul", np.multiply), ("set", None),
                                         ("min", np.minimum), ("max", np.maximum)])
def test_scatter_updates(op, combine):
    x = X[1]
    index = (np.array([0, 2, 0]), np.array([1, 3, 1]))
    updates = np.array([0.75, -2.0, 1.5], dtype=np.float32)
    got = interpret(lambda x, u: getattr(x.at[index], op)(u), x, updates)
    truth = exact(x).copy()
    if combine is None:
        truth[index] = exact(updates)
    else:
        combine.at(truth, index, exact(updates))
    assert [v for v in got.ravel()] == [v for v in truth.ravel()]
    np.testing.assert_array_equal(np.asarray(getattr(jnp.asarray(x).at[index], op)(updates)),
                                  np.asarray([float(v) for v in got.ravel()], dtype=np.float32).reshape(x.shape))


def test_scatter_drops_out_of_bounds_updates():
    got = interpret(lambda x: x.at[jnp.array([1, 9])].add(1.0, mode="drop"), X[0, 0])
    assert list(got) == [X[0, 0, 0], X[0, 0, 1] + 1, X[0, 0, 2], X[0, 0, 3]]


def test_dynamic_slice_and_update_clamp_the_start():
    x = X[0, 0]
    for start, first in ((1, 1), (5, 2), (-3, 1), (-9, 0)):  # JAX adds the size to a negative start, XLA clamps
        got = interpret(lambda v, i: lax.dynamic_slice(v, (i,), (2,)), x, np.int32(start))
        assert list(got) == list(x[first:first + 2]) == list(lax.dynamic_slice(x, (start,), (2,)))
        updated = interpret(lambda v, i: lax.dynamic_update_slice(v, jnp.full(2, 9.0, v.dtype), (i,)), x,
                            np.int32(start))
        assert list(updated) == [9.0 if first <= k < first + 2 else x[k] for k in range(4)]


# ------------------------------------------------------------------ platform_index, cond

def test_platform_dependent_runs_the_cpu_branch():
    x = np.float32(0.5)
    cpu = interpret(lambda v: lax.platform_dependent(v, cpu=jnp.exp, default=jnp.log), x)
    default = interpret(lambda v: lax.platform_dependent(v, tpu=jnp.exp, cuda=jnp.sin, default=jnp.log), x)
    with mp.workprec(PREC):
        assert cpu == mp.exp(mpmath.mpf(0.5))
        assert default == mp.log(mpmath.mpf(0.5))


def test_cond_and_switch_pick_the_exact_branch():
    def f(x):
        return lax.cond(x > 0, jnp.log, lambda v: -v, x)

    with mp.workprec(PREC):
        assert interpret(f, np.float32(2)) == mp.log(2)
        assert interpret(f, np.float32(-3)) == 3
        branches = [lambda v: v + 1, lambda v: v * 3, jnp.sqrt]
        for index, want in ((0, 3), (1, 6), (2, mp.sqrt(2)), (7, mp.sqrt(2)), (-4, 3)):  # switch clamps the index
            assert interpret(lambda i, v: lax.switch(i, branches, v), np.int32(index), np.float32(2)) == want


# ------------------------------------------------------------------ eigh

def test_eigh_values_are_the_characteristic_roots_and_vectors_diagonalise():
    a = np.array([[4, 1, 0.5], [1, 3, 0.25], [0.5, 0.25, 2]], dtype=np.float32)
    upper_garbage = a + np.triu(np.full((3, 3), 100, dtype=np.float32), 1)  # lower=True reads the lower triangle
    vectors, values = interpret(lambda m: lax.linalg.eigh(m, lower=True, symmetrize_input=False), upper_garbage)
    with mp.workprec(PREC):
        m = mpmath.matrix(exact(a).tolist())
        # det(A - t I) = -t^3 + tr(A) t^2 - c1 t + det(A)
        c1 = sum(m[i, i] * m[j, j] - m[i, j] * m[j, i] for i in range(3) for j in range(i + 1, 3))
        roots = sorted(mpmath.polyroots([-1, m[0, 0] + m[1, 1] + m[2, 2], -c1, mp.det(m)], maxsteps=200,
                                        extraprec=PREC))
        for got, want in zip(values, roots):
            assert abs(got - want) < mpmath.mpf(2) ** (-PREC + 16)
        q = mpmath.matrix(vectors.tolist())
        residual = m * q - q * mpmath.diag(list(values))
        assert mpmath.mnorm(residual, 1) < mpmath.mpf(2) ** (-PREC + 16)
        assert mpmath.mnorm(q.T * q - mpmath.eye(3), 1) < mpmath.mpf(2) ** (-PREC + 16)
        for j in range(3):  # the sign convention: the largest component is positive
            column = [vectors[i, j] for i in range(3)]
            assert max(column, key=abs) > 0
    np.testing.assert_allclose(np.asarray(lax.linalg.eigh(a)[1]), [float(v) for v in values], rtol=1e-6)


def test_eigh_two_by_two_closed_form():
    vectors, values = interpret(lambda m: lax.linalg.eigh(m), np.array([[2, 1], [1, 2]], dtype=np.float32))
    with mp.workprec(PREC):
        assert list(values) == [1, 3]
        s = 1 / mp.sqrt(2)
        want = [[s, s], [-s, s]]  # columns (1, -1)/sqrt2 and (1, 1)/sqrt2, largest component positive
        assert all(abs(vectors[i, j] - want[i][j]) < mpmath.mpf(2) ** (-PREC + 8) for i in range(2) for j in range(2))


# ------------------------------------------------------------------ numpyro's discrete distributions replay exactly

def _log_binomial(n, k):
    return mp.loggamma(n + 1) - mp.loggamma(k + 1) - mp.loggamma(n - k + 1)


DISCRETE = [
    ("numpyro.distributions.Poisson(r).log_prob(k)", {"r": 2.5, "k": 3.0},
     lambda r, k: k * mp.log(r) - r - mp.loggamma(k + 1), lambda r, k: {"r": k / r - 1}),
    ("numpyro.distributions.Binomial(10, probs=p).log_prob(k)", {"p": 0.375, "k": 3.0},
     lambda p, k: _log_binomial(10, k) + k * mp.log(p) + (10 - k) * mp.log(1 - p),
     lambda p, k: {"p": k / p - (10 - k) / (1 - p)}),
    ("numpyro.distributions.Geometric(probs=p).log_prob(k)", {"p": 0.25, "k": 3.0},
     lambda p, k: k * mp.log(1 - p) + mp.log(p), lambda p, k: {"p": -k / (1 - p) + 1 / p}),
    ("numpyro.distributions.NegativeBinomial2(m, c).log_prob(k)", {"m": 2.5, "c": 1.5, "k": 3.0},
     lambda m, c, k: (mp.loggamma(k + c) - mp.loggamma(c) - mp.loggamma(k + 1) + c * mp.log(c / (c + m))
                      + k * mp.log(m / (c + m))), None),
    ("numpyro.distributions.Categorical(logits=z).log_prob(1)", {"z": [0.5, 1.0, -1.0]},
     lambda z: z[1] - mp.log(sum(mp.exp(v) for v in z)), None),
]


@pytest.mark.parametrize("source, values, log_pmf, grad", DISCRETE, ids=[d[0].split("(")[0] for d in DISCRETE])
def test_numpyro_discrete_log_prob_replays_exactly(source, values, log_pmf, grad):
    inputs = {n: np.asarray(v, dtype=np.float32) for n, v in values.items()}
    wrt = [n for n in inputs if n != "k"]
    replay = shadow.run(formula.parse(source, set(inputs), impl="jax"), inputs, wrt, F32, PREC)
    with mp.workprec(PREC):
        x = {n: exact(v) if v.shape else mpmath.mpf(float(v)) for n, v in inputs.items()}
        assert abs(replay.exact_outputs[0][()] - log_pmf(**x)) < mpmath.mpf(2) ** (-PREC + 16)
        truth = grad(**x) if grad else {n: mpmath.diff(lambda t, n=n: log_pmf(**{**x, n: x[n] + t}), 0) for n in wrt
                                        if not inputs[n].shape}
        for n, g in truth.items():
            assert abs(replay.exact_outputs[1 + wrt.index(n)][()] - g) < mpmath.mpf(2) ** (-PREC // 2)
    assert np.isfinite(replay.outputs[0]) and len(replay.ops) > 20
