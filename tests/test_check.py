"""`oracle check`: exit codes, the failure lines, and --update rewriting only the expect lines."""

from __future__ import annotations

from importlib.metadata import version

from case_texts import LOG_SIGMOID_JAX as CASE  # comments in it: --update must keep them
from typer.testing import CliRunner

from oracle.cli import app

runner = CliRunner()
JAX = version("jax")


def write(tmp_path, text, name="case.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def check(*args):
    return runner.invoke(app, ["check", *map(str, args)])


def test_expectations_that_hold_exit_0(tmp_path):
    path = write(tmp_path, CASE + "expect:\n  jax: {formula: overflow, log_sigmoid: ok}\n")
    result = check(path)
    assert result.exit_code == 0, result.output
    assert result.stdout == (f"checked 1 cases: expectations 4 held, 0 failed, 0 not checked; evaluated against "
                             f"jax {JAX}\n")


def test_a_failed_expectation_exits_1_with_one_line_each(tmp_path):
    path = write(tmp_path, CASE + "expect:\n  jax: ok\n")
    result = check(path, "-f", "jax")
    assert result.exit_code == 1, result.output
    assert result.stdout.splitlines() == [
        f"{path} (log-sigmoid-jax): jax formula float32 value: expected ok, got overflow: regression? jax {JAX} "
        "(got inf, reference 100.0, 32.0 bits)",
        f"{path} (log-sigmoid-jax): jax formula float32 grad.z: expected ok, got overflow: regression? jax {JAX} "
        "(got nan, reference -1.0, 32.0 bits)",
        f"checked 1 cases: expectations 2 held, 2 failed, 0 not checked; evaluated against jax {JAX}",
    ]


def test_no_matching_range_is_said_and_does_not_fail(tmp_path):
    path = write(tmp_path, CASE + 'expect:\n  jax:\n    log_sigmoid: [{versions: "<0.1", verdict: overflow}]\n')
    result = check(path)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == (f"{path} (log-sigmoid-jax): jax log_sigmoid float32 value: not checked: "
                                             f"no version range ('<0.1') contains jax {JAX}")
    assert "expectations 0 held, 0 failed, 2 not checked" in result.stdout


def test_invalid_input_exits_2_and_the_valid_cases_still_run(tmp_path):
    good = write(tmp_path, CASE + "expect:\n  jax: {formula: overflow, log_sigmoid: ok}\n")
    bad = write(tmp_path, CASE.replace("log-sigmoid-jax", "bad") + "expect:\n  jax: okay\n", "bad.yaml")
    result = check(good, bad)
    assert result.exit_code == 2
    assert f"invalid: {bad}:14: expect.jax: unknown verdict 'okay'; did you mean 'ok'?" in result.stderr
    assert "expectations 4 held" in result.stdout
    assert check(good, "-f", "mxnet").exit_code == 2


def test_a_case_that_crashes_is_an_error(tmp_path, monkeypatch):
    def crash(case, **options):
        raise RuntimeError("boom")

    monkeypatch.setattr("oracle.runner.run_case", crash)
    path = write(tmp_path, CASE + "expect:\n  jax: ok\n")
    result = check(path)
    assert result.exit_code == 2
    assert f"error: {path}: RuntimeError: boom" in result.stderr
    assert "checked 1 cases: expectations 0 held, 0 failed, 0 not checked, 1 could not run" in result.stdout


UPDATED = """\
# naive log-sigmoid, JAX only
id: log-sigmoid-jax
title: -log(sigmoid(z)) at z = -100   # exp(100) overflows
kind: loss
inputs:
  z: -100.0
expect:
  # the formula overflows: exp(100) > float32 max
  jax:
    - {versions: "<0.1", verdict: ok}   # before anyone looked
formula: -log(1 / (1 + exp(-z)))   # written by hand

# the reference is the stable form
reference: log1p(exp(-z))
impl:
  jax:
    log_sigmoid: -jax.nn.log_sigmoid(z)   # the stable one
frameworks: [jax]
"""


def test_update_changes_only_the_expect_lines_byte_for_byte(tmp_path):
    path = write(tmp_path, UPDATED)
    result = check(path, "--update")
    assert result.exit_code == 0, result.output
    assert path.read_text() == UPDATED.replace(
        "  # before anyone looked\n",
        f'  # before anyone looked\n    - versions: "=={JAX}"\n      verdict: {{formula: overflow, log_sigmoid: ok}}\n')
    assert result.stdout.splitlines()[:2] == [
        f"{path} (log-sigmoid-jax): jax formula float32 value: not checked: no version range ('<0.1') contains jax {JAX}",
        f"{path} (log-sigmoid-jax): jax formula float32 grad.z: not checked: no version range ('<0.1') contains "
        f"jax {JAX}"]
    assert f"{path} (log-sigmoid-jax): expect.jax: added an entry for jax {JAX} (versions '=={JAX}'): no written " \
           "range contained it" in result.stdout
    assert f"updated: {path} (log-sigmoid-jax)" in result.stdout
    again = check(path, "--update")
    assert again.exit_code == 0 and "updated:" not in again.stdout and "4 held" in again.stdout
    assert path.read_text().count("versions") == 2


def test_update_of_a_plain_expectation_rewrites_it_compactly_and_check_then_passes(tmp_path):
    path = write(tmp_path, CASE + "expect:\n  jax: ok   # hoped for\n")
    assert check(path, "--update").exit_code == 0
    assert path.read_text() == CASE + "expect:\n  jax: {formula: overflow, log_sigmoid: ok} # hoped for\n"
    assert check(path).exit_code == 0


def test_update_appends_expect_to_a_case_without_one(tmp_path):
    path = write(tmp_path, CASE)
    result = check(path, "--update")
    assert result.exit_code == 0, result.output
    assert "1 cases without expect, 1 updated" in result.stdout
    assert path.read_text() == CASE + "expect:\n  jax: {formula: overflow, log_sigmoid: ok}\n"
