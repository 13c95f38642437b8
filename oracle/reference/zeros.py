"""Strong zeros: the reference's derivative of `where(x > 0, sqrt(x), 0.0)` at x = -1 is 0, not NaN.

Reverse-mode AD sends the cotangent of a where() to the branch it took and a
materialised 0 to the other one, then multiplies that 0 by the untaken branch's
local derivative: 0 * (0.5 / sqrt(-1)) is NaN in IEEE arithmetic, although the
function is constant near -1. The backward pass (equations whose name stack has
"transpose(") is linear in the cotangent, so a float literal 0 there is a
cotangent that is zero by construction (select_n's untaken case, pad's fill, a
materialised symbolic zero), and so is everything linear computed from it alone:
its contribution is exactly 0 whatever it is multiplied by. Such a "strong" zero
stays 0 when multiplied or divided (as numerator) by NaN or an infinity.

A mask per array (by id, arrays kept alive, like the interpreter's `absorbed`)
marks strong elements. Literal zeros of backward equations start it; it moves
with the values through broadcasts, reshapes, transposes, slices, pads, selects
and conversions; a product (mul, dot_general) is strong where a factor is (every
term of a dot); a quotient where its numerator is; a sum (add, add_any, sub,
reduce_sum) where every term is. Only a case's definition (formula functions,
which never gather) gets strong zeros. Forward-pass zeros are never strong:
0 * log(-1) in the function itself stays NaN, as mathematics says.
"""

from __future__ import annotations

import mpmath
import numpy as np
from jax.extend import core as jcore

# the mask moves exactly like the values (select_n's predicate stays what it is)
MOVES = {"broadcast_in_dim", "reshape", "transpose", "squeeze", "expand_dims", "rev", "slice", "concatenate",
         "pad", "select_n"}
SAME = {"neg", "copy", "copy_p", "convert_element_type", "reduce_precision"}  # elementwise, zero to zero
SUMS = {"add", "add_any", "sub"}
ZERO = mpmath.mpf(0)
PRODUCTS = {"mul", "div", "dot_general"}


def backward(eqn) -> bool:
    return "transpose(" in str(eqn.source_info.name_stack)


class StrongZeros:
    """Masks of strong zero elements, per array, over one interpreter run."""

    def __init__(self):
        self.masks: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # id -> (array, mask), the array kept alive

    def mask(self, var, x: np.ndarray) -> np.ndarray | None:
        """Strong elements of an operand: all of a float literal 0, the recorded mask of a computed array."""
        if isinstance(var, jcore.Literal):
            strong = x.dtype == object and np.all(x == 0)
            return np.ones(np.shape(x), dtype=bool) if strong else None
        entry = self.masks.get(id(x))
        return entry[1] if entry is not None else None

    def after(self, interpreter, eqn, ins: list[np.ndarray], outs: list[np.ndarray]) -> list[np.ndarray]:
        """Record the strong elements of a backward equation's outputs; a product's strong elements become 0."""
        masks = [self.mask(v, x) for v, x in zip(eqn.invars, ins)]
        if all(m is None for m in masks) or not all(x.dtype == object for x in outs):
            return outs
        name = eqn.primitive.name
        full = [m if m is not None else np.zeros(np.shape(x), dtype=bool) for m, x in zip(masks, ins)]
        if name in MOVES:
            moved = [m if x.dtype == object else x for m, x in zip(full, ins)]  # select_n's predicate stays
            mask = interpreter.apply(eqn, moved)[0]
        elif name in SAME:
            mask = full[0]
        elif name in SUMS:
            mask = np.logical_and(*full)
        elif name == "reduce_sum":
            mask = np.all(full[0], axis=tuple(eqn.params["axes"]))
        elif name == "mul":
            mask = np.logical_or(*full)
        elif name == "div":
            mask = full[0]
        elif name == "dot_general":  # strong where no term has two weak factors
            weak = interpreter.p_dot_general(*(~m.astype(bool) * 1 for m in full), **eqn.params)
            mask = np.asarray(weak) == 0
        else:
            return outs
        mask = np.broadcast_to(mask, outs[0].shape)
        if not mask.any():
            return outs
        out = outs[0]
        if name in PRODUCTS and not np.all(out[mask] == 0):
            out = np.array(out)
            out[mask] = ZERO  # 0 * NaN, 0 * inf, 0 / 0: the strong zero wins
        self.masks[id(out)] = (out, mask)
        return [out, *outs[1:]]
