"""An addition with an infinite operand is a limit, not an absorption: a -inf logit is certified.

-inf - 0.693 = -inf at every precision. The absorption guard (mp_eval.Interpreter.watch_absorption)
once tainted such a sum, so a later exact cancellation elsewhere in the array was poisoned and the
categorical entropy with a masked logit was never certified. Truth: mpmath at 320 bits, directly.
"""

from __future__ import annotations

import mpmath
import numpy as np
from mpmath import mp

from oracle.floats import fmt, round_to
from oracle.formula import parse
from oracle.reference import compute
from oracle.reference.program import trace

F32 = fmt("float32")
LOGITS = np.array([-np.inf, 0.0, 1.0], dtype=np.float32)


def reference(source: str):
    program = trace(parse(source, {"l"}), {"l": LOGITS.shape}, ["l"])
    return compute(program, {"l": LOGITS}, F32)


def rounded(values) -> list[float]:
    return [float(round_to(v, F32)) for v in values]


def softmax_truth():
    with mp.workprec(320):
        finite = [mpmath.mpf(float(v)) for v in LOGITS[1:]]
        lse = mp.log(sum(mp.exp(v) for v in finite))
        return lse, [mpmath.mpf(0)] + [mp.exp(v - lse) for v in finite]


def test_log_softmax_with_a_minus_inf_logit_is_certified():
    ref = reference("l - logsumexp(l)")
    lse, p = softmax_truth()
    value, grad = ref.outputs
    assert value.rounded.tolist() == [-np.inf] + rounded([mpmath.mpf(float(v)) - lse for v in LOGITS[1:]])
    assert grad.rounded.tolist() == rounded([1 - 3 * q for q in p])  # d/dl_j sum_i (l_i - lse) = 1 - 3 p_j
    assert value.certified.all() and grad.certified.all()


def test_masked_categorical_entropy_is_certified():
    ref = reference("-sum(where(l > -inf, exp(l - logsumexp(l)) * (l - logsumexp(l)), 0))")
    lse, p = softmax_truth()
    with mp.workprec(320):
        entropy = -sum(q * mp.log(q) for q in p[1:])
        grad = [mpmath.mpf(0)] + [-q * (mp.log(q) + entropy) for q in p[1:]]  # dH/dl_j = -p_j (log p_j + H)
    value, g = ref.outputs
    assert value.rounded == round_to(entropy, F32) and value.certified
    assert g.rounded.tolist() == rounded(grad) and g.certified.all()


def test_unmasked_entropy_is_certified_nan_as_mpmath_says():
    """0 * -inf is NaN in mpmath too: certified NaN, not an uncertain value."""
    ref = reference("sum(exp(l - logsumexp(l)) * (l - logsumexp(l)))")
    assert mpmath.isnan(mpmath.mpf(0) * mpmath.mpf("-inf"))
    value, grad = ref.outputs
    assert np.isnan(value.rounded) and value.certified
    assert grad.certified.all()
