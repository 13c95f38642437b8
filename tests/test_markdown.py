"""report.md: summary tables with counts known by construction, and one section per case with findings."""

from __future__ import annotations

from report_samples import document

from oracle.report import markdown


def sections(text: str) -> dict[str, str]:
    """The report's case sections, by case id (the heading's first word)."""
    parts = text.split("\n### ")[1:]
    return {part.split(":", 1)[0]: part for part in parts}


def test_summary_tables_count_rows_by_framework_verdict_and_family():
    text = markdown.render(document())
    assert "5 cases: 3 with findings, 1 errored (the tool could not run them). Invalid case files (not run): 1." in text
    assert "\n".join([
        "| framework | ok | cancellation | overflow | rows |",
        "| --- | --: | --: | --: | --: |",
        "| tf | 2 | 0 | 2 | 4 |",
        "| torch | 1 | 0 | 0 | 1 |",
        "| jax | 3 | 1 | 0 | 4 |",
        "| all | 6 | 1 | 2 | 9 |"]) in text
    assert "\n".join([
        "| family | cases | tf | torch | jax | errored |",
        "| --- | --- | --- | --- | --- | --- |",
        "| kl | 1 | - | - | 1 ok | 0 |",
        "| normal | 1 | 2 ok | - | 1 ok | 0 |",
        "| seeds | 2 | 2 overflow | 1 ok | 1 ok | 1 |",
        "| sweeps | 1 | - | - | 1 cancellation | 0 |"]) in text
    assert "- `cases/bad.yaml:6` (formula): unknown function 'foo'" in text


def test_one_section_per_case_with_findings():
    found = sections(markdown.render(document()))
    assert list(found) == ["failing", "errored", "expected", "swept"]  # "passing" has none
    failing = found["failing"]
    assert failing.startswith("failing: -log(sigmoid(z)) \\| naive")
    assert "Reproduce: `oracle run cases/seeds/failing.yaml -f tf -d float32`" in failing
    assert "| tf | formula | float32 | value | inf | 100.0 | 32.0 | 1.0 | overflow |" in failing
    assert "| tf | formula | float32 | grad.z | inf | 100.0 | 32.0 | 1.0 | overflow |" in failing
    assert "torch" not in failing and "log_sigmoid | float32" not in failing  # only the rows that are not ok
    assert "- **tf formula float32 value** (overflow): tf value went overflow" in failing
    assert "  - root cause: `exp` in `exp(-z)` (forward pass, overflow, inferred)" in failing
    assert "  - rewrite `log(1 / (1 + exp(-z)))` -> `log_sigmoid(z)`: 0.0 error bits" in failing
    assert "**The tool could not run this case**: worker killed by SIGSEGV" in found["errored"]
    assert "- jax formula float32 value: expected overflow, got ok: fixed upstream? 0.10.2" in found["expected"]
    assert "as expected" not in found["expected"] and "not checked" not in found["expected"]
    assert "Sweep over x (logspace, 3 values), 3 points" in found["swept"]
    assert "- jax formula value: cancellation for x <= 0.0001" in found["swept"]


def test_cells_stay_on_one_line_and_escape_pipes():
    assert markdown.cell("a | b\n  c") == "a \\| b c"


def test_a_clean_corpus_says_so():
    doc = {**document(), "cases": [document()["cases"][0]], "invalid": []}
    text = markdown.render(doc)
    assert "Every case is ok." in text and "\n### " not in text
