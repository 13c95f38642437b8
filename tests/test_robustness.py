"""Issue 13's reproducers, kept as regression tests: no case file crashes the loader, hangs a run, or injects
markup into what the tool prints. Each was a crash, a hang or a raw pass-through before."""

from __future__ import annotations

import json
import math
import re
import struct
import threading
import time

import mpmath
import numpy as np
import pytest
from markdown_it import MarkdownIt
from rich.console import Console

from oracle import budget, report
from oracle import case as case_io
from oracle.floats import fmt, nstr, ulps
from oracle.report import markdown

HEAD = "id: c\ntitle: t\nkind: loss\n"


def case_text(inputs: str, formula: str = "sum(x)", extra: str = "") -> str:
    return f"{HEAD}inputs:\n{inputs}\nformula: {formula}\nframeworks: [jax]\n{extra}"


# (file text, the field the refusal names, the line, a phrase the message says)
LOADER = {
    "normal-negative-scale": (case_text("  x: {normal: {shape: [3], seed: 0, scale: -1}}"), "inputs.x.normal.scale", 5,
                              "scale must be > 0"),
    "normal-nan-loc": (case_text("  x: {normal: {shape: [3], seed: 0, loc: nan}}"), "inputs.x.normal.loc", 5,
                       "must be a finite number"),
    "normal-draws-overflow": (case_text("  x: {normal: {shape: [1000], seed: 0, scale: 1e308}}"), "inputs.x.normal",
                              5, "beyond float64's range"),
    "normal-draws-beyond-float16": (case_text("  x: {normal: {shape: [100], seed: 0, scale: 1e5}}",
                                              extra="dtypes: [float32, float16]\n"), "inputs.x.normal", 5,
                                    "beyond the largest float16 (6.55e+04)"),
    "uniform-low-above-high": (case_text("  x: {uniform: {shape: [3], seed: 0, low: 2, high: 1}}"),
                               "inputs.x.uniform", 5, "low must be <= high"),
    "uniform-too-wide": (case_text("  x: {uniform: {shape: [3], seed: 0, low: -1e308, high: 1e308}}"),
                         "inputs.x.uniform", 5, "within float64's range"),
    "uniform-beyond-float64": (case_text("  x: {uniform: {shape: [3], seed: 0, low: 0, high: 1e400}}"),
                               "inputs.x.uniform.high", 5, "must be a finite number"),
    "fills-over-cap-without-sweep": (case_text("  x: {fill: {value: 1, shape: [600000]}}\n"
                                               "  y: {fill: {value: 1, shape: [600000]}}"), "inputs.x", 5,
                                     "more than the cap"),
    "nested-65-deep": (case_text("  x: " + "[" * 65 + "1.0" + "]" * 65), "inputs.x.0.0.0.0.0.0.0.0", 5,
                       "more than 8 levels deep"),
    "nested-33-deep": (case_text("  x: " + "[" * 33 + "1.0" + "]" * 33), "inputs.x.0.0.0.0.0.0.0.0", 5,
                       "more than 8 levels deep"),
    "int-tag-on-text": ("id: c\ntitle: !!int abc\nkind: loss\ninputs: {x: 1.0}\nformula: x\n", None, 2,
                        "'abc' is not a valid !!int value"),
    "bool-tag-on-text": ("id: c\ntitle: !!bool maybe\nkind: loss\ninputs: {x: 1.0}\nformula: x\n", None, 2,
                         "'maybe' is not a valid !!bool value"),
    "float-tag-on-text": ("id: c\ntitle: t\nkind: loss\ninputs: {x: !!float abc}\nformula: x\n", None, 4,
                          "'abc' is not a valid !!float value"),
    "timestamp-tag-on-text": ("id: c\ntitle: t\nkind: loss\ninputs:\n  x: !!timestamp xyz\nformula: x\n", None, 5,
                              "not a valid !!timestamp value"),
    "integer-of-4301-digits": (case_text("  x: " + "9" * 4301), None, 5, "more than 4300 digits"),
}


@pytest.mark.parametrize("name", sorted(LOADER))
def test_bad_inputs_are_one_located_message(tmp_path, name):
    text, field, line, says = LOADER[name]
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    with pytest.raises(case_io.CaseError) as refused:
        case_io.load(path)
    e = refused.value
    assert (e.file, e.field, e.line) == (str(path), field, line), str(e)
    assert says in e.message, str(e)


def test_one_bad_file_never_loses_the_others(tmp_path):
    for name, (text, *_) in LOADER.items():
        (tmp_path / f"{name}.yaml").write_text(text.replace("id: c", f"id: {name}"))
    (tmp_path / "good.yaml").write_text(case_text("  x: [1.0, 2.0]").replace("id: c", "id: good"))
    cases, errors = case_io.load_all([tmp_path])
    assert [c.id for c in cases] == ["good"]
    assert sorted(e.file for e in errors) == sorted(str(tmp_path / f"{name}.yaml") for name in LOADER)


def test_an_unforeseen_exception_while_loading_is_still_a_located_message(tmp_path, monkeypatch):
    path = tmp_path / "c.yaml"
    path.write_text(case_text("  x: [1.0, 2.0]"))

    def broken(*args, **kwargs):
        raise KeyError("a bug nobody foresaw")

    monkeypatch.setattr(case_io, "exact_value", broken)
    with pytest.raises(case_io.CaseError) as refused:
        case_io.load(path)
    assert (refused.value.field, refused.value.line) == ("inputs.x", 5)
    assert "KeyError" in refused.value.message


def test_a_boolean_formula_is_refused_by_validate_not_at_run_time(tmp_path):
    from oracle.runner import check_shapes

    path = tmp_path / "c.yaml"
    path.write_text(case_text("  z: 1.0", "z != e"))
    with pytest.raises(ValueError, match=r"^formula: it computes bool, not a real number"):
        check_shapes(case_io.load(path))


def _ordinal(x: float) -> int:
    """float64 x's position on the line of doubles, from its bits (independent of oracle.floats)."""
    bits = struct.unpack("<q", struct.pack("<d", x))[0]
    return -(bits & (2**63 - 1)) if bits < 0 else bits


@pytest.mark.parametrize("got, ref", [(-1e308, 1.7e308), (1.7e308, -1.7e308), (5e-324, -1.7e308), (1.0, 2.0),
                                      (-2.0, 3.0)])
def test_ulps_beyond_2_to_63_stay_arrays_of_python_ints(got, ref):
    f = fmt("float64")
    for shape in ((), (2,)):
        distance = ulps(np.full(shape, got), np.full(shape, ref), f)
        assert distance.shape == shape and all(type(d) is int for d in distance.ravel())
        assert set(distance.ravel()) == {abs(_ordinal(got) - _ordinal(ref))}


def test_nstr_of_astronomical_numbers_is_fast_and_agrees_with_mpmath():
    with mpmath.workprec(80):
        moderate = mpmath.mpf(3) ** 50000  # mpmath.nstr can still write this one exactly: the truth
        assert nstr(moderate, 8) == mpmath.nstr(moderate, 8) and nstr(-1 / moderate, 8) == mpmath.nstr(-1 / moderate, 8)
        tower = mpmath.mpf(2) ** (mpmath.mpf(2) ** 70)  # mpmath.nstr would need 10**(3.6e20) exactly
        start = time.perf_counter()
        text = nstr(tower, 6)
        assert time.perf_counter() - start < 2
        digits, exponent = text.split("e+")
        assert abs(float(digits) * 10 ** (int(exponent) - 355393490465494856465) - 8.75116) < 1e-4  # 2**(2**70)
        assert nstr(mpmath.mpf(2) ** (mpmath.mpf(2) ** 5000), 4) == "2**(1.412e+1505)"  # 2**5000 = 1.41246e1505


# --- work budgets -------------------------------------------------------------------------------------------------

def test_budget_parts_run_out_alone_and_enclosing_deadlines_propagate():
    def spin():
        while True:
            sum(range(1000))

    start = time.monotonic()
    with budget.limit("case", 2.0):
        value, why = budget.attempt("kappa", spin, share=0.25)
        assert value is None and why.startswith("kappa ran out of its work budget (0.5")
        assert 0.4 < time.monotonic() - start < 1.5
        assert budget.attempt("shadow", lambda: 42, share=0.5) == (42, None)
        with pytest.raises(budget.OutOfBudget) as outer:
            budget.attempt("shadow", spin, share=5.0)  # never later than the case's own deadline
    assert outer.value.part == "case" and 1.9 < time.monotonic() - start < 3.5


def test_budget_checks_enforce_deadlines_outside_the_main_thread():
    seen = []

    def worker():
        try:
            with budget.limit("case", 0.2):
                while True:
                    budget.check()
        except budget.OutOfBudget as e:
            seen.append(e.part)

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join(5)
    assert seen == ["case"]


def _run(path, timeout):
    from oracle.runner import run_case

    with budget.limit(budget.CASE_PART, timeout):
        return run_case(case_io.load(path))


def test_a_power_tower_spends_the_gradient_checks_budget_not_the_run(tmp_path):
    """z**z**z**z**z**z at z = 2 is 2**(2**65536): mpmath.diff of it never returns. The gradient check runs out
    of its share; the certified value (an inherent overflow) is still reported."""
    path = tmp_path / "tower.yaml"
    path.write_text(case_text("  z: 2.0", "z ** z ** z ** z ** z ** z"))
    start = time.monotonic()
    result = _run(path, 8.0)
    assert time.monotonic() - start < 20
    block = result["reference"]["float32"]
    assert block["gradient_check"].startswith("skipped: gradient check ran out of its work budget")
    value = next(r for r in result["results"] if r["output"] == "value")
    assert (value["verdict"], value["inherent"], value["got"]) == ("overflow", True, "inf")
    assert "2**(2.00353e+19728)" in value["explanation"]  # 2**(2**65536): log10(2) * 2**65536 = 2.0035e19728


def test_a_reference_that_cannot_finish_leaves_uncertain_rows_saying_so(tmp_path):
    """mpmath's polygamma at -7.975e10 (a non-integer) never returns."""
    path = tmp_path / "polygamma.yaml"
    path.write_text(case_text("  x: -79749999999.5", "digamma(x)", "dtypes: [float64]\n"))
    start = time.monotonic()
    result = _run(path, 4.0)
    assert time.monotonic() - start < 15  # 4 s, then the framework's own evaluation (JAX compiles, a loaded CI)
    assert [r["verdict"] for r in result["results"]] == ["uncertain", "uncertain"]
    for row in result["results"]:
        said = re.fullmatch(r"reference not certified: reference ran out of its work budget \(([\d.]+) s\)",
                            row["explanation"])
        assert said and 0.5 < float(said.group(1)) <= 2.0, row["explanation"]  # half of what the case's 4 s left
        assert row["got"] is not None  # the framework's own result is still there
        assert (row["reference"], row["ulps"], row["error_bits"]) == (None, None, None)  # nothing to compare with


def test_exp_nested_six_deep_is_uncertain_not_a_crash(tmp_path):
    path = tmp_path / "exp6.yaml"
    path.write_text(case_text("  z: 0.5", "exp(exp(exp(exp(exp(exp(z))))))"))
    result = _run(path, 60.0)
    assert {r["verdict"] for r in result["results"]} == {"uncertain"}
    assert all("OverflowError" in r["explanation"] for r in result["results"])


# --- escaping -------------------------------------------------------------------------------------------------------

TITLE = ("evil \x1b]0;pwned\x07 \x1b[2J \x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\ <script>alert(1)</script> "
         "<img src=x onerror=alert(1)> [click](javascript:alert(1)) *bold* &lt;")


def _hostile_result() -> dict:
    return {"id": "c", "file": "cases/`x`\x1b[2J.yaml", "title": TITLE, "kind": "loss", "tags": ["<b>t</b>", "\x1b[31m"],
            "digest": "0", "tolerance_bits": 5, "summed": False, "reference": {}, "results": [],
            "error": f"RuntimeError: {TITLE}"}


def test_report_md_renders_case_text_as_text():
    doc = {"environment": {}, "cases": [_hostile_result()],
           "invalid": [{"file": "bad<img src=x onerror=alert(1)>.yaml", "field": "title", "line": 2, "message": TITLE}]}
    text = markdown.render(doc)
    assert "\x1b" not in text and "\x07" not in text
    html = MarkdownIt("commonmark").render(text)
    assert "<script" not in html and "<img" not in html and "<b>" not in html and 'href="javascript' not in html
    assert "<em>" not in html and "&amp;lt;" in html  # *bold* stays literal, as does a written entity
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # the text itself is all there


def test_terminal_output_shows_control_characters_as_escapes():
    console = Console(record=True, width=400, color_system=None)
    result = {**_hostile_result(), "results": []}
    del result["error"]
    report.print_case(console, result)
    text = console.export_text()
    assert "\x1b" not in text and "\x07" not in text and "\\x1b]0;pwned\\x07" in text


def test_math_is_untouched_by_escaping():
    assert markdown.prose("x <= 0.5 & y > 1") == "x <= 0.5 & y > 1"
    assert report.visible("exp(-z) overflowed") == "exp(-z) overflowed"
    assert math.isclose(float(nstr(mpmath.mpf("1.5e300"), 6)), 1.5e300)


# --- the command line -----------------------------------------------------------------------------------------------

def test_run_times_a_case_out_and_runs_the_others(tmp_path, monkeypatch):
    """`oracle run --timeout`: a case past its deadline (here one that only ever reaches the pipeline's safe
    points, as a slow framework evaluation does) is an error row; the next case runs."""
    from typer.testing import CliRunner

    import oracle.runner
    from oracle.cli import app

    real = oracle.runner.run_case

    def slow_first(case, **options):
        while case.id == "a":
            budget.check()
            time.sleep(0.01)
        return real(case, **options)

    monkeypatch.setattr(oracle.runner, "run_case", slow_first)
    (tmp_path / "a.yaml").write_text(case_text("  x: [1.0, 2.0]").replace("id: c", "id: a"))
    (tmp_path / "b.yaml").write_text(case_text("  x: [1.0, 2.0]").replace("id: c", "id: b"))
    start = time.monotonic()
    ran = CliRunner().invoke(app, ["run", str(tmp_path), "--json", "--timeout", "0.5"])
    assert ran.exit_code == 2, ran.output
    doc = json.loads(ran.stdout)
    assert [c.get("error") for c in doc["cases"]] == ["timed out after 0.5 s", None]
    assert {r["verdict"] for r in doc["cases"][1]["results"]} == {"ok"} and time.monotonic() - start < 30


def test_an_unforeseen_exception_while_tracing_is_the_files_message(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import oracle.runner
    from oracle.cli import app

    path = tmp_path / "c.yaml"
    path.write_text(case_text("  x: [1.0, 2.0]"))

    def broken(case):
        raise KeyError("a bug nobody foresaw")

    monkeypatch.setattr(oracle.runner, "check_shapes", broken)
    ran = CliRunner().invoke(app, ["validate", str(path)])
    assert ran.exit_code == 2
    assert f"invalid: {path}:6: formula: cannot trace it: KeyError: 'a bug nobody foresaw'" in ran.stderr
