"""Ball rules for the primitives that used to send a reference to the mpmath engine: inverse and hyperbolic
trig, rem, round, argmax/argmin, cummax/cummin. Truth: mpmath at 512 bits, Python's exact float functions
(math.fmod, round on floats, both exact), numpy on exact floats; the discontinuous ones are also checked to
raise Undecided for a ball across a jump (so the precision rises or the mpmath engine decides)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import mpmath
import numpy as np
import pytest
from flint import arb
from jax import lax
from mpmath import mp

from oracle import reference
from oracle.floats import fmt
from oracle.reference import arb_eval
from oracle.reference.arb_eval import BINARY, UNARY, Undecided
from oracle.reference.program import Program

F32 = fmt("float32")


def contains(ball, value) -> bool:
    """The exact mpf `value` lies in the ball, and the ball is tight (radius below 2^-100 relative)."""
    lo, hi = (arb_eval.endpoints(ball) * 2)[:2] if arb_eval.exact(ball) else arb_eval.endpoints(ball)
    with mp.workprec(512):
        return lo <= value <= hi and (hi - lo) <= abs(value) * mpmath.mpf(2) ** -100


UNARY_TRUTH = {
    "sinh": (mpmath.sinh, [-30.5, -1e-8, 0.75, 88.0]), "cosh": (mpmath.cosh, [-30.5, 0.0, 1e-8, 88.0]),
    "asinh": (mpmath.asinh, [-1e30, -0.5, 1e-20, 3.0]), "atan": (mpmath.atan, [-1e30, -0.5, 1e-20, 3.0]),
    "asin": (mpmath.asin, [-1.0, -0.5, 1e-20, 0.999999, 1.0]), "acos": (mpmath.acos, [-1.0, -0.5, 0.0, 0.999999, 1.0]),
    "acosh": (mpmath.acosh, [1.0, 1.0000001, 3.0, 1e30]), "atanh": (mpmath.atanh, [-0.999999, -0.5, 1e-20, 0.75]),
}


@pytest.mark.parametrize("name", sorted(UNARY_TRUTH))
def test_unary_rules_against_mpmath(name):
    fn, points = UNARY_TRUTH[name]
    with arb_eval.precision(128):
        for x in points:
            with mp.workprec(512):
                truth = fn(mpmath.mpf(x))
            assert contains(UNARY[name](arb(x)), truth), (name, x)


@pytest.mark.parametrize("name, x, want", [
    ("asin", 1.5, "nan"), ("acos", -1.0000001, "nan"), ("acosh", 0.5, "nan"), ("atanh", 2.0, "nan"),
    ("atanh", 1.0, "inf"), ("atanh", -1.0, "-inf"), ("sinh", -math.inf, "-inf"), ("cosh", -math.inf, "inf"),
    ("tanh", -math.inf, "-1"), ("erf", -math.inf, "-1"),  # negative limits at infinities keep their sign
])
def test_unary_rules_at_domain_edges(name, x, want):
    with arb_eval.precision(128):
        ball = UNARY[name](arb_eval.inputs(np.asarray(x))[()])
    assert str(arb_eval.to_mpf(ball)) == str(mpmath.mpf(want))


@pytest.mark.parametrize("name, ball", [("asin", "1 +/- 1e-20"), ("acos", "-1 +/- 1e-20"),
                                        ("acosh", "1 +/- 1e-20"), ("atanh", "-1 +/- 1e-20")])
def test_a_ball_across_a_domain_edge_is_undecided(name, ball):
    with arb_eval.precision(128), pytest.raises(Undecided):
        UNARY[name](arb(ball))


def test_rem_of_exact_operands_is_fmod():
    rng = np.random.default_rng(3)
    xs = np.concatenate([rng.normal(0, 100, 40), [7.5, -7.5, 1e30, -3.0, 0.0, 2.0**-140]]).astype(np.float32)
    ys = np.concatenate([rng.normal(0, 3, 40), [2.0, 2.0, 3.0, 1.5, 0.7, 0.75]]).astype(np.float32)
    with arb_eval.precision(64):
        for x, y in zip(xs, ys):
            got = BINARY["rem"](arb(float(x)), arb(float(y)))
            assert arb_eval.exact(got) and float(arb_eval.to_mpf(got)) == math.fmod(float(x), float(y)), (x, y)
            assert math.copysign(1, float(arb_eval.to_mpf(got))) == math.copysign(1, math.fmod(float(x), float(y))) \
                or float(arb_eval.to_mpf(got)) == 0


def test_rem_of_balls_continuous_and_across_a_jump():
    with arb_eval.precision(128):
        x = arb(1) / 3 * 22  # 22/3 = 7.33...: the quotient by 2 is 3.67, inside (3, 4)
        with mp.workprec(512):
            truth = mpmath.mpf(22) / 3 - 6
        assert contains(BINARY["rem"](x, arb(2)), truth)
        with pytest.raises(Undecided):  # 8 +- tiny: the quotient straddles 4, where fmod jumps from 2 to 0
            BINARY["rem"](arb("8 +/- 1e-30"), arb(2))
        assert BINARY["rem"](arb(1), arb(0)).is_nan()
        with pytest.raises(Undecided):
            BINARY["rem"](arb(1), arb("0 +/- 1e-30"))


@pytest.mark.parametrize("x", [2.5, -2.5, 0.5, -0.5, 3.5, 1.25, -7.75, 1e30, 2.0**-30])
def test_round_of_exact_values(x):
    with arb_eval.precision(64):
        even = arb_eval.to_mpf(arb_eval._round(arb(x), away=False))
        away = arb_eval.to_mpf(arb_eval._round(arb(x), away=True))
    assert float(even) == round(x)  # Python rounds floats half to even, exactly
    assert float(away) == math.copysign(math.floor(abs(x) + 0.5), x)


def test_round_of_a_ball_across_a_half_integer_is_undecided():
    with arb_eval.precision(128):
        assert arb_eval.to_mpf(arb_eval._round(arb("2.4 +/- 1e-10"), away=False)) == 2
        with pytest.raises(Undecided):
            arb_eval._round(arb("2.5 +/- 1e-30"), away=False)


def test_sign_of_a_ball_around_zero_is_undecided():
    with arb_eval.precision(128):
        assert arb_eval.to_mpf(UNARY["sign"](arb("-1e-30 +/- 1e-40"))) == -1
        with pytest.raises(Undecided):
            UNARY["sign"](arb("0 +/- 1e-40"))


def balls(values) -> np.ndarray:
    return np.asarray(arb_eval.inputs(np.asarray(values, dtype=np.float64)), dtype=object)


def test_argmax_argmin_against_numpy_and_undecided_on_overlap():
    interpreter = arb_eval.BallInterpreter()
    x = np.array([[1.0, 3.0, 3.0, -2.0], [0.5, -4.0, 0.25, -4.0]])
    with arb_eval.precision(64):
        np.testing.assert_array_equal(interpreter.p_argmax(balls(x), [1], np.int32), np.argmax(x, axis=1))
        np.testing.assert_array_equal(interpreter.p_argmin(balls(x), [1], np.int32), np.argmin(x, axis=1))
        np.testing.assert_array_equal(interpreter.p_argmax(balls(x), [0], np.int32), np.argmax(x, axis=0))
        third = np.array([arb(1) / 3, arb("0.3333333333333333333 +/- 1e-15"), arb(0)], dtype=object)
        with pytest.raises(Undecided):
            interpreter.p_argmax(third, [0], np.int32)


def test_cummax_cummin_against_numpy():
    interpreter = arb_eval.BallInterpreter()
    x = np.array([0.5, -1.0, 2.0, 2.0, -3.0, 4.5])
    with arb_eval.precision(64):
        for reverse in (False, True):
            got = interpreter.p_cummax(balls(x), 0, reverse)
            want = np.flip(np.maximum.accumulate(np.flip(x))) if reverse else np.maximum.accumulate(x)
            np.testing.assert_array_equal([float(arb_eval.to_mpf(v)) for v in got], want)
            got = interpreter.p_cummin(balls(x), 0, reverse)
            want = np.flip(np.minimum.accumulate(np.flip(x))) if reverse else np.minimum.accumulate(x)
            np.testing.assert_array_equal([float(arb_eval.to_mpf(v)) for v in got], want)


def program_of(fn, shape) -> Program:
    """A Program for fn(x) alone (no gradients), as reference.compute takes it."""
    aval = jax.ShapeDtypeStruct(shape, jnp.float32)
    full = jax.make_jaxpr(lambda x: [fn(x)])(aval)
    value = jax.make_jaxpr(lambda x: jnp.sum(fn(x)))(aval)
    return Program(full, value, ["x"], [], [], summed=shape != (), function=lambda x: [fn(x)], avals=[aval])


def test_the_new_rules_certify_by_enclosure_end_to_end():
    """A program with each new primitive is certified by the ball engine (no mpmath fallback); the values are
    the correctly rounded truths from mpmath at 512 bits."""
    def fn(x):
        return jnp.stack([jnp.arcsinh(x[0]), jnp.arccosh(x[1]), jnp.arctanh(x[2]), jnp.sinh(x[0]), jnp.cosh(x[0]),
                          jnp.arcsin(x[2]), jnp.arccos(x[2]), jnp.arctan(x[1]), lax.rem(x[1], x[0]),
                          jnp.round(x[3]), lax.round(x[3], lax.RoundingMethod.AWAY_FROM_ZERO),
                          jnp.argmax(x).astype(jnp.float32), lax.cummax(x)[2]])

    x = np.array([0.75, 2.5, -0.25, 4.5], np.float32)
    ref = reference.compute(program_of(fn, (4,)), {"x": x}, F32)
    assert ref.engine == "arb", ref.second_opinion
    with mp.workprec(512):
        a, b, c, d = (mpmath.mpf(float(v)) for v in x)
        truth = [mpmath.asinh(a), mpmath.acosh(b), mpmath.atanh(c), mpmath.sinh(a), mpmath.cosh(a), mpmath.asin(c),
                 mpmath.acos(c), mpmath.atan(b), mpmath.mpf(math.fmod(2.5, 0.75)), 4, 5, 3, 2.5]
    (out,) = ref.outputs
    assert out.certified.all()
    np.testing.assert_array_equal(out.rounded, np.array([float(t) for t in truth], np.float32))


def test_a_jump_no_ball_decides_falls_back_to_the_mpmath_engine():
    """round(exp(log(2.5))): mathematically 2.5, a tie, but every ball of exp(log(2.5)) straddles 2.5, so no
    precision decides the rounding; the reference says which engine certified instead."""
    ref = reference.compute(program_of(lambda x: jnp.round(jnp.exp(jnp.log(x))), ()), {"x": np.float32(2.5)}, F32,
                            cap=256)
    assert ref.engine != "arb" and "round of a ball across a half-integer" in ref.second_opinion


def test_conversion_to_an_integer_of_a_ball_across_an_integer_is_undecided():
    """convert_element_type(float -> int) truncates; 4 - 1e-30 truncates to 3 and 4 + 1e-30 to 4 (the endpoints
    carry more bits than mpmath's default precision, which once rounded both to 4)."""
    with arb_eval.precision(128):
        assert arb_eval._truncate(arb(-3.75)) == -3 and arb_eval._truncate(arb("3.5 +/- 1e-10")) == 3
        with pytest.raises(Undecided):
            arb_eval._truncate(arb("4 +/- 1e-30"))


def test_atan_at_the_infinities_is_decided_by_the_balls():
    """atan(+-inf) = +-pi/2 is not an integer limit: certified by the balls, not by running to the cap."""
    ref = reference.compute(program_of(jnp.arctan, (3,)), {"x": np.array([np.inf, -np.inf, 1.0], np.float32)}, F32)
    assert ref.engine == "arb"
    with mp.workprec(512):
        want = [float(mp.pi / 2), float(-mp.pi / 2), float(mp.pi / 4)]
    np.testing.assert_array_equal(ref.outputs[0].rounded, np.array(want, np.float32))


@pytest.mark.parametrize("fn, x, why", [
    (lambda a: jnp.linalg.eigh(a + a.T)[0], np.array([[2.0, 0.5], [0.25, 1.0]], np.float32), "eigh"),
])
def test_primitives_without_a_ball_rule_fall_back_by_name(fn, x, why):
    ref = reference.compute(program_of(fn, x.shape), {"x": x}, F32)
    assert ref.engine == "mpmath-agreement" and f"unsupported primitive '{why}" in ref.second_opinion


@pytest.mark.parametrize("fn", [jnp.argmax, jnp.argmin])
def test_argmax_argmin_pick_the_first_nan_as_jax_does(fn):
    x = np.array([[1.0, np.nan, -2.0, np.nan], [3.0, 0.5, 4.0, -1.0]], np.float32)
    ref = reference.compute(program_of(lambda a: fn(a, axis=1).astype(jnp.float32), x.shape), {"x": x}, F32)
    assert ref.engine == "arb" and "mpmath agrees" in ref.second_opinion  # mp_eval picks the first NaN too
    np.testing.assert_array_equal(ref.outputs[0].rounded, np.asarray(fn(x, axis=1), np.float32))
    assert ref.outputs[0].rounded[0] == 1
