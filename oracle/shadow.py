"""Shadow execution: replay JAX's own computation of a case op by op, in floats and exactly, and name the op to blame.

The formula is traced with the JAX backend's op table (forward pass and the vjp's
backward pass in one jaxpr), every sub-expression under a named scope. The walk
recurses into jit / closed_call / custom_jvp_call / custom_vjp_call / checkpoint
bodies, so every record is one first-order primitive, and evaluates it three ways:

- float: the primitive bound eagerly on the shadow's own float operands (XLA on
  CPU, which flushes subnormal results to zero and reads subnormal operands as
  zero, as the framework run does);
- exact: the mpmath interpreter on the exact operands, at the given precision;
- local: the primitive bound on the exact operands correctly rounded to their
  format, i.e. what the float op does with the best operands it could have had.

local_bits = log2(1 + ulps(local, round(exact))) is the op's own error. With X the
exact result, R = round(X), F the float result and Y the op applied exactly to the
float operands, each float element gets at most one event, the first rule that applies:

- overflow: X is finite and R is infinite (inherent: the exact value itself is
  beyond the largest finite number); or R is finite and Y is finite but rounds to
  an infinity (the float op overflowed on operands that carried error; a pole
  such as log(0) or 1/0 is not an overflow).
- underflow: X is nonzero and |R| is below the smallest normal number (inherent;
  `flushed` when F is 0 though R is a nonzero subnormal: XLA flushed the result);
  or R is normal and Y is a nonzero below the smallest normal (the float op
  underflowed; 1 - 1 == 0 is no underflow).
- then, only where local_bits > threshold_bits (default 5, a case's usual tolerance):
  - overflow / underflow: an exact operand rounds to an infinity / to zero or a
    subnormal (`flushed`: XLA reads a subnormal operand as 0). The op gets an
    out-of-range value back into range wrongly: Herbie's "rescue" patterns;
  - cancellation: add/sub/add_any/reduce_sum whose largest exact operand is more
    than CANCELLATION_RATIO (100) times |X| (Herbie's explain rule) while some
    exact operand is not representable. An absorption such as 1 + 1e-30 == 1 has no
    local error itself; it is blamed where it matters: at the later op that
    cancels (cancellation) or amplifies (sensitivity) the lost part;
  - sensitivity: some exact operand is not representable, so the op's error is
    its ill-conditioning amplifying that rounding (log near 1, sin of a large
    number, a subtraction cancelling less than 100-fold);
  - inaccurate: every exact operand is representable: the float op itself is off.

`Shadow.root_cause` blames the earliest op, in evaluation order, on the path to the
output element (dependency ancestry, element by element through elementwise ops,
the picked case of a select, broadcasts and reshapes; every element elsewhere) that
has an event there. An inherent event (the exact intermediate itself out of range)
is blamed only if it is rescued, i.e. an op on the path that depends on it has a
range event of its own, and never when the output's exact value leaves the range
the same way (it rounds to an infinity / is a nonzero below the smallest normal):
then no float result could be right. So exp(-200) lost in 1 + exp(-200) is not
blamed, while exp(100) in log(1 + exp(100)) is.

Where an op came from: `where` is the innermost formula scope's sub-expression text;
`source` the innermost JAX library frame outside its tracing machinery (e.g.
jax/_src/lax/other.py:273 (logaddexp)), None for primitives whose frames JAX does
not keep. `transpose(` in the name stack marks the backward pass.

Limits: the exact side evaluates JAX's algorithm as written, so an approximation
inside it (a truncated series) has no local error; it is exact only to `prec` bits,
so an addition of operands more than `prec` bits apart absorbs there too; XLA
compiles a jitted library function (softplus) as a whole and may fuse it, which the
op-by-op replay does not (the shadow's outputs say whether it reproduced the run).
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from types import SimpleNamespace
from typing import NamedTuple

import jax
import mpmath
import numpy as np
from jax.extend import core as jcore
from mpmath import mp

from oracle import formula
from oracle.floats import FORMATS, Format, error_bits, nstr, round_array, round_to, ulps
from oracle.frameworks import jax as jax_backend
from oracle.frameworks import native_ops, rounded_constant
from oracle.reference import _arguments, mp_eval
from oracle.reference import program as reference_program
from oracle.reference.mp_eval import Interpreter, UnsupportedPrimitive, to_mp

KINDS = ("overflow", "underflow", "cancellation", "sensitivity", "inaccurate")
DEFAULT_THRESHOLD_BITS = 5.0
CANCELLATION_RATIO = 100

_SCOPE = "formula"  # named scopes formula0, formula1, ...: node text can contain "/", the name-stack separator
_CALLS = {"jit", "pjit", "closed_call", "core_call", "custom_jvp_call", "custom_vjp_call", "custom_vjp_call_jaxpr",
          "remat", "remat2", "checkpoint"}
_ADDITIVE = {"add", "add_any", "sub", "reduce_sum"}
_RANGE_KINDS = ("overflow", "underflow")
_ELEMENTWISE = (set(mp_eval.FLOAT_UNARY) | set(mp_eval.FLOAT_BINARY) | set(mp_eval.COMPARE) | set(mp_eval.LOGICAL)
                | set(mp_eval.INTEGER) | {"select_n", "clamp", "integer_pow", "convert_element_type", "is_finite",
                                         "stop_gradient", "copy", "copy_p", "elementwise", "round"})
# JAX's tracing machinery and thin primitive wrappers: skipped when locating the code behind an equation.
_MACHINERY = re.compile(r"/jax/_src/(core|source_info_util|pjit|api|api_util|linear_util|traceback_util"
                        r"|custom_derivatives|dispatch|util|tree_util|interpreters/\w+|lax/lax|numpy/array_methods"
                        r"|numpy/ufunc_api)\.py$")


class ShadowUnavailable(RuntimeError):
    """The computation uses a primitive or a recorded op that has no exact rule (lu, bitcast_convert_type, an aten or
    TF op missing from its table), or a rule that fails to reproduce what the op did."""

    def __init__(self, primitive: str, what: str = "primitive"):
        super().__init__(f"shadow execution unavailable: no exact rule for {what} '{primitive}'"
                         if what in ("primitive", "op") else f"shadow execution unavailable: {primitive} {what}")
        self.primitive = primitive


@dataclass
class Op:
    """One output of one first-order primitive, as the float, exact and local replays computed it."""

    index: int  # position in evaluation order (`Shadow.ops[index]`)
    primitive: str
    params: dict
    where: str  # the innermost formula sub-expression, else `source`
    source: str | None  # the JAX library line that emitted it; None where JAX kept no such frame
    direction: str  # "forward" or "backward" (the vjp's transposed ops)
    args: tuple[int | None, ...]  # the op producing each operand; None for inputs, constants and literals
    float_operands: tuple[np.ndarray, ...]
    exact_operands: tuple[np.ndarray, ...]  # mpf for float operands
    float_value: np.ndarray
    exact_value: np.ndarray
    local_value: np.ndarray | None  # None where the result is not a float
    local_bits: np.ndarray | None
    events: np.ndarray  # per element: "" or one of KINDS
    inherent: np.ndarray  # per element: the event is the exact value itself leaving the normal range
    flushed: np.ndarray  # per element: the underflow is XLA flushing a subnormal result or operand to zero
    name: str = ""  # the op as its framework calls it (aten.sub.Tensor, Sub); `primitive` gives its semantics
    constants: tuple[bool, ...] = ()  # per operand: a literal or a constant the library made

    @property
    def label(self) -> str:
        return self.name or self.primitive

    @property
    def short(self) -> str:
        """The op's name in sentences: sub, softplus (aten.softplus.default), Sub."""
        if not self.name:
            return self.primitive
        return self.name.split(".")[1] if self.name.startswith("aten.") else self.name


@dataclass
class Blame:
    """The root cause of one output element's error."""

    op: Op
    element: tuple[int, ...]  # the element of `op` where the event is
    kind: str  # one of KINDS
    flushed: bool  # an underflow that is XLA flushing a subnormal to zero
    operands: tuple[tuple[str, str], ...]  # (float, exact) per operand at that element; all of it if not elementwise
    explanation: str  # one sentence, with the numbers

    @property
    def where(self) -> str:
        return self.op.where


@dataclass
class Shadow:
    ops: list[Op]
    output_names: list[str]  # "value", "grad.<input>"
    outputs: list[np.ndarray]  # the shadow's float outputs: should equal the framework's
    exact_outputs: list[np.ndarray]
    output_ops: list[int | None]  # the op producing each output; None when it is an input or constant
    format: Format
    # an addition absorbed an operand that a later op cancelled to exactly 0 at this precision (made NaN there,
    # as in the reference): NaN outputs of this replay vouch for nothing
    absorbed: bool = False

    def root_cause(self, output: int, index: tuple[int, ...] = ()) -> Blame | None:
        """The earliest op with an event on the path to `outputs[output][index]` (see the module docstring)."""
        final = _out_of_range(self.exact_outputs[output][index], self.format)
        masks = self._ancestry(output, index)
        for i, mask in sorted(masks.items()):
            op = self.ops[i]
            for element in np.argwhere(mask & (op.events != "")):
                element = tuple(int(k) for k in element)
                kind = op.events[element]
                if op.inherent[element] and (final == ("overflow" if kind == "overflow" else "underflow")
                                             or not self._rescued(i, masks)):
                    continue
                return _blame(op, element, kind, self.format)
        return None

    def spread_cancellation(self, output: int, index: tuple[int, ...] = (), bits: float = DEFAULT_THRESHOLD_BITS
                            ) -> Blame | None:
        """Cancellation that no op's event owns: the additions on the path to the output element each cancel less
        than the event threshold (or less than Herbie's 100-fold), but their amplifications (largest exact operand
        / exact result, on operands the format cannot hold) multiply to more than 2**`bits`. Blamed on the
        addition that cancels most. Asked only when no op on the path has an event."""
        found = []
        for i, mask in sorted(self._ancestry(output, index).items()):
            op = self.ops[i]
            if op.primitive not in _ADDITIVE or op.float_value.dtype.kind != "f":
                continue
            shape = op.float_value.shape
            magnitude, inexact = _magnitude(op, shape), _any_operand(op, _inexact, shape)
            for element in np.argwhere(mask & inexact):
                element = tuple(int(k) for k in element)
                x = op.exact_value[element]
                if mpmath.isfinite(x) and x != 0 and magnitude[element] > 2 * abs(x):
                    found.append((float(mpmath.log(magnitude[element] / abs(x), 2)), op, element))
        total = sum(b for b, _, _ in found)
        if not found or total <= bits:
            return None
        lost, op, element = max(found, key=lambda t: t[0])
        blame = _blame(op, element, "cancellation", self.format)
        steps = ", ".join(f"{o.short} at {o.where} ({b:.1f} bits)" for b, o, _ in found)
        spread = f"spread over {len(found)} additions on the path, " if len(found) > 1 else ""
        blame.explanation = (f"cancellation {spread}amplifying the operands' rounding by about {total:.1f} bits: "
                             f"{steps}; {blame.explanation}")
        return blame

    def amplification(self, output: int, index: tuple[int, ...] = (), bits: float = DEFAULT_THRESHOLD_BITS
                      ) -> Blame | None:
        """Error that no op's event owns and no cancellation explains: every op on the path to the output element
        rounds within the threshold, but one amplifies the error its float operands already carry. In
        log(1 / (1 + exp(-z))) at z = 16.63553, 1 + 2^-24(1 + tiny) rounds up and the division is one ulp off 1 -
        2^-24; log there turns that ulp into a 100% error, while on its exact operand rounded it is right (no
        local error). Blamed on the elementwise op whose result's error exceeds its operands' by the most, when
        that gain is over `bits`; an op with an event or local error of its own there (torch's sigmoid returning 0
        for a subnormal) errs by itself and is not an amplifier. Asked only when no op on the path is blamed."""
        found = []
        for i, mask in sorted(self._ancestry(output, index).items()):
            op = self.ops[i]
            floats = [(x, e) for x, e in zip(op.float_operands, op.exact_operands) if x.dtype.kind == "f"]
            if op.primitive not in _ELEMENTWISE or op.float_value.dtype.kind != "f" or not floats:
                continue
            for element in np.argwhere(mask):
                element = tuple(int(k) for k in element)
                fl, x = op.float_value[element], op.exact_value[element]
                if op.events[element] or op.local_bits[element] > bits or not (
                        np.isfinite(fl) and mpmath.isfinite(x)):  # its own error, not what it was given; or no number
                    continue
                result = float(_error_bits(np.asarray(fl), np.asarray(x, dtype=object)))
                carried = max(float(np.max(_error_bits(_at(a, element, op), _at(b, element, op)))) for a, b in floats)
                found.append((result - carried, carried, result, op, element))
        if not found:
            return None
        gain, carried, result, op, element = max(found, key=lambda t: t[0])
        if gain <= bits:
            return None
        blame = _blame(op, element, "sensitivity", self.format)
        floats, exacts = (", ".join(v[k] for v in blame.operands) for k in (0, 1))
        value = _show(np.asarray(op.exact_value[element], dtype=object), self.format)
        got = _show(np.asarray(op.float_value[element]), self.format)
        blame.explanation = (f"{op.where} amplifies the error its operands carry from the ops before it (each within "
                             f"an ulp or a few): {op.short}({exacts}) = {value}, but on its float operands "
                             f"{op.short}({floats}) gives {got}: {carried:.1f} bits of error in, {result:.1f} out.")
        return blame

    def departure(self, output: int, index: tuple[int, ...] = ()) -> Blame | None:
        """Where the computation, evaluated exactly, stops computing the function, on the path to the output element:
        first a backward op that multiplies a zero cotangent by a non-finite derivative (the where gradient trap);
        else the earliest op that makes a NaN of non-NaN exact operands, or that clamps (max, min, clamp, select) a
        value onto a constant the library chose (an eps, a bound)."""
        found: dict[str, Blame] = {}
        for i, mask in sorted(self._ancestry(output, index).items()):
            op = self.ops[i]
            if op.float_value.dtype.kind != "f":
                continue
            for element in np.argwhere(mask):
                element = tuple(int(k) for k in element)
                operands = [_at(x, element, op) for x in op.exact_operands]
                value = op.exact_value[element]
                if mpmath.isnan(value) and op.direction == "backward" and _is_zero(operands) and any(
                        not all(mpmath.isfinite(v) for v in x.ravel()) for x in operands if x.dtype == object):
                    return _departure(op, element, operands, self.format, "trap")
                if mpmath.isnan(value) and not any(_has_nan(x) for x in operands):
                    found.setdefault("nan", _departure(op, element, operands, self.format, "nan"))
                elif op.primitive in _CLAMPS and self._clamped(op, element, value):
                    found.setdefault("clamp", _departure(op, element, operands, self.format, "clamp"))
        return found.get("clamp") or found.get("nan")

    def _clamped(self, op: Op, element: tuple[int, ...], value) -> bool:
        """Did a clamp-like op return one of its constant operands (one no op produced) instead of its data?"""
        data = [x for x, c in zip(op.exact_operands, op.constants) if not c and x.dtype == object]
        constants = [x for x, c in zip(op.exact_operands, op.constants) if c and x.dtype == object]
        if not data or not constants:
            return False
        return all(_at(x, element, op).ravel()[0] != value for x in data if x.size) and any(
            _at(c, element, op).ravel()[0] == value for c in constants if c.size)

    def _rescued(self, start: int, masks: dict[int, np.ndarray]) -> bool:
        """Does an op on the path that depends on op `start` have a range event of its own (not inherent)?"""
        descendants = {start}
        for i in sorted(k for k in masks if k > start):
            op = self.ops[i]
            if any(arg in descendants for arg in op.args):
                descendants.add(i)
                own = masks[i] & np.isin(op.events, _RANGE_KINDS) & ~op.inherent
                if own.any():
                    return True
        return False

    def _ancestry(self, output: int, index: tuple[int, ...]) -> dict[int, np.ndarray]:
        """For each op on the path to the output element, the mask of its elements the element depends on."""
        start = self.output_ops[output]
        if start is None:
            return {}
        masks = {start: np.zeros(self.ops[start].float_value.shape, dtype=bool)}
        masks[start][index] = True
        for i in range(start, -1, -1):
            if i not in masks or not masks[i].any():
                continue
            op = self.ops[i]
            for position, (arg, operand) in enumerate(zip(op.args, op.float_operands)):
                if arg is not None:
                    needed = _operand_mask(op, masks[i], position, operand.shape)
                    masks[arg] = masks[arg] | needed if arg in masks else needed
        return masks


def run(tree: formula.Node, inputs: dict[str, np.ndarray], wrt: list[str], f: Format, prec: int,
        threshold_bits: float = DEFAULT_THRESHOLD_BITS, batched: bool = False) -> Shadow:
    """Replay JAX's computation of `tree` (value and gradients of its sum) on `inputs` (already rounded to `f`).

    `tree` is a formula or a JAX impl (its library calls are traced like the formula's ops).

    `prec` is the exact side's working precision in bits (the reference's certified
    precision is a good choice). Raises ShadowUnavailable for primitives the exact
    interpreter lacks. `batched`: the inputs have a leading axis of sweep points (see program.trace)."""
    if prec < 2 * f.precision:
        raise ValueError(f"prec={prec} bits cannot carry {f.name} values exactly; use at least {2 * f.precision}")
    texts: list[str] = []

    def scope(node: formula.Node):
        texts.append(node.text)
        return jax.named_scope(f"{_SCOPE}{len(texts) - 1}")

    with jax.enable_x64(f.width == 64):
        integers = reference_program.integer_dtypes(inputs)  # labels, lengths: integer tensors, as every framework gets them
        program = reference_program.trace(tree, {n: np.shape(v) for n, v in inputs.items()}, wrt,
                                          ops={**jax_backend.OPS, **native_ops("jax"), "scope": scope},
                                          batched=batched, integers=integers)
        closed = jax.make_jaxpr(program.function)(*[jax.ShapeDtypeStruct(a.shape, a.dtype if a.dtype.kind in "iu"
                                                                         else f.numpy) for a in program.avals])
        floats = [np.asarray(inputs[n], dtype=inputs[n].dtype if n in integers else f.numpy)
                  for n in program.input_names]
        floats += [np.asarray(rounded_constant(c, f), dtype=f.numpy) for c in program.constants]
        replay = _Replay(threshold_bits, texts)
        with mp.workprec(prec):
            args = [_Value(x, e, None) for x, e in zip(floats, _arguments(program, inputs, prec))]
            outs = replay.jaxpr(closed.jaxpr, [replay.constant(c) for c in closed.consts], args, "")
    return Shadow(replay.ops, ["value"] + [f"grad.{n}" for n in wrt], [o.float_value for o in outs],
                  [o.exact_value for o in outs], [o.op for o in outs], f)


class _Value(NamedTuple):
    float_value: np.ndarray
    exact_value: np.ndarray
    op: int | None  # the producing op
    constant: bool = False  # a literal or a constant the library made (not an input, not computed)


class _Replay:
    """Walks a jaxpr like jax.core.eval_jaxpr, recording an Op for every output of every first-order equation."""

    def __init__(self, threshold_bits: float, texts: list[str]):
        self.threshold_bits = threshold_bits
        self.texts = texts
        self.interpreter = Interpreter(strict_literals=False)  # a literal is the float it is
        self.ops: list[Op] = []

    def constant(self, c) -> _Value:
        return _Value(np.asarray(c), self.interpreter.constant(c), None, True)

    def jaxpr(self, jaxpr, consts: list[_Value], args: list[_Value], stack: str) -> list[_Value]:
        env = dict(zip(jaxpr.constvars, consts)) | dict(zip(jaxpr.invars, args))

        def read(v) -> _Value:
            if isinstance(v, jcore.Literal):
                dtype = np.dtype(v.aval.dtype)
                return _Value(np.asarray(v.val, dtype=dtype), self.interpreter.literal(v.val, dtype.name), None, True)
            return env[v]

        for eqn in jaxpr.eqns:
            ins = [read(v) for v in eqn.invars]
            names = "/".join(s for s in (stack, str(eqn.source_info.name_stack)) if s)
            if eqn.primitive.name in _CALLS:
                body = eqn.params.get("call_jaxpr") or eqn.params.get("fun_jaxpr") or eqn.params["jaxpr"]
                consts = [self.constant(c) for c in getattr(body, "consts", [])]
                outs = self.jaxpr(getattr(body, "jaxpr", body), consts, ins, names)
            else:
                outs = self.apply(eqn, ins, names)
            env.update(zip(eqn.outvars, outs))
        return [read(v) for v in jaxpr.outvars]

    def apply(self, eqn, ins: list[_Value], names: str) -> list[_Value]:
        """One first-order equation: float, exact, local, and exact on the float operands; an Op per output."""
        try:
            exacts = self.interpreter.apply(eqn, [x.exact_value for x in ins])
        except UnsupportedPrimitive:
            raise ShadowUnavailable(eqn.primitive.name) from None
        floats = _bind(eqn, [x.float_value for x in ins])
        locals_ = _bind(eqn, [_rounded(x.exact_value, x.float_value.dtype) for x in ins])
        at_float = self.interpreter.apply(eqn, [to_mp(x.float_value) if x.float_value.dtype.kind == "f"
                                                else x.float_value for x in ins])
        scopes = re.findall(rf"\b{_SCOPE}(\d+)\b", names)
        source = _source(eqn.source_info)
        where = self.texts[int(scopes[-1])] if scopes else source or "unknown"
        return _record(self.ops, eqn.primitive.name, dict(eqn.params), ins, floats, exacts, locals_, at_float, where,
                       source, "backward" if "transpose(" in names else "forward", self.threshold_bits)


def _record(ops: list[Op], primitive: str, params: dict, ins: list[_Value], floats, exacts, locals_, at_float,
            where: str, source: str | None, direction: str, threshold_bits: float, name: str = "") -> list[_Value]:
    """An Op per output of one executed op, classified; the values it passes on."""
    outs = []
    for fl, ex, lo, y in zip(floats, exacts, locals_, at_float):
        op = Op(index=len(ops), primitive=primitive, params=params, where=where, source=source, direction=direction,
                args=tuple(x.op for x in ins), float_operands=tuple(x.float_value for x in ins),
                exact_operands=tuple(x.exact_value for x in ins), float_value=fl, exact_value=ex,
                local_value=None, local_bits=None, events=np.full(fl.shape, "", dtype=object),
                inherent=np.zeros(fl.shape, dtype=bool), flushed=np.zeros(fl.shape, dtype=bool), name=name,
                constants=tuple(x.constant for x in ins))
        if fl.dtype.kind == "f":
            _classify(op, lo, y, FORMATS[fl.dtype.name], threshold_bits)
        ops.append(op)
        outs.append(_Value(fl, ex, op.index))
    return outs


def replay(recording, rules: dict, inputs: dict[str, np.ndarray], wrt: list[str], f: Format, prec: int,
           threshold_bits: float = DEFAULT_THRESHOLD_BITS) -> Shadow:
    """Replay what TensorFlow or PyTorch recorded (`oracle.frameworks.recording`) like `run` replays JAX's jaxpr.

    The float side is what the framework computed; the exact side evaluates each op by
    its rule in `rules` on exact operands (a constant the library made enters as the
    float value it had); the local side reruns the framework's own op on the exact
    operands rounded to their format. Raises ShadowUnavailable for an op without a rule."""
    if prec < 2 * f.precision:
        raise ValueError(f"prec={prec} bits cannot carry {f.name} values exactly; use at least {2 * f.precision}")
    interpreter = Interpreter(strict_literals=False)
    ops: list[Op] = []
    values: dict[tuple[int, int], _Value] = {}

    def read(ref) -> _Value | None:
        if ref is None:
            return None
        if ref.step is not None:
            return values[(ref.step, ref.output)]
        fl = np.asarray(inputs[ref.input] if ref.input is not None else ref.value)
        return _Value(fl, _exact_of(fl), None, ref.input is None)

    needed = _needed(recording)
    with mp.workprec(prec), mp_eval.paused_gc():
        for s, step in enumerate(recording.steps):
            if s not in needed:  # argument checks, shapes for nothing: not part of the outputs
                continue
            rule = rules.get(step.name)
            ins = [read(r) for r in step.operands]
            if rule is None and all(o.dtype.kind in "biu" for o in step.outputs) and all(
                    x is None or x.float_value.dtype.kind in "biu" for x in ins):
                rule = _INTEGER  # integers from integers (shapes, permutations): exact as computed
            if rule is None:
                raise ShadowUnavailable(step.name, "op")
            present = [x for x in ins if x is not None]
            params = {k: v for k, v in step.params.items() if not k.startswith("_")}
            try:
                if rule.semantics == "constant":  # a tensor the library made: exactly what it holds
                    exacts = [_exact_of(o) for o in step.outputs]
                    at_float = exacts
                else:
                    exacts = rule.exact(interpreter, [None if x is None else x.exact_value for x in ins], params)
                    at_float = rule.exact(interpreter, [None if x is None else _exact_of(x.float_value) for x in ins],
                                          params)
                locals_ = step.rerun([None if x is None else _rounded(x.exact_value, x.float_value.dtype) for x in ins])
            except (UnsupportedPrimitive, TypeError, ValueError, IndexError, KeyError) as e:
                raise ShadowUnavailable(step.name, f"op ({type(e).__name__}: {e})") from None
            exacts, at_float = ([_exact_as(e, o) for e, o in zip(values_, step.outputs)]
                                for values_ in (exacts, at_float))
            try:
                moved = rule.semantics not in _MOVES or all(_reproduces(y, o) for y, o in zip(at_float, step.outputs))
            except TypeError:  # the rule made something that is not a number
                moved = False
            if not moved:
                raise ShadowUnavailable(step.name, "op: its exact rule does not reproduce what the op did")
            source = step.source
            where = source or step.params.get("_where") or "unknown"
            _watch(interpreter, rule.semantics, [x.exact_value for x in present], exacts)
            shape_params = rule.shape_params(step, [x.float_value for x in present])
            present = present if getattr(rule, "order", None) is None else [present[k] for k in rule.order]
            outs = _record(ops, rule.semantics, shape_params, present, step.outputs, exacts, locals_,
                           at_float, where, source, step.direction, threshold_bits, name=step.name)
            for k, value in enumerate(outs):
                values[(s, k)] = value
    outputs = [read(r) for r in recording.outputs]
    names = ["value"] + [f"grad.{n}" for n in wrt]
    return Shadow(ops, names, [o.float_value for o in outputs], [o.exact_value for o in outputs],
                  [o.op for o in outputs], f, bool(interpreter.trace.hidden_cancellation))


def _watch(interpreter: Interpreter, semantics: str, ins: list, outs: list) -> None:
    """The reference's absorption guard on a replayed op: an absorbed operand that a later op cancels to 0 poisons it."""
    if not outs or not all(isinstance(x, np.ndarray) and x.dtype == object for x in ins + outs[:1]):
        return
    if semantics in mp_eval.ABSORBING and len(ins) == 2:
        interpreter.watch_absorption(semantics, ins, outs[0])
    elif semantics in mp_eval.SATURATING and ins and mp_eval._saturated(ins[0], outs[0]).any():
        interpreter.absorbed[id(outs[0])] = outs[0]
    elif any(id(x) in interpreter.absorbed for x in ins):
        interpreter.watch_exposure(semantics, ins, outs[0])
        for x in outs:
            interpreter.absorbed[id(x)] = x


# ops that only move, copy or pick values: their rule on the float operands must give the float result exactly
_MOVES = ("move", "reshape", "broadcast", "copy", "select_n")


def _reproduces(exact: np.ndarray, got: np.ndarray) -> bool:
    exact, got = np.asarray(exact), np.asarray(got)
    if got.dtype.kind != "f":
        return exact.shape == got.shape and bool(np.all(exact == got))
    rounded = round_array(exact, FORMATS[got.dtype.name])
    return rounded.shape == got.shape and bool(np.all((rounded == got) | (np.isnan(rounded) & np.isnan(got))))


_INTEGER = SimpleNamespace(semantics="constant", shape_params=lambda step, operands: {})


def _needed(recording) -> set[int]:
    """The steps the recorded outputs depend on."""
    needed, stack = set(), [r.step for r in recording.outputs if r.step is not None]
    while stack:
        s = stack.pop()
        if s not in needed:
            needed.add(s)
            stack += [r.step for r in recording.steps[s].operands if r is not None and r.step is not None]
    return needed


def _exact_as(exact, like: np.ndarray) -> np.ndarray:
    """An exact result in the kind of the framework's result: mpf where it is a float (a cast of a boolean or an
    integer made a float), as computed otherwise."""
    exact = np.asarray(exact)
    if like.dtype.kind in "biu" and exact.dtype == object:  # a cast of exact values to integers or booleans
        convert = bool if like.dtype.kind == "b" else (lambda v: int(v) if mpmath.isfinite(v) else 0)
        return np.asarray(np.frompyfunc(convert, 1, 1)(exact), dtype=like.dtype).reshape(exact.shape)
    if like.dtype.kind != "f" or exact.dtype == object:
        return exact
    if exact.dtype.kind == "f":
        return to_mp(exact)
    out = np.empty(exact.shape, dtype=object)
    for index, v in np.ndenumerate(exact):
        out[index] = mpmath.mpf(int(v))
    return out


def _exact_of(x: np.ndarray) -> np.ndarray:
    """A framework's value as an exact one: mpf for floats, itself for integers and booleans."""
    x = np.asarray(x)
    return to_mp(x) if x.dtype.kind == "f" else x


_CLAMPS = ("max", "min", "clamp", "select_n")


def _is_zero(operands: list) -> bool:
    return any(x.dtype == object and x.size == 1 and x.ravel()[0] == 0 for x in operands)


def _has_nan(x: np.ndarray) -> bool:
    return x.dtype == object and any(mpmath.isnan(v) for v in x.ravel())


def _departure(op: Op, element: tuple[int, ...], operands: list, f: Format, kind: str) -> Blame:
    formats = [FORMATS.get(x.dtype.name) for x in op.float_operands]
    shown = [_show(np.asarray(x), g) for x, g in zip(operands, formats)]
    value = _show(np.asarray(op.exact_value[element], dtype=object), f)
    where = f"{op.where} (backward pass)" if op.direction == "backward" else op.where
    call = f"{op.short}({', '.join(shown)}) = {value}"
    if kind == "trap":
        text = (f"at {where}, {call} exactly: a zero cotangent (from a where/select that discards this branch) "
                "times the discarded branch's non-finite derivative: the where gradient trap")
    elif kind == "nan":
        text = f"at {where}, {call} exactly: the operations make a NaN of numbers"
    else:
        text = f"at {where}, {call}: the code clamps the value onto a constant it chose"
    return Blame(op, element, "mismatch", False, tuple(zip(shown, shown)), text + ".")


def _bind(eqn, args: list[np.ndarray]) -> list[np.ndarray]:
    out = eqn.primitive.bind(*args, **eqn.params)
    return [np.asarray(x) for x in (out if eqn.primitive.multiple_results else [out])]


def _rounded(exact: np.ndarray, dtype: np.dtype) -> np.ndarray:
    return round_array(exact, FORMATS[dtype.name]) if dtype.kind == "f" else exact


def _source(source_info) -> str | None:
    """file:line (function) of the innermost JAX library frame outside its tracing machinery."""
    frames = source_info.traceback.frames if source_info.traceback is not None else []
    for frame in frames:
        if "/jax/" in frame.file_name and not _MACHINERY.search(frame.file_name):
            return f"{frame.file_name.split('site-packages/')[-1]}:{frame.line_num} ({frame.function_name})"
    return None


def _spread(op: Op, flags: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """An operand's per-element flags as a flag per result element: any over the elements it depends on."""
    if flags.shape == () or (flags.shape == shape and op.primitive in _ELEMENTWISE):
        return np.broadcast_to(flags, shape)
    if op.primitive == "reduce_sum":
        return flags.any(axis=tuple(op.params["axes"])).reshape(shape)  # a kept dimension has size 1
    return np.full(shape, flags.any())


def _any_operand(op: Op, test, shape: tuple[int, ...]) -> np.ndarray:
    """Per result element: does `test(exact, rounded, format)` hold for some float operand?"""
    out = np.zeros(shape, dtype=bool)
    for fl, ex in zip(op.float_operands, op.exact_operands):
        if fl.dtype.kind == "f":
            g = FORMATS[fl.dtype.name]
            out = out | _spread(op, np.asarray(test(ex, round_array(ex, g), g), dtype=bool), shape)
    return out


def _magnitude(op: Op, shape: tuple[int, ...]) -> np.ndarray:
    """The largest exact operand of each element of an additive op."""
    if op.primitive == "reduce_sum":
        largest = np.max(np.abs(op.exact_operands[0]), axis=tuple(op.params["axes"]))
    else:
        largest = functools.reduce(np.maximum, (np.broadcast_to(np.abs(x), shape) for x in op.exact_operands))
    return np.asarray(largest, dtype=object).reshape(shape)


def _classify(op: Op, local: np.ndarray, at_float: np.ndarray, f: Format, threshold_bits: float) -> None:
    """Fill `op`'s local error and events by the rules of the module docstring.

    `at_float` is the exact op applied to the float operands: where it leaves the
    range, the float op itself overflowed or underflowed."""
    shape = op.float_value.shape
    rounded = round_array(op.exact_value, f)
    beyond = round_array(at_float, f)
    op.local_value = local
    op.local_bits = np.vectorize(error_bits, otypes=[float])(ulps(local, rounded, f)).reshape(shape)
    tiny = float(f.min_normal)
    inexact_in = _any_operand(op, _inexact, shape)
    overflow_in = _any_operand(op, lambda ex, r, g: np.isinf(r) & _finite(ex), shape)
    subnormal_in = _any_operand(op, lambda ex, r, g: (r != 0) & (np.abs(r) < float(g.min_normal)), shape)
    underflow_in = _any_operand(op, lambda ex, r, g: (r == 0) & (ex != 0), shape)
    additive = op.primitive in _ADDITIVE
    magnitude = _magnitude(op, shape) if additive else None
    for e in np.ndindex(shape):
        x, r, y, fl = op.exact_value[e], rounded[e], at_float[e], float(op.float_value[e])
        kind, inherent = "", False
        if mpmath.isfinite(x) and math.isinf(r):
            kind, inherent = "overflow", True
        elif math.isfinite(r) and mpmath.isfinite(y) and math.isinf(beyond[e]):
            kind = "overflow"
        elif mpmath.isfinite(x) and x != 0 and abs(r) < tiny:
            kind, inherent, op.flushed[e] = "underflow", True, fl == 0 and r != 0
        elif abs(r) >= tiny and mpmath.isfinite(y) and y != 0 and abs(beyond[e]) < tiny:
            kind = "underflow"
        elif op.local_bits[e] > threshold_bits:
            if overflow_in[e]:
                kind = "overflow"
            elif subnormal_in[e] or underflow_in[e]:
                kind, op.flushed[e] = "underflow", subnormal_in[e]
            elif additive and inexact_in[e] and magnitude[e] > CANCELLATION_RATIO * abs(x):
                kind = "cancellation"
            else:
                # a non-elementwise op (a solve, a dot) errs at exact operands by its own conditioning
                kind = "sensitivity" if inexact_in[e] or op.primitive not in _ELEMENTWISE else "inaccurate"
        op.events[e], op.inherent[e] = kind, inherent


def _error_bits(floats: np.ndarray, exact: np.ndarray) -> np.ndarray:
    """log2(1 + ulps) between float values and their exact counterparts rounded, in the floats' own format."""
    g = FORMATS[floats.dtype.name]
    return np.vectorize(error_bits, otypes=[float])(ulps(floats, round_array(exact, g), g)).reshape(np.shape(floats))


def _finite(x: np.ndarray) -> np.ndarray:
    return np.vectorize(mpmath.isfinite, otypes=[bool])(x)


def _inexact(exact: np.ndarray, rounded: np.ndarray, f: Format) -> np.ndarray:
    """Finite exact values that their format cannot hold."""
    return np.vectorize(lambda x, r: bool(mpmath.isfinite(x) and x != r), otypes=[bool])(exact, rounded)


def _out_of_range(x, f: Format) -> str:
    """"overflow" if the exact value rounds to an infinity, "underflow" if it is a nonzero below the smallest normal."""
    if mpmath.isnan(x):
        return ""
    if math.isinf(round_to(x, f)):
        return "overflow"
    return "underflow" if x != 0 and abs(x) < float(f.min_normal) else ""


def _operand_mask(op: Op, mask: np.ndarray, position: int, shape: tuple[int, ...]) -> np.ndarray:
    """The elements of operand `position` (of shape `shape`) that the `mask` elements of op's result depend on."""
    if op.primitive == "select_n" and position > 0:  # a case matters where the float or the exact predicate picks it
        picked = [np.asarray(p).astype(int) == position - 1 for p in (op.float_operands[0], op.exact_operands[0])]
        mask = mask & np.broadcast_to(picked[0] | picked[1], mask.shape)
    if shape == mask.shape and op.primitive in _ELEMENTWISE:
        return mask
    if op.primitive == "broadcast_in_dim":
        kept = op.params["broadcast_dimensions"]
        needed = mask.any(axis=tuple(d for d in range(mask.ndim) if d not in kept))
        for axis, size in enumerate(shape):
            if size == 1:
                needed = needed.any(axis=axis, keepdims=True)
        return needed
    if op.primitive == "reshape" and mask.size == int(np.prod(shape, dtype=int)):
        return mask.reshape(shape)
    if (op.primitive == "broadcast" and position == 0) or (op.primitive in _ELEMENTWISE and len(shape) <= mask.ndim):
        # an operand broadcast along size-1 or leading axes (numpy's rule: its axes are the result's trailing ones)
        needed = mask.any(axis=tuple(range(mask.ndim - len(shape))))
        for axis, size in enumerate(shape):
            if size == 1:
                needed = needed.any(axis=axis, keepdims=True)
        if needed.shape == shape:
            return needed
    if (op.primitive in _REDUCTIONS and position == 0 and "axes" in op.params
            and tuple(n for d, n in enumerate(shape) if d not in op.params["axes"]) == mask.shape):
        # a reduced element depends on its own slice only: in a sweep, another point's events are not its cause
        return np.broadcast_to(np.expand_dims(mask, tuple(op.params["axes"])), shape).copy()
    return np.full(shape, mask.any())


_REDUCTIONS = ("reduce_sum", "reduce_max", "reduce_min", "reduce_prod", "argmax", "argmin")


def _at(x: np.ndarray, element: tuple[int, ...], op: Op) -> np.ndarray:
    """An operand's value at a result element: itself if a scalar, its element if elementwise, else all of it."""
    if x.shape == op.float_value.shape and op.primitive in _ELEMENTWISE:
        return np.asarray(x[element], dtype=x.dtype)
    return x


def _show(x: np.ndarray, f: Format | None) -> str:
    """A short string of a value or a small array of the format `f` (None: not a float), exact values included."""
    if x.size > 4:
        return f"<{x.size} values>"
    items = [str(v) if f is None else _show_number(v, f) for v in x.ravel()]
    return items[0] if x.shape == () else "[" + ", ".join(items) + "]"


def _show_number(v, f: Format) -> str:
    """Enough digits to tell `f`'s values apart; an exact value that looks like its rounding shows the difference."""
    digits = math.ceil(f.precision * math.log10(2)) + 1
    v = v if isinstance(v, mpmath.mpf) else mpmath.mpf(float(v))  # a float value is exact in 53 bits
    text, rounded = nstr(v, digits), mpmath.mpf(round_to(v, f))
    if not mpmath.isfinite(v) or v == rounded or nstr(rounded, digits) != text:
        return text
    rest = v - rounded
    return f"{text} {'+' if rest > 0 else '-'} {nstr(abs(rest), 3)}"


def _blame(op: Op, element: tuple[int, ...], kind: str, f: Format) -> Blame:
    formats = [FORMATS.get(x.dtype.name) for x in op.float_operands]
    floats = [_show(_at(x, element, op), g) for x, g in zip(op.float_operands, formats)]
    exacts = [_show(_at(x, element, op), g) for x, g in zip(op.exact_operands, formats)]
    rounds = [_show(_rounded(_at(x, element, op), fl.dtype), g)
              for x, fl, g in zip(op.exact_operands, op.float_operands, formats)]
    name = f"{op.primitive}[y={op.params['y']}]" if op.primitive == "integer_pow" and not op.name else op.short
    exact_call, float_call, rounded_call = (f"{name}({', '.join(a)})" for a in (exacts, floats, rounds))
    x, r, fl, local = (_show(np.asarray(v[element], dtype=v.dtype), f) for v in
                       (op.exact_value, round_array(op.exact_value, f), op.float_value, op.local_value))
    bits = f"{op.local_bits[element]:.1f} bits of local error"
    where = f"{op.where} (backward pass)" if op.direction == "backward" else op.where
    inherent, flushed = bool(op.inherent[element]), bool(op.flushed[element])
    if kind == "overflow" and inherent:
        largest = _show(np.asarray(float(f.max_finite)), f)
        text = f"{where} overflowed {f.name}: {exact_call} = {x} exceeds the largest {f.name}, {largest}."
    elif kind == "underflow" and inherent and flushed:
        text = f"{where} was flushed to zero: {exact_call} = {x} is the {f.name} subnormal {r}, which this run flushes to 0."
    elif kind == "underflow" and inherent:
        text = (f"{where} underflowed {f.name}: {exact_call} = {x} is below the smallest normal {f.name}, "
                f"{_show(np.asarray(float(f.min_normal)), f)}, and came out as {fl}.")
    elif kind == "underflow" and flushed:
        text = (f"{where} read a subnormal operand as zero (this run flushes subnormals): {rounded_call} gave {local} "
                f"instead of {r} ({bits}).")
    elif kind in ("overflow", "underflow"):
        text = f"{where} left the {f.name} range ({kind}): {exact_call} = {x}, but in {f.name} {float_call} gives {fl}."
    elif kind == "cancellation":
        ratio = nstr(_magnitude(op, op.float_value.shape)[element] / abs(op.exact_value[element]), 3)
        text = (f"{where} cancelled: {exact_call} = {x} is {ratio} times smaller than its largest operand, so its "
                f"operands rounded to {f.name}, {rounded_call}, give {local} instead of {r} ({bits}).")
    elif kind == "sensitivity":
        text = (f"{where} is ill-conditioned at its operands: {exact_call} = {x}, but on the operands rounded to "
                f"{f.name}, {rounded_call}, it gives {local} instead of {r} ({bits}).")
    else:
        text = f"{where} is inaccurate in {f.name}: {exact_call} should give {r} but gives {local} ({bits})."
    return Blame(op, element, kind, flushed, tuple(zip(floats, exacts)), text)
