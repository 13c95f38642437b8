"""Shadow execution of the JAX computation: each known failure is traced to the op, sub-expression and kind.

The expected blames are worked out by hand from IEEE float32 facts: exp(100) =
2.69e43 exceeds the largest float32 3.40e38; 1e8 + 1 rounds to 1e8 (spacing 8);
exp(-100) = 3.7e-44 is a float32 subnormal, which XLA on CPU flushes to zero.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest

from oracle import formula, shadow
from oracle.floats import fmt
from oracle.frameworks import evaluate

PREC = 128


@cache
def _run(source: str, dtype: str, inputs: tuple, threshold_bits: float = shadow.DEFAULT_THRESHOLD_BITS):
    arrays = {name: np.asarray(value, dtype=dtype) for name, value in inputs}
    tree = formula.parse(source, set(arrays))
    return shadow.run(tree, arrays, list(arrays), fmt(dtype), PREC, threshold_bits), tree, arrays


def run(source: str, dtype: str = "float32", **inputs) -> shadow.Shadow:
    return _run(source, dtype, tuple(inputs.items()))[0]


def blame(s: shadow.Shadow, output: str, index: tuple[int, ...] = ()) -> shadow.Blame | None:
    return s.root_cause(s.output_names.index(output), index)


CASES = [
    ("-log(1 / (1 + exp(-z)))", "float32", {"z": -100.0}),
    ("log(1 + x)", "float32", {"x": 1e-30}),
    ("(x + 1) - x", "float32", {"x": 1e8}),
    ("exp(x) / exp(y)", "float32", {"x": -100.0, "y": -100.0}),
    ("sqrt(x ** 2 + y ** 2)", "float32", {"x": 1e30, "y": 1.0}),
    ("-0.5 * sum(1 + logvar - mu ** 2 - exp(logvar))", "float32", {"logvar": (89.0,), "mu": (0.0,)}),
    ("exp(x) - x", "float32", {"x": 1e-5}),
    ("exp(y) + ((x + 1) - x)", "float32", {"x": 1e8, "y": -200.0}),
    ("log1p(x)", "float32", {"x": 1e-30}),
    ("sqrt(x)", "float32", {"x": 1e-40}),
    ("(x + 1) - x", "float64", {"x": 1e17}),
]


@pytest.mark.parametrize("source, dtype, inputs", CASES, ids=[f"{s} {d}" for s, d, _ in CASES])
def test_shadow_reproduces_the_framework(source, dtype, inputs):
    s, tree, arrays = _run(source, dtype, tuple(inputs.items()))
    framework = evaluate(tree, "jax", arrays, list(arrays), fmt(dtype))
    expected = [framework.value] + [framework.grads[name] for name in arrays]
    for got, want in zip(s.outputs, expected, strict=True):
        np.testing.assert_array_equal(got, want)  # NaN equals NaN here


def test_overflowing_exp_in_naive_log_sigmoid():
    s = run("-log(1 / (1 + exp(-z)))", z=-100.0)
    assert float(s.exact_outputs[0][()]) == pytest.approx(100.0) and s.outputs[0] == np.inf
    for output in ("value", "grad.z"):
        b = blame(s, output)
        assert (b.kind, b.where, b.op.primitive, b.op.direction) == ("overflow", "exp(-z)", "exp", "forward")
        assert b.op.inherent[()] and b.operands == (("100.0", "100.0"),)
        assert "2.68811714e+43" in b.explanation and "3.40282347e+38" in b.explanation


def test_log_of_one_plus_tiny_blames_log_not_the_absorbing_add():
    """1 + 1e-30 == 1 in float32 is a correctly rounded add (no local error); the log amplifies the lost 1e-30."""
    s = run("log(1 + x)", x=1e-30)
    add = next(op for op in s.ops if op.where == "1 + x")
    assert add.float_value == 1.0 and add.local_bits[()] == 0 and add.events[()] == ""
    b = blame(s, "value")
    assert (b.kind, b.where, b.op.primitive) == ("sensitivity", "log(1 + x)", "log")
    assert b.operands == (("1.0", "1.0 + 1.0e-30"),)  # (float32, exact)
    assert b.op.local_bits[()] > 27
    assert blame(s, "grad.x") is None  # 1 / (1 + x) rounds to 1, as the float gradient is


def test_cancellation_of_an_inexact_sum():
    s = run("(x + 1) - x", x=1e8)
    b = blame(s, "value")
    assert (b.kind, b.where, b.op.primitive) == ("cancellation", "(x + 1) - x", "sub")
    assert b.operands == (("100000000.0", "100000001.0"), ("100000000.0", "100000000.0"))
    assert "1.0e+8 times smaller" in b.explanation


def test_subnormal_results_flushed_to_zero():
    s = run("exp(x) / exp(y)", x=-100.0, y=-100.0)
    assert np.isnan(s.outputs[0]) and s.exact_outputs[0][()] == 1
    for output in ("value", "grad.x", "grad.y"):
        b = blame(s, output)
        assert (b.kind, b.flushed, b.where, b.op.primitive) == ("underflow", True, "exp(x)", "exp")
        assert "flushed to zero" in b.explanation and b.op.float_value == 0
        assert float(b.op.exact_value[()]) == pytest.approx(3.720075976020836e-44)
    division = next(op for op in s.ops if op.primitive == "div" and op.direction == "forward")
    assert division.events[()] == "underflow" and division.flushed[()]  # it reads the subnormal operands as 0
    assert not division.inherent[()]  # its exact value, 1, is normal


def test_subnormal_operand_read_as_zero():
    s = run("sqrt(x)", x=1e-40)
    b = blame(s, "value")
    assert (b.kind, b.flushed, b.where, b.op.primitive) == ("underflow", True, "sqrt(x)", "sqrt")
    assert not b.op.inherent[()] and "read a subnormal operand as zero" in b.explanation
    assert s.outputs[0] == 0 and float(s.exact_outputs[0][()]) == pytest.approx(1e-20, rel=1e-6)


def test_squares_overflow_in_naive_hypot():
    s = run("sqrt(x ** 2 + y ** 2)", x=1e30, y=1.0)
    for output in ("value", "grad.x", "grad.y"):
        b = blame(s, output)
        assert (b.kind, b.where, b.op.primitive, b.op.params["y"]) == ("overflow", "x ** 2", "integer_pow", 2)
    assert blame(s, "value").op.source is not None  # integer_pow comes from jnp.power, a JAX library line


def test_kl_overflow_of_exp_logvar_in_value_and_gradient():
    s = run("-0.5 * sum(1 + logvar - mu ** 2 - exp(logvar))", logvar=(89.0,), mu=(0.0,))
    for output in ("value", "grad.logvar"):
        index = () if output == "value" else (0,)
        b = blame(s, output, index)
        assert (b.kind, b.where, b.op.direction, b.element) == ("overflow", "exp(logvar)", "forward", (0,))
    assert blame(s, "grad.mu", (0,)) is None


def test_first_bad_op_in_the_backward_pass():
    """d/dx (exp(x) - x) = exp(x) - 1: the backward pass adds the cotangents 1.00001001 and -1 and cancels."""
    s = run("exp(x) - x", x=1e-5)
    assert blame(s, "value") is None
    b = blame(s, "grad.x")
    assert (b.kind, b.op.primitive, b.op.direction) == ("cancellation", "add_any", "backward")
    assert b.where == "exp(x)" and "(backward pass)" in b.explanation  # JAX sums x's cotangents in exp(x)'s scope
    assert b.op.float_value == np.float32(1.001358e-05) and b.op.local_bits[()] > 10


def test_an_underflow_that_does_not_matter_is_not_blamed():
    """exp(-200) underflows first, but 1e8-sized terms absorb it; the wrong output comes from the cancellation."""
    s = run("exp(y) + ((x + 1) - x)", x=1e8, y=-200.0)
    exp = next(op for op in s.ops if op.primitive == "exp")
    assert exp.events[()] == "underflow" and exp.inherent[()]
    b = blame(s, "value")
    assert (b.kind, b.where) == ("cancellation", "(x + 1) - x")


def test_accurate_log1p_has_no_blame():
    s = run("log1p(x)", x=1e-30)
    assert blame(s, "value") is None and blame(s, "grad.x") is None


def test_float64_cancellation():
    s = run("(x + 1) - x", "float64", x=1e17)
    b = blame(s, "value")
    assert (b.kind, b.where) == ("cancellation", "(x + 1) - x")
    assert b.operands == (("1.0e+17", "1.0e+17 + 1.0"), ("1.0e+17", "1.0e+17"))


def test_threshold_is_a_parameter():
    strict, _, _ = _run("(x + 1) - x", "float32", (("x", 1e8),), 40.0)  # local error is 30 bits
    assert strict.root_cause(0) is None


def test_unsupported_primitive_is_a_clear_exception():
    L = 2 * np.eye(3, dtype=np.float32)
    with pytest.raises(shadow.ShadowUnavailable) as caught:  # JAX's slogdet factors with lu, which has no exact rule
        shadow.run(formula.parse("logdet(L)", {"L"}), {"L": L}, ["L"], fmt("float32"), PREC)
    assert caught.value.primitive == "lu" and "'lu'" in str(caught.value)
