"""Relative componentwise condition numbers of a case's outputs, in mpmath.

For each component of `program.full` (the value, then the gradients of its sum),
kappa_i = sum_j |d out_i / d x_j| * |x_j| / |out_i| over every scalar input x_j:
how much a relative perturbation of the inputs (such as rounding them) is
amplified in that output, which is the error a correct float implementation may
still show. Formula constants are not inputs. Gradients need second derivatives;
they come from JAX forward-over-reverse (jvp of `program.function`, vmapped over
the tangent directions so the primal part runs once), traced to a jaxpr and
evaluated by the mpmath interpreter with exact inputs: no float64 arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import mpmath
import numpy as np
from flint import arb
from mpmath import mp

from oracle.frameworks import exact_constant
from oracle.reference import arb_eval
from oracle.reference.mp_eval import InexactLiteral, Interpreter, UnsupportedPrimitive, to_mp
from oracle.reference.program import Program

AGREEMENT = mpmath.mpf("0.01")  # relative: kappa is a magnitude, two digits say all it has to say


@dataclass
class Condition:
    """Condition numbers per output of `program.full` ([value, *grads]), same shapes as the outputs."""

    kappa: list[np.ndarray]  # object arrays of mpf: finite >= 0, +inf (the output is 0 but moves), NaN (undefined)
    agrees: list[np.ndarray]  # bool: kappa at the last two precisions agrees within 1% (or both 0, inf or NaN)
    method: str
    precision: int  # bits of the evaluation whose kappa is reported (checked against half as many)


def condition_numbers(program: Program, inputs: dict[str, np.ndarray], prec: int,
                      exact_limit: int = 32, samples: int = 4, cap: int = 1024,
                      over: list[str] | None = None) -> Condition:
    """Kappa of every output component, exactly when at most `exact_limit` inputs are nonzero.

    `over`: the inputs whose relative perturbation kappa measures (default: all). Inputs
    that are exact data (labels, counts, indices: `Case.perturbed` leaves them out) get no
    direction, so a count of 1e6 multiplying a log does not make the output look ill-conditioned.

    Inputs that are 0 contribute 0, so only nonzero inputs get a direction. Exact:
    one tangent x_j e_j per nonzero input gives the columns of J diag(x). Above
    the limit: small-sample statistical condition estimation (Kenney & Laub 1994)
    with `samples` orthonormalized random directions (numpy default_rng(0)), which
    estimates the 2-norm variant ||row_i of J diag(x)||_2 / |out_i|; that is below
    the 1-norm kappa and above it divided by sqrt(n).

    A zero output has kappa 0 if it does not move (0/0) and +inf if it does; kappa
    is NaN (undefined) where an input or the output is not finite. `prec` is the
    lower of the first two precisions compared: kappa can need more bits than the
    value, so precision doubles until they agree everywhere or would exceed `cap`.
    """
    exact = [to_mp(inputs[name]) for name in program.input_names]
    points = program.avals[0].shape[0] if program.batched else 1
    rows = np.concatenate([x.reshape(points, -1) for x in exact], axis=1)  # each point's scalar inputs
    measured = np.concatenate([np.full(x.size // points, (over is None or name in over) and x.dtype == object,
                                       dtype=bool) for name, x in zip(program.input_names, exact)])
    if not all(mpmath.isfinite(v) for v in rows[:, measured].ravel()):
        undefined = [np.full(a.shape, mpmath.mpf("nan"), dtype=object) for a in program.full.out_avals]
        return Condition(undefined, [np.ones(a.shape, dtype=bool) for a in program.full.out_avals],
                         "undefined: non-finite inputs", 2 * prec)
    active = np.flatnonzero(np.vectorize(bool, otypes=[bool])(rows).any(axis=0) & measured)
    n = len(active)
    per_point = " per point" if program.batched else ""
    data = [name for name in program.input_names if over is not None and name not in over]
    per_point += f", not over the data input{'s' * (len(data) > 1)} {', '.join(data)}" if data else ""
    if n <= exact_limit:
        random = None
        method = f"exact: {n} input directions{per_point}, forward-over-reverse"
    else:
        random = to_mp(np.random.default_rng(0).standard_normal((n, min(samples, n))))
        method = (f"estimated: SCE with {random.shape[1]} random directions over {n} nonzero inputs{per_point} "
                  f"(2-norm, within sqrt({n}) below the 1-norm kappa)")
    jaxpr = _jvp_jaxpr(program, n if random is None else random.shape[1])
    try:
        return _by_balls(program, jaxpr, inputs, rows, active, random, 2 * prec, cap, method)
    except _NO_BALLS:
        pass  # mpmath at two precisions, as below
    low = _kappa(program, jaxpr, exact, rows, active, random, prec)
    while True:  # like the reference: double until two precisions agree (a tiny kappa can need many bits)
        high = _kappa(program, jaxpr, exact, rows, active, random, 2 * prec)
        agrees = [_agree(a, b) for a, b in zip(low, high)]
        if all(a.all() for a in agrees) or 4 * prec > cap:
            return Condition(high, agrees, method, 2 * prec)
        low, prec = high, 2 * prec


def _kappa(program: Program, jaxpr, exact: list[np.ndarray], rows: np.ndarray, active: np.ndarray,
           random: np.ndarray | None, prec: int) -> list[np.ndarray]:
    """One evaluation of kappa. A batched program's points are independent, so one direction per input
    position, scaled by each point's own value there, serves every point at once."""
    with mp.workprec(prec):
        weights = np.eye(len(active), dtype=object) if random is None else _orthonormal(random)
        directions = np.full((weights.shape[1], *rows.shape), mpmath.mpf(0), dtype=object)
        directions[:, :, active] = np.einsum("ad,pa->dpa", weights, rows[:, active])  # rows of diag(x)·weights
        tangents, start = [], 0
        for x in exact:
            size = x.size // rows.shape[0]
            if x.dtype == object:  # an integer input (labels, lengths) gets no tangent: it is not a real variable
                tangents.append(directions[:, :, start:start + size].reshape(len(directions), *x.shape))
            start += size
        constants = [np.asarray(exact_constant(c, prec), dtype=object) for c in program.constants]
        outs = Interpreter(strong_zeros=program.strong_zeros).run(jaxpr, exact + constants + tangents)
        values, columns = outs[: len(outs) // 2], outs[len(outs) // 2:]
        if random is None:
            numerators = [np.sum(np.abs(c), axis=0) for c in columns]  # 0 without directions
        else:
            n, k = random.shape
            scale = _wallis(k) / _wallis(n)
            numerators = [scale * np.asarray(np.frompyfunc(mp.sqrt, 1, 1)(np.sum(c * c, axis=0)), dtype=object)
                          for c in columns]
        return [np.asarray(np.frompyfunc(_ratio, 2, 1)(num, v), dtype=object).reshape(v.shape)
                for num, v in zip(numerators, values)]


def _jvp_jaxpr(program: Program, batch: int):
    """(inputs, constants, tangents with a leading batch axis) -> [*outputs, *batched output tangents].
    Integer inputs (labels, lengths) get no tangent: they are held fixed, like the constants."""
    count = len(program.input_names)
    real = [k for k, a in enumerate(program.avals[:count]) if a.dtype.kind == "f"]

    def batched_jvp(*args):
        inputs, constants, tangents = args[:count], args[count:len(program.avals)], args[len(program.avals):]

        def f(*xs):  # constants and integer inputs get no tangent
            full = list(inputs)
            for k, x in zip(real, xs):
                full[k] = x
            return program.function(*full, *constants)

        values, columns = jax.vmap(lambda *t: jax.jvp(f, tuple(inputs[k] for k in real), t), out_axes=(None, 0))(*tangents)
        return [*values, *columns]

    tangent_avals = [jax.ShapeDtypeStruct((batch, *program.avals[k].shape), program.avals[k].dtype) for k in real]
    return jax.make_jaxpr(batched_jvp)(*program.avals, *tangent_avals)


def _orthonormal(z: np.ndarray) -> np.ndarray:
    """Columns of `z` orthonormalized by modified Gram-Schmidt at the working precision."""
    q = z.copy()
    for m in range(q.shape[1]):
        for p in range(m):
            q[:, m] -= np.dot(q[:, p], q[:, m]) * q[:, p]
        q[:, m] /= mp.sqrt(np.dot(q[:, m], q[:, m]))
    return q


def _wallis(n: int):
    """omega_n = E|z_1| for z uniform on the unit sphere of R^n (Kenney & Laub's Wallis factor)."""
    return mp.gammaprod([mpmath.mpf(n) / 2], [mpmath.mpf(n + 1) / 2]) / mp.sqrt(mp.pi)


def _ratio(numerator, value):
    """numerator / |value|; 0/0 is 0 (the output does not move), c/0 is inf, non-finite is NaN."""
    if mpmath.isnan(numerator) or not mpmath.isfinite(value):
        return mpmath.mpf("nan")
    if value == 0:
        return mpmath.mpf(0) if numerator == 0 else mpmath.inf
    return numerator / abs(value)


def _agree(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    def same(x, y):
        if mpmath.isnan(x) or mpmath.isnan(y):
            return mpmath.isnan(x) and mpmath.isnan(y)
        if mpmath.isinf(x) or mpmath.isinf(y) or x == 0 or y == 0:
            return x == y
        return abs(x - y) <= AGREEMENT * max(x, y)

    return np.asarray(np.frompyfunc(same, 2, 1)(a, b), dtype=bool).reshape(np.shape(a))


_NO_BALLS = (arb_eval.Undecided, UnsupportedPrimitive, InexactLiteral, NotImplementedError, ArithmeticError, TypeError,
             ValueError, AttributeError, IndexError, KeyError)


class _NotFinite(ArithmeticError):
    """A ball kappa met a non-finite value where strong zeros may matter (the mpmath interpreter decides those)."""


def _by_balls(program: Program, jaxpr, inputs: dict[str, np.ndarray], rows: np.ndarray, active: np.ndarray,
              random: np.ndarray | None, prec: int, cap: int, method: str) -> Condition:
    """Kappa in Arb balls (oracle.reference.arb_eval): one evaluation per precision instead of mpmath's two,
    starting where mpmath's reported one (twice the reference's precision). A component's kappa is settled
    (`agrees`) when its ball's radius is at most half of AGREEMENT times its midpoint: the midpoint, reported, is
    then within AGREEMENT of the true kappa, which is what two agreeing mpmath precisions only suggested. The
    rest doubles the precision up to `cap`. Raises one of _NO_BALLS where the balls cannot run the program or
    decide a branch (the caller uses mpmath then)."""
    kappa = agrees = None
    while True:
        balls = _kappa_balls(program, jaxpr, inputs, rows, active, random, prec)
        mids = [np.asarray(_MIDPOINT(k), dtype=object).reshape(np.shape(k)) for k in balls]
        settled = [np.asarray(_SETTLED(k), dtype=bool).reshape(np.shape(k)) for k in balls]
        if kappa is None:
            kappa, agrees = mids, settled
        else:
            kappa = [np.where(a, k, m) for k, a, m in zip(kappa, agrees, mids)]
            agrees = [a | s for a, s in zip(agrees, settled)]
        if all(a.all() for a in agrees) or 2 * prec > cap:
            return Condition(kappa, agrees, f"{method}; in Arb balls", prec)
        prec *= 2


def _kappa_balls(program: Program, jaxpr, inputs: dict[str, np.ndarray], rows: np.ndarray, active: np.ndarray,
                 random: np.ndarray | None, prec: int) -> list[np.ndarray]:
    """_kappa's evaluation in balls: the same directions (exact inputs times the identity, or times the
    orthonormalized random columns computed in mpmath at `prec` and then taken as exact), the same formulas."""
    with arb_eval.precision(prec), mp.workprec(prec):
        balls = [arb_eval.inputs(inputs[name]) for name in program.input_names]
        ball_rows = np.concatenate([b.reshape(rows.shape[0], -1) for b in balls], axis=1)
        if random is None:
            weights = np.where(np.eye(len(active), dtype=bool), arb_eval.ONE, arb_eval.ZERO)
        else:
            weights = np.asarray(_FROM_MPF(_orthonormal(random)), dtype=object)
        directions = np.full((weights.shape[1], *rows.shape), arb_eval.ZERO, dtype=object)
        directions[:, :, active] = np.einsum("ad,pa->dpa", weights, ball_rows[:, active])
        tangents, start = [], 0
        for x in balls:
            size = x.size // rows.shape[0]
            tangents.append(directions[:, :, start:start + size].reshape(len(directions), *x.shape))
            start += size
        constants = [np.asarray(arb_eval.constant(c, prec), dtype=object) for c in program.constants]
        outs = arb_eval.BallInterpreter().run(jaxpr, balls + constants + tangents)
        if program.strong_zeros and not all(np.asarray(_IS_FINITE(o), dtype=bool).all() for o in outs):
            raise _NotFinite("a non-finite value or tangent")
        values, columns = outs[: len(outs) // 2], outs[len(outs) // 2:]
        if random is None:
            numerators = [np.sum(np.abs(c), axis=0) if len(c) else np.full(c.shape[1:], arb_eval.ZERO, dtype=object)
                          for c in columns]
        else:
            n, k = random.shape
            scale = ((arb(k) / 2).lgamma() - (arb(k + 1) / 2).lgamma() - (arb(n) / 2).lgamma()
                     + (arb(n + 1) / 2).lgamma()).exp()  # _wallis(k) / _wallis(n)
            numerators = [scale * np.asarray(_SQRT(np.sum(c * c, axis=0)), dtype=object) for c in columns]
        return [np.asarray(_BALL_RATIO(np.asarray(num, dtype=object), v), dtype=object).reshape(np.shape(v))
                for num, v in zip(numerators, values)]


def _ball_ratio(numerator, value):
    """_ratio over balls: numerator / |value|, or Undecided where a ball cannot tell 0 or a sign. Undecided sends
    the whole kappa to mpmath's two precisions: an output that is exactly 0 by cancellation (log(x*x) - 2 log(x))
    is a ball around 0 at every precision, where mpmath's two runs both compute 0 and agree on kappa 0."""
    if numerator.is_nan() or value.is_nan() or arb_eval.infinite(value):
        return arb_eval.NAN
    if not value.is_finite() or not numerator.is_finite():
        raise arb_eval.Undecided("a kappa ball with an infinite radius")
    if value.is_zero():
        if numerator.is_zero():
            return arb_eval.ZERO
        if 0 in numerator:
            raise arb_eval.Undecided("a moving zero output with a numerator around 0")
        return arb_eval.POS_INF
    if 0 in value:
        raise arb_eval.Undecided("kappa of an output around 0")
    return numerator / abs(value)


def _settled(k) -> bool:
    """The ball's midpoint is within AGREEMENT of every value in it (exact values and infinities: always)."""
    if k.is_nan() or arb_eval.exact(k):
        return True
    return k.rad() <= k.mid().abs_lower() * float(AGREEMENT) / 2


_MIDPOINT = np.frompyfunc(arb_eval.to_mpf, 1, 1)
_FROM_MPF = np.frompyfunc(arb_eval.from_mpf, 1, 1)
_IS_FINITE = np.frompyfunc(lambda x: x.is_finite(), 1, 1)
_SQRT = np.frompyfunc(lambda x: x.sqrt(), 1, 1)
_BALL_RATIO = np.frompyfunc(_ball_ratio, 2, 1)
_SETTLED = np.frompyfunc(_settled, 1, 1)
