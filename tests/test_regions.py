"""Per-region expectations (the `regions` field, oracle.regions): validated with located messages, checked by
oracle check against the sweep's exact regions, written by oracle check --update. Truth from mpmath directly."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
from typer.testing import CliRunner

from oracle import boundaries
from oracle import case as case_io
from oracle.cli import app
from oracle.runner import run_case

HEAD = ("id: softplus-regions\ntitle: naive softplus\nkind: loss\ninputs:\n  x: {sweep: {linspace: [0, 100, 11]}}\n"
        "formula: log(1 + exp(x))\nframeworks: [jax]\n")
TO_INF = mpmath.mpf(2) ** 128 - mpmath.mpf(2) ** 103  # FLT_MAX + half its ulp: rounds to inf in float32


def _write(tmp_path, regions: str, head: str = HEAD):
    path = tmp_path / "case.yaml"
    path.write_text(head + "regions:\n" + regions)
    return path


@pytest.mark.parametrize("regions, field, line, message", [
    ("  float32: {jax: {formula: {value: [overflw from 1 to 2]}}}\n", "regions.float32.jax.formula.value.0", 9,
     "unknown verdict 'overflw'"),
    ("  float32: {jax: {formula: {value: [ok 1 to 2]}}}\n", "regions.float32.jax.formula.value.0", 9,
     "expected '<verdict>[ (inherent|spurious)] from <low> to <high>'"),
    ("  float32: {jax: {formula: {value: [ok from 5 to 1]}}}\n", "regions.float32.jax.formula.value.0", 9,
     "low 5 is above high 1"),
    ("  float32: {jax: {formula: {value: [ok from 0 to 1e39]}}}\n", "regions.float32.jax.formula.value.0", 9,
     "beyond the largest float32"),
    ("  float64: {jax: {formula: {value: []}}}\n", "regions.float64", 9, "unknown dtype 'float64'"),
    ("  float32:\n    torch: {formula: {value: []}}\n", "regions.float32.torch", 10, "unknown framework 'torch'"),
    ("  float32: {jax: {formula: {grad.y: []}}}\n", "regions.float32.jax.formula.grad.y", 9, "unknown output"),
    ("  float32: {jax: {formula: {value: ok}}}\n", "regions.float32.jax.formula.value", 9, "expected a list"),
])
def test_bad_regions_are_refused_naming_file_field_and_line(tmp_path, regions, field, line, message):
    path = _write(tmp_path, regions)
    with pytest.raises(case_io.CaseError) as info:
        case_io.load(path)
    assert (info.value.file, info.value.field, info.value.line) == (str(path), field, line)
    assert message in info.value.message


def test_regions_need_one_swept_input(tmp_path):
    head = HEAD.replace("{sweep: {linspace: [0, 100, 11]}}", "3.0")
    with pytest.raises(case_io.CaseError, match="exactly one swept or searched input"):
        case_io.load(_write(tmp_path, "  float32: {jax: {formula: {value: []}}}\n", head))


def test_check_update_writes_the_exact_regions_and_check_then_holds(tmp_path):
    path = _write(tmp_path, "  float32: {jax: {formula: {value: [], grad.x: [ok from 0 to 100]}}}\n")
    runner = CliRunner()
    first = runner.invoke(app, ["check", str(path)])
    assert first.exit_code == 1, first.output
    assert "value regions: expected (none stated)" in first.output and "--update writes them" in first.output
    assert "grad.x regions: expected ok from 0 to 100; got ok from 0.0 to" in first.output
    updated = runner.invoke(app, ["check", "--update", str(path)])
    assert updated.exit_code == 0, updated.output
    with mpmath.workprec(200):  # the first float32 whose exp rounds to inf; log(1 + exp(x)) ~ x is finite there
        x = np.float32(88.7)
        while mpmath.exp(mpmath.mpf(float(x))) < TO_INF:
            x = np.nextafter(x, np.float32(100))
    before = str(np.nextafter(x, np.float32(0)))
    written = case_io.load(path).regions[("float32", "jax", "formula", "value")]
    assert [r.text for r in written] == [f"ok from 0.0 to {before}", f"overflow (spurious) from {str(x)} to 100.0"]
    again = runner.invoke(app, ["check", str(path)])
    assert again.exit_code == 0 and "0 failed" in again.output, again.output


def test_a_stated_region_that_moved_fails(tmp_path):
    path = _write(tmp_path, "  float32: {jax: {formula: {value: [ok from 0 to 88.72284, overflow from 88.72285 to "
                            "100]}}}\n")
    result = run_case(case_io.load(path))
    (outcome,) = [e for e in result["expectations"] if e.get("regions")]
    assert outcome["passed"] is False and "got ok from 0.0 to 88.72283; overflow (spurious) from 88.72284" in \
        outcome["message"]


def test_bracketed_regions_are_not_checked_nor_written(tmp_path, monkeypatch):
    monkeypatch.setattr(boundaries, "REFINE_MAX_S", 0.0)
    path = _write(tmp_path, "  float32: {jax: {formula: {value: [ok from 0 to 88.72283, overflow from 88.72284 to "
                            "100]}}}\n")
    result = run_case(case_io.load(path))
    (outcome,) = [e for e in result["expectations"] if e.get("regions")]
    assert outcome["passed"] is None and "bisection stopped short" in outcome["message"]
    from oracle import regions

    assert regions.updated(case_io.load(path).regions, result) is None
