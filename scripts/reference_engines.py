"""Compare the reference engines on the shipped corpus, in one run: the enclosure engine (reference.compute: Arb balls,
mpmath second opinion, fallbacks) against the two-precision mpmath engine alone (reference._compute).

For each case and dtype: the engine that certified, the most bits either needed, whether any correctly rounded
component differs (NaN-aware, sign of zero included), components certified by one engine only, and wall times.

Usage: python scripts/reference_engines.py [paths ...] (default: cases/)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def _same(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(float), b.astype(float)
    return ((a == b) & (np.signbit(a) == np.signbit(b))) | (np.isnan(a) & np.isnan(b))


def main(paths: list[str]) -> None:
    from oracle import reference
    from oracle.case import load_all
    from oracle.floats import fmt
    from oracle.reference.program import trace

    cases, errors = load_all(paths or [str(ROOT / "cases")])
    totals = {"new": 0.0, "old": 0.0}
    changed = []
    print(f"{'case':<48} {'dtype':<8} {'engine':<22} {'bits old':>8} {'bits new':>8} {'old s':>7} {'new s':>7}  notes")
    for case in cases:
        exact_inputs = case.batched_inputs()
        program = trace(case.reference, {n: v.shape for n, v in exact_inputs.items()}, case.wrt,
                        batched=bool(case.sweeps), integers=case.integers)
        for dtype in case.spec.dtypes:
            f = fmt(dtype)
            inputs = case.rounded(f, exact_inputs)
            start = time.perf_counter()
            old = reference._compute(program, inputs, f, reference.START_PRECISION, reference.MAX_PRECISION,
                                     reference.DIFF_LIMIT)
            middle = time.perf_counter()
            new = reference.compute(program, inputs, f)
            end = time.perf_counter()
            totals["old"] += middle - start
            totals["new"] += end - middle
            notes = []
            for a, b in zip(old.outputs, new.outputs):
                both = a.certified & b.certified
                if (~_same(a.rounded, b.rounded) & both).any():
                    notes.append(f"{a.name}: {int((~_same(a.rounded, b.rounded) & both).sum())} differ")
                    changed.append((case.spec.id, dtype, a.name))
                if (a.certified & ~b.certified).any():
                    notes.append(f"{a.name}: {int((a.certified & ~b.certified).sum())} no longer certified")
                if (~a.certified & b.certified).any():
                    notes.append(f"{a.name}: {int((~a.certified & b.certified).sum())} newly certified")
            print(f"{case.spec.id[:48]:<48} {dtype:<8} {new.engine:<22} {old.precision:>8} {new.precision:>8} "
                  f"{middle - start:>7.2f} {end - middle:>7.2f}  {'; '.join(notes)}", flush=True)
    print(f"{len(cases)} cases ({len(errors)} not loaded); total wall: mpmath engine {totals['old']:.1f} s, enclosure "
          f"engine (with its second opinion and fallbacks) {totals['new']:.1f} s; certified values that differ: "
          f"{changed or 'none'}")


if __name__ == "__main__":
    main(sys.argv[1:])
