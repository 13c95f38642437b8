"""What a framework executed, as a data-flow graph the shadow can replay exactly.

TensorFlow and PyTorch are recorded as they run (`tf.record`, `torch.record`): every
op of the forward pass and of the gradient computation, with the float values it
produced, the operands it read (linked to the op that produced each), and the library
line that issued it. JAX needs no recording: its jaxpr is already such a graph.

Each backend also gives a replay table, `EXACT`, from its op names onto `Rule`s: the op
evaluated exactly on exact operands, through the reference interpreter's primitives, and
the interpreter primitive whose shape semantics it shares (so the shadow knows which
operand elements an output element depends on). An op without a rule makes that run's
trace unavailable, naming the op; it is never guessed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np


@dataclass(frozen=True)
class Ref:
    """Where an operand comes from: a recorded step's output, a case input, or a constant the library made."""

    step: int | None = None  # producing step (with `output`)
    output: int = 0
    input: str | None = None  # a case input
    value: np.ndarray | None = None  # a constant: its value as the framework held it


@dataclass
class Step:
    name: str  # the framework's op name: aten.mul.Tensor, Mul
    operands: list[Ref | None]  # tensor operands and numeric scalars (as the framework converted them); None: absent
    params: dict  # everything else: dims, flags, attributes
    outputs: list[np.ndarray]  # what the framework computed
    source: str | None  # file:line (function) of the library code that issued the op
    direction: str  # "forward" or "backward"
    rerun: Callable[[list[np.ndarray | None]], list[np.ndarray]]  # the framework's op on other operand values


@dataclass
class Recording:
    framework: str
    steps: list[Step]
    outputs: list[Ref]  # value, then the gradient of each wrt input
    ignored: list[str] = field(default_factory=list)  # ops recorded but not part of the computation (checks)


@dataclass(frozen=True)
class Rule:
    """How to replay one framework op exactly."""

    semantics: str  # interpreter primitive with the same operand/result element correspondence
    exact: Callable  # (interpreter, exact operands, params) -> list of exact results
    # the semantics' parameters (a reduction's axes), from the step and its operands' float values
    shape_params: Callable[[Step, list], dict] = lambda step, operands: {}
    # the operands in the order of `semantics` (where(cond, a, b) is select_n(cond, b, a)); None: as recorded
    order: tuple[int, ...] | None = None


def equation(name: str, multiple_results: bool = False, **params):
    """A stand-in for a jaxpr equation, so an op can be evaluated by `Interpreter.apply`."""
    return SimpleNamespace(primitive=SimpleNamespace(name=name, multiple_results=multiple_results), params=params)


def primitive(name: str, semantics: str | None = None, arity: int | None = None) -> Rule:
    """An op that is one interpreter primitive on its first `arity` operands (default: all given)."""
    def exact(interp, operands, params):
        used = [x for x in (operands if arity is None else operands[:arity]) if x is not None]
        return interp.apply(equation(name), used)

    return Rule(semantics or name, exact)


def composite(fn: Callable, semantics: str = "elementwise") -> Rule:
    """An op written as a function of exact operands with interpreter ops (`ops(name, *xs)`)."""
    def exact(interp, operands, params):
        def ops(name, *xs, **kw):
            return interp.apply(equation(name, **kw), list(xs))[0]
        out = fn(ops, *operands, **params)
        return list(out) if isinstance(out, (tuple, list)) else [out]

    return Rule(semantics, exact)


def identity(semantics: str = "copy") -> Rule:
    return Rule(semantics, lambda interp, operands, params: [operands[0]])


def put(out: np.ndarray, index: tuple, values) -> np.ndarray:
    """out[index] = values for object arrays, also where the index picks one element (numpy would store the
    0-d array itself there). `index` is basic indexing (slices, integers), so out[index] is a view."""
    target = out[index]
    if isinstance(target, np.ndarray):
        target[...] = values
    else:
        out[index] = np.asarray(values, dtype=object).reshape(()).item()
    return out


class Scopes:
    """The formula sub-expression being evaluated, for a recorder: `formula.evaluate`'s scope hook pushes it."""

    def __init__(self):
        self.texts: list[str] = []

    @contextlib.contextmanager
    def __call__(self, node):
        self.texts.append(node.text)
        try:
            yield
        finally:
            self.texts.pop()

    @property
    def current(self) -> str | None:
        return self.texts[-1] if self.texts else None
