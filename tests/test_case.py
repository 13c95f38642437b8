"""Every class of bad case input gets one clear message naming file, field and line."""

from __future__ import annotations

import textwrap
from fractions import Fraction

import numpy as np
import pytest

from oracle.case import CaseError, load, load_all

GOOD = """\
id: good
title: a good case
kind: loss
inputs:
  z: -100.0
formula: -log(1 / (1 + exp(-z)))
"""


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def error_of(tmp_path, text: str, **kw) -> CaseError:
    with pytest.raises(CaseError) as info:
        load(write(tmp_path, "case.yaml", text), **kw)
    return info.value


@pytest.mark.parametrize("text, field, line, words", [
    ("id: x\ntitle: [unclosed\n", None, 3, "invalid YAML"),
    ("id: x\nkind: loss\ninputs: {z: 1}\nformula: z\n", "title", 1, "required field is missing"),
    (GOOD + "colour: red\n", "colour", 7, "unknown field 'colour'"),
    (GOOD.replace("kind: loss", "kind: lost"), "kind", 3, "'logprob', 'loss' or 'kl'"),
    (GOOD.replace("id: good", "id: Not_Valid"), "id", 1, "should match pattern"),
    (GOOD.replace("exp(-z)", "expo(-z)"), "formula", 6, "unknown function 'expo'; did you mean exp? known functions: abs, betainc, cholesky"),
    (GOOD + "wrt: [z, q]\n", "wrt.1", 7, "'q' names no input (inputs: z)"),
    (GOOD.replace("z: -100.0", "z: {eye: 5000}"), "inputs.z.eye", 5, "more than the cap of 1000000"),
    (GOOD.replace("z: -100.0", "z: [1, 2, abc]"), "inputs.z.2", 5, "not a number: 'abc'"),
    (GOOD.replace("z: -100.0", "z: [[1, 2], [3]]"), "inputs.z", 5, "ragged nested list"),
    (GOOD.replace("z: -100.0", "z: {fill: {value: 1}}"), "inputs.z.fill", 5, "missing field(s) ['shape']"),
    (GOOD + "reference: log1p(exp(-y))\n", "reference", 7, "unknown name 'y'"),
    ("z: &a [1]\nq: *a\n", None, 2, "aliases"),
    ("- 1\n- 2\n", None, 1, "a case file is a YAML mapping"),
    ("id: x\nid: y\n", None, 2, "duplicate key 'id'"),
    ("a: !!python/object:os.system {}\n", None, 1, "could not determine a constructor"),
])
def test_bad_input_is_named_with_field_and_line(tmp_path, text, field, line, words):
    e = error_of(tmp_path, text)
    assert e.field == field
    assert e.line == line
    assert words in e.message
    assert str(e).startswith(f"{tmp_path / 'case.yaml'}:{line}: ")


def test_generator_cap_is_configurable(tmp_path):
    e = error_of(tmp_path, GOOD.replace("z: -100.0", "z: {fill: {value: 1, shape: [11]}}"), max_elements=10)
    assert "11 elements, more than the cap of 10" in e.message


def test_numbers_are_exact_as_written(tmp_path):
    text = GOOD.replace("z: -100.0", 'z: [0.1, 1e-8, "0x1p-126", "-inf", 3]')
    case = load(write(tmp_path, "case.yaml", text))
    z = case.inputs["z"]
    assert z[0] == Fraction(1, 10) and z[1] == Fraction(1, 10**8) and z[2] == Fraction(1, 2**126)
    assert z[3] == -np.inf and z[4] == 3


def test_duplicate_id_and_other_cases_still_load(tmp_path):
    write(tmp_path, "a.yaml", GOOD)
    write(tmp_path, "b.yaml", GOOD)
    write(tmp_path, "c.yaml", GOOD.replace("id: good", "id: other"))
    write(tmp_path, "d.yaml", "not: [valid\n")
    cases, errors = load_all([tmp_path])
    assert [c.id for c in cases] == ["good", "other"]
    messages = sorted(str(e) for e in errors)
    assert any("b.yaml:1: id: duplicate id 'good' (first defined in" in m for m in messages)
    assert any("d.yaml:2: invalid YAML" in m for m in messages)


def test_shape_mismatch_names_the_formula(tmp_path):
    from oracle.runner import check_shapes

    case = load(write(tmp_path, "case.yaml", GOOD.replace("z: -100.0", "z: [1.0, 2.0]\n  w: [1.0, 2.0, 3.0]")
                      .replace("-log(1 / (1 + exp(-z)))", "z + w")))
    with pytest.raises(ValueError, match=r"formula: .*(shapes|broadcast).*\(2,\).*\(3,\)"):
        check_shapes(case)
