"""What a new user trips over (issue 16): messages, exit codes, --version, quiet output, tables, the Python API."""

from __future__ import annotations

import textwrap

import pytest

from oracle import case as case_io


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_every_bad_field_of_a_file_is_reported_with_did_you_mean(tmp_path):
    path = write(tmp_path, "bad.yaml", """\
        id: bad
        title: four mistakes at once
        kind: loss
        inputs:
          x: 1.0
          y: [1, "zz"]
        wrt: [q]
        formula: logsigmoid(x)
        reference: log(xx) + scal
        """)
    with pytest.raises(case_io.CaseError) as info:
        case_io.load(path)
    errors = case_io.each_error(info.value)
    assert [(e.field, e.line) for e in errors] == [("inputs.y.1", 6), ("wrt.0", 7), ("formula", 8), ("reference", 9)]
    assert "unknown function 'logsigmoid'; did you mean log_sigmoid or sigmoid?" in errors[2].message
    assert str(info.value).count("\n") == 3  # one line per error
    _, listed = case_io.load_all([path])
    assert [e.field for e in listed] == ["inputs.y.1", "wrt.0", "formula", "reference"]


def test_schema_errors_are_all_reported_and_names_get_did_you_mean(tmp_path):
    path = write(tmp_path, "bad.yaml", "id: Bad\ntitle: t\nkind: los\ninputs:\n  scale: 1.0\nformula: log(scal)\n")
    with pytest.raises(case_io.CaseError) as info:
        case_io.load(path)
    assert [(e.field, e.line) for e in case_io.each_error(info.value)] == [("id", 1), ("kind", 3)]
    path.write_text("id: ok\ntitle: t\nkind: loss\ninputs:\n  scale: 1.0\nformula: log(scal)\n")
    with pytest.raises(case_io.CaseError, match=r"unknown name 'scal' \(did you mean scale\? inputs: scale;"):
        case_io.load(path)
