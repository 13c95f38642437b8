"""Expectations (issue 6): parsing and refusals, evaluation against fake versions, updating, rewriting the file."""

from __future__ import annotations

import textwrap

import pytest

from oracle import case as case_io
from oracle import expect

CASE = """\
id: normal-tiny-scale
title: Normal log-density at a tiny scale
kind: logprob
inputs:
  scale: 1e-25
  x: 2e-25
formula: -0.5 * (x / scale) ** 2 - log(scale)
impl:
  torch:
    distributions: torch.distributions.Normal(0.0, scale).log_prob(x)
  jax: numpyro.distributions.Normal(0.0, scale).log_prob(x)
frameworks: [tf, torch, jax]
"""
OUTPUTS = ("value", "grad.scale", "grad.x")


def load(tmp_path, expect_text: str, base: str = CASE):
    path = tmp_path / "case.yaml"
    path.write_text(base + textwrap.dedent(expect_text))
    return case_io.load(path)


def refusal(tmp_path, expect_text: str) -> str:
    with pytest.raises(case_io.CaseError) as info:
        load(tmp_path, expect_text)
    return str(info.value).replace(str(tmp_path / "case.yaml"), "case.yaml")


def rows(verdicts: dict[tuple[str, str], str | dict[str, str]], dtypes=("float32",)) -> list[dict]:
    """Result rows: (framework, impl) -> one verdict for every output, or output -> verdict."""
    out = []
    for (framework, impl), given in verdicts.items():
        for dtype in dtypes:
            for output in OUTPUTS:
                verdict = given if isinstance(given, str) else given[output]
                out.append({"framework": framework, "impl": impl, "dtype": dtype, "output": output,
                            "verdict": verdict})
    return out


def test_parse_the_three_forms_at_every_level(tmp_path):
    case = load(tmp_path, """\
        expect:
          tf: overflow
          torch:
            formula: ok
            distributions: {value: underflow, grad.scale: [{versions: "<2", verdict: ok}]}
          jax:
            - {versions: "<0.5", verdict: overflow}
            - versions: ">=0.5"
              verdict: {numpyro.distributions.Normal.log_prob: {value: ok}}
        """)
    tree = case.expect.tree
    assert tree["tf"] == "overflow"
    assert tree["torch"]["formula"] == "ok"
    assert tree["torch"]["distributions"]["value"] == "underflow"
    (entry,) = tree["torch"]["distributions"]["grad.scale"]
    assert (entry.text, entry.node) == ("<2", "ok")
    old, new = tree["jax"]
    assert (old.text, old.node) == ("<0.5", "overflow")
    assert new.node == {"numpyro.distributions.Normal.log_prob": {"value": "ok"}}


@pytest.mark.parametrize("text, message", [
    ("expect:\n  torch: okay\n",
     "case.yaml:14: expect.torch: unknown verdict 'okay'; did you mean 'ok'? (verdicts: error, overflow, underflow, "
     "cancellation, mismatch, ill-conditioning, uncertain, domain, ok)"),
    ('expect:\n  tf:\n    - {versions: "<<2.20", verdict: overflow}\n',
     "case.yaml:15: expect.tf.0.versions: invalid PEP 440 version specifier '<<2.20': Invalid specifier: '<<2.20'"),
    ("expect:\n  tf:\n    - {versions: 2.20, verdict: overflow}\n",
     'case.yaml:15: expect.tf.0.versions: expected a quoted PEP 440 version specifier such as ">=2.20", got 2.20'),
    ("expect:\n  mxnet: ok\n", "case.yaml:14: expect.mxnet: unknown framework 'mxnet' (known: tf, torch, jax)"),
    ("expect:\n  torch:\n    manual: ok\n",
     "case.yaml:15: expect.torch.manual: unknown impl label 'manual' for torch (known: formula, distributions)"),
    ("expect:\n  torch:\n    value: ok\n",
     "case.yaml:15: expect.torch.value: unknown impl label 'value' for torch (known: formula, distributions); "
     "outputs go under an impl label, e.g. {formula: {value: ...}}"),
    ("expect:\n  torch:\n    formula: {grad.loc: ok}\n",
     "case.yaml:15: expect.torch.formula.grad.loc: unknown output 'grad.loc' for torch (known: value, grad.scale, "
     "grad.x)"),
    ("expect:\n  torch:\n    formula: {value: {x: ok}}\n",
     "case.yaml:15: expect.torch.formula.value: expected a verdict, or a list of version-ranged entries "
     '{versions: "<2.20", verdict: ...}; got a mapping with keys x'),
    ('expect:\n  jax:\n    - {versions: ">1", verdict: [ok]}\n',
     "case.yaml:15: expect.jax.0.verdict: expected a verdict, or a mapping impl label -> expectation; got a list of 1"),
    ('expect:\n  jax:\n    - {versions: ">1"}\n',
     'case.yaml:15: expect.jax.0: a version-ranged entry is a mapping {versions: "<2.20", verdict: overflow}; '
     "got a mapping with keys versions"),
    ("expect: ok\n", "case.yaml:13: expect: expected a mapping framework -> expectation, e.g. {torch: ok}; got 'ok'"),
    ('fixed_in: {torch: "2.x"}\n', "case.yaml:13: fixed_in.torch: '2.x' is not a PEP 440 version (e.g. \"2.1.0\")"),
])
def test_refusals_name_file_field_and_line(tmp_path, text, message):
    assert refusal(tmp_path, text) == message


def test_a_framework_the_case_does_not_run_is_refused(tmp_path):
    base = CASE.replace("frameworks: [tf, torch, jax]", "frameworks: [jax]")
    with pytest.raises(case_io.CaseError, match=r"expect.torch: the case runs nothing in torch \(it runs: jax\)"):
        load(tmp_path, "expect:\n  torch: ok\n", base)


def test_version_one_cases_and_documentation_fields_still_load(tmp_path):
    case = load(tmp_path, 'fixed_in: {torch: "2.1.0"}\nreported: https://github.com/pytorch/pytorch/issues/1\n')
    assert case.expect is None and case.spec.fixed_in == {"torch": "2.1.0"}


RANGED = """\
expect:
  tf:
    - {versions: "<2.20", verdict: overflow}
    - {versions: ">=2.20", verdict: ok}
  torch:
    - {versions: ">2.13.0", verdict: ok}
    - {versions: "==2.13.0", verdict: {distributions: {value: underflow}}}
  jax: [{versions: "<0.5", verdict: ok}]
"""


def outcomes(case, verdicts, versions, dtypes=("float32",)):
    return case.expect.check({"results": rows(verdicts, dtypes)}, versions)


@pytest.mark.parametrize("version, expected", [
    ("2.19.1", "overflow"), ("2.20.0", "ok"), ("2.21.0rc1", "ok"), ("2.20.0+cpu", "ok"),
])
def test_the_range_containing_the_installed_version_applies(tmp_path, version, expected):
    case = load(tmp_path, RANGED)
    (got,) = {o["expected"] for o in outcomes(case, {("tf", "formula"): "ok"}, {"tensorflow": version})}
    assert got == expected


def test_local_versions_match_their_release_as_pep_440_says(tmp_path):
    case = load(tmp_path, RANGED)
    result = outcomes(case, {("torch", "distributions"): "ok", ("torch", "formula"): "ok"},
                      {"torch": "2.13.0+cpu"})
    # 2.13.0+cpu is in ==2.13.0 and not in >2.13.0; that entry names one output of one impl
    assert [(o["impl"], o["output"], o["expected"], o["passed"]) for o in result] == [
        ("distributions", "value", "underflow", False)]
    assert result[0]["message"] == ("torch distributions float32 value: expected underflow, got ok: fixed upstream? "
                                    "torch 2.13.0+cpu (versions '==2.13.0')")
    assert result[0]["version"] == "torch 2.13.0+cpu" and result[0]["versions"] == "==2.13.0"


def test_no_matching_range_is_not_checked_and_says_so(tmp_path):
    case = load(tmp_path, RANGED)
    result = outcomes(case, {("jax", "numpyro.distributions.Normal.log_prob"): "overflow"}, {"jax": "0.10.2"})
    assert [o["passed"] for o in result] == [None, None, None]
    assert result[0]["expected"] is None
    assert result[0]["message"] == ("jax numpyro.distributions.Normal.log_prob float32 value: not checked: "
                                    "no version range ('<0.5') contains jax 0.10.2")


def test_an_unknown_version_is_in_no_range_but_plain_expectations_still_apply(tmp_path):
    case = load(tmp_path, "expect:\n  torch: ok\n  jax: [{versions: '', verdict: ok}]\n")
    result = outcomes(case, {("torch", "formula"): "ok", ("jax", "formula"): "ok"}, {"torch": "nightly"})
    assert [(o["framework"], o["passed"]) for o in result] == [("torch", True)] * 3 + [("jax", None)] * 3
    assert result[0]["message"] == "torch formula float32 value: ok as expected: torch nightly"
    assert result[-1]["message"].endswith("not checked: no version range ('') contains jax (version unknown)")


def test_first_matching_entry_wins_and_an_empty_range_is_a_fallback(tmp_path):
    case = load(tmp_path, 'expect:\n  tf: [{versions: "<2.20", verdict: overflow}, {versions: "", verdict: ok}]\n')
    for version, expected in (("2.19.0", "overflow"), ("2.21.0", "ok")):
        assert {o["expected"] for o in outcomes(case, {("tf", "formula"): "ok"}, {"tensorflow": version})} == {expected}


def test_messages_say_fixed_regression_or_changed_and_every_dtype_is_checked(tmp_path):
    case = load(tmp_path, "expect:\n  torch: {formula: ok, distributions: {value: overflow, grad.x: underflow}}\n")
    result = outcomes(case, {("torch", "formula"): {"value": "ok", "grad.scale": "cancellation", "grad.x": "ok"},
                             ("torch", "distributions"): {"value": "ok", "grad.scale": "ok", "grad.x": "overflow"}},
                      {"torch": "2.13.0"}, dtypes=("float32", "float64"))
    failed = [o["message"] for o in result if o["passed"] is False]
    assert failed == [
        "torch formula float32 grad.scale: expected ok, got cancellation: regression? torch 2.13.0",
        "torch formula float64 grad.scale: expected ok, got cancellation: regression? torch 2.13.0",
        "torch distributions float32 value: expected overflow, got ok: fixed upstream? torch 2.13.0",
        "torch distributions float32 grad.x: expected underflow, got overflow: changed? torch 2.13.0",
        "torch distributions float64 value: expected overflow, got ok: fixed upstream? torch 2.13.0",
        "torch distributions float64 grad.x: expected underflow, got overflow: changed? torch 2.13.0",
    ]
    assert len(result) == 2 * (3 + 2)  # distributions' grad.scale is not covered


def test_update_writes_the_most_compact_expectation_that_holds(tmp_path):
    case = load(tmp_path, "")
    observed = rows({("tf", "formula"): "overflow",
                     ("torch", "formula"): "ok", ("torch", "distributions"): "underflow",
                     ("jax", "formula"): "ok",
                     ("jax", "numpyro.distributions.Normal.log_prob"): {"value": "ok", "grad.scale": "overflow",
                                                                        "grad.x": "ok"}})
    want, notes = expect.updated(case.expect, observed, {})
    assert want == {"tf": "overflow", "torch": {"formula": "ok", "distributions": "underflow"},
                    "jax": {"formula": "ok", "numpyro.distributions.Normal.log_prob": {
                        "value": "ok", "grad.scale": "overflow", "grad.x": "ok"}}}
    assert notes == []


def test_update_keeps_other_ranges_and_frameworks_that_did_not_run(tmp_path):
    case = load(tmp_path, RANGED)
    observed = rows({("tf", "formula"): "ok", ("torch", "formula"): "ok", ("torch", "distributions"): "overflow"})
    want, notes = expect.updated(case.expect, observed, {"tensorflow": "2.19.0", "torch": "2.13.0+cpu"})
    assert want == {
        "tf": [{"versions": "<2.20", "verdict": "ok"}, {"versions": ">=2.20", "verdict": "ok"}],
        "torch": [{"versions": ">2.13.0", "verdict": "ok"},
                  {"versions": "==2.13.0", "verdict": {"formula": "ok", "distributions": "overflow"}}],
        "jax": [{"versions": "<0.5", "verdict": "ok"}],  # did not run: kept as written
    }
    assert notes == []


def test_update_adds_an_entry_when_no_range_matches_and_notes_dtype_disagreements(tmp_path):
    case = load(tmp_path, RANGED)
    observed = rows({("torch", "formula"): "ok", ("torch", "distributions"): "overflow"},
                    dtypes=("float32", "float64"))
    observed[-1]["verdict"] = "ok"  # distributions float64 grad.x
    want, notes = expect.updated(case.expect, observed, {"torch": "2.12.0+cpu"})
    assert want["torch"][2] == {"versions": "==2.12.0", "verdict": {
        "formula": "ok", "distributions": {"value": "overflow", "grad.scale": "overflow"}}}
    assert isinstance(want["torch"][2]["versions"], expect.Range)
    assert notes == [
        "expect.torch.distributions.grad.x: not written: the dtypes disagree (float32 overflow, float64 ok) and an "
        "expectation holds at every dtype",
        "expect.torch: added an entry for torch 2.12.0+cpu (versions '==2.12.0'): no written range contained it",
    ]


REWRITTEN = """\
# a comment above everything
id: x   # an end-of-line comment
title: 'quoted, kept'
expect:
  # why torch is expected to fail
  torch: ok   # until 2.20
  jax:
    - {versions: "<0.5", verdict: overflow}  # old releases

# a comment between fields
tags: [a, b]
"""


def test_rewrite_changes_only_the_expect_lines():
    want = {"torch": "overflow", "jax": [{"versions": "<0.5", "verdict": "overflow"},
                                         {"versions": expect.Range("==0.10.2"), "verdict": {"formula": "ok"}}]}
    assert expect.rewrite(REWRITTEN, want) == REWRITTEN.replace("  torch: ok   # until 2.20\n",
                                                                "  torch: overflow # until 2.20\n").replace(
        "  # old releases\n", '  # old releases\n    - versions: "==0.10.2"\n      verdict: {formula: ok}\n')


def test_rewrite_appends_or_removes_the_field():
    text = "id: x\ntitle: no newline at the end"
    assert expect.rewrite(text, {"tf": "ok"}) == text + "\nexpect:\n  tf: ok\n"
    assert expect.rewrite(REWRITTEN, None) == (
        "# a comment above everything\nid: x   # an end-of-line comment\ntitle: 'quoted, kept'\n"
        "\n# a comment between fields\ntags: [a, b]\n")


def test_rewrite_refuses_a_flow_mapping_file():
    with pytest.raises(ValueError, match="block mapping"):
        expect.rewrite("{id: x, title: t}\n", {"tf": "ok"})
