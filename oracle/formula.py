"""The formula language: a Python-expression subset parsed with `ast` into an allowlisted tree.

Nothing here evaluates Python: `parse` accepts only numbers, input names, the
constants pi/e/inf, arithmetic and comparison operators, integer/slice subscripts
and calls of the functions in `FUNCTIONS`. `evaluate` walks the tree with a
backend's op table (name -> callable), so every framework runs its own ops.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

MAX_LENGTH = 10_000

# name -> (fewest args, most args, accepts axis=)
FUNCTIONS: dict[str, tuple[int, int, bool]] = {
    **{name: (1, 1, False) for name in (
        "exp", "log", "log1p", "expm1", "sqrt", "square", "abs", "sin", "cos", "tanh",
        "sigmoid", "log_sigmoid", "softplus", "erf", "erfc", "lgamma", "digamma",
        "ndtr", "log_ndtr", "transpose", "diag", "tril", "cholesky", "logdet")},
    **{name: (1, 1, True) for name in ("logsumexp", "sum", "mean")},
    "max": (1, 2, True),  # max(x) reduces, max(a, b) is elementwise
    "min": (1, 2, True),
    "where": (3, 3, False),
    "hypot": (2, 2, False),  # sqrt(a**2 + b**2) without overflow or underflow of the squares
    "matmul": (2, 2, False),
    "solve_triangular": (2, 2, False),  # solve L y = b for lower-triangular L
}
CONSTANTS = ("pi", "e", "inf")

_BINARY = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "div", ast.Pow: "pow", ast.MatMult: "matmul"}
_COMPARE = {ast.Lt: "lt", ast.LtE: "le", ast.Gt: "gt", ast.GtE: "ge", ast.Eq: "eq", ast.NotEq: "ne"}

# Operators every backend shares; backends override entries where their tensors differ.
OPERATORS: dict[str, Callable] = {
    "add": operator.add, "sub": operator.sub, "mul": operator.mul, "div": operator.truediv,
    "pow": operator.pow, "neg": operator.neg, "getitem": operator.getitem,
    "lt": operator.lt, "le": operator.le, "gt": operator.gt, "ge": operator.ge,
    "eq": operator.eq, "ne": operator.ne,
}


class FormulaError(ValueError):
    """A formula outside the language; `col` is the 0-based column where YAML-level reporting can point."""

    def __init__(self, message: str, col: int | None = None):
        super().__init__(message)
        self.col = col


@dataclass(frozen=True)
class Node:
    text: str  # the source of this sub-expression, for explanations


@dataclass(frozen=True)
class Const(Node):
    value: Fraction | str  # an exact rational, or "pi", "e", "inf"


@dataclass(frozen=True)
class Name(Node):
    name: str


@dataclass(frozen=True)
class Unary(Node):
    operand: Node  # negation; unary plus is dropped at parse time


@dataclass(frozen=True)
class Binary(Node):
    op: str
    left: Node
    right: Node


@dataclass(frozen=True)
class Call(Node):
    func: str
    args: tuple[Node, ...]
    axis: int | None = None


@dataclass(frozen=True)
class Index(Node):
    value: Node
    key: tuple  # ints and slices of ints


def parse(source: str, names: set[str] | frozenset[str]) -> Node:
    """Parse `source` into a tree, refusing anything outside the language."""
    if len(source) > MAX_LENGTH:
        raise FormulaError(f"formula is longer than {MAX_LENGTH} characters")
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError as e:
        raise FormulaError(f"syntax error: {e.msg}", (e.offset or 1) - 1) from None
    except (RecursionError, MemoryError, ValueError):
        raise FormulaError("formula is too deeply nested or malformed") from None
    try:
        return _Parser(source.strip(), frozenset(names)).visit(tree.body)
    except RecursionError:
        raise FormulaError("formula is too deeply nested") from None


def known_functions() -> str:
    return ", ".join(sorted(FUNCTIONS))


class _Parser:
    def __init__(self, source: str, names: frozenset[str]):
        self.source = source
        self.names = names

    def fail(self, node: ast.AST, message: str):
        raise FormulaError(message, getattr(node, "col_offset", None))

    def text(self, node: ast.AST) -> str:
        return ast.get_source_segment(self.source, node) or ""

    def visit(self, node: ast.AST) -> Node:
        method = getattr(self, "visit_" + type(node).__name__, None)
        if method is None:
            what = type(node).__name__
            self.fail(node, f"'{self.text(node) or what}' is not allowed in a formula ({what} is outside the formula language)")
        return method(node)

    def visit_Constant(self, node: ast.Constant) -> Node:
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            self.fail(node, f"only numbers are allowed as literals, got {node.value!r}")
        return Const(self.text(node), Fraction(Decimal(self.text(node))))

    def visit_Name(self, node: ast.Name) -> Node:
        if node.id in self.names:
            return Name(node.id, node.id)
        if node.id in CONSTANTS:
            return Const(node.id, node.id)
        if node.id in FUNCTIONS:
            self.fail(node, f"'{node.id}' is a function: call it, e.g. {node.id}(x)")
        known = ", ".join(sorted(self.names)) or "none"
        self.fail(node, f"unknown name '{node.id}' (inputs: {known}; constants: {', '.join(CONSTANTS)})")

    def visit_UnaryOp(self, node: ast.UnaryOp) -> Node:
        if isinstance(node.op, ast.UAdd):
            return self.visit(node.operand)
        if not isinstance(node.op, ast.USub):
            self.fail(node, f"operator in '{self.text(node)}' is not allowed")
        operand = self.visit(node.operand)
        if isinstance(operand, Const) and isinstance(operand.value, Fraction):
            return Const(self.text(node), -operand.value)
        return Unary(self.text(node), operand)

    def visit_BinOp(self, node: ast.BinOp) -> Node:
        op = _BINARY.get(type(node.op))
        if op is None:
            self.fail(node, f"operator in '{self.text(node)}' is not allowed (use + - * / ** @)")
        return Binary(self.text(node), op, self.visit(node.left), self.visit(node.right))

    def visit_Compare(self, node: ast.Compare) -> Node:
        if len(node.ops) != 1:
            self.fail(node, f"chained comparison '{self.text(node)}' is not allowed")
        op = _COMPARE.get(type(node.ops[0]))
        if op is None:
            self.fail(node, f"comparison in '{self.text(node)}' is not allowed")
        return Binary(self.text(node), op, self.visit(node.left), self.visit(node.comparators[0]))

    def visit_Call(self, node: ast.Call) -> Node:
        if not isinstance(node.func, ast.Name):
            self.fail(node, f"only plain function names can be called, not '{self.text(node.func)}'")
        name = node.func.id
        if name not in FUNCTIONS:
            self.fail(node, f"unknown function '{name}'; known functions: {known_functions()}")
        fewest, most, takes_axis = FUNCTIONS[name]
        if any(isinstance(a, ast.Starred) for a in node.args):
            self.fail(node, f"*args is not allowed in '{self.text(node)}'")
        if not fewest <= len(node.args) <= most:
            count = str(fewest) if fewest == most else f"{fewest} to {most}"
            self.fail(node, f"{name}() takes {count} argument{'' if most == 1 else 's'}, got {len(node.args)}")
        axis = None
        for kw in node.keywords:
            if kw.arg != "axis" or not takes_axis or len(node.args) != 1:
                self.fail(node, f"{name}() takes no keyword argument '{kw.arg}'")
            axis = self.integer(kw.value)
        return Call(self.text(node), name, tuple(self.visit(a) for a in node.args), axis)

    def visit_Subscript(self, node: ast.Subscript) -> Node:
        parts = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        key = tuple(self.index(p) for p in parts)
        return Index(self.text(node), self.visit(node.value), key)

    def index(self, node: ast.AST):
        if isinstance(node, ast.Slice):
            return slice(*(None if part is None else self.integer(part) for part in (node.lower, node.upper, node.step)))
        return self.integer(node)

    def integer(self, node: ast.AST) -> int:
        sign = 1
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            sign, node = -1, node.operand
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return sign * node.value
        self.fail(node, f"expected an integer literal, got '{self.text(node)}'")


def evaluate(node: Node, env: Mapping[str, Any], ops: Mapping[str, Callable]) -> Any:
    """Evaluate a parsed formula with a backend's op table.

    `ops` maps every name in FUNCTIONS and OPERATORS, plus "maximum"/"minimum"
    (two-argument max/min) and "constant" (turns a `Const.value` into a tensor).
    An optional "scope" entry, a context manager taking the node, wraps every
    operation (the shadow execution uses it to map jaxpr equations to sub-expressions).
    """
    scope = ops.get("scope")
    if scope is not None and not isinstance(node, (Const, Name)):
        with scope(node):
            return _evaluate(node, env, ops)
    return _evaluate(node, env, ops)


def _evaluate(node: Node, env: Mapping[str, Any], ops: Mapping[str, Callable]) -> Any:
    match node:
        case Const(value=value):
            return ops["constant"](value)
        case Name(name=name):
            return env[name]
        case Unary(operand=operand):
            return ops["neg"](evaluate(operand, env, ops))
        case Binary(op="pow", left=left, right=Const(value=Fraction() as p)) if p.denominator == 1:
            return ops["pow"](evaluate(left, env, ops), int(p))  # x ** 2 stays an integer power
        case Binary(op=op, left=left, right=right):
            return ops[op](evaluate(left, env, ops), evaluate(right, env, ops))
        case Index(value=value, key=key):
            return ops["getitem"](evaluate(value, env, ops), key)
        case Call(func=func, args=args, axis=axis):
            values = [evaluate(a, env, ops) for a in args]
            if func in ("max", "min") and len(values) == 2:
                return ops[{"max": "maximum", "min": "minimum"}[func]](*values)
            return ops[func](*values, axis=axis) if FUNCTIONS[func][2] else ops[func](*values)
    raise TypeError(f"not a formula node: {node!r}")


def walk(node: Node):
    """Every node of the tree, parents first."""
    yield node
    for child in (getattr(node, "operand", None), getattr(node, "left", None), getattr(node, "right", None), getattr(node, "value", None)):
        if isinstance(child, Node):
            yield from walk(child)
    for arg in getattr(node, "args", ()):
        yield from walk(arg)
