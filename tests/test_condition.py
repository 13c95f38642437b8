"""Tests of oracle.reference.condition: relative componentwise condition numbers.

Every expected kappa is a closed form evaluated directly in mpmath at TRUTH_BITS
bits (kappa = sum_j |d out/d x_j| |x_j| / |out|, worked out by hand per formula),
never a number produced by the code under test, except where the statistical
estimate is bounded by the exact method that the closed-form tests validate.
"""

from __future__ import annotations

from functools import cache

import mpmath
import numpy as np
import pytest
from mpmath import mp

from oracle.formula import parse
from oracle.reference.condition import _wallis, condition_numbers
from oracle.reference.program import trace

TRUTH_BITS = 320
PREC = 64  # condition_numbers reports the 128-bit kappa, checked against 64 bits


@cache
def _program(source: str, names: tuple, shapes: tuple, wrt: tuple):
    return trace(parse(source, set(names)), dict(zip(names, shapes)), list(wrt))


def condition(source: str, inputs: dict, wrt: list[str] | None = None, **kw):
    inputs = {n: np.asarray(v, dtype=np.float32) for n, v in inputs.items()}
    wrt = list(inputs) if wrt is None else wrt
    program = _program(source, tuple(inputs), tuple(v.shape for v in inputs.values()), tuple(wrt))
    return condition_numbers(program, inputs, PREC, **kw)


def close(got, want, rel=1e-25) -> bool:
    return mpmath.almosteq(got, want, rel_eps=rel, abs_eps=0)


def mpf(x) -> mpmath.mpf:
    return mpmath.mpf(float(np.float32(x)))  # the float32 input, exactly


# (source, inputs, [value kappa, kappa of each gradient]) as closed forms of the exact inputs
SCALAR_CASES = {
    "exp": ("exp(x)", {"x": -3.25}, lambda x: [abs(x), abs(x)]),  # grad exp(x): kappa |x| too
    "log": ("log(x)", {"x": 3.0}, lambda x: [1 / abs(mp.log(x)), 1]),  # grad 1/x: kappa 1
    "sqrt": ("sqrt(x)", {"x": 2.0}, lambda x: [mpmath.mpf(1) / 2, mpmath.mpf(1) / 2]),
    "log1p": ("log1p(x)", {"x": 0.375}, lambda x: [abs(x / ((1 + x) * mp.log1p(x))), abs(x / (1 + x))]),
    "sin": ("sin(x)", {"x": 1.5}, lambda x: [abs(x * mp.cot(x)), abs(x * mp.tan(x))]),  # grad cos x
    "cube": ("x ** 3", {"x": -1.75}, lambda x: [3, 2]),  # grad 3x^2
    "sub": ("x - y", {"x": 2.5, "y": 2.25},
            lambda x, y: [(abs(x) + abs(y)) / abs(x - y), 0, 0]),  # constant gradients do not move
    "mul": ("x * y", {"x": 2.5, "y": -0.75}, lambda x, y: [2, 1, 1]),  # grads y and x
    "hypot": ("hypot(x, y)", {"x": 3.0, "y": -4.0},  # r = sqrt(x^2+y^2): kappa 1; grad x/r: 2y^2/r^2
              lambda x, y: [1, 2 * y * y / (x * x + y * y), 2 * x * x / (x * x + y * y)]),
    "pi constant": ("x + pi", {"x": -2.0}, lambda x: [abs(x) / abs(x + mp.pi), 0]),  # pi is no input
    "decimal constant": ("x * 0.1", {"x": 7.0}, lambda x: [1, 0]),
}


@pytest.mark.parametrize("name", SCALAR_CASES)
def test_scalar_closed_forms(name):
    source, inputs, truth = SCALAR_CASES[name]
    got = condition(source, inputs)
    with mp.workprec(TRUTH_BITS):
        want = truth(*(mpf(v) for v in inputs.values()))
    assert len(got.kappa) == len(want)
    for k, w in zip(got.kappa, want):
        assert k.shape == () and close(k[()], w), (name, k[()], w)
    assert all(a.all() for a in got.agrees)
    assert got.method == f"exact: {len(inputs)} input directions, forward-over-reverse; in Arb balls"
    assert got.precision == 2 * PREC


def test_vector_elementwise_per_component():
    x = [-2.5, 0.5, 3.0, 1e-3]
    got = condition("exp(x) * x", {"x": x})
    with mp.workprec(TRUTH_BITS):
        xs = [mpf(v) for v in x]
        value = [abs(1 + v) for v in xs]  # d(x e^x) x / (x e^x) = 1 + x
        grad = [abs(v * (2 + v) / (1 + v)) for v in xs]  # grad (1+x)e^x, derivative (2+x)e^x
    assert got.kappa[0].shape == (4,) and got.kappa[1].shape == (4,)
    assert all(close(k, w) for k, w in zip(got.kappa[0], value))
    assert all(close(k, w) for k, w in zip(got.kappa[1], grad))
    assert got.agrees[0].shape == (4,) and got.agrees[0].all() and got.agrees[1].all()


def test_sum_of_vector():
    x = [1.5, -2.0, 0.25, 1.0]
    got = condition("sum(x)", {"x": x})
    with mp.workprec(TRUTH_BITS):
        assert close(got.kappa[0][()], sum(abs(mpf(v)) for v in x) / abs(sum(mpf(v) for v in x)))
    assert (got.kappa[1] == 0).all()  # the gradient is all ones


def test_zero_output_that_moves_is_infinite():
    got = condition("x - y", {"x": 1.5, "y": 1.5})
    assert got.kappa[0][()] == mpmath.inf and got.agrees[0][()]
    assert condition("log(x)", {"x": 1.0}).kappa[0][()] == mpmath.inf


def test_zero_inputs_contribute_nothing():
    got = condition("x * y", {"x": 2.5, "y": 0.0})
    assert got.method == "exact: 1 input directions, forward-over-reverse; in Arb balls"  # y = 0 gets no direction
    assert got.kappa[0][()] == 0  # 0/0: x*y stays 0 under relative perturbations
    assert got.kappa[1][()] == 0  # grad.x = y = 0 does not move either
    assert got.kappa[2][()] == 1  # grad.y = x


def test_non_finite_inputs_or_outputs_are_undefined():
    got = condition("exp(x) + y", {"x": 1.0, "y": np.inf})
    assert got.method == "undefined: non-finite inputs"
    assert all(mpmath.isnan(k[()]) for k in got.kappa)
    got = condition("log(x)", {"x": 0.0})  # the value is -inf, the gradient +inf
    assert all(mpmath.isnan(k[()]) for k in got.kappa)


def test_precision_doubles_until_kappa_agrees():
    """log1p(exp(-z)) at z = -100: the gradient's kappa 100*sigmoid(-100) ~ 4e-42 cancels below ~150 bits."""
    program = _program("log1p(exp(-z))", ("z",), ((),), ("z",))
    capped = condition_numbers(program, {"z": np.float32(-100)}, 64, cap=128)
    assert capped.agrees[0][()] and not capped.agrees[1][()] and capped.precision == 128
    settled = condition_numbers(program, {"z": np.float32(-100)}, 64)
    with mp.workprec(TRUTH_BITS):
        assert settled.agrees[1][()] and close(settled.kappa[1][()], 100 / (1 + mp.exp(100)))
    assert settled.precision >= 256


def test_wallis_factor():
    with mp.workprec(TRUTH_BITS):
        for n, omega in [(1, 1), (2, 2 / mp.pi), (3, mpmath.mpf(1) / 2), (4, 4 / (3 * mp.pi))]:
            assert close(_wallis(n), omega)
        assert close(_wallis(10**4), mp.sqrt(2 / (mp.pi * 10**4)), rel=1e-4)


def _vector(n: int) -> list[float]:
    return [float(v) for v in np.float32(np.linspace(-1.5, 2.0, n)) if v != 0]


def test_sce_with_every_direction_is_the_exact_2_norm():
    """k = n orthonormal directions span everything: the estimate is the 2-norm kappa itself."""
    x = _vector(40)
    got = condition("sum(exp(x))", {"x": x}, samples=len(x))
    assert got.method.startswith(f"estimated: SCE with {len(x)} random directions over {len(x)} nonzero inputs (2-norm")
    with mp.workprec(TRUTH_BITS):
        xs = [mpf(v) for v in x]
        want = mp.sqrt(sum((v * mp.exp(v)) ** 2 for v in xs)) / sum(mp.exp(v) for v in xs)
        assert close(got.kappa[0][()], want, rel=1e-30)
        assert all(close(k, abs(v), rel=1e-30) for k, v in zip(got.kappa[1], xs))  # rows with one entry


def test_sce_within_sqrt_n_of_exact_kappa():
    x = _vector(40)
    n = len(x)
    estimate = condition("sum(exp(x)) * x", {"x": x})
    exact = condition("sum(exp(x)) * x", {"x": x}, exact_limit=n)
    assert estimate.method == (f"estimated: SCE with 4 random directions over {n} nonzero inputs "
                               f"(2-norm, within sqrt({n}) below the 1-norm kappa); in Arb balls")
    assert exact.method == f"exact: {n} input directions, forward-over-reverse; in Arb balls"
    slack = 3  # the statistical estimate's own error with 4 samples, generous
    for sce, one_norm in zip(estimate.kappa, exact.kappa):
        assert sce.shape == one_norm.shape == (n,)
        for s, k in zip(sce, one_norm):
            assert k / (slack * mp.sqrt(n)) <= s <= slack * k, (s, k)
