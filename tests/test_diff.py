"""`oracle diff` on hand-made reports: fixed, regressed, changed, added, removed and unchanged rows."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from oracle import diff
from oracle.cli import app

runner = CliRunner()


def case(case_id: str, *rows: tuple[str, str, str], error: str | None = None) -> dict:
    """A report's case: rows are (framework, output, verdict), impl formula at float32."""
    if error is not None:
        return {"id": case_id, "results": [], "error": error}
    return {"id": case_id, "results": [{"framework": fw, "impl": "formula", "dtype": "float32", "output": output,
                                        "verdict": verdict} for fw, output, verdict in rows]}


def report(versions: dict, *cases: dict) -> dict:
    return {"schema_version": 1, "oracle_version": "0.1.0", "environment": {"versions": versions},
            "cases": list(cases), "invalid": []}


OLD = report({"torch": "2.12.0", "jax": "0.9.0"},
             case("fixed", ("torch", "value", "overflow"), ("torch", "grad.x", "ok")),
             case("regressed", ("jax", "value", "ok")),
             case("unchanged", ("torch", "value", "cancellation"), ("jax", "value", "ok")),
             case("changed", ("jax", "grad.x", "overflow")),
             case("crashes", ("torch", "value", "ok")),
             case("gone", ("torch", "value", "ok")))
NEW = report({"torch": "2.13.0+cpu", "jax": "0.10.2"},
             case("fixed", ("torch", "value", "ok"), ("torch", "grad.x", "ok")),
             case("regressed", ("jax", "value", "underflow")),
             case("unchanged", ("torch", "value", "cancellation"), ("jax", "value", "ok")),
             case("changed", ("jax", "grad.x", "underflow")),
             case("crashes", error="RuntimeError: boom"),
             case("new", ("jax", "value", "ok")))


def test_compare_sorts_every_row_into_its_kind():
    changes = diff.compare(OLD, NEW)
    row = {"impl": "formula", "dtype": "float32"}
    assert changes["fixed"] == [{"case": "fixed", "framework": "torch", **row, "output": "value", "old": "overflow",
                                 "new": "ok"}]
    assert changes["regressed"] == [
        {"case": "regressed", "framework": "jax", **row, "output": "value", "old": "ok", "new": "underflow"},
        {"case": "crashes", "framework": None, "impl": None, "dtype": None, "output": None, "old": "ran",
         "new": "error", "error": "RuntimeError: boom"}]
    assert [(c["case"], c["old"], c["new"]) for c in changes["changed"]] == [("changed", "overflow", "underflow")]
    assert [(c["case"], c["old"], c["new"]) for c in changes["added"]] == [("new", None, "ok")]
    assert [(c["case"], c["old"], c["new"]) for c in changes["removed"]] == [("gone", "ran", None)]  # one entry
    assert changes["unchanged"] == 3  # fixed's grad.x and both rows of unchanged
    assert changes["versions"] == {"old": {"torch": "2.12.0", "jax": "0.9.0"},
                                   "new": {"torch": "2.13.0+cpu", "jax": "0.10.2"}}


def test_a_case_that_errored_and_now_runs_has_its_rows_added():
    changes = diff.compare(report({}, case("c", error="boom")), report({}, case("c", ("jax", "value", "ok"))))
    assert [(c["case"], c["output"], c["old"], c["new"]) for c in changes["added"]] == [("c", "value", None, "ok")]
    assert not changes["regressed"] and not changes["fixed"]


def write(tmp_path, name: str, doc) -> str:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return str(path)


def test_diff_prints_both_versions_and_every_change_and_exits_1_on_a_regression(tmp_path):
    old, new = write(tmp_path, "old.json", OLD), write(tmp_path, "new.json", NEW)
    result = runner.invoke(app, ["diff", old, new])
    assert result.exit_code == 1, result.output
    assert result.stdout.splitlines() == [
        f"old ({old}): torch 2.12.0, jax 0.9.0",
        f"new ({new}): torch 2.13.0+cpu, jax 0.10.2",
        "regressed: regressed jax formula float32 value: ok -> underflow",
        "regressed: crashes: ran -> error: RuntimeError: boom",
        "fixed: fixed torch formula float32 value: overflow -> ok",
        "changed: changed jax formula float32 grad.x: overflow -> underflow",
        "added: new jax formula float32 value: (absent) -> ok",
        "removed: gone (1 row)",
        "2 regressed, 1 fixed, 1 changed, 1 added, 1 removed, 3 unchanged",
    ]


def test_diff_without_a_regression_exits_0(tmp_path):
    fixed_only = report({"torch": "2.13.0"}, case("fixed", ("torch", "value", "ok")))
    result = runner.invoke(app, ["diff", write(tmp_path, "old.json", OLD), write(tmp_path, "new.json", fixed_only)])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == "0 regressed, 1 fixed, 0 changed, 0 added, 6 removed, 0 unchanged"


@pytest.mark.parametrize("text, message", [
    ("{not json", "not JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
    ('{"cases": {}}', "not an oracle report: no 'cases' list"),
    ('{"schema_version": 99, "cases": []}', "schema_version 99: this oracle reads up to 1"),
    ('{"cases": [{"id": "a", "results": [{"framework": "jax"}]}]}',
     "case 'a': a result without framework, impl, dtype, output and verdict"),
    ('{"cases": [{"id": "a", "results": []}, {"id": "a", "results": []}]}', "case 'a' appears twice"),
])
def test_an_unreadable_report_exits_2(tmp_path, text, message):
    bad = write(tmp_path, "bad.json", text)
    result = runner.invoke(app, ["diff", write(tmp_path, "old.json", OLD), bad])
    assert result.exit_code == 2
    assert result.stderr == f"error: {bad}: not a readable report: {message}\n"
    assert runner.invoke(app, ["diff", str(tmp_path / "missing.json"), bad]).exit_code == 2


def test_a_case_whose_file_changed_is_edited_not_fixed_or_regressed(tmp_path):
    def digested(digest, *rows):
        return {**case("c", *rows), "digest": digest}

    old = report({}, digested("aaaa", ("jax", "value", "ok"), ("jax", "grad.x", "overflow")),
                 case("gone", ("jax", "value", "ok"), ("jax", "grad.x", "ok")))
    new = report({}, digested("bbbb", ("jax", "value", "overflow"), ("jax", "grad.x", "ok")))
    changes = diff.compare(old, new)
    assert not changes["regressed"] and not changes["fixed"]
    assert changes["edited"] == [{"case": "c", "framework": None, "impl": None, "dtype": None, "output": None,
                                  "old": "aaaa", "new": "bbbb", "rows": 2}]
    result = runner.invoke(app, ["diff", write(tmp_path, "old.json", old), write(tmp_path, "new.json", new)])
    assert result.exit_code == 0
    assert result.stdout.splitlines()[2:] == [
        "removed: gone (2 rows)",
        "edited: c: case file changed (digest aaaa -> bbbb); 2 rows differ, not compared as fixed or regressed",
        "0 regressed, 0 fixed, 0 changed, 0 added, 1 removed, 1 edited, 0 unchanged"]
    same = diff.compare(old, report({}, digested("aaaa", ("jax", "value", "overflow"), ("jax", "grad.x", "ok"))))
    assert [(c["case"], c["output"]) for c in same["regressed"]] == [("c", "value")] and not same["edited"]
