"""The reference's fast paths (issue 14, speed): independent parts (oracle.reference.parts), chunked elementwise
evaluation, the sampled second opinion, the ball rounding in C loops and kappa in balls. Each must give exactly
what the slow path gives, and the sample must say what it checked.

Truths: roundings of ball endpoints computed here with exact mpmath arithmetic and round_to; closed forms in mpmath.
"""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
from flint import arb, arf
from mpmath import mp

from oracle.floats import fmt, round_to
from oracle.formula import parse
from oracle.reference import arb_eval, compute, enclosure, mp_eval, parts
from oracle.reference.condition import condition_numbers
from oracle.reference.program import trace

F16, F32, F64 = fmt("float16"), fmt("float32"), fmt("float64")


def _program(source: str, shapes: dict, batched: bool = False):
    return trace(parse(source, set(shapes)), shapes, list(shapes), batched=batched)


def _truth(ball, f) -> tuple[float, bool]:
    """The rounding of a finite ball and whether both endpoints (exact, in mpmath) round alike, sign included."""
    mid, rad = arb_eval.to_mpf(ball), arb_eval.to_mpf(ball.rad())
    with mp.workprec(20000):
        lo, hi = round_to(mid - rad, f), round_to(mid + rad, f)
    return lo, lo == hi and np.signbit(lo) == np.signbit(hi)


def _ball(mid: tuple[int, int], rad: tuple[int, int]):
    return arb(arf(mid), arf(rad))


def _balls(f) -> list:
    """Balls around floats of `f`, around the ties between neighbours, subnormals, zero and the overflow edge."""
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.standard_normal(40) * 2.0 ** rng.integers(f.emin - 5, f.emax, 40),
                             [float(f.max_finite), float(f.min_normal), 2.0 ** (f.emin - f.precision + 1), 1.0, -2.0]])
    out = []
    with np.errstate(over="ignore"):
        values = values.astype(f.numpy)
    for v in values:
        if not np.isfinite(v) or v == 0:
            continue
        with np.errstate(over="ignore"):
            up = np.nextafter(v, f.numpy.type(np.inf))
        if not np.isfinite(up):  # the largest float: its neighbour above is the overflow edge
            up = np.nextafter(v, f.numpy.type(-np.inf))
        for centre in (mpmath.mpf(float(v)), (mpmath.mpf(float(v)) + mpmath.mpf(float(up))) / 2):  # a float, a tie
            man, exp = centre.man_exp
            man = -man if centre < 0 else man
            gap = int(mpmath.mag(mpmath.mpf(float(up)) - mpmath.mpf(float(v))))
            for shift in (3, 1, 0, -40):  # wider than an ulp, about half an ulp, tiny (still inexact)
                out.append(_ball((int(man), int(exp)), (1, gap - shift)))
            out.append(_ball((int(man), int(exp)), (0, 0)))  # exact
    out += [_ball((0, 0), (1, -200)), _ball((1, -2000), (1, -2100)), arb_eval.NAN, arb_eval.POS_INF, arb_eval.NEG_INF,
            _ball((3, 5000), (1, 4990))]
    return out


@pytest.mark.parametrize("f", [F16, F32, F64], ids=lambda f: f.name)
def test_rounding_in_c_loops_matches_exact_endpoint_rounding(f, monkeypatch):
    balls = _balls(f)
    slow = []
    monkeypatch.setattr(enclosure, "_round_ball", lambda x, f, exact=enclosure._round_ball: slow.append(x) or exact(x, f))
    with arb_eval.precision(128):
        rounded, certified, low, high = enclosure._round_all(np.asarray(balls, dtype=object), f)
    for ball, r, c, lo, hi in zip(balls, rounded, certified, low, high):
        if ball.is_nan():
            assert c and np.isnan(r)
            continue
        if arb_eval.infinite(ball):
            assert c and r == float(arb_eval.to_mpf(ball))
            continue
        want, same = _truth(ball, f)
        assert c == same, (ball, f.name)
        if same:
            assert r == want and np.signbit(r) == np.signbit(want) and lo == hi == want, (ball, f.name)
    assert certified.sum() >= 30 and (~certified).sum() >= 30  # both kinds were exercised ...
    assert len(slow) <= len(balls) - 25  # ... and the C loops decided many by themselves


def test_split_finds_independent_parts_only():
    assert parts.split(_program("log1p(exp(-x)) + x * x", {"x": (5,)})) == parts.Parts(5, False)
    assert parts.split(_program("exp(x) * y", {"x": (5,), "y": (5,)})) == parts.Parts(5, False)
    assert parts.split(_program("x * x", {"x": (7,)}, batched=True)) == parts.Parts(7, True)
    for source in ("sum(x)", "x - mean(x)", "x * sum(x)", "logsumexp(x)"):  # components that depend on one another
        assert parts.split(_program(source, {"x": (5,)})) is None, source
    assert parts.split(_program("x * y", {"x": (5,), "y": ()})) is None  # the gradient in y sums over x


@pytest.mark.parametrize("shape", [(23,), (5, 7)])
def test_chunked_evaluation_gives_the_unchunked_reference(monkeypatch, shape):
    x = np.linspace(-30, 30, int(np.prod(shape)), dtype=np.float32).reshape(shape)
    program = _program("log1p(exp(-x)) + x * x", {"x": x.shape})
    whole = compute(program, {"x": x}, F32)
    monkeypatch.setattr(enclosure, "CHUNK", 5)
    chunked = compute(program, {"x": x}, F32)
    assert whole.engine == chunked.engine == "arb"
    for a, b in zip(whole.outputs, chunked.outputs):
        np.testing.assert_array_equal(a.rounded, b.rounded)
        np.testing.assert_array_equal(a.precision, b.precision)
        assert a.exact.shape == b.exact.shape == shape and all(p == q for p, q in zip(a.exact.ravel(), b.exact.ravel()))
    with mp.workprec(200):  # and the truth: x^2 + log(1 + e^-x), 2x - 1/(1 + e^x)
        for i, v in np.ndenumerate(x):
            v = mpmath.mpf(float(v))
            assert chunked.outputs[0].rounded[i] == round_to(v * v + mp.log1p(mp.exp(-v)), F32)
            assert chunked.outputs[1].rounded[i] == round_to(2 * v - 1 / (1 + mp.exp(v)), F32)


EXP = mp_eval.FLOAT_UNARY["exp"]


def _wrong_exp_at(monkeypatch, bad: float):
    """mpmath's exp off by 2**-20 relative at the one argument `bad` (a bug in one library, at one point)."""
    right = EXP
    monkeypatch.setitem(mp_eval.FLOAT_UNARY, "exp",
                        lambda v: right(v) * (1 + mpmath.mpf(2) ** -20) if v == bad else right(v))


@pytest.mark.parametrize("batched", [True, False], ids=["sweep", "elements"])
def test_sampled_second_opinion_reports_a_disagreement_and_how_much_it_checked(monkeypatch, batched):
    x = np.linspace(1, 2, 200, dtype=np.float32)
    program = _program("exp(x)", {"x": x.shape}, batched=batched)
    noun = "points" if batched else "elements"
    checked, _ = enclosure.sample(enclosure.enclose(program, {"x": x}, F32, 64, 4096), parts.split(program))
    assert 0 < len(checked) < 100 and {0, 199} <= set(checked)
    sampled = int(checked[3])
    _wrong_exp_at(monkeypatch, mpmath.mpf(float(x[sampled])))
    ref = compute(program, {"x": x}, F32)
    value = ref.outputs[0]
    assert ref.second_opinion.startswith(f"arb and mpmath disagree at 64 bits on 2 components on {len(checked)} of "
                                         f"200 {noun} (")
    assert value.disagrees[sampled] and value.precision[sampled] == 0 and value.disagrees.sum() == 1
    assert ref.outputs[1].disagrees[sampled]  # exp's derivative is exp
    unsampled = next(i for i in range(200) if i not in set(checked))
    _wrong_exp_at(monkeypatch, mpmath.mpf(float(x[unsampled])))  # not checked: and the summary says which were
    ref = compute(program, {"x": x}, F32)
    assert ref.second_opinion.startswith(f"mpmath agrees at 64 bits on {len(checked)} of 200 {noun} (")
    assert (ref.outputs[0].precision == 64).all()


def test_sample_takes_every_hard_part_and_both_sides_of_each_change():
    n = 300
    rounded = np.ones(n, np.float32)
    rounded[100:] = -1.0  # a sign change between 99 and 100
    rounded[150] = 0.0
    rounded[151] = np.inf
    precision = np.full(n, 64)
    precision[200] = 128
    precision[201] = 0
    enclosed = enclosure.Enclosed([rounded], [], [], [], [precision], [], 128)
    chosen, how = enclosure.sample(enclosed, parts.Parts(n, True))
    assert {99, 100, 150, 151, 200, 201, 149, 152, 199, 202, 0, 299} <= set(chosen)
    assert set(range(0, n, 5)) <= set(chosen) and len(chosen) < 100
    assert how == ("every point that needed more than 64 bits or is zero or not finite (4), both sides of each change "
                   "between neighbours (6), every 5th")


def test_a_limit_at_minus_infinity_keeps_its_sign():
    """tanh(-inf) = erf(-inf) = -1: the ball engine once took the limit's magnitude only (mpf.man_exp has no sign)."""
    for source in ("tanh(x)", "erf(x)"):
        ref = compute(_program(source, {"x": ()}), {"x": np.float32(-np.inf)}, F32)
        assert ref.engine == "arb" and ref.outputs[0].rounded[()] == -1.0 and ref.outputs[0].precision[()] > 0
    with arb_eval.precision(64):
        for v in (mpmath.mpf(-0.5), -mpmath.mpf(3) * mpmath.mpf(2) ** -1000, mpmath.mpf(1) / 3):
            ball = arb_eval.from_mpf(v)
            assert ball.rad() == 0 and arb_eval.to_mpf(ball) == v


def test_kappa_falls_back_to_mpmath_where_a_ball_cannot_decide_a_branch():
    """where(exp(log(x)) > x, ...) compares overlapping balls at every precision: kappa then comes from mpmath's
    two precisions (the method says nothing of balls), with the same closed form as the balls give elsewhere."""
    undecided = _program("where(exp(log(x)) > x, 2 * x, x) * x", {"x": ()})
    got = condition_numbers(undecided, {"x": np.float32(1.5)}, 64)
    assert got.method == "exact: 1 input directions, forward-over-reverse"
    with mp.workprec(300):  # x^2 or 2x^2: kappa 2; the gradient 2x or 4x: kappa 1
        assert mpmath.almosteq(got.kappa[0][()], 2, 1e-25) and mpmath.almosteq(got.kappa[1][()], 1, 1e-25)
    plain = condition_numbers(_program("x * x", {"x": ()}), {"x": np.float32(1.5)}, 64)
    assert plain.method.endswith("; in Arb balls")
    assert mpmath.almosteq(plain.kappa[0][()], 2, 1e-25) and mpmath.almosteq(plain.kappa[1][()], 1, 1e-25)


def test_kappa_of_an_exact_zero_by_cancellation_comes_from_mpmath():
    """log(x*x) - 2 log(x) is 0 and does not move: kappa 0 by convention. Its balls straddle 0 at every precision,
    so the balls cannot settle it; mpmath's two precisions compute 0 exactly and agree on it."""
    got = condition_numbers(_program("log(x*x) - 2*log(x)", {"x": ()}), {"x": np.float32(3)}, 64)
    assert not got.method.endswith("in Arb balls")
    assert all(a[()] for a in got.agrees) and all(k[()] == 0 for k in got.kappa)
