"""The classifier on a corpus whose classes are known by construction (tests/labelled/<class>/*.yaml).

Every framework must get every case right: the case's worst verdict is its label,
and every row that is not ok carries the label. The confusion matrix (label x
verdict, over case x framework) is printed at the end of the test session.
"""

from __future__ import annotations

import math
from collections import Counter
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from mpmath import mpf

from oracle import case as case_io
from oracle.classify import Evidence, classify, relative_bits
from oracle.compare import SEVERITY
from oracle.floats import fmt
from oracle.runner import run_case

LABELLED = Path(__file__).parent / "labelled"
FILES = sorted(LABELLED.glob("*/*.yaml"))
CONFUSION: Counter = Counter()  # (label, framework, verdict) -> count; printed by conftest


@cache
def result(path: Path) -> dict:
    return run_case(case_io.load(path))


def worst(rows: list[dict]) -> str:
    return min((row["verdict"] for row in rows), key=SEVERITY.index)


def test_the_corpus_has_every_class():
    counts = Counter(path.parent.name for path in FILES)
    assert all(counts[label] >= 6 for label in ("overflow", "underflow", "cancellation", "ill-conditioning", "mismatch"))
    assert counts["ok"] >= 10 and sum(counts.values()) >= 40


@pytest.mark.parametrize("framework", ["tf", "torch", "jax"])
@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_classifier_gets_the_label(path: Path, framework: str):
    label = path.parent.name
    rows = [row for row in result(path)["results"] if row["framework"] == framework]
    if not rows:
        pytest.skip(f"{path.stem} does not run in {framework} (its frameworks list says why)")
    verdict = worst(rows)
    CONFUSION[(label, framework, verdict)] += 1
    wrong = [f"{row['output']}: {row['verdict']} ({row['explanation']})" for row in rows
             if row["verdict"] not in ("ok", label)]
    assert verdict == label and not wrong, f"{path.stem} in {framework}: expected {label}, got {verdict}: {wrong}"
    for row in rows:
        if row["verdict"] != "ok":
            assert row["explanation"], row


# ------------------------------------------------------------ the rules one by one, without a shadow

F32 = fmt("float32")
FLUSHES = {"flush_to_zero": True, "denormals_are_zero": True}


def evidence(kappa=None, float64=None) -> Evidence:
    return Evidence("tf", F32, 5, FLUSHES, kappa=None if kappa is None else [np.array(mpf(kappa), dtype=object)],
                    make_float64=lambda: None if float64 is None else [np.float64(float64)])


def test_a_true_value_beyond_float32_is_inherent_overflow_even_when_returned_exactly():
    v = classify(0, "value", (), math.inf, mpf("1e39"), math.inf, evidence())
    assert (v.verdict, v.inherent) == ("overflow", True) and "exceeds the largest float32" in v.explanation


def test_a_subnormal_true_value_flushed_to_zero_is_inherent_underflow():
    v = classify(0, "value", (), 0.0, mpf("1e-40"), float(np.float32(1e-40)), evidence())
    assert (v.verdict, v.inherent) == ("underflow", True) and "flushes subnormals to zero" in v.explanation


def test_float64_reproducing_the_float32_result_is_a_mismatch_when_nothing_else_is_known():
    v = classify(0, "value", (), 16.118095, mpf(23.025850929940457), float(np.float32(23.02585)),
                 evidence(float64=16.11809565095832))
    assert v.verdict == "mismatch" and "float64 reproduces" in v.explanation


def test_float64_runs_only_when_the_exact_formula_does_not_settle_the_mismatch_rule():
    """float64 is a second run of the framework: when the formula, evaluated exactly, rounds to the reference,
    the error is rounding whatever float64 says, so float64 is not run; when it does not, float64 decides."""
    runs = []

    def ev(formula):
        return Evidence("tf", F32, 5, FLUSHES, kappa=[np.array(mpf(1), dtype=object)],
                        make_float64=lambda: runs.append(1) or [np.float64(16.11809565095832)],
                        make_exact=lambda: [np.array(mpf(formula), dtype=object)])

    got, exact, rounded = 16.118095, mpf(23.025850929940457), float(np.float32(23.02585))
    assert classify(0, "value", (), got, exact, rounded, ev(23.025850929940457)).verdict == "uncertain"
    assert runs == [1]  # the final "uncertain" explanation quotes float64: that is its one run
    runs.clear()
    v = classify(0, "value", (), got, exact, rounded, ev(16.11809565095832))
    assert v.verdict == "mismatch" and "evaluated exactly it gives 16.1181" in v.explanation and runs == [1]
    runs.clear()
    assert classify(0, "value", (), math.inf, mpf(100), 100.0, ev(100)).verdict == "overflow" and runs == []


def test_an_error_within_log2_kappa_is_ill_conditioning():
    exact = mpf(1)
    got = float(np.float32(1 + 2**-10))  # 2**13 ulps of 1.0 = 13 bits
    assert classify(0, "value", (), got, exact, 1.0, evidence(kappa=2**12)).verdict == "ill-conditioning"
    assert classify(0, "value", (), got, exact, 1.0, evidence(kappa=2**9)).verdict == "uncertain"  # 13 > 9 + 3


def test_an_infinity_for_a_finite_value_is_an_inferred_overflow():
    v = classify(0, "value", (), math.inf, mpf(100), 100.0, evidence(kappa=1))
    assert (v.verdict, v.inherent) == ("overflow", False) and v.explanation.startswith("inferred from the symptom")


def test_relative_bits_count_ulps_of_the_true_value():
    assert relative_bits(1.0, mpf(1), F32) == 0
    assert relative_bits(float(np.float32(1 + 2**-23)), mpf(1), F32) == 1  # one ulp
    assert relative_bits(0.0, mpf(1), F32) == pytest.approx(23, abs=1e-6)  # 0 against 1: 2**23 ulps of 1
