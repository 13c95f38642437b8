"""oracle hunt: exact boundaries against closed forms (mpmath, not the tool's own rounding), determinism,
the budget, and a written finding that passes oracle check."""

from __future__ import annotations

import json
import time
from html import escape
from pathlib import Path

import mpmath
import numpy as np
import pytest
from typer.testing import CliRunner

from oracle import case as case_io
from oracle import hunt
from oracle.cli import app
from oracle.report.plot import series_label

FLT_MAX = mpmath.mpf(2) ** 128 - mpmath.mpf(2) ** 104
TO_INF = FLT_MAX + mpmath.mpf(2) ** 103  # exp(x) at or above this rounds to inf in float32 (ties to even)


def _case(tmp_path, name: str, formula: str, low: str, high: str, reference: str | None = None):
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"id: {name}\ntitle: {formula}\nkind: loss\ninputs:\n  x: {{search: {{low: {low}, high: {high}}}}}\n"
                    f"formula: {formula}\n" + (f"reference: {reference}\n" if reference else "")
                    + "frameworks: [torch, jax]\n")
    return case_io.load(path)


def _f32(x: float) -> float:
    return float(np.float32(x))


def _first_float32(predicate, start: float, direction: float) -> float:
    """Walk float32 values from `start` toward `direction` until `predicate` (exact, mpmath) flips; the last value
    for which it still held is returned."""
    x = np.float32(start)
    assert predicate(float(x))
    while predicate(float(np.nextafter(x, np.float32(direction)))):
        x = np.nextafter(x, np.float32(direction))
    return float(x)


def _at(text: str) -> float:
    """A float32 value from the hunt's shortest text."""
    return _f32(float(text))


def _regions(block: dict, framework: str, output: str = "value") -> list[dict]:
    return [r for r in block["regions"] if r["framework"] == framework and r["output"] == output]


@pytest.fixture(scope="module")
def exp_hunt(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("exp")
    case = _case(tmp, "hunt-exp", "exp(x)", "-200", "100")
    options = hunt.Options(seed=3, budget=120, samples=256, out=str(tmp / "found"), summary_points=32)
    return case, options, hunt.hunt(case, options)


def test_exp_overflows_exactly_above_log_flt_max(exp_hunt):
    _, _, block = exp_hunt
    with mpmath.workprec(200):
        log_max = mpmath.log(FLT_MAX)
        first = _first_float32(lambda x: mpmath.exp(mpmath.mpf(x)) >= TO_INF, 88.7229, 0.0)
        assert mpmath.mpf(first) > log_max > mpmath.mpf(float(np.nextafter(np.float32(first), np.float32(0))))
    assert first == _f32(88.72284)  # the float32 nearest log(FLT_MAX), which lies above it
    for framework in ("torch", "jax"):
        overflow = [r for r in _regions(exp_hunt[2], framework) if r["verdict"] == "overflow"]
        assert len(overflow) == 1 and overflow[0]["verdict_at_to"] == "overflow"
        assert _at(overflow[0]["from"]) == first and overflow[0]["exact_from"]
        assert _at(overflow[0]["to"]) == 100.0
        below = [r for r in _regions(exp_hunt[2], framework) if _at(r["to"]) < first]
        assert _at(below[-1]["to"]) == float(np.nextafter(np.float32(first), np.float32(0)))
        assert below[-1]["verdict_at_to"] == "ok" and below[-1]["exact_to"]


def test_exp_flush_to_zero_where_frameworks_flush(exp_hunt):
    """XLA flushes results below the smallest normal float32 (2**-126) to 0; torch keeps subnormals, and returns 0
    only where exp(x) rounds to 0 (at or below 2**-150)."""
    with mpmath.workprec(200):
        jax_last = _first_float32(lambda x: mpmath.exp(mpmath.mpf(x)) < mpmath.mpf(2) ** -126, -87.3366, 0.0)
        torch_last = _first_float32(lambda x: mpmath.exp(mpmath.mpf(x)) < mpmath.mpf(2) ** -150, -103.9722, 0.0)
    for framework, last in (("jax", jax_last), ("torch", torch_last)):
        zero = [r for r in _regions(exp_hunt[2], framework) if r["returns"] == "zero"]
        assert zero and _at(zero[0]["from"]) == -200.0
        assert _at(zero[-1]["to"]) == last and zero[-1]["exact_to"], (framework, zero)
        after = [r for r in _regions(exp_hunt[2], framework) if _at(r["from"]) > last]
        assert _at(after[0]["from"]) == float(np.nextafter(np.float32(last), np.float32(0)))
        assert after[0]["returns"] == "finite" and after[0]["exact_from"]
    assert jax_last == _f32(-87.33655) and torch_last == _f32(-103.972084)


def test_same_seed_same_hunt(exp_hunt):
    case, options, block = exp_hunt
    again = hunt.hunt(case, options)
    assert {k: v for k, v in again.items() if k != "wall_s"} == {k: v for k, v in block.items() if k != "wall_s"}
    other = hunt.hunt(case, hunt.Options(seed=4, budget=120, samples=256, out=options.out, summary_points=32))
    assert other["summary"] != block["summary"]  # other samples


def test_budget_is_honoured(tmp_path):
    case = _case(tmp_path, "hunt-budget", "log(1 + exp(x))", "-1000", "1000", "softplus(x)")
    started = time.monotonic()
    block = hunt.hunt(case, hunt.Options(seed=0, budget=2, samples=10**7, out=str(tmp_path / "found")))
    elapsed = time.monotonic() - started
    assert block["stopped_by"] == "budget" and block["samples"] < 10**7
    assert elapsed < 2 + 4, elapsed


def test_naive_softplus_finding_passes_check(tmp_path):
    """log(1 + exp(x)) overflows from the first float32 above 88.72283 (exp(x) overflows there); the finding is
    written as a case whose expect the runner measured, and oracle check agrees."""
    source = _case(tmp_path, "hunt-softplus", "log(1 + exp(x))", "-1000", "1000", "softplus(x)")
    out = tmp_path / "found"
    page = tmp_path / "hunt.html"
    result = CliRunner().invoke(app, ["hunt", source.file, "--budget", "120", "--samples", "256", "--seed", "1",
                                      "--summary-points", "32", "--out", str(out), "--json", "--html", str(page)])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout[result.stdout.index("{"):])
    assert {"oracle_version", "environment", "hunts"} <= set(doc)
    block = doc["hunts"][0]
    assert {"id", "file", "budget_s", "samples", "certified", "findings", "regions", "summary"} <= set(block)
    assert {"framework", "impl", "dtype", "output", "verdict", "error_bits", "inputs", "case_file"} <= set(
        block["findings"][0])
    assert {"framework", "impl", "dtype", "output", "input", "verdict", "from", "to"} <= set(block["regions"][0])
    assert {"framework", "impl", "dtype", "output", "mean_error_bits", "max_error_bits"} <= set(block["summary"][0])
    assert all(isinstance(r["from"], str) and isinstance(r["to"], str) for r in block["regions"])  # floats as repr
    first = float(np.nextafter(np.float32(88.72283), np.float32(np.inf)))
    for framework in ("torch", "jax"):
        for output in ("value", "grad.x"):
            overflow = [r for r in _regions(block, framework, output) if r["verdict"] == "overflow"]
            assert [_at(r["from"]) for r in overflow] == [first] and overflow[0]["exact_from"]
    findings = [f for f in block["findings"] if f["verdict"] == "overflow"]
    # shrunk to one significant digit: 90, the simplest number above the boundary that still overflows
    assert findings and all(f["inputs"] == {"x": "90"} and f["shrunk"] for f in findings)
    files = sorted({f["case_file"] for f in block["findings"]})
    written = case_io.load(files[0])
    assert "oracle hunt" in written.spec.source and written.spec.expect and not written.sweeps
    assert sorted(str(p) for p in out.iterdir()) == files  # every file written is a finding, none left behind
    html = page.read_text()
    (plot,) = block["plot"].values()
    for series in plot["series"]:  # one small plot per framework x impl x output, as the report draws sweeps
        caption = escape(f"{series_label(series)} · {series['output']}")
        assert html.count(f"error bits of {caption} against x") == 1, caption
    assert plot["points"] == len(plot["axes"][0]["values"]) <= 32 and {s["output"] for s in plot["series"]} == {
        "value", "grad.x"}
    for r in (r for r in block["regions"] if r["verdict"] == "overflow"):  # each region shaded between its ends
        assert f'<g class="region exact v-overflow"><title>{escape(r["text"])}</title>' in html
    check = CliRunner().invoke(app, ["check", *files])
    assert check.exit_code == 0 and " 0 failed" in check.output and "without expect" not in check.output, check.output


@pytest.mark.parametrize("spec, message", [
    ("{search: {low: 5, high: 1}}", "inputs.x.search: low 5 is above high 1"),
    ("{search: {low: 1, high: inf}}", "inputs.x.search.high: high must be finite"),
    ("{search: {float32: some}}", "inputs.x.search.float32: float32 takes all"),
    ("{search: {low: 1}}", "inputs.x.search: search takes {low: number, high: number} or {float32: all}"),
])
def test_bad_search_is_refused_with_its_field(tmp_path, spec, message):
    path = tmp_path / "bad.yaml"
    path.write_text(f"id: bad\ntitle: t\nkind: loss\ninputs:\n  x: {spec}\nformula: exp(x)\n")
    with pytest.raises(case_io.CaseError, match=message.replace("{", r"\{").replace("}", r"\}")):
        case_io.load(path)


def test_search_grid_spans_the_range_in_float32(tmp_path):
    """oracle run's grid: the range ends, evenly spaced values, and values spread over the binades (1e-30 is
    reached only by the latter)."""
    case = _case(tmp_path, "grid", "exp(x)", "-1000", "1000")
    values = [float(v) for v in case.sweeps["x"].values]
    assert values == sorted(values) and values[0] == -1000.0 and values[-1] == 1000.0
    assert all(float(np.float32(v)) == v for v in values) and len(values) <= 42
    assert 100.0 in values and any(0 < abs(v) < 1e-30 for v in values)
    every = case_io.load(_write(tmp_path, "{search: {float32: all}}")).sweeps["x"].values
    assert float(every[0]) == -float(np.finfo(np.float32).max) and float(every[-1]) == float(np.finfo(np.float32).max)


def _write(tmp_path, spec: str):
    path = tmp_path / "all.yaml"
    path.write_text(f"id: all\ntitle: t\nkind: loss\ninputs:\n  x: {spec}\nformula: exp(x)\n")
    return path


def test_a_sweep_point_is_classified_by_its_own_cause(tmp_path):
    """log(sum(exp(c + x))) at x = 90 overflows (exp(91) > FLT_MAX; the true value 91.41 is finite), whatever other
    points share the sweep: the underflow of every exp at x = -1000 is not x = 90's cause (the shadow's ancestry
    through a reduction, and through an operand broadcast by an elementwise op, keeps each point's own slice)."""
    from oracle.floats import fmt, to_ordinals

    path = tmp_path / "lse.yaml"
    path.write_text("id: lse\ntitle: t\nkind: loss\ninputs:\n  c: [0.0, -1.0, 1.0]\n  x: {search: {low: -1000, high: 1000}}\n"
                    "wrt: [x]\nformula: log(sum(exp(c + x)))\nreference: logsumexp(c + x)\nframeworks: [jax]\n")
    case = case_io.load(path)
    f = fmt("float32")
    # at 87.386475 the float sum 3.65e38 overflows though log of the exact sum, 88.79, is finite; beside it a
    # subnormal x (an underflow event of its own, broadcast against c) must not become its cause either
    points = [int(to_ordinals(np.float32(v), f)) for v in (-1000.0, -9.379170881418866e-41, 87.386474609375, 90.0)]
    verdicts = hunt.certify(case, "x", points, {}, f, ["jax"], hunt.Options())
    assert [v for v, *_ in verdicts[("jax", "formula", "float32", "value")].values()] == [
        "underflow", "ok", "overflow", "overflow"]


def test_run_evaluates_a_search_as_its_default_grid(tmp_path):
    """oracle run on a case with a search input: a sweep over the range's grid, thresholds included."""
    from oracle.runner import run_case

    case = _case(tmp_path, "grid-run", "exp(x)", "-200", "100")
    result = run_case(case, frameworks=["jax"])
    (axis,) = result["sweep"]["axes"]
    assert axis["spec"] == "search" and axis["scale"] == "symlog"
    assert result["sweep"]["points"] == len(case.sweeps["x"].values) == len(axis["values"])
    overflow = [t for t in result["sweep"]["thresholds"] if t["verdict"] == "overflow" and t["output"] == "value"]
    assert overflow and overflow[0]["at"] == 100.0  # exp(100) overflows float32, exp(85), the point before, does not


def test_hunt_page_escapes_the_document():
    from oracle.report.hunt_html import render

    evil = "<script>alert(1)</script>"
    page = render({"hunts": [{"id": evil, "file": evil, "regions": [{"verdict": "overflow", "verdict_at_to": "ok",
                                                                      "text": evil}],
                              "findings": [{"framework": evil, "inputs": {"x": evil}, "case_file": evil}]}]})
    assert evil not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_shrinking_that_changes_the_certified_verdict_keeps_the_exact_value(tmp_path):
    """torch's exp(-103.98) underflows (the true value is below half the smallest subnormal, 2^-150, and rounds to
    0), exp(-100) does not (a subnormal torch keeps). A screen that sees no difference anywhere lets shrinking cut
    -103.98 to -100; the runner certifies both, and the finding keeps the exact value, the shrunk file removed."""
    from oracle import finding
    from oracle.floats import fmt, to_ordinals

    with mpmath.workprec(100):
        assert mpmath.exp(-103.98) < mpmath.mpf(2) ** -150 < mpmath.mpf(2) ** -149 < mpmath.exp(-100)
    case = _case(tmp_path, "hunt-exp-shrink", "exp(x)", "-200", "100")
    f, key = fmt("float32"), ("torch", "formula", "float32", "value")

    class Blind:  # every value in one class, with the same (failing) error: nothing for shrinking to keep apart
        keys = [key]

        def __call__(self, values):
            n = len(next(iter(values.values())))
            return {key: (np.full(n, 32.0), np.full(n, "one class", dtype=object))}

    worst = int(to_ordinals(np.float32(-103.98), f))
    samples = hunt.Samples({"x": np.array([worst], dtype=np.int64)}, {key: np.array([32.0])},
                           {key: np.full(1, "one class", dtype=object)})
    options = hunt.Options(out=str(tmp_path / "found"))
    assert finding._shrink(Blind(), (worst,), [key], ["x"], f) != (worst,)  # the screen would shrink it
    found = finding.findings(case, Blind(), samples, ["x"], f, ["torch"], options, lambda _: None)
    (entry,) = found["findings"]
    assert (entry["verdict"], entry["inputs"], entry["shrunk"]) == ("underflow", {"x": "-103.98"}, False)
    assert found["certified"] == 2 and found["false_alarms"] == 0  # the exact value and the shrunk one
    assert sorted(p.name for p in (tmp_path / "found").iterdir()) == [Path(entry["case_file"]).name]
    written = case_io.load(entry["case_file"]).inputs["x"][()]  # the exact value's shortest float32 text
    assert np.float32(float(written)) == np.float32(-103.98) and not case_io.load(entry["case_file"]).sweeps


def test_screen_rechecks_where_float64_itself_cancels(tmp_path, monkeypatch):
    """exp(x) - 1 - x in float64 at x = 1e-9 is rounding noise (~1e-16) where the truth is 5e-19: against it the
    right answer 0.5 x^2 (float32) looks 10 to 26 bits off. The screen's mpmath recheck of such points restores the
    truth (checked here with mpmath directly); without it the float64 screen calls every point off."""
    from oracle import screen as screening
    from oracle.floats import fmt

    case = _case(tmp_path, "hunt-cancel", "0.5 * square(x)", "1e-12", "1e-6", "exp(x) - 1 - x")
    f, xs = fmt("float32"), np.array([1e-9, 3e-8, 1e-6], dtype=np.float32)
    with mpmath.workprec(200):
        for x in xs:  # the float32 answer is within a few ulps of the truth: ok, not off
            truth = mpmath.exp(mpmath.mpf(float(x))) - 1 - mpmath.mpf(float(x))
            got = np.float32(0.5) * x * x
            assert abs(mpmath.mpf(float(got)) - truth) < 4 * mpmath.mpf(float(np.spacing(got)))
    key = ("jax", "formula", "float32", "value")

    def screened():
        screen = screening.Screen(case, f, ["jax"], ["x"], screening.fixed_inputs(case, f, ["x"]))
        return screen({"x": xs})[key], screen.rechecked

    (bits, classes), rechecked = screened()
    assert rechecked == 3 and list(classes) == ["normal/finite/ok"] * 3 and (bits <= 2).all()
    # naive softplus at x <= -20 returns 0 (off), and float64 is right there: one recheck, then float64 is trusted
    plain = _case(tmp_path, "hunt-plain", "log(1 + exp(x))", "-60", "-20", "softplus(x)")
    screen = screening.Screen(plain, f, ["jax"], ["x"], screening.fixed_inputs(plain, f, ["x"]))
    first = screen({"x": np.array([-20.0, -30.0, -40.0], dtype=np.float32)})[key][1]
    assert list(first) == ["normal/zero/off"] * 3 and screen.rechecked == 3 and not screen.rechecking
    screen({"x": np.array([-50.0], dtype=np.float32)})
    assert screen.rechecked == 3
    monkeypatch.setattr(screening, "RECHECK", 0)
    (bits, classes), rechecked = screened()
    assert rechecked == 0 and list(classes) == ["normal/finite/off"] * 3 and (bits > 9).all()


def test_a_finding_of_a_case_with_regions_loads(tmp_path):
    """A finding fixes the searched input, so the hunted case's per-region expectations are not copied."""
    from decimal import Decimal

    from oracle import finding
    from oracle.floats import fmt

    path = tmp_path / "with-regions.yaml"
    path.write_text("id: with-regions\ntitle: t\nkind: loss\ninputs:\n  x: {search: {low: 0, high: 100}}\n"
                    "formula: exp(x)\nframeworks: [jax]\nregions:\n  float32: {jax: {formula: {value: []}}}\n")
    case = case_io.load(path)
    written = finding.write(case, {"x": Decimal("90")}, fmt("float32"), ["jax"], hunt.Options(out=str(tmp_path / "f")),
                            [("jax", "formula", "float32", "value")], None)
    found = case_io.load(written)
    assert found.regions is None and not found.sweeps and float(found.inputs["x"][()]) == 90.0
