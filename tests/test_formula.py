"""The formula language refuses everything outside its allowlist, before anything runs."""

from __future__ import annotations

from fractions import Fraction

import pytest

from oracle import formula
from oracle.formula import Binary, Call, Const, FormulaError, Index, Name, Unary, parse

ESCAPES = [
    ("__import__('os')", "unknown function '__import__'"),
    ("__import__('os').system('touch pwned')", "only plain function names can be called"),
    ("x.__class__", "Attribute is outside the formula language"),
    ("exp(x).real", "Attribute is outside the formula language"),
    ("(lambda: 1)()", "only plain function names can be called"),
    ("lambda: x", "Lambda is outside the formula language"),
    ("[a for a in x]", "ListComp is outside the formula language"),
    ("{a: 1 for a in x}", "DictComp is outside the formula language"),
    ("(a for a in x)", "GeneratorExp is outside the formula language"),
    ("getattr(x, '__class__')", "unknown function 'getattr'"),
    ("eval('1')", "unknown function 'eval'"),
    ("open('/etc/passwd')", "unknown function 'open'"),
    ("x if x else x", "IfExp is outside the formula language"),
    ("(y := x)", "NamedExpr is outside the formula language"),
    ("'text'", "only numbers are allowed as literals"),
    ("x and x", "BoolOp is outside the formula language"),
    ("exp(*x)", "*args is not allowed"),
    ("sum(x, dtype=1)", "takes no keyword argument 'dtype'"),
    ("x[x]", "expected an integer literal"),
    ("[x, x]", "List is outside the formula language"),
    ("exp", "'exp' is a function"),
    ("pow(x, 2)", "unknown function 'pow'"),
    ("x; import os", "syntax error"),
    ("(" * 500 + "x" + ")" * 500, "nested"),
    ("x + " * 3000 + "x", "longer than 10000 characters"),
]


@pytest.mark.parametrize("source, words", ESCAPES)
def test_escape_is_refused(source, words, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FormulaError) as info:
        parse(source, {"x"})
    assert words in str(info.value)
    assert list(tmp_path.iterdir()) == []  # nothing ran, nothing was written


def test_unknown_function_lists_the_known_ones():
    with pytest.raises(FormulaError) as info:
        parse("foo(x)", {"x"})
    assert str(info.value) == f"unknown function 'foo'; known functions: {formula.known_functions()}"
    assert "log_sigmoid" in formula.known_functions()


def test_tree_shape_and_source_text():
    tree = parse("-log(1 / (1 + exp(-z))) + L[1, 1] * x[:2] ** 2 - 0.1 * pi", {"z", "L", "x"})
    assert isinstance(tree, Binary) and tree.op == "sub"
    assert tree.right == Binary("0.1 * pi", "mul", Const("0.1", Fraction(1, 10)), Const("pi", "pi"))
    left = tree.left
    assert isinstance(left.left, Unary) and left.left.text == "-log(1 / (1 + exp(-z)))"
    assert isinstance(left.left.operand, Call) and left.left.operand.func == "log"
    product = left.right
    assert product.left == Index("L[1, 1]", Name("L", "L"), (1, 1))
    assert product.right.right == Const("2", Fraction(2))
    assert product.right.left.key == (slice(None, 2, None),)


def test_negative_literal_folds_and_axis_keyword():
    assert parse("-0.5", set()) == Const("-0.5", Fraction(-1, 2))
    call = parse("sum(x, axis=-1)", {"x"})
    assert call == Call("sum(x, axis=-1)", "sum", (Name("x", "x"),), -1)


def test_evaluate_uses_only_the_table():
    calls = []
    ops = {**formula.OPERATORS, "constant": lambda v: float(v), "exp": lambda a: calls.append(("exp", a)) or 10.0,
           "maximum": lambda a, b: max(a, b)}
    assert formula.evaluate(parse("max(exp(x), 3) * 2 - 1", {"x"}), {"x": 1.0}, ops) == 19.0
    assert calls == [("exp", 1.0)]
