"""The pytest plugin, run in a subprocess (pytester) on a folder of JAX-only cases."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from importlib.metadata import version

from case_texts import LOG_SIGMOID_JAX

pytest_plugins = ["pytester"]
JAX = version("jax")

CASES = {
    "pass": "expect:\n  jax: {formula: overflow, log_sigmoid: ok}\n",
    "fails": "expect:\n  jax: {formula: ok}\n",  # the formula overflows; log_sigmoid has no expectation
    "none": "",
    "old": 'expect:\n  jax: [{versions: "<0.1", verdict: ok}]\n',
}
FAILURE = (f"cases/fails.yaml (fails): jax formula float32 value: expected ok, got overflow: regression? jax {JAX} "
           "(got inf, reference 100.0, 32.0 bits)")


def make_cases(pytester, **extra: str) -> None:
    folder = pytester.mkdir("cases")
    for name, expect in CASES.items():
        (folder / f"{name}.yaml").write_text(LOG_SIGMOID_JAX.replace("id: log-sigmoid-jax", f"id: {name}") + expect)
    for name, text in extra.items():
        (folder / f"{name}.yaml").write_text(text)


def test_items_pass_fail_and_skip_with_check_messages_and_junit(pytester):
    make_cases(pytester)
    result = pytester.runpytest_subprocess("--oracle-cases", "cases", "-rs", "--junitxml=junit.xml", "-v")
    result.assert_outcomes(passed=2, failed=1, skipped=5)
    result.stdout.fnmatch_lines([
        "cases/fails.yaml::fails[[]jax-formula[]] FAILED*",
        "cases/pass.yaml::pass[[]jax-log_sigmoid[]] PASSED*",
        FAILURE,
        f"cases/fails.yaml (fails): jax formula float32 grad.z: expected ok, got overflow: regression? jax {JAX} "
        "(got nan, reference -1.0, 32.0 bits)",
    ])
    skipped = {line.split(": ", 1)[1] for line in result.stdout.lines if line.startswith("SKIPPED")}
    assert skipped == {
        "no expectation for jax log_sigmoid in cases/fails.yaml",
        "no expectation for jax formula in cases/none.yaml",
        "no expectation for jax log_sigmoid in cases/none.yaml",
        f"jax formula float32 value: not checked: no version range ('<0.1') contains jax {JAX}",
        f"jax log_sigmoid float32 value: not checked: no version range ('<0.1') contains jax {JAX}",
    }
    suite = ET.parse(pytester.path / "junit.xml").getroot().find("testsuite")
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    assert len(cases) == 8
    failure = cases["fails[jax-formula]"].find("failure")
    assert FAILURE in failure.text and cases["pass[jax-formula]"].find("failure") is None
    assert cases["none[jax-formula]"].find("skipped") is not None


def test_x_stops_at_the_first_failure(pytester):
    make_cases(pytester)
    stopped = pytester.runpytest_subprocess("--oracle-cases", "cases", "-x")
    stopped.assert_outcomes(failed=1)  # fails.yaml comes first; the other cases never run
    stopped.stdout.fnmatch_lines([FAILURE])


def test_nothing_is_collected_unless_opted_in(pytester):
    make_cases(pytester)
    result = pytester.runpytest_subprocess("cases")
    result.assert_outcomes()
    result.stdout.fnmatch_lines(["*no tests ran*"])


def test_the_ini_option_opts_in_k_selects_and_an_invalid_case_is_a_collection_error(pytester):
    make_cases(pytester, bad="id: bad\ntitle: t\nkind: loss\ninputs: {z: 1.0}\nformula: exp(z)\nexpect: {jax: okay}\n")
    pytester.makeini("[pytest]\noracle_cases = true\n")
    result = pytester.runpytest_subprocess("cases", "-k", "pass", "--continue-on-collection-errors")
    result.assert_outcomes(passed=2, deselected=6, errors=1)
    result.stdout.fnmatch_lines(["invalid: cases/bad.yaml:6: expect.jax: unknown verdict 'okay'; did you mean 'ok'?*"])
