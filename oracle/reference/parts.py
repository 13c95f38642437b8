"""Programs whose components are independent, evaluated on any subset of them.

A sweep's points are independent by construction (the formula is vmapped over them), and so are the
elements of a program made only of elementwise operations (every array has the outputs' shape, or is a
scalar broadcast to it). Such a program can run on a subset of its parts: in chunks, so that the
intermediates (one Python object per element each, ~100 bytes) of a 1e6-element case never all exist at
once, or on a sample (mpmath's second opinion over many points). The values of a part do not depend on
which other parts run with it, so a subset gives exactly the values the whole program gives there.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from oracle.reference import mp_eval
from oracle.reference.program import Program

# primitives with their own rule that are elementwise all the same (besides those routed to
# Interpreter.elementwise, which numpy broadcasts elementwise); calls are elementwise when their body is
_ELEMENTWISE_RULES = {"select_n", "convert_element_type", "integer_pow", "is_finite", "stop_gradient", "copy",
                      "copy_p", "clamp", "round", "regularized_incomplete_beta", "broadcast_in_dim"}
_CALLS = {"jit": "jaxpr", "pjit": "jaxpr", "closed_call": "jaxpr", "custom_jvp_call": "call_jaxpr"}


@dataclass
class Parts:
    """How a program splits: `count` independent parts, a sweep's points (`batched`) or elements."""

    count: int
    batched: bool

    @property
    def noun(self) -> str:
        return "points" if self.batched else "elements"


def split(program: Program) -> Parts | None:
    """The program's independent parts, or None when its components depend on one another."""
    if program.batched:
        return Parts(program.avals[0].shape[0], True) if program.avals and program.avals[0].shape else None
    shapes = {tuple(a.shape) for a in program.full.out_avals}
    if len(shapes) != 1:
        return None
    shape = shapes.pop()
    inputs = [tuple(a.shape) for a in program.avals[:len(program.input_names)]]
    if not shape or shape not in inputs or any(s not in (shape, ()) for s in inputs + [tuple(a.shape) for a in
                                                                                     program.avals]):
        return None
    return Parts(int(np.prod(shape)), False) if _elementwise(program.full.jaxpr, shape) else None


def _elementwise(jaxpr, shape: tuple) -> bool:
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if any(tuple(getattr(v.aval, "shape", ())) not in (shape, ()) for v in (*eqn.invars, *eqn.outvars)):
            return False
        if name in _CALLS:
            inner = eqn.params[_CALLS[name]]
            if not _elementwise(getattr(inner, "jaxpr", inner), shape):
                return False
        elif name == "broadcast_in_dim":
            if getattr(eqn.invars[0].aval, "shape", ()) != ():
                return False
        elif name not in _ELEMENTWISE_RULES and (eqn.primitive.multiple_results
                                                 or hasattr(mp_eval.Interpreter, "p_" + name.replace("-", "_"))):
            return False
    return True


def chunked(interpreter_class: type, size: int) -> type:
    """An interpreter of an elementwise program that runs it on `size` of its elements (flattened): a scalar
    broadcast to the program's shape is broadcast to the chunk instead."""
    class Chunk(interpreter_class):
        def p_broadcast_in_dim(self, x, shape, broadcast_dimensions, **params):
            if not tuple(shape):  # a scalar stays one
                return super().p_broadcast_in_dim(x, shape, broadcast_dimensions, **params)
            return np.broadcast_to(x, (size,))
    return Chunk


def subset(program: Program, parts: Parts, inputs: dict[str, np.ndarray], index: np.ndarray) -> dict[str, np.ndarray]:
    """The inputs of the parts `index` (flattened for elements; a scalar input is every element's)."""
    if parts.batched:
        return {name: np.asarray(x)[index] for name, x in inputs.items()}
    return {name: np.asarray(x).reshape(-1)[index] if np.shape(x) != () else x for name, x in inputs.items()}


def run(program: Program, parts: Parts, interpreter, args: list[np.ndarray], count: int) -> list[np.ndarray]:
    """`program.full` on `count` of its parts, whose arguments `args` (inputs from `subset`, then constants) are:
    a sweep is traced again for that many points (its function is vmapped, so each point's program is the
    same), an elementwise program runs with `chunked`. `interpreter` is an Interpreter class. The outputs have
    the parts flattened: shape (count, *per point) for a sweep, (count,) for elements."""
    if parts.batched:
        return [np.asarray(o) for o in interpreter().run(_traced(program, count), args)]
    outs = chunked(interpreter, count)().run(program.full, args)
    return [np.broadcast_to(o, (count,)) for o in outs]


def _traced(program: Program, points: int):
    cache = program.__dict__.setdefault("_traced_points", {})
    if points not in cache:
        avals = [jax.ShapeDtypeStruct((points, *a.shape[1:]), jnp.float32) for a in program.avals[:len(program.input_names)]]
        avals += program.avals[len(program.input_names):]
        cache[points] = jax.make_jaxpr(program.function)(*avals)
    return cache[points]
