"""Trace a case's reference definition with JAX into jaxprs for the mpmath interpreter.

The traced function takes the case inputs followed by the formula's constants as
arguments, so a literal like 0.1 or pi reaches the interpreter as an exact value
instead of a float32 literal. Only small dyadic literals (1, 0.5, -20) are inlined.

The op table is the JAX backend's, except where JAX's own implementation is not
an exact identity (log_ndtr uses a truncated asymptotic series, betaln a rounded
series, i1e's derivative is 1/2 near 0, optax.ctc_loss writes log 0 as -1e5) or lowers to
primitives the interpreter need not know (diag's gather, slogdet's pivoted LU).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core as jcore
from jax.interpreters import ad

from oracle import formula, native
from oracle.frameworks import jax as jax_backend
from oracle.frameworks import native_ops
from oracle.reference.ctc import EXACT_NATIVES
from oracle.reference.mp_eval import means_itself

# log|det A| and A^-1 as primitives of their own: the interpreter computes them in mpmath.
logabsdet_p = jcore.Primitive("oracle_logabsdet")
inverse_p = jcore.Primitive("oracle_inverse")
logabsdet_p.def_abstract_eval(lambda a: jax.core.ShapedArray(a.shape[:-2], a.dtype))
inverse_p.def_abstract_eval(lambda a: jax.core.ShapedArray(a.shape, a.dtype))


def _logabsdet_jvp(primals, tangents):
    (a,), (da,) = primals, tangents
    # d log|det A| = tr(A^-1 dA) = sum(A^-T * dA)
    return logabsdet_p.bind(a), jnp.sum(jnp.swapaxes(inverse_p.bind(a), -1, -2) * da, axis=(-2, -1))


def _inverse_jvp(primals, tangents):
    (a,), (da,) = primals, tangents
    inverse = inverse_p.bind(a)
    return inverse, -inverse @ da @ inverse  # d(A^-1) = -A^-1 dA A^-1 (second derivatives of logdet)


ad.primitive_jvps[logabsdet_p] = _logabsdet_jvp
ad.primitive_jvps[inverse_p] = _inverse_jvp


def _diag(x):
    """numpy's diag from static slices and selects, which the interpreter runs exactly."""
    if x.ndim == 1:
        n = x.shape[0]
        on_diagonal = jnp.arange(n)[:, None] == jnp.arange(n)[None, :]
        return jnp.where(on_diagonal, jnp.broadcast_to(x, (n, n)), 0)
    return jnp.stack([x[i, i] for i in range(min(x.shape))])


@jax.custom_jvp
def _i1e(x):
    return jax.scipy.special.i1e(x)


@_i1e.defjvp
def _i1e_jvp(primals, tangents):
    """i1e' = i0e - i1e (sign(x) + 1/x), and 1/2 at 0: JAX's own rule says 1/2 for every |x| <= 2**-23."""
    (x,), (dx,) = primals, tangents
    y = _i1e(x)
    safe = jnp.where(x == 0, 1, x)
    return y, jnp.where(x == 0, 0.5, jax.scipy.special.i0e(x) - y * (jnp.sign(x) + 1 / safe)) * dx


def _exact_native(path: str):
    """A library path a reference calls: the library's own code, unless its code is not the mathematics
    (optax.ctc_loss writes log 0 as -1e5): then the definition in oracle.reference.ctc."""
    return EXACT_NATIVES.get(path) or native.resolve("jax", path)


EXACT_OPS = {
    **jax_backend.OPS,
    "log_ndtr": lambda x: jnp.log(jax.scipy.special.ndtr(x)),
    "i1e": _i1e,
    # JAX's betaln adds a series with rounded coefficients for large arguments
    "lbeta": lambda a, b: jax.scipy.special.gammaln(a) + jax.scipy.special.gammaln(b) - jax.scipy.special.gammaln(a + b),
    "diag": _diag,
    "logdet": logabsdet_p.bind,
    "native": _exact_native,
}


def inline(value: Fraction | str) -> bool:
    """Constants a float32 literal carries exactly and that the interpreter reads as exact."""
    if value == "inf":
        return True
    if not isinstance(value, Fraction):
        return False
    in_range = value == 0 or Fraction(1, 2**100) <= abs(value) < 2**100  # a normal float32, far from the edges
    return in_range and means_itself(value)


@dataclass
class Program:
    """Jaxprs of a reference definition: `full` gives [value, *grads], `value` gives sum(f) (per point when batched)."""

    full: jcore.ClosedJaxpr
    value: jcore.ClosedJaxpr
    input_names: list[str]
    constants: list  # exact values of the trailing arguments (Fraction, "pi", "e")
    wrt: list[str]
    summed: bool  # the formula's result (at one point) is not a scalar: gradients are of its sum
    function: Callable  # what `full` traces: (*inputs, *constants) -> [value, *grads]
    avals: list  # the argument shapes `full` was traced at
    batched: bool = False  # inputs and outputs have a leading axis of independent points (a sweep)
    # gradients are the mathematical derivative (a where()'s untaken branch contributes an exact 0, see
    # oracle.reference.zeros): true for a case's definition traced with EXACT_OPS, false for a framework's code
    strong_zeros: bool = False


def integer_dtypes(inputs: dict[str, np.ndarray]) -> dict[str, str]:
    """The integer inputs among rounded inputs (name -> dtype): what `trace` takes as `integers`."""
    return {name: np.asarray(v).dtype.name for name, v in inputs.items() if np.asarray(v).dtype.kind in "iu"}


def trace(tree: formula.Node, shapes: dict[str, tuple[int, ...]], wrt: list[str],
          ops: dict[str, Callable] = EXACT_OPS, batched: bool = False, integers: dict[str, str] | None = None) -> Program:
    """Trace `tree` for inputs of the given shapes (dtypes do not matter: values come later).

    `ops` is the op table to trace with: the exact definitions for the reference (whose
    gradients are then the mathematical derivative: `Program.strong_zeros`), the JAX
    backend's own table for the shadow execution of what JAX runs (0 * NaN is NaN there).
    `batched`: every input has a leading axis of points (a sweep) and the formula is
    vmapped over it, so each point's value and gradients are its own, as if run alone.
    `integers`: the integer inputs (name -> int32/int64), traced at their own dtype (labels, lengths), which
    the interpreters hold as exact integers; every other input is traced as a float.

    A reference may call the jax impl allowlist's library functions (`optax.ctc_loss`): they are traced
    like the rest, so what the interpreter evaluates is the library's own jaxpr, exactly."""
    names = list(shapes)
    constants = list(dict.fromkeys(n.value for n in formula.walk(tree)
                                   if isinstance(n, formula.Const) and not inline(n.value)))

    def split(args):
        env = dict(zip(names, args[: len(names)]))
        slots = dict(zip(constants, args[len(names):]))
        table = {**formula.OPERATORS, **native_ops("jax"), **ops,
                 "constant": lambda v: slots[v] if v in slots else float(v)}  # float(v) is exact here
        return env, table

    def point(*args):
        env, table = split(args)
        value, pullback = jax.vjp(lambda diff: formula.evaluate(tree, {**env, **diff}, table), {n: env[n] for n in wrt})
        (grads,) = pullback(jnp.ones_like(value))
        return [value] + [grads[n] for n in wrt]

    def point_value(*args):
        env, table = split(args)
        return formula.evaluate(tree, env, table)

    if batched:  # the constants are shared by every point
        axes = (0,) * len(names) + (None,) * len(constants)
        full, value = jax.vmap(point, in_axes=axes), jax.vmap(point_value, in_axes=axes)
    else:
        full, value = point, point_value
    integers = integers or {}
    avals = [jax.ShapeDtypeStruct(shapes[n], jnp.dtype(integers.get(n, "float32"))) for n in names]
    avals += [jax.ShapeDtypeStruct((), jnp.float32)] * len(constants)
    full_jaxpr = jax.make_jaxpr(full)(*avals)
    if batched:  # each point's own sum: a point's derivative is never read off a sum with other points' values
        summed = jax.make_jaxpr(lambda *args: jnp.sum(value(*args), axis=tuple(range(1, len(full_jaxpr.out_avals[0]
                                                                                         .shape)))))(*avals)
    else:
        summed = jax.make_jaxpr(lambda *args: jnp.sum(value(*args)))(*avals)
    return Program(full_jaxpr, summed, names, constants, wrt, summed=full_jaxpr.out_avals[0].shape[batched:] != (),
                   function=full, avals=avals, batched=batched, strong_zeros=ops is EXACT_OPS)
