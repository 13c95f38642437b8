"""The reference's where() gradient is the derivative of the branch taken (oracle.reference.zeros).

Truth: where(x > 0, sqrt(x), 0) is the constant 0 near x = -1 (derivative 0) and sqrt(x) near 4
(derivative 1/(2 sqrt(x)) = 1/4); sum(sqrt(x)[1:]) does not depend on x[0]. Forward-pass zeros are not
strong: 0 * log(x) at x = -1 is NaN in value.
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
from mpmath import mp

from oracle import case as case_io
from oracle.floats import fmt, round_to
from oracle.formula import parse
from oracle.reference import compute
from oracle.reference.program import trace
from oracle.runner import run_case

F32 = fmt("float32")


def reference(source: str, x, strong_zeros: bool = True):
    x = np.asarray(x, dtype=np.float32)
    program = trace(parse(source, {"x"}), {"x": x.shape}, ["x"])
    ref = compute(program, {"x": x}, F32, strong_zeros=strong_zeros)
    return ref.outputs[0], ref.outputs[1], ref


def test_where_sqrt_at_minus_one_has_value_0_and_gradient_0():
    value, grad, ref = reference("where(x > 0, sqrt(x), 0.0)", -1.0)
    assert value.rounded == 0 and grad.rounded == 0 and not math.copysign(1, grad.rounded) < 0
    assert value.certified and grad.certified
    assert grad.numeric_agrees.all() and grad.numeric[()] == 0  # the function is flat there: mpmath.diff agrees
    assert ref.domain == []


def test_where_sqrt_at_four_is_the_taken_branch_derivative():
    value, grad, _ = reference("where(x > 0, sqrt(x), 0.0)", 4.0)
    with mp.workprec(200):
        assert value.rounded == 2
        assert grad.rounded == np.float32(round_to(1 / (2 * mp.sqrt(4)), F32)) == 0.25
    assert grad.numeric_agrees.all()


def test_as_written_the_backward_pass_gives_nan():
    """strong_zeros=False is what JAX's code computes exactly: 0 * (0.5 / sqrt(-1)) = NaN."""
    _, grad, ref = reference("where(x > 0, sqrt(x), 0.0)", -1.0, strong_zeros=False)
    assert np.isnan(grad.rounded)
    assert not grad.numeric_agrees.any()
    assert ref.domain == ["sqrt(-1.0) is undefined (NaN)"]


def test_a_slice_is_a_where_too():
    """The cotangent pad() gives the unsliced x[0] is a structural zero: d/dx[0] sum(sqrt(x)[1:]) = 0."""
    value, grad, _ = reference("sum(sqrt(x)[1:])", [-1.0, 4.0])
    assert value.rounded == 2
    assert list(grad.rounded) == [0, 0.25] and grad.certified.all()


def test_vector_where_mixes_taken_and_untaken_branches():
    _, grad, _ = reference("sum(where(x > 0, sqrt(x), 0.0) * x)", [-1.0, 4.0, 0.25])
    # d/dx (x sqrt(x)) = 1.5 sqrt(x): 3 at 4, 0.75 at 0.25; 0 where the constant branch is taken
    assert list(grad.rounded) == [0, 3, 0.75]


def test_a_strong_cotangent_stays_zero_through_a_matrix_product():
    """f = sum(where(x > 0, M @ sqrt(x), 1)) is 2 near x = [-1, -4]: every gradient is 0. Backward, the
    untaken branch's zero cotangent meets sqrt(x) = NaN in dot_general (outer product for grad.M) and
    passes a dot_general with M on its way to grad.x."""
    x, m = np.array([-1.0, -4.0], dtype=np.float32), np.array([[1, 2], [0.5, -1]], dtype=np.float32)
    program = trace(parse("sum(where(x > 0, matmul(M, sqrt(x)), 1.0))", {"M", "x"}), {"M": (2, 2), "x": (2,)},
                    ["M", "x"])
    value, grad_m, grad_x = compute(program, {"M": m, "x": x}, F32).outputs
    assert value.rounded == 2
    assert grad_m.rounded.tolist() == [[0, 0], [0, 0]] and grad_x.rounded.tolist() == [0, 0]
    assert grad_m.certified.all() and grad_x.certified.all()
    as_written = compute(program, {"M": m, "x": x}, F32, strong_zeros=False).outputs
    assert np.isnan(as_written[1].rounded).all() and np.isnan(as_written[2].rounded).all()


def test_forward_zeros_are_not_strong():
    value, grad, ref = reference("0 * log(x)", -1.0)
    assert np.isnan(value.rounded)
    assert ref.domain == ["log(-1.0) is undefined (NaN)"]
    assert grad.rounded == 0  # d/dx 0 * log(x) = 0 * (1 / x) = 0: the local derivative -1 is finite


def test_a_genuine_non_differentiable_point_still_disagrees_with_mpmath_diff():
    """where(x > 0, log(x), 0) jumps at 0: AD of the taken branch says 0, a central difference says otherwise."""
    value, grad, _ = reference("where(x > 0, log(x), 0)", 0.0)
    assert value.rounded == 0 and grad.rounded == 0
    assert not grad.numeric_agrees.any()


WHERE_TRAP = """\
id: where-sqrt-trap
title: where(x > 0, sqrt(x), 0) at x = -1, whose gradient is 0 (the function is constant there)
kind: loss
inputs:
  x: -1.0
formula: where(x > 0, sqrt(x), 0.0)
frameworks: [torch, jax]
"""


def test_where_trap_case_reference_gradient_is_0_while_the_frameworks_give_nan_a_mismatch(tmp_path):
    path = tmp_path / "where.yaml"
    path.write_text(WHERE_TRAP)
    result = run_case(case_io.load(path))
    rows = {(r["framework"], r["output"]): r for r in result["results"]}
    for framework in ("torch", "jax"):
        assert rows[framework, "value"]["reference"] == "0.0" and rows[framework, "value"]["got"] == "0.0"
        assert rows[framework, "grad.x"]["reference"] == "0.0"
        assert rows[framework, "grad.x"]["got"] == "nan"  # the trap: each framework multiplies 0 by NaN
        # the formula as the frameworks compute it (traced with JAX's ops, 0 * NaN = NaN) is another function
        assert rows[framework, "grad.x"]["verdict"] == "mismatch"
    assert result["reference"]["float32"]["domain"] == []
    assert result["reference"]["float32"]["gradient_check"].startswith("mpmath.diff on 1 scalar inputs")
    assert mpmath.mpf(rows["jax", "grad.x"]["reference"]) == 0
