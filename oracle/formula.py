"""The formula language: a Python-expression subset parsed with `ast` into an allowlisted tree.

Nothing here evaluates Python: `parse` accepts only numbers, input names, the
constants pi/e/inf, arithmetic and comparison operators, integer/slice subscripts
and calls of the functions in `FUNCTIONS`. `evaluate` walks the tree with a
backend's op table (name -> callable), so every framework runs its own ops.

An `impl` (a case's library calls in one framework) is parsed by the same parser
with `impl=<framework>`: it may also call the dotted paths `oracle.native` allowlists
for that framework (`Native`), call allowlisted methods or read allowlisted
properties of the distribution such a call constructs (`Method`:
`Normal(m, s).log_prob(x)`), and pass keyword arguments. An integer literal (or a
tuple of them) written directly as an argument is a Python int (`axis=-1`,
`to_event(1)`, `total_count=10`); a keyword's value may also be True, False, None
or a short identifier-like string (`reduction="sum"`); these are `Option` nodes.
Every other number is a tensor of the run's dtype, like a formula literal.
Integer literals are capped at 2**24 in magnitude.
"""

from __future__ import annotations

import ast
import difflib
import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

MAX_LENGTH = 10_000
MAX_EXPONENT = 1000  # a decimal literal's exponent: 1e999999999 would make a huge exact Fraction
MAX_IMPL_INTEGER = 2**24  # integer literals in impl calls (sizes, counts, axes)
MAX_EXPONENT_INTEGER = 2**24  # x ** n: larger n are not exact in float32 (the gradient carries n as a literal)
MAX_OPTION_STRING = 32

# name -> (fewest args, most args, accepts axis=)
FUNCTIONS: dict[str, tuple[int, int, bool]] = {
    **{name: (1, 1, False) for name in (
        "exp", "log", "log1p", "expm1", "sqrt", "square", "abs", "sin", "cos", "tanh",
        "sigmoid", "log_sigmoid", "softplus", "erf", "erfc", "lgamma", "digamma",
        "ndtr", "log_ndtr", "transpose", "diag", "tril", "cholesky", "logdet",
        "i0e", "i1e", "erfinv")},
    **{name: (1, 1, True) for name in ("logsumexp", "sum", "mean")},
    "max": (1, 2, True),  # max(x) reduces, max(a, b) is elementwise
    "min": (1, 2, True),
    "where": (3, 3, False),
    "hypot": (2, 2, False),  # sqrt(a**2 + b**2) without overflow or underflow of the squares
    "matmul": (2, 2, False),
    "solve_triangular": (2, 2, False),  # solve L y = b for lower-triangular L
    # special functions of distributions' CDFs and densities (scipy's argument order)
    **{name: (2, 2, False) for name in ("gammainc", "gammaincc", "xlogy", "xlog1py", "lbeta")},
    "betainc": (3, 3, False),  # betainc(a, b, x): the regularized incomplete beta function I_x(a, b)
    "polygamma": (2, 2, False),  # polygamma(n, x): n is a non-negative integer literal
}
MAX_POLYGAMMA_ORDER = 64
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


@dataclass(frozen=True)
class Option(Node):
    """An argument's literal passed as the Python value (impl only): an int or a tuple of ints; for a keyword
    argument also True, False, None or a short identifier-like string."""

    value: int | bool | str | tuple | None


@dataclass(frozen=True)
class Native(Node):
    """A call of an allowlisted library path (impl only), e.g. tfp.distributions.Normal(loc, scale)."""

    path: str
    args: tuple[Node, ...]
    kwargs: tuple[tuple[str, Node], ...] = ()


@dataclass(frozen=True)
class Method(Node):
    """An allowlisted method call (`called`) or property read on what a Native or Method returned (impl only)."""

    obj: Node
    name: str
    args: tuple[Node, ...] = ()
    kwargs: tuple[tuple[str, Node], ...] = ()
    called: bool = True


def parse(source: str, names: set[str] | frozenset[str], impl: str | None = None) -> Node:
    """Parse `source` into a tree, refusing anything outside the language.

    `impl` names a framework ("tf", "torch", "jax"): parse an impl of that framework,
    which may also call the library paths, methods and keyword arguments that
    `oracle.native` allowlists for it (see the module docstring)."""
    if not isinstance(source, str):
        raise FormulaError("expected an expression (a string)")
    if len(source) > MAX_LENGTH:
        raise FormulaError(f"{'impl' if impl else 'formula'} is longer than {MAX_LENGTH} characters")
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError as e:
        raise FormulaError(f"syntax error: {e.msg}", (e.offset or 1) - 1) from None
    except (RecursionError, MemoryError, ValueError):
        raise FormulaError(f"{'impl' if impl else 'formula'} is too deeply nested or malformed") from None
    parser = _Parser(source.strip(), frozenset(names)) if impl is None else _ImplParser(source.strip(), frozenset(names), impl)
    try:
        return parser.visit(tree.body)
    except RecursionError:
        raise FormulaError(f"{'impl' if impl else 'formula'} is too deeply nested") from None


_ARITHMETIC = {"add": operator.add, "sub": operator.sub, "mul": operator.mul, "div": operator.truediv,
               "pow": operator.pow}


def _constant_float(node: Node, memo: dict[int, float | None]) -> float | None:
    """The float value of a sub-expression of constants alone (None if it involves an input or a call; NaN if
    float arithmetic cannot give it a real value). `memo` (by node id) keeps a long expression linear."""
    key = id(node)
    if key in memo:
        return memo[key]
    value = None
    match node:
        case Const(value=v):
            try:
                value = float(v) if isinstance(v, Fraction) else {"pi": math.pi, "e": math.e, "inf": math.inf}[v]
            except OverflowError:
                value = math.inf
        case Unary(operand=operand):
            v = _constant_float(operand, memo)
            value = None if v is None else -v
        case Binary(op=op, left=left, right=right) if op in _ARITHMETIC:
            a, b = _constant_float(left, memo), _constant_float(right, memo)
            if a is not None and b is not None:
                try:
                    value = _ARITHMETIC[op](a, b)
                except (ArithmeticError, ValueError):
                    value = math.nan
                if not isinstance(value, float):  # a negative number to a fractional power is complex
                    value = math.nan
    memo[key] = value
    return value


def known_functions() -> str:
    return ", ".join(sorted(FUNCTIONS))


def did_you_mean(name: str, known) -> str:
    """"did you mean x?" for the names in `known` closest to a misspelt `name` (empty when none is close):
    `logsigmoid` is one underscore from `log_sigmoid`, which a list of 30 functions hides."""
    close = difflib.get_close_matches(name, sorted(known), n=3, cutoff=0.7)
    return f"did you mean {' or '.join(close)}? " if close else ""


class _Parser:
    kind, language = "formula", "the formula language"

    def __init__(self, source: str, names: frozenset[str]):
        self.source = source
        self.names = names
        self.constants: dict[int, float | None] = {}  # constant-only sub-expressions' float values, by node id

    def fail(self, node: ast.AST, message: str):
        raise FormulaError(message, getattr(node, "col_offset", None))

    def text(self, node: ast.AST) -> str:
        return ast.get_source_segment(self.source, node) or ""

    def visit(self, node: ast.AST) -> Node:
        method = getattr(self, "visit_" + type(node).__name__, None)
        if method is None:
            what = type(node).__name__
            self.fail(node, f"'{self.text(node) or what}' is not allowed in {'an' if self.kind == 'impl' else 'a'} "
                            f"{self.kind} ({what} is outside {self.language})")
        return method(node)

    def visit_Constant(self, node: ast.Constant) -> Node:
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            self.fail(node, f"only numbers are allowed as literals, got {node.value!r}")
        return Const(self.text(node), self.number(node))

    def number(self, node: ast.Constant) -> Fraction:
        if type(node.value) is int:  # 0x10, 0b101 and 1_000 are ints too
            return Fraction(node.value)
        try:
            exact = Decimal(self.text(node).replace("_", ""))
        except ArithmeticError:
            self.fail(node, f"number '{self.text(node)}' is not a decimal literal")
        if not exact.is_finite() or abs(exact.adjusted()) > MAX_EXPONENT:
            self.fail(node, f"number '{self.text(node)}' is out of range (decimal exponent beyond {MAX_EXPONENT})")
        return Fraction(exact)

    def visit_Name(self, node: ast.Name) -> Node:
        if node.id in self.names:
            return Name(node.id, node.id)
        if node.id in CONSTANTS:
            return Const(node.id, node.id)
        if node.id in FUNCTIONS:
            self.fail(node, f"'{node.id}' is a function: call it, e.g. {node.id}(x)")
        known = ", ".join(sorted(self.names)) or "none"
        self.fail(node, f"unknown name '{node.id}' ({did_you_mean(node.id, self.names)}inputs: {known}; "
                        f"constants: {', '.join(CONSTANTS)})")

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
        left, right = self.visit(node.left), self.visit(node.right)
        if op == "pow" and isinstance(right, Const) and isinstance(right.value, Fraction) \
                and right.value.denominator == 1 and abs(right.value) > MAX_EXPONENT_INTEGER:
            self.fail(node.right, f"integer exponent in '{self.text(node)}' is too large (at most 2**24 = "
                                  f"{MAX_EXPONENT_INTEGER} in magnitude)")
        tree = Binary(self.text(node), op, left, right)
        self.check_constant(node, tree)
        return tree

    def check_constant(self, node: ast.AST, tree: Node) -> None:
        """Refuse arithmetic on constants alone that has no real value in float arithmetic (`9 ** 9 ** 9`,
        `1 / 0`): the frameworks would compute inf or nan from it, and the reference's tracer fails on it."""
        value = _constant_float(tree, self.constants)
        if value is not None and value != value:
            self.fail(node, f"the constant expression '{self.text(node)}' has no real value in floating point (it is "
                            "too large, divides by zero, is NaN or complex): write inf, or the number itself")

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
            self.fail(node, f"unknown function '{name}'; {did_you_mean(name, FUNCTIONS)}known functions: {known_functions()}")
        fewest, most, takes_axis = FUNCTIONS[name]
        if any(isinstance(a, ast.Starred) for a in node.args):
            self.fail(node, f"*args is not allowed in '{self.text(node)}'")
        if any(kw.arg is None for kw in node.keywords):
            self.fail(node, f"**kwargs is not allowed in '{self.text(node)}'")
        if not fewest <= len(node.args) <= most:
            count = str(fewest) if fewest == most else f"{fewest} to {most}"
            self.fail(node, f"{name}() takes {count} argument{'' if most == 1 else 's'}, got {len(node.args)}")
        axis = None
        for kw in node.keywords:
            if kw.arg != "axis" or not takes_axis or len(node.args) != 1:
                self.fail(node, f"{name}() takes no keyword argument '{kw.arg}'")
            axis = self.integer(kw.value)
        if name == "polygamma":
            self.order(node.args[0])
        return Call(self.text(node), name, tuple(self.visit(a) for a in node.args), axis)

    def order(self, node: ast.AST) -> None:
        """polygamma's n: every framework takes it as an integer, so it is written as one (0 <= n <= 64)."""
        if not (isinstance(node, ast.Constant) and type(node.value) is int and 0 <= node.value <= MAX_POLYGAMMA_ORDER):
            self.fail(node, f"polygamma(n, x): n must be an integer literal from 0 to {MAX_POLYGAMMA_ORDER}, "
                            f"got '{self.text(node)}'")

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


_REFUSED_KEYWORDS = {"out": "it writes into a tensor", "inplace": "it overwrites its input"}


def _chain(node: ast.AST) -> list[str] | None:
    """['tfp', 'distributions', 'Normal'] for a dotted name; None when the chain does not start at a plain name."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return [node.id, *reversed(parts)]


class _ImplParser(_Parser):
    """The formula language plus allowlisted library calls, methods and keyword arguments of one framework."""

    kind, language = "impl", "the impl language"

    def __init__(self, source: str, names: frozenset[str], framework: str):
        from oracle import native  # data only: imports no framework

        if framework not in native.PATHS:
            raise FormulaError(f"unknown framework '{framework}' (known: {', '.join(native.PATHS)})")
        super().__init__(source, names)
        self.framework = framework
        self.native = native

    def visit_Constant(self, node: ast.Constant) -> Node:
        if isinstance(node.value, str):
            self.fail(node, f"string literal {node.value!r} is allowed only as a keyword argument's value "
                            "(e.g. reduction=\"sum\")")
        if node.value is None or isinstance(node.value, bool):
            self.fail(node, f"{node.value!r} is allowed only as a keyword argument's value")
        const = super().visit_Constant(node)
        if type(node.value) is int:
            self.check_integer(node, node.value)
        return const

    def check_integer(self, node: ast.AST, value: int) -> None:
        if abs(value) > MAX_IMPL_INTEGER:
            self.fail(node, f"integer {value if abs(value) < 10**30 else '...'} is too large for an impl "
                            f"(at most 2**24 = {MAX_IMPL_INTEGER} in magnitude)")

    def integer(self, node: ast.AST) -> int:
        value = super().integer(node)
        self.check_integer(node, value)
        return value

    def visit_Name(self, node: ast.Name) -> Node:
        if node.id not in self.names and node.id in self.native.ROOTS:
            self.fail(node, f"'{node.id}' is a library: call an allowlisted function of it, e.g. "
                            f"{self.example(node.id)}")
        return super().visit_Name(node)

    def example(self, root: str) -> str:
        return {"tf": "tf.math.log1p(x)", "tfp": "tfp.distributions.Normal(loc, scale).log_prob(x)",
                "torch": "torch.special.log_ndtr(x)", "jax": "jax.scipy.stats.norm.logpdf(x, loc, scale)",
                "numpyro": "numpyro.distributions.Normal(loc, scale).log_prob(x)",
                "optax": "optax.sigmoid_binary_cross_entropy(logits, labels)"}[root]

    def refuse_private(self, node: ast.Attribute) -> None:
        while isinstance(node, ast.Attribute):
            if node.attr.startswith("_"):
                self.fail(node, f"attribute '{node.attr}' in '{self.text(node)}': attributes starting with '_' "
                                "are never allowed")
            node = node.value

    def path(self, node: ast.Attribute, chain: list[str], called: bool) -> str:
        """The allowlisted path a dotted name is, or a refusal that says what is allowed."""
        path = ".".join(chain)
        if chain[0] in self.names:
            self.fail(node, f"'{path}': attributes of inputs are not allowed")
        if chain[0] not in self.native.ROOTS and chain[0] not in FUNCTIONS:
            known = ", ".join(r for r in self.native.FRAMEWORK_ROOTS[self.framework])
            self.fail(node, f"unknown name '{chain[0]}' in '{path}' (the {self.framework} impl may call paths "
                            f"under {known})")
        try:
            self.native.check_path(self.framework, path)
        except self.native.NativeError as e:
            self.fail(node, str(e))
        if not called:
            self.fail(node, f"'{path}' is a function: call it, e.g. {path}(x)")
        return path

    def visit_Attribute(self, node: ast.Attribute) -> Node:
        """A property of a constructed object (torch's Normal(...).mean); a bare path is refused."""
        self.refuse_private(node)
        chain = _chain(node)
        if chain is not None:
            self.path(node, chain, called=False)
        obj = self.object(node.value, node.attr)
        self.check_member(node, node.attr, called=False)
        return Method(self.text(node), obj, node.attr, called=False)

    def object(self, node: ast.AST, member: str) -> Node:
        obj = self.visit(node)
        if not _constructs(obj):
            example = {"tf": "tfp.distributions.Normal(loc, scale).log_prob(x)",
                       "torch": "torch.distributions.Normal(loc, scale).log_prob(x)",
                       "jax": "numpyro.distributions.Normal(loc, scale).log_prob(x)"}[self.framework]
            self.fail(node, f"'.{member}' can be used only on an object an allowlisted constructor returns (a "
                            f"distribution), e.g. {example}; tensor methods are not allowed: call a function "
                            f"instead, e.g. {member}(...) or {self.native.FRAMEWORK_ROOTS[self.framework][0]}"
                            f".{member}(...) where allowlisted")
        return obj

    def check_member(self, node: ast.AST, name: str, called: bool) -> None:
        try:
            self.native.check_method(self.framework, name, called)
        except self.native.NativeError as e:
            self.fail(node, str(e))

    def visit_Call(self, node: ast.Call) -> Node:
        if isinstance(node.func, ast.Name):
            if node.func.id in self.native.ROOTS and node.func.id not in self.names:
                self.fail(node, f"'{node.func.id}' is a library, not a function: call an allowlisted function of it, "
                                f"e.g. {self.example(node.func.id)}")
            return super().visit_Call(node)
        if not isinstance(node.func, ast.Attribute):
            self.fail(node, f"only formula functions, allowlisted library paths and methods can be called, "
                            f"not '{self.text(node.func)}'")
        self.refuse_private(node.func)
        if any(isinstance(a, ast.Starred) for a in node.args):
            self.fail(node, f"*args is not allowed in '{self.text(node)}'")
        chain = _chain(node.func)
        if chain is not None:
            path = self.path(node.func, chain, called=True)
            try:
                self.native.check_positional(path, len(node.args))
            except self.native.NativeError as e:
                self.fail(node, str(e))
            args, kwargs = self.arguments(node)
            for argument in (*args, *(value for _, value in kwargs)):
                if isinstance(argument, Option):  # its int, or a tuple's ints
                    for number in argument.value if isinstance(argument.value, tuple) else (argument.value,):
                        if type(number) is int:
                            try:
                                self.native.check_integer(path, number)
                            except self.native.NativeError as e:
                                self.fail(node, str(e))
            return Native(self.text(node), path, args, kwargs)
        obj = self.object(node.func.value, node.func.attr)
        self.check_member(node.func, node.func.attr, called=True)
        args, kwargs = self.arguments(node)
        return Method(self.text(node), obj, node.func.attr, args, kwargs)

    def arguments(self, node: ast.Call) -> tuple[tuple[Node, ...], tuple[tuple[str, Node], ...]]:
        args = tuple(self.option(a, keyword=False) for a in node.args)
        kwargs = []
        for kw in node.keywords:
            if kw.arg is None:
                self.fail(kw.value, f"**kwargs is not allowed in '{self.text(node)}'")
            if kw.arg.startswith("_"):
                self.fail(kw.value, f"keyword argument '{kw.arg}': names starting with '_' are not allowed")
            if kw.arg in _REFUSED_KEYWORDS:
                self.fail(kw.value, f"keyword argument '{kw.arg}' is not allowed ({_REFUSED_KEYWORDS[kw.arg]})")
            kwargs.append((kw.arg, self.option(kw.value)))
        return args, tuple(kwargs)

    def option(self, node: ast.AST, keyword: bool = True) -> Node:
        """An argument: an expression, or a literal passed as the Python value.

        An integer literal (or a tuple of them) written as an argument is a Python int
        (an axis, a count); a keyword's value may also be True, False, None or a short
        identifier-like string. Every other number is a tensor of the run's dtype."""
        text = self.text(node)
        if isinstance(node, ast.Constant):
            value = node.value
            if keyword and (value is None or isinstance(value, bool)):
                return Option(text, value)
            if keyword and isinstance(value, str):
                if not value.isidentifier() or len(value) > MAX_OPTION_STRING:
                    self.fail(node, f"string {value!r}: a keyword argument's string must be a short identifier-like "
                                    f"word such as \"sum\" or \"none\" (at most {MAX_OPTION_STRING} characters)")
                return Option(text, value)
            if type(value) is int:
                self.check_integer(node, value)
                return Option(text, value)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant) \
                and type(node.operand.value) is int:
            self.check_integer(node, node.operand.value)
            return Option(text, -node.operand.value)
        if isinstance(node, ast.Tuple):
            return Option(text, tuple(self.integer(e) for e in node.elts))
        return self.visit(node)


_RETURNS_OBJECT = {"to_event"}  # methods that return a distribution


def _constructs(node: Node) -> bool:
    """Does this call return an object (a distribution) rather than a tensor? Constructors are capitalized."""
    if isinstance(node, Native):
        return node.path.rsplit(".", 1)[-1][:1].isupper()
    return isinstance(node, Method) and node.called and node.name in _RETURNS_OBJECT


def callee(node: Node) -> str | None:
    """The dotted callee chain of the outermost library call (`tfp.distributions.Normal.log_prob`), None if none."""
    queue = [node]
    while queue:
        current = queue.pop(0)
        if isinstance(current, (Native, Method)):
            return _callee_chain(current)
        queue.extend(children(current))
    return None


def _callee_chain(node: Node) -> str:
    if isinstance(node, Method):
        return f"{_callee_chain(node.obj)}.{node.name}"
    if isinstance(node, Native):
        return node.path
    return "impl"


def evaluate(node: Node, env: Mapping[str, Any], ops: Mapping[str, Callable]) -> Any:
    """Evaluate a parsed formula with a backend's op table.

    `ops` maps every name in FUNCTIONS and OPERATORS, plus "maximum"/"minimum"
    (two-argument max/min) and "constant" (turns a `Const.value` into a tensor).
    An optional "scope" entry, a context manager taking the node, wraps every
    operation (the shadow execution uses it to map jaxpr equations to sub-expressions).
    Impl trees also need "native" (path -> the library callable) and "method"
    (object, name, called -> its allowlisted method or property).
    """
    scope = ops.get("scope")
    if scope is not None and not isinstance(node, (Const, Name, Option)):
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
            indexed = evaluate(value, env, ops)
            if isinstance(indexed, tuple) and len(key) == 1:  # a library call's tuple result: slogdet(a)[1]
                return indexed[key[0]]
            return ops["getitem"](indexed, key)
        case Option(value=value):
            return value
        case Native(path=path, args=args, kwargs=kwargs):
            function = ops["native"](path)
            return function(*[evaluate(a, env, ops) for a in args], **{k: evaluate(v, env, ops) for k, v in kwargs})
        case Method(obj=obj, name=name, args=args, kwargs=kwargs, called=called):
            member = ops["method"](evaluate(obj, env, ops), name, called)
            if not called:
                return member
            return member(*[evaluate(a, env, ops) for a in args], **{k: evaluate(v, env, ops) for k, v in kwargs})
        case Call(func=func, args=args, axis=axis):
            values = [evaluate(a, env, ops) for a in args]
            if func in ("max", "min") and len(values) == 2:
                return ops[{"max": "maximum", "min": "minimum"}[func]](*values)
            return ops[func](*values, axis=axis) if FUNCTIONS[func][2] else ops[func](*values)
    raise TypeError(f"not a formula node: {node!r}")


def children(node: Node) -> list[Node]:
    """A node's operands, in source order."""
    out = [getattr(node, name, None) for name in ("obj", "operand", "left", "right", "value")]
    out = [child for child in out if isinstance(child, Node)]
    out += list(getattr(node, "args", ()))
    out += [value for _, value in getattr(node, "kwargs", ())]
    return out


def walk(node: Node):
    """Every node of the tree, parents first."""
    yield node
    for child in children(node):
        yield from walk(child)
