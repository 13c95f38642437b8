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

import numpy as np
from mpmath import mp

from oracle.floats import Format, round_array, round_to
from oracle.frameworks import exact_constant
from oracle.reference import arb_eval, parts
from oracle.reference.mp_eval import InexactLiteral, Interpreter, UnsupportedPrimitive, to_mp
from oracle.reference.program import Program


@dataclass
class Enclosed:
    """The ball engine's result for every output of `program.full`."""

    rounded: list[np.ndarray]  # correctly rounded where certified, else the last midpoint's rounding
    exact: list[np.ndarray]  # midpoints (mpf) of the balls at twice the certifying precision (see `balls`)
    balls: list[np.ndarray]  # those balls (arb): each contains the exact value
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


_FLOAT = np.frompyfunc(float, 1, 1)
_MIDPOINT = np.frompyfunc(arb_eval.to_mpf, 1, 1)
_EXCLUDES_ZERO = np.frompyfunc(lambda x: not x.is_nan() and 0 not in x, 1, 1)


def _round_all(balls: np.ndarray, f: Format) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """_round_ball over a 1-d array of balls, most of them in a few C loops: a candidate float y near the midpoint
    (float() of it, then its neighbours) is the rounding of the whole ball when the ball minus y lies strictly
    inside (-ulp/2, +ulp/2) of y (checked in Arb: a sound enclosure of the difference). Only normal y (above the
    lowest binade) below the largest finite float qualify, where those half-ulps are exact float64 values; every other ball (a tie, a subnormal,
    a zero, an infinity, a NaN, one no candidate fits) takes _round_ball, which decides it exactly."""
    n = balls.size
    rounded, certified = np.full(n, np.nan, f.numpy), np.zeros(n, bool)
    low, high = np.full(n, np.nan), np.full(n, np.nan)
    with np.errstate(all="ignore"):
        guess = np.asarray(_FLOAT(balls), dtype=np.float64).astype(f.numpy)
    huge, tiny = f.numpy.type(f.max_finite_float), f.numpy.type(2 * float(f.min_normal))
    todo = np.ones(n, bool)
    for toward in (None, np.inf, -np.inf):
        index = np.flatnonzero(todo)
        if not index.size:
            break
        with np.errstate(all="ignore"):
            y = guess[index] if toward is None else np.nextafter(guess[index], f.numpy.type(toward))
            usable = np.isfinite(y) & (np.abs(y) >= tiny) & (np.abs(y) < huge)
        index, y = index[usable], y[usable]
        y64 = y.astype(np.float64)
        above = (np.nextafter(y, f.numpy.type(np.inf)).astype(np.float64) - y64) / 2  # exact: y is normal
        below = (y64 - np.nextafter(y, f.numpy.type(-np.inf)).astype(np.float64)) / 2
        d = np.subtract(balls[index], y64.astype(object))
        inside = np.asarray(np.less(d, above.astype(object)), bool) & np.asarray(np.greater(d, (-below).astype(object)),
                                                                                 bool)
        done = index[inside]
        rounded[done], low[done], high[done] = y[inside], y64[inside], y64[inside]
        certified[done], todo[done] = True, False
    for i in np.flatnonzero(todo):
        rounded[i], certified[i], low[i], high[i] = _round_ball(balls[i], f)
    return rounded, certified, low, high


def _arguments(program: Program, inputs: dict[str, np.ndarray], prec: int) -> list[np.ndarray]:
    balls = [arb_eval.inputs(inputs[name]) for name in program.input_names]
    constants = [np.asarray(arb_eval.constant(c, prec), dtype=object) for c in program.constants]
    return balls + constants


class NoEnclosure(Exception):
    """The ball engine cannot evaluate this program; the message says why (the mpmath engine is used instead)."""


CHUNK = 50_000  # elements of an elementwise program evaluated together (parts.py): bounds the intermediates' memory


def enclose(program: Program, inputs: dict[str, np.ndarray], f: Format, start: int, cap: int) -> Enclosed:
    """Evaluate in balls at doubling precisions up to `cap`, then once more at twice the highest precision a
    component needed, for the exact values (as accurate as the mpmath engine's, which come from the higher of two
    agreeing precisions). NoEnclosure when a primitive has no ball rule, no precision decides every branch, or the
    ball engine fails otherwise (named: a bug, but not the case's end).

    An elementwise program with more than CHUNK elements runs CHUNK elements at a time, each chunk on its own
    doubling (its elements do not depend on the others'; a chunk no precision decides makes the whole case
    NoEnclosure, as one run would)."""
    split = parts.split(program)
    shapes = [tuple(a.shape) for a in program.full.out_avals]
    if split is None or split.batched or split.count <= CHUNK:
        return _enclose(lambda interpreter, args: interpreter().run(program.full, args), program, inputs, f, start,
                        cap, shapes)
    pieces = []
    for first in range(0, split.count, CHUNK):
        index = np.arange(first, min(split.count, first + CHUNK))
        pieces.append(_enclose(lambda interpreter, args, count=len(index): parts.run(program, split, interpreter, args,
                                                                                    count),
                               program, parts.subset(program, split, inputs, index), f, start, cap,
                               [(len(index),)] * len(shapes)))
    whole = [np.concatenate([getattr(p, name)[k] for p in pieces]).reshape(s)
             for name in ("rounded", "exact", "balls", "precision", "nonzero") for k, s in enumerate(shapes)]
    count = len(shapes)
    bounds = [tuple(np.concatenate([p.bounds[k][side] for p in pieces]).reshape(s) for side in (0, 1))
              for k, s in enumerate(shapes)]
    return Enclosed(whole[:count], whole[count:2 * count], whole[2 * count:3 * count], bounds,
                    whole[3 * count:4 * count], whole[4 * count:], max(p.top for p in pieces))


def _ball_run(evaluate, program: Program, inputs: dict[str, np.ndarray], prec: int) -> list[np.ndarray]:
    """One evaluation in balls at `prec` bits (arb_eval.Undecided when a branch is not decided)."""
    try:
        with arb_eval.precision(prec):
            return [np.asarray(o, dtype=object) for o in evaluate(arb_eval.BallInterpreter,
                                                                  _arguments(program, inputs, prec))]
    except (UnsupportedPrimitive, InexactLiteral, NotImplementedError) as e:
        raise NoEnclosure(f"no Arb rule: {e}") from None
    except arb_eval.Undecided:
        raise
    except (ArithmeticError, TypeError, ValueError, AttributeError, IndexError, KeyError) as e:
        # an error in the ball engine: say so, and let mpmath certify (a deadline or an interrupt still ends it)
        raise NoEnclosure(f"the ball engine failed ({type(e).__name__}: {e})") from None


def _enclose(evaluate, program: Program, inputs: dict[str, np.ndarray], f: Format, start: int, cap: int,
             shapes: list[tuple]) -> Enclosed:
    """enclose() on what `evaluate(interpreter_class, args)` computes, of output shapes `shapes`."""
    prec = max(start, 2 * f.precision)
    result = None
    why = ""
    while True:
        try:
            outs = _ball_run(evaluate, program, inputs, prec)
        except arb_eval.Undecided as e:
            outs, why = None, str(e)
        if outs is not None:
            if result is None:
                result = Enclosed([np.full(s, np.nan, f.numpy) for s in shapes], [], [],
                                  [(np.full(s, np.nan), np.full(s, np.nan)) for s in shapes],
                                  [np.zeros(s, int) for s in shapes], [np.zeros(s, bool) for s in shapes], prec)
                last = [None] * len(shapes)
            for k, out in enumerate(outs):
                todo = result.precision[k] == 0
                rounded, certified, low, high = _round_all(out[todo], f)
                result.rounded[k][todo], result.precision[k][todo] = rounded, np.where(certified, prec, 0)
                result.bounds[k][0][todo], result.bounds[k][1][todo] = low, high
                last[k] = out if last[k] is None else np.where(todo, out, last[k])
            result.top = prec
            if all(p.all() for p in result.precision):
                break
        if prec * 2 > cap:
            break
        prec *= 2
    if result is None:
        raise NoEnclosure(f"no precision up to {cap} bits decided every branch ({why})")
    needed = max(int(max(p.max(initial=0) for p in result.precision)), 2 * f.precision, start)
    try:  # the exact values: the same program at twice the precision that certified (a proof as well: a ball)
        finer = _ball_run(evaluate, program, inputs, 2 * needed)
    except arb_eval.Undecided:  # (not seen: more bits decide more) the certifying balls' midpoints then
        finer = last
    result.balls = [np.asarray(b, dtype=object).reshape(s) for b, s in zip(finer, shapes)]
    result.exact = [np.asarray(_MIDPOINT(b), dtype=object).reshape(s) for b, s in zip(result.balls, shapes)]
    for k, (rounded, certified) in enumerate(zip(result.rounded, result.precision)):
        # a ball that rounds to one nonzero number excludes 0; other balls (and NaN: not nonzero) are asked
        ask = ~((certified > 0) & (rounded != 0) & ~np.isnan(rounded))
        result.nonzero[k] = np.ones(shapes[k], bool)
        result.nonzero[k][ask] = np.asarray(_EXCLUDES_ZERO(last[k][ask]), dtype=bool)
    return result


SAMPLE = 64  # with more points or elements than this, mpmath checks about this many besides the hard ones


@dataclass
class SecondOpinion:
    disagrees: list[np.ndarray]  # certified by Arb, rounded differently by mpmath
    domain: list[str]
    summary: str


class _Unguarded(Interpreter):
    def watch(self, name, ins, outs):
        return None


class _Quiet(_Unguarded):
    def note_domain(self, name, ins, out):  # the domain notes explain non-finite references only
        return None


def second_opinion(program: Program, inputs: dict[str, np.ndarray], f: Format, enclosed: Enclosed) -> SecondOpinion:
    """mp_eval at the certifying precision (the highest any component needed); where it rounds a certified
    component differently, the two libraries disagree. It runs without the absorption guard: the guard only
    withholds certification, and here mpmath certifies nothing, it only agrees or not.

    A sweep of more than SAMPLE points, or an elementwise program of more than SAMPLE elements, is checked on a
    deterministic sample of its parts (`sample`), and the summary says how many of how many."""
    prec = max(int(max(p.max(initial=0) for p in enclosed.precision)), 2 * f.precision)
    finite = all(np.isfinite(r).all() for r in enclosed.rounded)  # then no domain note is read (reference.compute)
    interpreter = _Quiet if finite else _Unguarded
    split = parts.split(program)
    checked, how = (None, "") if split is None or split.count <= SAMPLE else sample(enclosed, split)
    if checked is not None:
        inputs = parts.subset(program, split, inputs, checked)
    with mp.workprec(prec):
        args = [to_mp(inputs[name]) for name in program.input_names]
        args += [np.asarray(exact_constant(c, prec), dtype=object) for c in program.constants]
        if checked is None:
            run = interpreter()
            outs = run.run(program.full, args)
            domain = list(run.trace.domain)
        else:
            runs = []

            class Recorded(interpreter):
                def __init__(self, *a, **k):
                    super().__init__(*a, **k)
                    runs.append(self)
            outs = parts.run(program, split, Recorded, args, len(checked))
            domain = list(runs[0].trace.domain)
    disagrees = []
    for mine, needed, theirs in zip(enclosed.rounded, enclosed.precision, outs):
        theirs = round_array(theirs, f)
        if checked is None:
            disagree = np.zeros(mine.shape, bool)
            disagree[...] = _differ(mine, theirs)
        else:
            flat_mine = mine.reshape(split.count, -1)[checked].reshape(theirs.shape)
            disagree = np.zeros((split.count, *theirs.shape[1:]), bool)
            disagree[checked] = _differ(flat_mine, theirs)
            disagree = disagree.reshape(mine.shape)
        disagrees.append((needed > 0) & disagree)
    count = int(sum(d.sum() for d in disagrees))
    where = "" if checked is None else f" on {len(checked)} of {split.count} {split.noun} ({how})"
    summary = f"mpmath agrees at {prec} bits{where}" if not count else \
        f"arb and mpmath disagree at {prec} bits on {count} component{'s' * (count != 1)}{where}"
    return SecondOpinion(disagrees, domain, summary)


def _differ(mine: np.ndarray, theirs: np.ndarray) -> np.ndarray:
    same = (mine == theirs) & (np.signbit(mine) == np.signbit(theirs)) | (np.isnan(mine) & np.isnan(theirs))
    return ~same


def sample(enclosed: Enclosed, split: parts.Parts) -> tuple[np.ndarray, str]:
    """The parts mpmath checks, and how they were chosen: every part with a component the balls found hard (it
    needed more than the first precision, or none certified it) or special (zero, infinite, NaN), both sides of
    every change in those or in the sign between neighbours, and a fixed stride of the rest (the first and the
    last included)."""
    n = split.count
    first = int(min(p[p > 0].min(initial=enclosed.top) for p in enclosed.precision))
    hard = np.zeros(n, bool)
    signature = np.zeros((n, 0))
    for rounded, needed in zip(enclosed.rounded, enclosed.precision):
        r, p = rounded.reshape(n, -1).astype(np.float64), needed.reshape(n, -1)
        hard |= ((p != first) | (r == 0) | ~np.isfinite(r)).any(axis=1)
        signature = np.concatenate([signature, p, np.sign(np.nan_to_num(r, nan=2.0, posinf=3.0, neginf=-3.0))], axis=1)
    change = (signature[1:] != signature[:-1]).any(axis=1)
    edges = np.zeros(n, bool)
    edges[1:] |= change
    edges[:-1] |= change
    stride = max(1, -(-n // SAMPLE))
    regular = np.zeros(n, bool)
    regular[::stride] = True
    regular[-1] = True
    chosen = np.flatnonzero(hard | edges | regular)
    return chosen, (f"every {split.noun[:-1]} that needed more than {first} bits or is zero or not finite "
                    f"({int(hard.sum())}), both sides of each change between neighbours ({int((edges & ~hard).sum())}), "
                    f"every {stride}th")
