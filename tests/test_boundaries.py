"""Sweeps report exact thresholds (oracle.boundaries): every verdict change between neighbouring grid points is
bisected with the runner to two adjacent float32 values. Truth from mpmath directly, walked float by float."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest

from oracle import boundaries
from oracle import case as case_io
from oracle.runner import run_case

FLT_MAX = mpmath.mpf(2) ** 128 - mpmath.mpf(2) ** 104
TO_INF = FLT_MAX + mpmath.mpf(2) ** 103  # at or above this, a value rounds to inf in float32 (ties to even)


def _case(tmp_path, name: str, formula: str, inputs: str, frameworks: str = "[torch, jax]"):
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"id: {name}\ntitle: {formula}\nkind: loss\ninputs:\n{inputs}formula: {formula}\n"
                    f"frameworks: {frameworks}\n")
    return case_io.load(path)


def _last(predicate, start: float, direction: float) -> float:
    """The last float32 from `start` toward `direction` for which `predicate` (exact, mpmath) still holds."""
    x = np.float32(start)
    assert predicate(float(x))
    while predicate(float(np.nextafter(x, np.float32(direction)))):
        x = np.nextafter(x, np.float32(direction))
    return float(x)


def _regions(block: dict, framework: str, output: str = "value", **at) -> list[dict]:
    return [r for r in block["regions"] if r["framework"] == framework and r["output"] == output
            and r["impl"] == "formula" and all(r["at"].get(k) == v for k, v in at.items())]


def _f32(text: str) -> float:
    return float(np.float32(float(text)))


@pytest.fixture(scope="module")
def exp_sweep(tmp_path_factory):
    case = _case(tmp_path_factory.mktemp("exp"), "sweep-exp", "exp(x)", "  x: {sweep: {linspace: [-200, 100, 31]}}\n")
    return run_case(case, refine=True)["sweep"]


def test_exp_overflows_exactly_above_the_float32_nearest_log_flt_max(exp_sweep):
    with mpmath.workprec(200):
        nearest = float(np.float32(float(mpmath.log(FLT_MAX))))  # the float32 nearest log(FLT_MAX) (it lies above)
        last_finite = _last(lambda x: mpmath.exp(mpmath.mpf(x)) < TO_INF, 88.72, 100.0)
    assert float(np.nextafter(np.float32(last_finite), np.float32(100))) == nearest  # the closed form agrees
    assert exp_sweep["refined"] == "exact"
    for framework in ("torch", "jax"):
        for output in ("value", "grad.x"):
            regions = _regions(exp_sweep, framework, output)
            top = regions[-1]
            assert (top["verdict"], top["inherent"], _f32(top["from"]), top["to"]) == ("overflow", True, nearest, "100.0")
            assert top["exact_from"] and top["exact_to"]
            assert (regions[-2]["verdict"], _f32(regions[-2]["to"])) == ("ok", last_finite)
    text = next(t["text"] for t in exp_sweep["thresholds"] if t["framework"] == "jax" and t["verdict"] == "overflow")
    assert f"overflow (inherent) for x > {str(np.float32(last_finite))} (exactly: from {str(np.float32(nearest))} to 100.0)" \
        in text
    overflow = next(t for t in exp_sweep["thresholds"] if t["framework"] == "torch" and t["verdict"] == "overflow")
    assert overflow["exact"] and overflow["regions"][0]["from"] == str(np.float32(nearest))


def test_exp_flush_to_zero_ends_exactly_at_the_normal_or_subnormal_limit(exp_sweep):
    with mpmath.workprec(200):
        below_normal = _last(lambda x: mpmath.exp(mpmath.mpf(x)) < mpmath.mpf(2) ** -126, -87.34, 0.0)
        below_half_tiny = _last(lambda x: mpmath.exp(mpmath.mpf(x)) < mpmath.mpf(2) ** -150, -103.98, 0.0)
    torch = _regions(exp_sweep, "torch")  # keeps subnormals: the true value itself rounds to 0 below 2^-150
    assert (torch[0]["verdict"], torch[0]["inherent"], torch[0]["from"]) == ("underflow", True, "-200.0")
    assert _f32(torch[0]["to"]) == below_half_tiny and torch[0]["exact_to"]
    assert torch[1]["verdict"] == "ok" and _f32(torch[1]["from"]) == float(
        np.nextafter(np.float32(below_half_tiny), np.float32(0)))
    jax = [r for r in _regions(exp_sweep, "jax") if r["verdict"] == "underflow"]  # flushes every subnormal result
    assert _f32(jax[-1]["to"]) == below_normal and jax[-1]["exact_to"]
    after = _regions(exp_sweep, "jax")[_regions(exp_sweep, "jax").index(jax[-1]) + 1]
    assert after["verdict"] == "ok" and _f32(after["from"]) == float(np.nextafter(np.float32(below_normal),
                                                                                    np.float32(0)))


def test_naive_softplus_overflows_from_the_first_float32_above_88_72283(tmp_path):
    case = _case(tmp_path, "sweep-softplus", "log(1 + exp(x))", "  x: {sweep: {linspace: [0, 100, 11]}}\n", "[jax]")
    block = run_case(case, refine=True)["sweep"]
    first = float(np.nextafter(np.float32(88.72283), np.float32(100)))
    for output in ("value", "grad.x"):
        overflow = [r for r in _regions(block, "jax", output) if r["verdict"] == "overflow"]
        assert len(overflow) == 1 and _f32(overflow[0]["from"]) == first and overflow[0]["exact_from"]
        assert overflow[0]["inherent"] is False  # the true value log(1 + e^x) ~ x is finite: a spurious overflow


def test_two_input_grid_refines_along_each_axis_with_the_other_held(tmp_path):
    case = _case(tmp_path, "sweep-exp-grid", "exp(x) + y",
                 "  x: {sweep: {linspace: [80, 100, 3]}}\n  y: {sweep: {linspace: [0, 1, 2]}}\n", "[jax]")
    block = run_case(case, refine=True)["sweep"]
    with mpmath.workprec(200):
        first = float(np.nextafter(np.float32(_last(lambda x: mpmath.exp(mpmath.mpf(x)) + 1 < TO_INF, 88.72, 100.0)),
                                   np.float32(100)))
    for y in ("0.0", "1.0"):  # along x, at each grid value of y
        overflow = [r for r in _regions(block, "jax", y=y) if r["input"] == "x" and r["verdict"] == "overflow"]
        assert len(overflow) == 1 and _f32(overflow[0]["from"]) == first and overflow[0]["exact_from"]
    along_y = [r for r in _regions(block, "jax") if r["input"] == "y"]
    assert {r["at"]["x"] for r in along_y} == {"80.0", "90.0", "100.0"}  # one line per grid value of x
    assert all(r["from"] == "0.0" and r["to"] == "1.0" for r in along_y)  # nothing changes along y


def test_bisection_out_of_time_keeps_the_grid_bracket_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(boundaries, "REFINE_MAX_S", 0.0)
    case = _case(tmp_path, "sweep-exp-short", "exp(x)", "  x: {sweep: {linspace: [0, 100, 11]}}\n", "[jax]")
    block = run_case(case, refine=True)["sweep"]
    assert block["refined"] == "partly bracketed: the bisection stopped (the time for exact thresholds ran out)"
    overflow = [r for r in _regions(block, "jax") if r["verdict"] == "overflow"]
    assert [(r["from"], r["exact_from"]) for r in overflow] == [("90.0", False)]  # the grid point, not exact
    text = next(t["text"] for t in block["thresholds"] if t["verdict"] == "overflow")
    assert "from 90.0 to 100.0" in text and "bracketed by the grid" in text and "exactly" not in text


def test_without_refine_a_sweep_has_no_regions(tmp_path):
    case = _case(tmp_path, "sweep-exp-plain", "exp(x)", "  x: {sweep: {linspace: [0, 100, 3]}}\n", "[jax]")
    block = run_case(case)["sweep"]
    assert "regions" not in block and "exact" not in block["thresholds"][0]


def test_oracle_run_refines_unless_asked_for_grid_thresholds(tmp_path):
    import json

    from typer.testing import CliRunner

    from oracle.cli import app

    case = _case(tmp_path, "sweep-exp-cli", "exp(x)", "  x: {sweep: {linspace: [0, 100, 3]}}\n", "[jax]")
    exact = json.loads(CliRunner().invoke(app, ["run", case.file, "--json"]).stdout)["cases"][0]["sweep"]
    grid = json.loads(CliRunner().invoke(app, ["run", case.file, "--json", "--grid-thresholds"]).stdout)
    block = grid["cases"][0]["sweep"]
    assert "regions" not in block and block["thresholds"][0]["text"] == "jax formula value: overflow at x = 100.0 (1 of 3 points)"
    assert exact["refined"] == "exact" and "exactly: from 88.72284 to 100.0" in exact["thresholds"][0]["text"]


def test_float64_threshold_is_exact_too(tmp_path):
    """float64 ordinals are near 2^62: the bisection's values between two of them are computed in integers (a float
    linspace rounds them back onto the ends and the bisection would never close)."""
    case = _case(tmp_path, "sweep-exp-f64", "exp(x)", "  x: {sweep: {linspace: [0, 800, 9]}}\n", "[jax]")
    block = run_case(case, dtypes=["float64"], refine=True)["sweep"]
    to_inf = mpmath.mpf(2) ** 1024 - mpmath.mpf(2) ** 970  # DBL_MAX + half its ulp
    with mpmath.workprec(300):
        x = float(mpmath.log(to_inf))
        while mpmath.exp(mpmath.mpf(x)) >= to_inf:
            x = float(np.nextafter(x, 0.0))
        while mpmath.exp(mpmath.mpf(x)) < to_inf:
            x = float(np.nextafter(x, 1000.0))  # the first float64 whose exp rounds to inf
    (overflow,) = [r for r in _regions(block, "jax") if r["verdict"] == "overflow"]
    assert float(overflow["from"]) == x and overflow["exact_from"] and block["refined"] == "exact"
    assert boundaries.between(2**62, 2**62 + 5, 15) == {2**62 + k for k in range(1, 5)}
