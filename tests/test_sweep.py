"""Sweeps: exact points, one vectorised run per framework equal to point-by-point runs, a per-point reference
against mpmath directly, and verdict thresholds against where float32 provably overflows."""

from __future__ import annotations

import json
import math
import textwrap
from fractions import Fraction

import mpmath
import numpy as np
import pytest
from typer.testing import CliRunner

from oracle import formula
from oracle.case import CaseError, load
from oracle.cli import app
from oracle.floats import error_bits, fmt, round_to, ulps
from oracle.frameworks import BACKENDS, Evaluation, _batched, evaluate
from oracle.runner import run_case

F32 = fmt("float32")
NAIVE = """\
id: naive-sweep
title: naive -log(sigmoid(z)) over z
kind: loss
inputs:
  z: {sweep: {linspace: [-100, 100, 41]}}
formula: -log(1 / (1 + exp(-z)))
frameworks: [jax]
"""


def write(tmp_path, text: str, name: str = "case.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_float32_edges_are_the_exact_edges(tmp_path):
    case = load(write(tmp_path, NAIVE.replace("{linspace: [-100, 100, 41]}", "{float32_edges: true}")))
    values = list(case.sweeps["z"].values)
    tiny, normal, largest = Fraction(1, 2**149), Fraction(1, 2**126), (2 - Fraction(1, 2**23)) * 2**127
    positive = [tiny, normal - tiny, normal, Fraction(1), largest]
    assert values == [-v for v in reversed(positive)] + [0] + positive
    assert float(largest) == float(np.finfo(np.float32).max) and float(tiny) == float(np.finfo(np.float32).smallest_subnormal)
    assert case.sweeps["z"].scale == "symlog" and case.points == 11 and case.shapes == {"z": ()}


def test_two_sweeps_form_a_row_major_grid(tmp_path):
    case = load(write(tmp_path, """\
        id: grid
        title: grid
        kind: loss
        inputs:
          x: {sweep: {linspace: [0, 2, 3]}}
          y: {sweep: {logspace: [0, 1, 2]}}
          w: [1, 2]
        formula: x * y + sum(w)
        """))
    batched = case.batched_inputs()
    assert case.points == 6 and case.shapes == {"x": (), "y": (), "w": (2,)}
    assert [float(v) for v in batched["x"]] == [0, 0, 1, 1, 2, 2]
    assert [float(v) for v in batched["y"]] == [1, 10, 1, 10, 1, 10]
    assert batched["w"].shape == (6, 2)


@pytest.mark.parametrize("inputs, field, words", [
    ("z: {sweep: {linspace: [-1, 1, 3]}}\n  a: {sweep: {linspace: [0, 1, 2]}}\n  b: {sweep: {float32_edges: true}}",
     "inputs.b", "at most 2 inputs may sweep"),
    ("z: {sweep: {geomspace: [1, 2, 3]}}", "inputs.z.sweep", "exactly one of: linspace, logspace, float32_edges"),
    ("z: {sweep: {float32_edges: 1}}", "inputs.z.sweep.float32_edges", "takes true"),
    ("z: {sweep: {linspace: [0, 1, 2000]}}", "inputs.z.sweep.linspace", "more than the cap of 1000"),
])
def test_bad_sweeps_are_named(tmp_path, inputs, field, words):
    text = NAIVE.replace("z: {sweep: {linspace: [-100, 100, 41]}}", inputs)
    with pytest.raises(CaseError) as e:
        load(write(tmp_path, text), max_elements=1000)
    assert e.value.field == field and words in e.value.message and e.value.line == 5 + (field == "inputs.b") * 2


@pytest.mark.parametrize("framework", BACKENDS)
def test_one_vectorised_run_equals_the_points_run_alone(framework):
    """vmap gives each point its own value and gradient. The formula is element-wise, so the same array run
    without vmap must agree bit for bit. JAX and torch also agree with one call per scalar point; TensorFlow's
    element-wise kernels round differently on scalars than on arrays (Eigen's vectorised exp/log), so a sweep
    reports what TensorFlow computes on the array of points."""
    z = np.linspace(-100, 100, 41, dtype=np.float32)
    y = np.full(41, 0.25, dtype=np.float32)
    tree = formula.parse("y * softplus(-z) + log1p(exp(z)) * y * y", {"z", "y"})
    batch = evaluate(tree, framework, {"z": z, "y": y}, ["z", "y"], F32, batched=True)
    assert batch.error is None and batch.vectorised is True and batch.value.shape == (41,)
    array = evaluate(tree, framework, {"z": z, "y": y}, ["z", "y"], F32)
    for got, alone in [(batch.value, array.value), (batch.grads["z"], array.grads["z"]),
                       (batch.grads["y"], array.grads["y"])]:
        assert np.array_equal(got, alone, equal_nan=True)
    if framework == "tf":
        return
    for p in range(41):
        one = evaluate(tree, framework, {"z": z[p], "y": y[p]}, ["z", "y"], F32)
        assert np.array_equal(batch.value[p], one.value, equal_nan=True)
        for name in ("z", "y"):  # each point's own gradient, not a sum over the points
            assert np.array_equal(batch.grads[name][p], one.grads[name], equal_nan=True)


def test_where_vmap_cannot_run_points_run_one_by_one_and_failures_stay_local():
    class Backend:  # a framework whose vmap refuses, and which raises at one point, like argument validation
        @staticmethod
        def value_and_grads(fn, inputs, wrt, batched=False):
            if batched:
                raise RuntimeError("data-dependent control flow")
            if inputs["s"] <= 0:
                raise ValueError("scale must be positive")
            return np.float32(2 * inputs["s"]), {"s": np.float32(2)}

    result = Evaluation("fake", "float32")
    value, grads = _batched(Backend, None, {"s": np.array([1, 0, 3], np.float32)}, ["s"], result)
    assert result.vectorised is False and "data-dependent control flow" in result.note
    assert result.failed == {1: "ValueError: scale must be positive"}
    assert value[0] == 2 and np.isnan(value[1]) and value[2] == 6 and list(grads["s"][[0, 2]]) == [2, 2]


def test_reference_per_point_against_mpmath_and_thresholds_where_exp_overflows(tmp_path):
    case = load(write(tmp_path, NAIVE))
    result = run_case(case)
    z = [float(v) for v in case.sweeps["z"].values]
    with mpmath.workprec(200):  # -log(sigmoid(z)) = log1p(exp(-z)); d/dz = -1 / (1 + exp(z))
        truth = [round_to(mpmath.log1p(mpmath.exp(-mpmath.mpf(v))), F32) for v in z]
        slope = [round_to(-1 / (1 + mpmath.exp(mpmath.mpf(v))), F32) for v in z]
    series = {s["output"]: s for s in result["sweep"]["series"]}
    # exp(-z) overflows float32 exactly when -z > log(largest float32) = 88.7228...
    edge = -math.log(float(np.finfo(np.float32).max))
    assert [v == "overflow" for v in series["value"]["verdicts"]] == [v < edge for v in z]
    assert [v == "overflow" for v in series["grad.z"]["verdicts"]] == [v < edge for v in z]
    threshold = next(t for t in result["sweep"]["thresholds"] if t["output"] == "value" and t["verdict"] == "overflow")
    assert threshold["at"] == -90.0 and threshold["text"].startswith("jax formula value: overflow for z <= -90.0 "
                                                                     "(changes between -90.0 and -85.0)")
    # the rows describe the worst point; the reference there is mpmath's, rounded once
    row = next(r for r in result["results"] if r["output"] == "value")
    assert row["worst_point"] == {"z": "-100.0"} and float(row["reference"]) == truth[0]
    assert row["verdict_counts"]["overflow"] == sum(v < edge for v in z)
    # every point's error bits are JAX's float32 value and gradient against mpmath's truth, rounded once
    z32 = np.asarray(z, np.float32)
    jax_run = evaluate(case.formula, "jax", {"z": z32}, ["z"], F32, batched=True)
    for output, got, exact in (("value", jax_run.value, truth), ("grad.z", jax_run.grads["z"], slope)):
        expected = [round(error_bits(int(u)), 4) for u in ulps(got, np.asarray(exact, np.float32), F32)]
        assert series[output]["error_bits"] == expected
    assert "per point" in result["reference"]["float32"]["condition"]


def test_kappa_per_point_is_each_points_own(tmp_path):
    """kappa(log z) = 1 / |log z| at each point: the batched directions must not mix the points."""
    case = load(write(tmp_path, NAIVE.replace("linspace: [-100, 100, 41]", "logspace: [-3, 3, 7]")
                      .replace("-log(1 / (1 + exp(-z)))", "log(z)").replace("kind: loss", "kind: logprob")))
    from oracle.floats import round_array
    from oracle.reference.condition import condition_numbers
    from oracle.reference.program import trace

    inputs = {n: round_array(v, F32) for n, v in case.batched_inputs().items()}
    program = trace(case.reference, {n: v.shape for n, v in inputs.items()}, case.wrt, batched=True)
    kappa = condition_numbers(program, inputs, 64)
    with mpmath.workprec(100):
        expected = [mpmath.inf if v == 1 else 1 / abs(mpmath.log(mpmath.mpf(float(v)))) for v in inputs["z"]]
    for k, v in enumerate(inputs["z"]):
        if v == 1:
            assert kappa.kappa[0][k] == mpmath.inf  # log(1) = 0 moves
        else:
            assert abs(kappa.kappa[0][k] - expected[k]) < 1e-9 * expected[k]


def test_run_prints_the_sweep_summary_and_json_carries_every_point(tmp_path):
    path = write(tmp_path, NAIVE)
    table = CliRunner().invoke(app, ["run", str(path)], terminal_width=200)
    assert table.exit_code == 0, table.output
    assert "sweep over z (linspace, 41 points)" in table.output
    # the grid brackets the threshold between -90 and -85; the bisection pins it (oracle.boundaries)
    assert "jax formula value: overflow (spurious) for z < -88.72283 (exactly: from -100.0 to -88.72284)" in table.output
    assert sum(line.startswith(" jax ") for line in table.output.splitlines()) == 2  # one row per output, not per point
    doc = json.loads(CliRunner().invoke(app, ["run", str(path), "--json"]).stdout)
    block = doc["cases"][0]["sweep"]
    assert block["points"] == 41 and block["axes"][0]["values"][0] == -100.0
    assert all(len(s["verdicts"]) == 41 and len(s["error_bits"]) == 41 for s in block["series"])
