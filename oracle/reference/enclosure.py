"""Certify the reference by enclosure: evaluate the jaxpr in Arb balls (arb_eval) at rising precision
until each component's ball rounds to a single value of the dtype, then ask mpmath for a second opinion.

A ball that rounds to one float at both endpoints proves that float is the correctly
rounded exact value (the sign of zero and the infinities included); agreement of two
mpmath precisions (the `mpmath-agreement` engine) is only evidence. mpmath stays the
independent check: the certified outputs are recomputed by mp_eval at the certifying
precision, and a component whose rounding differs is `uncertain`, naming both libraries.
"""

from __future__ import annotations

from dataclasses import dataclass

import mpmath
import numpy as np
from mpmath import libmp, mp

from oracle.floats import Format, round_array, round_to
from oracle.frameworks import exact_constant
from oracle.reference import arb_eval
from oracle.reference.mp_eval import InexactLiteral, Interpreter, UnsupportedPrimitive, to_mp
from oracle.reference.program import Program

ZERO = mpmath.mpf(0)


@dataclass
class Enclosed:
    """The ball engine's result for every output of `program.full`."""

    rounded: list[np.ndarray]  # correctly rounded where certified, else the last midpoint's rounding
    exact: list[np.ndarray]  # the ball's midpoint (mpf), within its radius of the exact value
    radius: list[np.ndarray]  # the ball's radius (mpf; 0 for an exact value or an infinity)
    bounds: list[tuple[np.ndarray, np.ndarray]]  # the last ball's endpoints, rounded (the truth rounds between)
    precision: list[np.ndarray]  # bits at which each component was certified; 0 where never
    nonzero: list[np.ndarray]  # the ball excludes 0 (so the exact value is certainly nonzero)
    top: int  # the highest precision evaluated


def _round_ball(x, f: Format) -> tuple[float, bool, float, float]:
    """(rounded, certified, low, high): both endpoints of the ball round to the same float, with the same sign of
    zero; low and high are the endpoints' roundings (the exact value rounds to a float between them)."""
    if x.is_finite() and x.rad() == 0:  # an exact value: one rounding
        value = round_to(arb_eval.to_mpf(x), f)
        return value, True, value, value
    if x.is_nan():
        return float("nan"), True, float("nan"), float("nan")
    if arb_eval.infinite(x):
        value = float(arb_eval.to_mpf(x))
        return value, True, value, value
    if not x.rad().is_finite():
        return round_to(arb_eval.to_mpf(x), f), False, -np.inf, np.inf
    ends = [round_to(e, f) for e in arb_eval.endpoints(x)]
    lo, hi = ends[0], ends[-1]
    same = lo == hi and np.signbit(lo) == np.signbit(hi)
    return (lo if same else round_to(arb_eval.to_mpf(x), f)), same, lo, hi


def _arguments(program: Program, inputs: dict[str, np.ndarray], prec: int) -> list[np.ndarray]:
    balls = [arb_eval.inputs(inputs[name]) for name in program.input_names]
    constants = [np.asarray(arb_eval.constant(c, prec), dtype=object) for c in program.constants]
    return balls + constants


class NoEnclosure(Exception):
    """The ball engine cannot evaluate this program; the message says why (the mpmath engine is used instead)."""


def enclose(program: Program, inputs: dict[str, np.ndarray], f: Format, start: int, cap: int) -> Enclosed:
    """Evaluate in balls at doubling precisions up to `cap`. NoEnclosure when a primitive has no ball rule, no
    precision decides every branch, or the ball engine fails otherwise (named: a bug, but not the case's end)."""
    prec = max(start, 2 * f.precision)
    result = None
    why = ""
    while True:
        try:
            with arb_eval.precision(prec):
                outs = arb_eval.BallInterpreter().run(program.full, _arguments(program, inputs, prec))
        except arb_eval.Undecided as e:
            outs, why = None, str(e)
        except (UnsupportedPrimitive, InexactLiteral, NotImplementedError) as e:
            raise NoEnclosure(f"no Arb rule: {e}") from None
        except (ArithmeticError, TypeError, ValueError, AttributeError, IndexError, KeyError) as e:
            # an error in the ball engine: say so, and let mpmath certify (a deadline or an interrupt still ends it)
            raise NoEnclosure(f"the ball engine failed ({type(e).__name__}: {e})") from None
        if outs is not None:
            if result is None:
                shapes = [np.shape(o) for o in outs]
                result = Enclosed([np.full(s, np.nan, f.numpy) for s in shapes], [np.empty(s, object) for s in shapes],
                                  [np.empty(s, object) for s in shapes],
                                  [(np.full(s, np.nan), np.full(s, np.nan)) for s in shapes],
                                  [np.zeros(s, int) for s in shapes], [np.zeros(s, bool) for s in shapes], prec)
            for k, out in enumerate(outs):
                for index, ball in np.ndenumerate(out):
                    if result.precision[k][index]:
                        continue
                    rounded, certified, low, high = _round_ball(ball, f)
                    result.rounded[k][index] = rounded
                    result.bounds[k][0][index], result.bounds[k][1][index] = low, high
                    result.exact[k][index] = arb_eval.to_mpf(ball)
                    result.radius[k][index] = arb_eval.to_mpf(ball.rad()) if not arb_eval.special(ball) else ZERO
                    result.nonzero[k][index] = not ball.is_nan() and 0 not in ball
                    if certified:
                        result.precision[k][index] = prec
            result.top = prec
            if all(p.all() for p in result.precision):
                break
        if prec * 2 > cap:
            break
        prec *= 2
    if result is None:
        raise NoEnclosure(f"no precision up to {cap} bits decided every branch ({why})")
    return result


@dataclass
class SecondOpinion:
    exact: list[np.ndarray]  # the certified balls' values: mp_eval's where it lies inside the ball, else the midpoint
    disagrees: list[np.ndarray]  # certified by Arb, rounded differently by mpmath
    domain: list[str]
    summary: str


class _Unguarded(Interpreter):
    def watch(self, name, ins, outs):
        return None


def second_opinion(program: Program, inputs: dict[str, np.ndarray], f: Format, enclosed: Enclosed) -> SecondOpinion:
    """mp_eval at twice the highest precision any component needed (a stricter check than at that precision, and
    exact values as accurate as the mpmath engine's); where it rounds a certified component differently, the
    two libraries disagree. It runs without the absorption guard (a quarter of its time): the guard only
    withholds certification, and here mpmath certifies nothing, it only agrees or not."""
    prec = 2 * max(int(max(p.max(initial=0) for p in enclosed.precision)), 2 * f.precision)
    interpreter = _Unguarded()
    with mp.workprec(prec):
        args = [to_mp(inputs[name]) for name in program.input_names]
        args += [np.asarray(exact_constant(c, prec), dtype=object) for c in program.constants]
        outs = interpreter.run(program.full, args)
    rounded = [round_array(o, f) for o in outs]
    disagrees, exact = [], []
    for k, (mine, theirs, needed) in enumerate(zip(enclosed.rounded, rounded, enclosed.precision)):
        same = (mine == theirs) & (np.signbit(mine) == np.signbit(theirs)) | (np.isnan(mine) & np.isnan(theirs))
        disagrees.append((needed > 0) & ~same)
        inside = np.asarray(np.frompyfunc(_inside, 3, 1)(outs[k], enclosed.exact[k], enclosed.radius[k]), dtype=bool)
        exact.append(np.where(inside, outs[k], enclosed.exact[k]))
    count = int(sum(d.sum() for d in disagrees))
    summary = f"mpmath agrees at {prec} bits" if not count else \
        f"arb and mpmath disagree at {prec} bits on {count} component{'s' * (count != 1)}"
    return SecondOpinion(exact, disagrees, list(interpreter.trace.domain), summary)


def _inside(value, mid, radius) -> bool:
    """|value - mid| <= radius, exactly (a finite value only)."""
    if not (mpmath.isfinite(value) and mpmath.isfinite(mid)):
        return False
    return mp.make_mpf(libmp.mpf_abs(libmp.mpf_sub(value._mpf_, mid._mpf_, 0))) <= radius
