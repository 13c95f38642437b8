"""The certified reference: the case's mathematical definition, traced by JAX, evaluated in Arb balls
(a proof, `oracle.reference.enclosure`) or, where the ball engine has no rule or cannot decide a branch,
in mpmath at two agreeing precisions (evidence).

No float64 arithmetic happens here: inputs arrive as values already rounded to
the evaluated dtype and become exact balls or mpf numbers; constants come from Arb or mpmath.
"""

from __future__ import annotations

from dataclasses import dataclass

import mpmath
import numpy as np
from mpmath import mp

from oracle import budget
from oracle.floats import Format, round_array, ulps
from oracle.frameworks import exact_constant
from oracle.reference import enclosure
from oracle.reference.mp_eval import Interpreter, paused_gc, to_mp
from oracle.reference.program import Program

REFERENCE_PART, GRADIENT_CHECK_PART = "reference", "gradient check"  # names of oracle.budget parts
START_PRECISION = 64
MAX_PRECISION = 4096
DIFF_LIMIT = 64
DIFF_EXTRA_BITS = 8192  # the most guard bits a finite difference gets (a residue of 2**-1e80 would ask for 1e80)


@dataclass
class OutputReference:
    """The reference for one output tensor ("value" or "grad.<input>")."""

    name: str
    exact: np.ndarray  # mpf: from the higher of the two agreeing precisions, or the midpoint of `ball`
    rounded: np.ndarray  # correctly rounded to the dtype
    precision: np.ndarray  # bits that sufficed per component; 0 where never certified
    numeric: np.ndarray | None = None  # mpmath.diff of the forward function (gradients only)
    numeric_agrees: np.ndarray | None = None
    settled: np.ndarray | None = None  # the exact value itself (not only its rounding) agreed at both precisions
    disagrees: np.ndarray | None = None  # certified by Arb but rounded differently by mpmath (so: uncertain)
    ball: np.ndarray | None = None  # the Arb ball (arb objects) whose midpoint `exact` is; None where mpmath's

    def nonzero(self) -> np.ndarray:
        """Components whose true value is certainly nonzero: an exact 0 computed with cancellation leaves a
        tiny residue that shrinks with precision, so a tiny value counts only where both precisions agree on it."""
        settled = np.ones(self.exact.shape, bool) if self.settled is None else self.settled
        return np.vectorize(bool, otypes=[bool])(self.exact) & (settled | (self.rounded != 0))

    @property
    def certified(self) -> np.ndarray:
        return self.precision > 0


@dataclass
class Reference:
    outputs: list[OutputReference]
    domain: list[str]  # why the reference is infinite or undefined; empty when every output is finite
    summed: bool
    gradient_check: str
    cap: int  # the highest precision the certification may use
    ran_out: str | None = None  # why certification stopped before `cap`: its work budget ran out (oracle.budget)
    engine: str = "mpmath-agreement"  # "arb": every certified component is proven by an enclosure
    second_opinion: str = ""  # mpmath's check of the Arb result, or why the ball engine did not run

    @property
    def precision(self) -> int:
        """The most bits any component needed (0 if none was certified)."""
        return max(int(o.precision.max(initial=0)) for o in self.outputs)


def _same(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a == b) | (np.isnan(a) & np.isnan(b))


def _agree(low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Exact values at two precisions within 2**-8 relative of each other (or identical)."""
    def close(a, b):
        return a == b or (mpmath.isfinite(a) and mpmath.isfinite(b) and abs(a - b) <= abs(b) / 256)
    return np.asarray(np.frompyfunc(close, 2, 1)(low, high), dtype=bool).reshape(np.shape(high))


def _arguments(program: Program, inputs: dict[str, np.ndarray], prec: int) -> list[np.ndarray]:
    exact_inputs = [to_mp(inputs[name]) for name in program.input_names]
    constants = [np.asarray(exact_constant(c, prec), dtype=object) for c in program.constants]
    return exact_inputs + constants


def compute(program: Program, inputs: dict[str, np.ndarray], f: Format, start: int = START_PRECISION,
            cap: int = MAX_PRECISION, diff_limit: int = DIFF_LIMIT, strong_zeros: bool | None = None) -> Reference:
    """Certify by enclosure (see the module docstring); where the ball engine cannot run the program, evaluate
    at doubling precisions until each component rounds to `f` the same way twice (runs where it may come
    from a cancelled absorption do not count; see mp_eval.Trace).

    `strong_zeros`: gradients are the mathematical derivative of the branch a where() took, so a
    structural zero cotangent stays 0 times NaN (oracle.reference.zeros); False evaluates the
    backward pass as written (what a framework's code computes exactly, 0 * NaN = NaN). Default:
    `program.strong_zeros`, true for a case's definition, false for JAX's own code. The ball engine
    evaluates as written, so where strong zeros apply its non-finite components are the mpmath engine's."""
    zeros = program.strong_zeros if strong_zeros is None else strong_zeros
    with paused_gc():
        try:
            enclosed = enclosure.enclose(program, inputs, f, start, cap)
        except enclosure.NoEnclosure as e:
            reference = _compute(program, inputs, f, start, cap, diff_limit, zeros)
            reference.second_opinion = f"ball engine not used: {e}"
            return reference
        reference = _from_balls(program, inputs, f, enclosed, start, cap, diff_limit, zeros)
        if zeros and not _all_finite(o.exact for o in reference.outputs):
            _strong_zeros_from_mpmath(reference, _compute(program, inputs, f, start, cap, diff_limit, True,
                                                          check_gradients=False), f)
        return reference


def _finite_mpf(v) -> bool:
    parts = getattr(v, "_mpf_", None)
    if parts is None:
        return mpmath.isfinite(v)
    return bool(parts[1]) or not parts[2]  # mpmath's own test: a zero mantissa with an exponent is inf or NaN


_FINITE_MPF = np.frompyfunc(_finite_mpf, 1, 1)


def _all_finite(arrays) -> bool:
    """Every mpf in these arrays is finite (mpmath.isfinite, in one C loop per array)."""
    return all(np.asarray(_FINITE_MPF(a), dtype=bool).all() for a in arrays)


def _strong_zeros_from_mpmath(reference: Reference, strong: Reference, f: Format) -> None:
    """Components the balls left non-finite take the mpmath engine's certified value with strong zeros: a where()
    whose discarded branch has a non-finite derivative (0 * NaN is NaN in a ball, 0 in the reference)."""
    used = 0
    for mine, theirs in zip(reference.outputs, strong.outputs):
        finite = np.vectorize(mpmath.isfinite, otypes=[bool])
        take = ~finite(mine.exact) & finite(theirs.exact) & (theirs.precision > 0)
        if take.any():
            used += int(take.sum())
            for name in ("exact", "rounded", "precision", "settled"):
                setattr(mine, name, np.where(take, getattr(theirs, name), getattr(mine, name)))
            if mine.ball is not None:
                mine.ball = np.where(take, None, mine.ball)
            if mine.numeric is not None:  # the gradient check compared the ball's NaN: compare the new value
                checked = ~np.vectorize(mpmath.isnan, otypes=[bool])(mine.numeric)
                agrees = ~checked | (ulps(round_array(mine.numeric, f), mine.rounded, f) <= 1)
                mine.numeric_agrees = np.where(take, agrees, mine.numeric_agrees)
    if used:
        if _all_finite(o.exact for o in reference.outputs):
            reference.domain = []  # the non-finite values were the discarded branch's
        reference.engine += "+mpmath-strong-zeros"
        reference.second_opinion += (f"; {used} component{'s' * (used != 1)} where a where() discards a non-finite "
                                     "derivative certified by the mpmath engine with strong zeros")


def _from_balls(program: Program, inputs: dict[str, np.ndarray], f: Format, enclosed, start: int, cap: int,
                diff_limit: int, strong_zeros: bool) -> Reference:
    """The reference from certified balls, checked by mpmath at the certifying precision; the exact values are the
    midpoints of balls at twice that precision (enclosure.enclose).

    A component no ball up to the cap rounds to one value (an exact 0 reached by cancelling inexact
    operands: the ball around it always straddles -0.0 and +0.0) takes the mpmath engine's certification
    instead, if that lies between the roundings of the last ball's endpoints; `engine` then says so."""
    opinion = enclosure.second_opinion(program, inputs, f, enclosed)
    names = ["value"] + [f"grad.{n}" for n in program.wrt]
    results = [OutputReference(name, exact, rounded, np.where(disagrees, 0, needed), settled=nonzero,
                               disagrees=disagrees, ball=ball)
               for name, exact, ball, rounded, needed, nonzero, disagrees in
               zip(names, enclosed.exact, enclosed.balls, enclosed.rounded, enclosed.precision, enclosed.nonzero,
                   opinion.disagrees)]
    engine, note = "arb", ""
    if any((o.precision == 0).any() for o in results):
        fallback = _compute(program, inputs, f, start, cap, diff_limit, strong_zeros, check_gradients=False)
        used = 0
        for mine, theirs, (low, high) in zip(results, fallback.outputs, enclosed.bounds):
            rounded = theirs.rounded.astype(float)
            take = (mine.precision == 0) & ~mine.disagrees & (theirs.precision > 0) & (low <= rounded) & (rounded <= high)
            if take.any():
                used += int(take.sum())
                mine.exact = np.where(take, theirs.exact, mine.exact)
                mine.rounded = np.where(take, theirs.rounded, mine.rounded)
                mine.precision = np.where(take, theirs.precision, mine.precision)
                mine.settled = np.where(take, theirs.settled, mine.settled)
                mine.ball = np.where(take, None, mine.ball)
        if used:
            engine = "arb+mpmath-agreement"
            note = f"; {used} component{'s' * (used != 1)} certified by mpmath agreement only (no ball up to " \
                   f"{enclosed.top} bits rounded to one value)"
    check, short = budget.attempt(GRADIENT_CHECK_PART, lambda: _gradient_check(  # as the mpmath engine does
        program, inputs, results[1:], f, 2 * enclosed.top, diff_limit), share=0.5)
    check = check or f"skipped: {short}"
    all_finite = _all_finite(o.exact for o in results)
    return Reference(results, [] if all_finite else opinion.domain or ["the enclosure is not finite"],
                     program.summed, check, cap, engine=engine, second_opinion=opinion.summary + note)


def _compute(program: Program, inputs: dict[str, np.ndarray], f: Format, start: int, cap: int,
             diff_limit: int, strong_zeros: bool | None = None, check_gradients: bool = True) -> Reference:
    """The mpmath engine: two successive precisions that round every component alike (see `compute`)."""
    strong_zeros = program.strong_zeros if strong_zeros is None else strong_zeros
    names = ["value"] + [f"grad.{n}" for n in program.wrt]
    exact: list = [None] * len(names)
    final: list = [None] * len(names)
    needed: list = [None] * len(names)
    previous = previous_unsure = exact_low = ran_out = None
    prec = max(start, 2 * f.precision)  # exact inputs need >= 53 bits anyway
    while True:
        try:
            attempt = Interpreter(strong_zeros=strong_zeros)
            with mp.workprec(prec):
                outs = attempt.run(program.full, _arguments(program, inputs, prec))
        except budget.OutOfBudget as e:  # keep what earlier precisions certified; nothing at all is no reference
            if e.part != REFERENCE_PART or exact[0] is None:
                raise
            ran_out, prec = f"{e} at {prec} bits", prec // 2
            break
        interpreter = attempt
        rounded = [round_array(o, f) for o in outs]
        # a NaN that a cancelled absorption may have caused vouches for nothing at this precision
        unsure = [np.isnan(r) if interpreter.trace.hidden_cancellation else np.zeros(r.shape, bool) for r in rounded]
        if exact[0] is None:
            needed = [np.zeros(o.shape, dtype=int) for o in outs]
            exact, final = list(outs), list(rounded)
        if exact_low is None:
            settled = [np.zeros(o.shape, bool) for o in outs]
        if previous is not None:
            for k, (old, new) in enumerate(zip(previous, rounded)):
                fresh = _same(old, new) & (needed[k] == 0) & ~unsure[k] & ~previous_unsure[k]
                needed[k][fresh] = prec // 2
                settled[k][fresh] = _agree(exact_low[k], outs[k])[fresh]
                exact[k] = np.where(fresh, outs[k], exact[k])
                final[k] = np.where(fresh, new, final[k])
        if all((n > 0).all() for n in needed) or prec * 2 > cap:
            break
        previous, previous_unsure, exact_low, prec = rounded, unsure, outs, prec * 2
    for k in range(len(names)):  # components never certified keep the highest-precision attempt
        exact[k] = np.where(needed[k] > 0, exact[k], outs[k])
        final[k] = np.where(needed[k] > 0, final[k], rounded[k])
    results = [OutputReference(n, e, r, p, settled=s) for n, e, r, p, s in zip(names, exact, final, needed, settled)]
    check, short = budget.attempt(GRADIENT_CHECK_PART, lambda: _gradient_check(program, inputs, results[1:], f,
                                                                                 prec, diff_limit), share=0.5) \
        if check_gradients else ("", None)
    all_finite = all(mpmath.isfinite(v) for o in exact for v in o.ravel())
    return Reference(results, [] if all_finite else interpreter.trace.domain, program.summed,
                     check if check or not short else f"skipped: {short}", cap, ran_out)


def unavailable(program: Program, f: Format, cap: int, reason: str) -> Reference:
    """A reference that certifies nothing (not even one precision finished, or mpmath cannot hold the exact
    values): every row compared with it is `uncertain`, saying `reason`, and the frameworks' results still show."""
    shapes = [a.shape for a in program.full.out_avals]
    names = ["value"] + [f"grad.{n}" for n in program.wrt]
    outputs = [OutputReference(n, np.full(shape, mpmath.mpf("nan"), dtype=object), np.full(shape, np.nan, f.numpy),
                               np.zeros(shape, dtype=int)) for n, shape in zip(names, shapes)]
    return Reference(outputs, [], program.summed, f"skipped: {reason}", cap, reason)


def _gradient_check(program: Program, inputs, grads: list[OutputReference], f: Format, prec: int, limit: int) -> str:
    """Cross-check the AD reference against mpmath.diff of the forward function, per scalar input."""
    count = sum(inputs[n].size for n in program.wrt)
    if count == 0:
        return "no gradients"
    if count > limit:
        return f"skipped: {count} scalar inputs > limit {limit}"
    if not all(np.isfinite(inputs[n]).all() for n in program.wrt):
        return "skipped: non-finite inputs"
    with mp.workprec(prec):
        args = _arguments(program, inputs, prec)
        values = Interpreter().run(program.value, args)[0]
        finite = np.vectorize(mpmath.isfinite, otypes=[bool])(values)
        if not finite.any():
            return "skipped: the summed value is not finite, so finite differences say nothing"
        position = {n: program.input_names.index(n) for n in program.wrt}
        for grad, name in zip(grads, program.wrt):
            numeric = np.full(grad.exact.shape, mpmath.mpf("nan"), dtype=object)
            checked = np.zeros(grad.exact.shape, dtype=bool)
            for index in np.ndindex(grad.exact.shape):
                point = index[:1] if program.batched else ()  # the point whose own sum this input moves
                if not finite[point]:
                    continue

                def forward(t, index=index, k=position[name], point=point):
                    shifted = list(args)
                    shifted[k] = args[k].copy()
                    shifted[k][index] = args[k][index] + t
                    return Interpreter().run(program.value, shifted)[0][point]
                numeric[index], checked[index] = _central_difference(forward, args[position[name]][index],
                                                                     values[point], grad.exact[index], f, prec), True
            grad.numeric = numeric
            grad.numeric_agrees = ~checked | (ulps(round_array(numeric, f), grad.rounded, f) <= 1)
    skipped = "" if finite.all() else f", skipped at {int((~finite).sum())} points whose value is not finite"
    return f"mpmath.diff on {count} scalar inputs at {prec} bits (step scaled to each input){skipped}"


def _central_difference(forward, x, value, grad, f: Format, prec: int):
    """(F(h) - F(-h)) / 2h, F(t) = the value with this input moved by t: mpmath.diff's default method, but with
    the step relative to the input (h = |x| 2**-(prec+10)) and precision for the cancellation in F(h) - F(-h)
    (about |value| / |grad h| more bits): mpmath.diff's absolute step of 2**-(prec+10) crossed lgamma's pole at
    x = 1e-300, vanished beside x = 1e124, and its precision could not resolve erf(24 +- h) - 1e-251 moves."""
    scale = abs(x) if x != 0 else mpmath.mpf(1)
    h = mpmath.ldexp(scale, -prec - 10)
    smallest = f.emin - f.precision  # below half the smallest subnormal: what a gradient of 0 is resolved to
    moved = (int(mpmath.mag(grad)) if grad != 0 and mpmath.isfinite(grad) else smallest) + int(mpmath.mag(h))
    extra = min(max(0, int(mpmath.mag(value)) - moved) if value != 0 else 0, DIFF_EXTRA_BITS)
    with mp.workprec(prec + extra + 20):
        return (forward(h) - forward(-h)) / (2 * h)
