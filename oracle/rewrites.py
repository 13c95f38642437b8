"""Stable rewrites of known unstable patterns in a formula.

`suggest` walks the parsed formula (innermost sub-expressions first) and, where a
rule matches, proposes the stable replacement: log(1 + x) -> log1p(x),
log(sigmoid(x)) -> log_sigmoid(x), sqrt(x**2 + y**2) -> hypot(x, y), ...

Each rule is a small structural matcher on the tree of `oracle.formula`. Addition
and multiplication match in either order (1 + x and x + 1), squares match as
x ** 2, x * x and square(x), and a sigmoid matches as sigmoid(x), 1 / (1 + exp(-x))
or exp(x) / (1 + exp(x)). Sub-expressions are "the same" when their trees are equal,
whatever their spacing. At each node the first (most specific) rule that matches
wins, so log(1 + exp(x)) suggests softplus(x), not log1p(exp(x)).

Replacement text is printed from the tree with the parentheses operator precedence
needs; untouched sub-expressions keep their source text. Every suggested formula
re-parses with `formula.parse` and equals the original as a mathematical function
where the original is defined (exp(log(x)) -> x also extends it to x <= 0).

`fixes` names the failure classes (the verdicts of `oracle.classify`) a rule
addresses: "overflow", "underflow" or "cancellation" (which also covers an
operand absorbed by a rounding and an error amplified by exp, as in exp(log(x))).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

from oracle import formula
from oracle.formula import Binary, Call, Const, Index, Name, Node, Unary

OVERFLOW, UNDERFLOW, CANCELLATION = "overflow", "underflow", "cancellation"


@dataclass(frozen=True)
class Rewrite:
    """One suggested rewrite of one matched sub-expression."""

    rule: str  # short name, e.g. "log(1 + x) -> log1p(x)"
    before: str  # the matched sub-expression's text
    after: str  # its stable replacement text
    formula: str  # the whole formula with the replacement applied (every identical occurrence)
    fixes: tuple[str, ...]  # failure classes the rule addresses: "overflow", "underflow", "cancellation"


def suggest(source: str | Node, names: set[str] | frozenset[str] = frozenset()) -> list[Rewrite]:
    """Stable rewrites for the unstable patterns in a formula, innermost matches first.

    `source` is formula text (parsed with `names` as the inputs) or an already parsed
    tree. One Rewrite per distinct matched sub-expression; its `formula` replaces all
    occurrences of that sub-expression."""
    tree = formula.parse(source, names) if isinstance(source, str) else source
    out: list[Rewrite] = []
    seen: set = set()
    for node in _post_order(tree):
        key = _structure(node)
        if key in seen:
            continue
        for rule in RULES:
            found = rule(node)
            if found is not None:
                seen.add(key)
                name, after, fixes = found
                whole = _substitute(tree, key, after)
                out.append(Rewrite(name, node.text, after.text, whole.text, fixes))
                break
    return out


# ------------------------------------------------------------------ the tree as text

_PRECEDENCE = {"lt": 1, "le": 1, "gt": 1, "ge": 1, "eq": 1, "ne": 1, "add": 2, "sub": 2,
               "mul": 3, "div": 3, "matmul": 3, "pow": 5}
_SYMBOL = {"add": "+", "sub": "-", "mul": "*", "div": "/", "pow": "**", "matmul": "@",
           "lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "==", "ne": "!="}
_ATOM = 6
_UNARY = 4


def _precedence(node: Node) -> int:
    if isinstance(node, Binary):
        return _PRECEDENCE[node.op]
    if isinstance(node, Unary) or (isinstance(node, Const) and node.text.lstrip().startswith("-")):
        return _UNARY
    return _ATOM


def _wrap(node: Node, at_least: int) -> str:
    """The node's text, parenthesized when it binds less tightly than `at_least` (or spans lines)."""
    text = node.text.strip()
    return text if _precedence(node) >= at_least and "\n" not in text else f"({text})"


def binary(op: str, left: Node, right: Node) -> Binary:
    p = _PRECEDENCE[op]
    if op == "pow":  # right-associative; -x ** 2 is -(x ** 2), so a negative base needs parentheses
        lt, rt = _wrap(left, _ATOM), _wrap(right, _UNARY)
    elif p == 1:
        lt, rt = _wrap(left, 2), _wrap(right, 2)
    else:
        lt, rt = _wrap(left, p), _wrap(right, p + 1)
    return Binary(f"{lt} {_SYMBOL[op]} {rt}", op, left, right)


def call(func: str, *args: Node, axis: int | None = None) -> Call:
    parts = [a.text.strip() for a in args] + ([] if axis is None else [f"axis={axis}"])
    return Call(f"{func}({', '.join(parts)})", func, tuple(args), axis)


def const(value: int | Fraction) -> Const:
    return Const(str(value), Fraction(value))


def negate(node: Node) -> Node:
    """-node, simplified: -(-x) is x and a negative literal folds."""
    if isinstance(node, Unary):
        return node.operand
    if isinstance(node, Const) and isinstance(node.value, Fraction):
        text = node.text.strip()
        return Const(text[1:].strip() if text.startswith("-") else "-" + text, -node.value)
    return Unary("-" + _wrap(node, _UNARY + 1), node)


def _key_text(key: tuple) -> str:
    def part(k):
        if isinstance(k, slice):
            text = ":".join("" if v is None else str(v) for v in (k.start, k.stop))
            return text + ("" if k.step is None else f":{k.step}")
        return str(k)
    return ", ".join(part(k) for k in key)


def _rebuild(node: Node, children: list[Node]) -> Node:
    match node:
        case Unary():
            return Unary("-" + _wrap(children[0], _UNARY + 1), children[0])
        case Binary(op=op):
            return binary(op, *children)
        case Call(func=func, axis=axis):
            return call(func, *children, axis=axis)
        case Index(key=key):
            return Index(f"{_wrap(children[0], _ATOM)}[{_key_text(key)}]", children[0], key)
    return node


def _post_order(node: Node):
    for child in formula.children(node):
        yield from _post_order(child)
    yield node


def _structure(node: Node):
    """The structure of a tree without its source text: x*x and x * x are the same."""
    match node:
        case Const(value=value):
            return ("const", value)
        case Name(name=name):
            return ("name", name)
        case Index(key=key):
            return ("index", _structure(node.value), repr(key))
        case Call(func=func, axis=axis):
            return ("call", func, axis, tuple(_structure(a) for a in node.args))
        case Binary(op=op):
            return ("binary", op, _structure(node.left), _structure(node.right))
        case Unary():
            return ("neg", _structure(node.operand))
    raise TypeError(f"not a formula node: {node!r}")


def same(a: Node, b: Node) -> bool:
    return _structure(a) == _structure(b)


def _substitute(node: Node, key, replacement: Node) -> Node:
    if _structure(node) == key:
        return replacement
    children = formula.children(node)
    new = [_substitute(c, key, replacement) for c in children]
    if all(n is c for n, c in zip(new, children)):
        return node
    return _rebuild(node, new)


# ------------------------------------------------------------------ small predicates

def is_const(node: Node, value) -> bool:
    return isinstance(node, Const) and isinstance(node.value, Fraction) and node.value == value


def func_arg(node: Node, func: str) -> Node | None:
    """x when node is func(x) (one argument, no axis)."""
    if isinstance(node, Call) and node.func == func and len(node.args) == 1 and node.axis is None:
        return node.args[0]
    return None


def inside(node: Node | None, *funcs: str) -> Node | None:
    """x when node is funcs[0](funcs[1](...(x))), e.g. inside(n, "log", "exp") for log(exp(x))."""
    for func in funcs:
        node = None if node is None else func_arg(node, func)
    return node


def either(node: Node, op: str, pick: Callable[[Node, Node], object]):
    """pick(a, b) for node = a op b, then pick(b, a): + and * commute."""
    if not isinstance(node, Binary) or node.op != op:
        return None
    found = pick(node.left, node.right)
    return found if found is not None else pick(node.right, node.left)


def one_plus(node: Node | None) -> Node | None:
    """x when node is 1 + x or x + 1."""
    return None if node is None else either(node, "add", lambda a, b: b if is_const(a, 1) else None)


def one_minus(node: Node | None) -> Node | None:
    """x when node is 1 - x."""
    if isinstance(node, Binary) and node.op == "sub" and is_const(node.left, 1):
        return node.right
    return None


def square_of(node: Node) -> Node | None:
    """x when node is x ** 2, x * x or square(x)."""
    if isinstance(node, Binary) and node.op == "pow" and is_const(node.right, 2):
        return node.left
    if isinstance(node, Binary) and node.op == "mul" and same(node.left, node.right):
        return node.left
    return func_arg(node, "square")


def sigmoid_of(node: Node) -> tuple[Node, str, tuple[str, ...]] | None:
    """(x, how it is written, what the writing adds to fix) when node computes sigmoid(x)."""
    if (x := func_arg(node, "sigmoid")) is not None:
        return x, "sigmoid(x)", ()
    if isinstance(node, Binary) and node.op == "div":
        v = inside(one_plus(node.right), "exp")
        if v is not None and is_const(node.left, 1):
            return negate(v), "1 / (1 + exp(-x))", (OVERFLOW,)  # exp(-x) overflows for x << 0
        u = func_arg(node.left, "exp")
        if u is not None and v is not None and same(u, v):
            return u, "exp(x) / (1 + exp(x))", (OVERFLOW,)  # inf / inf for x >> 0
    return None


def log_sigmoid_of(node: Node):
    """(x, form, fixes) when node is log(sigmoid(x)) in any writing of the sigmoid."""
    inner = func_arg(node, "log")
    return None if inner is None else sigmoid_of(inner)


def log_one_minus_sigmoid_of(node: Node):
    """(x, form, fixes) when node is log(1 - sigmoid(x))."""
    inner = one_minus(func_arg(node, "log"))
    return None if inner is None else sigmoid_of(inner)


def _fixes(*groups) -> tuple[str, ...]:
    order = (OVERFLOW, UNDERFLOW, CANCELLATION)
    wanted = {f for group in groups for f in group}
    return tuple(f for f in order if f in wanted)


# ------------------------------------------------------------------ the rules
# Each takes a node and returns (rule name, replacement node, fixes) or None.

Match = tuple[str, Node, tuple[str, ...]]


def log_of_exp(node: Node) -> Match | None:
    x = inside(node, "log", "exp")
    if x is not None:
        return "log(exp(x)) -> x", x, (OVERFLOW, UNDERFLOW)
    return None


def log_sum_exp(node: Node) -> Match | None:
    inner = func_arg(node, "log")
    if isinstance(inner, Call) and inner.func == "sum" and len(inner.args) == 1:
        x = func_arg(inner.args[0], "exp")
        if x is not None:
            return "log(sum(exp(x))) -> logsumexp(x)", call("logsumexp", x, axis=inner.axis), (OVERFLOW, UNDERFLOW)
    return None


def log_clamped_variance(node: Node) -> Match | None:
    """log(max(exp(lv), c)) = max(lv, log(c)): a clamped variance kept in log space (min alike)."""
    inner = func_arg(node, "log")
    if not (isinstance(inner, Call) and inner.func in ("max", "min") and len(inner.args) == 2):
        return None
    a, b = inner.args
    for v, c in ((a, b), (b, a)):
        lv = func_arg(v, "exp")
        if lv is not None:
            name = f"log({inner.func}(exp(lv), c)) -> {inner.func}(lv, log(c))"
            return name, call(inner.func, lv, call("log", c)), (OVERFLOW, CANCELLATION)
    return None


def log_sigmoid(node: Node) -> Match | None:
    found = log_sigmoid_of(node)
    if found is not None:
        x, form, extra = found
        return f"log({form}) -> log_sigmoid(x)", call("log_sigmoid", x), _fixes((UNDERFLOW, CANCELLATION), extra)
    return None


def log_one_minus_sigmoid(node: Node) -> Match | None:
    found = log_one_minus_sigmoid_of(node)
    if found is not None:
        x, form, extra = found
        return (f"log(1 - {form}) -> log_sigmoid(-x)", call("log_sigmoid", negate(x)),
                _fixes((UNDERFLOW, CANCELLATION), extra))
    return None


def log_one_plus_exp(node: Node) -> Match | None:
    x = inside(one_plus(func_arg(node, "log")), "exp")
    if x is not None:
        return "log(1 + exp(x)) -> softplus(x)", call("softplus", x), (OVERFLOW, CANCELLATION)
    return None


def log_exp_minus_one(node: Node) -> Match | None:
    inner = func_arg(node, "log")
    if isinstance(inner, Binary) and inner.op == "sub" and is_const(inner.right, 1):
        x = func_arg(inner.left, "exp")
        if x is not None:
            after = binary("add", x, call("log", negate(call("expm1", negate(x)))))
            return "log(exp(x) - 1) -> x + log(-expm1(-x))", after, (OVERFLOW, CANCELLATION)
    return None


def log_one_minus_exp(node: Node) -> Match | None:
    x = inside(one_minus(func_arg(node, "log")), "exp")
    if x is not None:
        return "log(1 - exp(x)) -> log(-expm1(x))", call("log", negate(call("expm1", x))), (CANCELLATION,)
    return None


def log_one_plus(node: Node) -> Match | None:
    x = one_plus(func_arg(node, "log"))
    if x is not None:
        return "log(1 + x) -> log1p(x)", call("log1p", x), (CANCELLATION,)
    return None


def log_one_minus(node: Node) -> Match | None:
    x = one_minus(func_arg(node, "log"))
    if x is not None:
        return "log(1 - x) -> log1p(-x)", call("log1p", negate(x)), (CANCELLATION,)
    return None


def log1p_exp(node: Node) -> Match | None:
    x = inside(node, "log1p", "exp")
    if x is not None:
        return "log1p(exp(x)) -> softplus(x)", call("softplus", x), (OVERFLOW,)
    return None


def neg_log_sigmoid(node: Node) -> Match | None:
    if not isinstance(node, Unary):
        return None
    if (found := log_sigmoid_of(node.operand)) is not None:
        x, form, extra = found
        return (f"-log({form}) -> softplus(-x)", call("softplus", negate(x)),
                _fixes((UNDERFLOW, CANCELLATION), extra))
    if (found := log_one_minus_sigmoid_of(node.operand)) is not None:
        x, form, extra = found
        return f"-log(1 - {form}) -> softplus(x)", call("softplus", x), _fixes((UNDERFLOW, CANCELLATION), extra)
    return None


def _weighted_log(node: Node, log_of: Callable) -> tuple[Node, tuple] | None:
    """(w, log_of's result) when node is w * log(...) or log(...) * w."""
    def pick(a, b):
        found = log_of(b)
        return None if found is None else (a, found)
    return either(node, "mul", pick)


def _bce_terms(positive: Node, negative: Node) -> Match | None:
    """The BCE rewrite when positive = y * log(p) and negative = (1 - y) * log(1 - p), p = sigmoid(z)."""
    first = _weighted_log(positive, log_sigmoid_of)
    second = _weighted_log(negative, log_one_minus_sigmoid_of)
    if first is None or second is None:
        return None
    y, (z, form, extra) = first
    one_minus_y, (z2, _, extra2) = second
    if not (same(z, z2) and one_minus(one_minus_y) is not None and same(one_minus(one_minus_y), y)):
        return None
    after = binary("add", binary("mul", y, call("softplus", negate(z))), binary("mul", one_minus_y, call("softplus", z)))
    p = re.sub(r"\bx\b", "z", form)
    name = f"-(y * log(p) + (1 - y) * log(1 - p)), p = {p} -> y * softplus(-z) + (1 - y) * softplus(z)"
    return name, after, _fixes((UNDERFLOW, CANCELLATION), extra, extra2)


def binary_cross_entropy(node: Node) -> Match | None:
    """-(y * log(p) + (1 - y) * log(1 - p)), or -y * log(p) - (1 - y) * log(1 - p), on p = sigmoid(z)."""
    if isinstance(node, Unary):
        return either(node.operand, "add", _bce_terms)
    if isinstance(node, Binary) and node.op == "sub":
        left = node.left
        if isinstance(left, Unary):  # -(y * log(p)) - ...
            positive = left.operand
        else:  # -y * log(p) - ...: the minus binds to y
            positive = either(left, "mul", lambda a, b: binary("mul", a.operand, b) if isinstance(a, Unary) else None)
        if positive is not None:
            return _bce_terms(positive, node.right)
    return None


def exp_minus_one(node: Node) -> Match | None:
    if isinstance(node, Binary) and node.op == "sub" and is_const(node.right, 1):
        x = func_arg(node.left, "exp")
        if x is not None:
            return "exp(x) - 1 -> expm1(x)", call("expm1", x), (CANCELLATION,)
    return None


def one_minus_cos(node: Node) -> Match | None:
    x = inside(one_minus(node), "cos")
    if x is not None:
        after = binary("mul", const(2), binary("pow", call("sin", binary("div", x, const(2))), const(2)))
        return "1 - cos(x) -> 2 * sin(x / 2) ** 2", after, (CANCELLATION,)
    return None


def sqrt_difference(node: Node) -> Match | None:
    """sqrt(x + c) - sqrt(x) = c / (sqrt(x + c) + sqrt(x))."""
    if not (isinstance(node, Binary) and node.op == "sub"):
        return None
    a, b = func_arg(node.left, "sqrt"), func_arg(node.right, "sqrt")
    if a is None or b is None:
        return None
    c = either(a, "add", lambda p, q: q if same(p, b) else None)
    if c is None:
        return None
    after = binary("div", c, binary("add", node.left, node.right))
    return "sqrt(x + c) - sqrt(x) -> c / (sqrt(x + c) + sqrt(x))", after, (CANCELLATION,)


def sigmoid_expanded(node: Node) -> Match | None:
    found = sigmoid_of(node)
    if found is not None and found[1] != "sigmoid(x)":
        x, form, extra = found
        return f"{form} -> sigmoid(x)", call("sigmoid", x), extra
    return None


def tanh_expanded(node: Node) -> Match | None:
    """(exp(x) - exp(-x)) / (exp(x) + exp(-x)) -> tanh(x)."""
    if not (isinstance(node, Binary) and node.op == "div"):
        return None
    top, bottom = node.left, node.right
    if not (isinstance(top, Binary) and top.op == "sub"):
        return None
    x, minus_x = func_arg(top.left, "exp"), func_arg(top.right, "exp")
    if x is None or minus_x is None or not same(negate(x), minus_x):
        return None
    ok = either(bottom, "add", lambda p, q: True if same(p, top.left) and same(q, top.right) else None)
    if ok:
        return "(exp(x) - exp(-x)) / (exp(x) + exp(-x)) -> tanh(x)", call("tanh", x), (OVERFLOW,)
    return None


def sigmoid_times_complement(node: Node) -> Match | None:
    """sigmoid(x) * (1 - sigmoid(x)), the derivative of a sigmoid: 1 - sigmoid(x) cancels once it saturates."""
    def pick(a, b):
        complement = one_minus(b)
        s, t = sigmoid_of(a), None if complement is None else sigmoid_of(complement)
        return (s, t) if s is not None and t is not None and same(s[0], t[0]) else None
    found = either(node, "mul", pick)
    if found is None:
        return None
    (x, form, extra), _ = found
    after = binary("mul", call("sigmoid", x), call("sigmoid", negate(x)))
    return (f"{form} * (1 - {form}) -> sigmoid(x) * sigmoid(-x)", after,
            _fixes((CANCELLATION,), extra))


def _sum_terms(node: Node) -> list[Node]:
    if isinstance(node, Binary) and node.op == "add":
        return _sum_terms(node.left) + _sum_terms(node.right)
    return [node]


def sqrt_sum_of_squares(node: Node) -> Match | None:
    """sqrt(x ** 2 + y ** 2 [+ ...]) -> hypot(x, y) (nested for more terms); sqrt(x ** 2) -> abs(x)."""
    inner = func_arg(node, "sqrt")
    if inner is None:
        return None
    roots = [square_of(t) for t in _sum_terms(inner)]
    if any(r is None for r in roots):
        return None
    if len(roots) == 1:
        return "sqrt(x ** 2) -> abs(x)", call("abs", roots[0]), (OVERFLOW, UNDERFLOW)
    after = roots[0]
    for r in roots[1:]:
        after = call("hypot", after, r)
    return "sqrt(x ** 2 + y ** 2) -> hypot(x, y)", after, (OVERFLOW, UNDERFLOW)


def exp_of_log(node: Node) -> Match | None:
    x = inside(node, "exp", "log")
    if x is not None:
        return "exp(log(x)) -> x", x, (CANCELLATION,)
    return None


RULES: tuple[Callable[[Node], Match | None], ...] = (
    # log(...), most specific first
    log_of_exp, log_sum_exp, log_clamped_variance, log_sigmoid, log_one_minus_sigmoid,
    log_one_plus_exp, log_exp_minus_one, log_one_minus_exp, log_one_plus, log_one_minus, log1p_exp,
    # negations and differences
    binary_cross_entropy, neg_log_sigmoid, exp_minus_one, one_minus_cos, sqrt_difference,
    # quotients and products
    tanh_expanded, sigmoid_expanded, sigmoid_times_complement,
    # roots and exponentials
    sqrt_sum_of_squares, exp_of_log,
)
