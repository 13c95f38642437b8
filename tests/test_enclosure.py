"""The ball engine (oracle.reference.arb_eval, enclosure): certification by enclosure catches what agreement of two
mpmath precisions missed, and mpmath's second opinion turns a disagreement into `uncertain`.

Truths are computed here in mpmath directly at high precision from closed forms, independent of both engines.
"""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
from mpmath import mp
from test_reference import F32, F64, mpmath_engine, output, reference

from oracle.floats import round_to
from oracle.reference import mp_eval


def log_ndtr_derivative(x):
    """d/dx log Phi(x) = phi(x) / Phi(x), with Phi(x) = erfc(-x / sqrt 2) / 2 (no cancellation for x < 0)."""
    return mp.exp(-x * x / 2) / mp.sqrt(2 * mp.pi) / (mp.erfc(-x / mp.sqrt(2)) / 2)


@pytest.mark.parametrize("x, wrong", [(-1e40, 0.0), (-1e300, np.inf)])
def test_log_ndtr_gradient_far_in_the_tail(x, wrong):
    """The mpmath engine certified 0 (x = -1e40) and inf (x = -1e300) for a gradient of about -x: exp(-x^2/2) with
    x^2 known to 2**-106 relative is off by a factor e^(1e47), the same way at two precisions. The ball is that
    wide too, so Arb raises the precision (to 424 and 3392 bits) until the answer is proven."""
    inputs = {"x": np.float64(x)}
    with mp.workprec(8192):
        truth = round_to(log_ndtr_derivative(mpmath.mpf(x)), F64)
        value = round_to(mp.log(mp.erfc(-mpmath.mpf(x) / mp.sqrt(2)) / 2), F64)
    assert truth == pytest.approx(-x, rel=1e-12)
    ref = reference("log_ndtr(x)", inputs, F64)
    assert ref.engine == "arb" and ref.second_opinion.startswith("mpmath agrees")
    grad = output(ref, "grad.x")
    assert grad.rounded[()] == truth and grad.precision[()] > 0
    assert output(ref, "value").rounded[()] == value and output(ref, "value").precision[()] > 0
    assert mpmath_engine("log_ndtr(x)", inputs, F64, cap=4096).outputs[1].rounded[()] == wrong  # what agreement said


def test_absorbed_one_at_2_to_the_300():
    """(x + 1) - x = 1 at x = 2**300: the 64- to 256-bit balls are [1 +- 2**(300 - prec)], so the value is certified
    where 301 bits hold x + 1 exactly."""
    ref = reference("(x + 1) - x", {"x": np.float64(2.0**300)}, F64)
    value = output(ref, "value")
    assert ref.engine == "arb" and value.rounded[()] == 1.0 and value.precision[()] == 424
    assert output(ref, "grad.x").rounded[()] == 0.0 and output(ref, "grad.x").precision[()] > 0


def test_log_of_one_minus_saturated_sigmoid():
    """log(1 - sigmoid(200)) = -200 - log1p(e^-200); its gradient is -sigmoid(200)."""
    ref = reference("log(1 - sigmoid(x))", {"x": np.float64(200)}, F64)
    with mp.workprec(1000):
        x = mpmath.mpf(200)
        value, grad = -x - mp.log1p(mp.exp(-x)), -1 / (1 + mp.exp(-x))
    assert ref.engine == "arb"
    assert output(ref, "value").rounded[()] == round_to(value, F64) and output(ref, "value").precision[()] > 0
    assert output(ref, "grad.x").rounded[()] == round_to(grad, F64) and output(ref, "grad.x").precision[()] > 0


def test_categorical_entropy_with_a_masked_logit():
    """H = -sum p log p over logits [-inf, 0, 1], the masked term written with where(). The value is the entropy of
    softmax([0, 1]), proven by the balls. The gradient is the derivative of the branch taken, -p_i (log p_i + H),
    and 0 for the masked logit; the balls evaluate the backward pass as written, where the discarded branch's 0
    cotangent times z - logsumexp(z) = -inf is NaN (JAX computes NaN too), so those components are certified by
    the mpmath engine with strong zeros. The mpmath engine alone once certified neither (its absorption guard
    poisoned every run)."""
    import jax
    import jax.numpy as jnp

    source = "-sum(where(z == -inf, 0, exp(z - logsumexp(z)) * (z - logsumexp(z))))"
    z = np.array([-np.inf, 0.0, 1.0])
    ref = reference(source, {"z": z}, F64)
    with mp.workprec(200):
        p = [1 / (1 + mp.e), mp.e / (1 + mp.e)]
        entropy = -mpmath.fsum(q * mp.log(q) for q in p)
        slopes = [-q * (mp.log(q) + entropy) for q in p]
    assert ref.engine == "arb+mpmath-strong-zeros" and ref.domain == []
    assert output(ref, "value").rounded[()] == round_to(entropy, F64) and output(ref, "value").precision[()] > 0
    grad = output(ref, "grad.z")
    assert list(grad.rounded) == [0.0] + [round_to(v, F64) for v in slopes] and (grad.precision > 0).all()

    def entropy_jax(v):
        lse = jax.scipy.special.logsumexp(v)
        return -jnp.sum(jnp.where(v == -jnp.inf, 0.0, jnp.exp(v - lse) * (v - lse)))

    assert np.isnan(np.asarray(jax.grad(entropy_jax)(jnp.asarray(z, jnp.float32)))).all()


def test_a_disagreement_with_mpmath_is_uncertain(monkeypatch):
    """A wrong exp in one library (here: mpmath's, off by 2**-20 relative) makes the certified value uncertain."""
    monkeypatch.setitem(mp_eval.FLOAT_UNARY, "exp", lambda x: mp.exp(x) * (1 + mpmath.mpf(2) ** -20))
    ref = reference("exp(x)", {"x": np.float32(1.5)}, F32)
    value = output(ref, "value")
    assert ref.engine == "arb" and "arb and mpmath disagree" in ref.second_opinion
    assert value.disagrees[()] and value.precision[()] == 0 and not value.certified[()]
    with mp.workprec(100):
        assert value.rounded[()] == round_to(mp.exp(mpmath.mpf(1.5)), F32)  # Arb's own answer is kept, unvouched


def test_exact_zero_by_cancellation_falls_back_to_agreement():
    """log(x*x) - 2 log(x) and its derivative are 0 exactly, but every ball around them straddles -0.0 and +0.0: those
    components are certified by mpmath agreement only, and the reference says so."""
    ref = reference("log(x*x) - 2*log(x)", {"x": np.float32(3)}, F32)
    assert ref.engine == "arb+mpmath-agreement" and "2 components certified by mpmath agreement" in ref.second_opinion
    for out in ref.outputs:
        assert out.rounded[()] == 0 and out.precision[()] > 0


def test_a_primitive_without_a_ball_rule_uses_the_mpmath_engine():
    """gammainc's derivative in a (igamma_grad_a) has no Arb rule: the whole reference comes from mpmath agreement."""
    ref = reference("gammainc(a, x)", {"a": np.float64(2.5), "x": np.float64(1.75)}, F64)
    assert ref.engine == "mpmath-agreement" and "no Arb rule" in ref.second_opinion
    assert all((o.precision > 0).all() for o in ref.outputs)


@pytest.mark.parametrize("source, x, derivative", [
    ("lgamma(x)", 1e-300, lambda x: mp.digamma(x)),  # an absolute step of 2**-222 crossed the pole at 0
    ("erf(x)", 24.0, lambda x: 2 / mp.sqrt(mp.pi) * mp.exp(-x * x)),  # erf(24 +- h) differ by 1e-251 * h
    ("log1p(x)", 1e124, lambda x: 1 / (1 + x)),  # x + 2**-222 is x at any working precision used
])
def test_gradient_check_at_extreme_arguments(source, x, derivative):
    """The numerical cross-check agrees with the AD reference where mpmath.diff's absolute step raised false alarms."""
    ref = reference(source, {"x": np.float64(x)}, F64)
    grad = output(ref, "grad.x")
    with mp.workprec(400):
        truth = round_to(derivative(mpmath.mpf(x)), F64)
    assert grad.rounded[()] == truth and grad.numeric_agrees[()]
    assert "step scaled to each input" in ref.gradient_check
    assert abs(grad.numeric[()] - truth) <= abs(truth) * 2.0**-50


def test_a_branch_no_ball_decides_uses_the_mpmath_engine():
    """exp(log(x)) > x compares two balls around 3 that overlap at every precision: the ball engine cannot run the
    program, and the reference comes from the mpmath engine, which says so."""
    ref = reference("where(exp(log(x)) > x, 1 + x, 2 + x)", {"x": np.float64(3)}, F64)
    assert ref.engine == "mpmath-agreement" and "no precision up to 4096 bits decided" in ref.second_opinion


def test_the_json_reference_block_names_the_engine(tmp_path):
    from oracle.case import load
    from oracle.runner import run_case

    path = tmp_path / "case.yaml"
    path.write_text("id: engine\ntitle: engine keys\nkind: loss\ninputs:\n  x: 200.0\nwrt: [x]\n"
                    "formula: -log(1 - sigmoid(x))\nframeworks: [jax]\n")
    block = run_case(load(path))["reference"]["float32"]
    assert block["engine"] == "arb" and block["engine_check"].startswith("mpmath agrees at")
