"""The classifier on a corpus whose classes are known by construction (tests/labelled/<class>/*.yaml).

Every framework must get every case right: the case's worst verdict is its label,
and every row that is not ok carries the label. The confusion matrix (label x
verdict, over case x framework) is printed at the end of the test session.
"""

from __future__ import annotations

from collections import Counter
from functools import cache
from pathlib import Path

import pytest

from oracle import case as case_io
from oracle.compare import SEVERITY
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
