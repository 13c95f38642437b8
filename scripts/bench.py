"""Benchmarks of issue 5, each measured in this one run (these machines are noisy: compare ratios, not seconds).

1. Tool overhead: wall time of `oracle run` on one seed case against the time to just import the frameworks
   it uses (both as fresh processes, alternated, median of --repeat). Target: at most 1.3x.
2. Audit wall time of the shipped corpus at --jobs 1 and --jobs 2 (skipped with --quick).
3. Reference throughput: certified points per second on a 1,000-point sweep of a 20-operation formula (value
   and gradient), against the same formula and its hand-derived gradient written directly in mpmath and
   evaluated at the same precisions the certification used. Target: at least half. Also: gmpy2 active.

4. Reference engines (issue 14), each pair measured in this run: the enclosure engine (reference.compute: Arb balls,
   mpmath's second opinion at twice the certifying precision, the gradient check) against the two-precision mpmath
   engine alone (reference._compute), on the 20-operation sweep of 3. (certified points per second) and on an
   --mvn-dimensional MVN log-density (covariance A A^T + I, cholesky and solve_triangular, gradients with respect
   to x and mu; reference only, no kappa), wall seconds; with --elements N, also an N-element elementwise case.

Usage: python scripts/bench.py [--quick] [--repeat N] [--points N] [--engines-only] [--mvn N] [--elements N]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mpmath
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "cases" / "seeds" / "naive-log-sigmoid.yaml"
IMPORTS = "import tensorflow, torch, jax, jax.numpy"  # the frameworks the seed case uses (tf, torch, jax)
# 20 operations: neg exp log1p | mul | sin cos mul | mul add sqrt | div tanh | mul neg exp | 5 add/sub
FORMULA = "log1p(exp(-x)) + x * x - sin(x) * cos(x) + sqrt(1 + x * x) - tanh(x / 3) + exp(-(x * x))"


def _wall(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    return time.perf_counter() - start


def overhead(repeat: int) -> None:
    """oracle ends its process without the interpreter's teardown (oracle.cli.main), about 2 s with three
    frameworks loaded; the plain import pays it. The second ratio, against imports that skip it too, says
    how much of the result that is."""
    imports, quick, runs = [], [], []
    for _ in range(repeat):  # alternated, so drift in the machine's load hits all alike
        imports.append(_wall([sys.executable, "-c", IMPORTS]))
        quick.append(_wall([sys.executable, "-c", f"{IMPORTS}; import os; os._exit(0)"]))
        runs.append(_wall([sys.executable, "-m", "oracle", "run", str(SEED.relative_to(ROOT))]))
    i, q, r = statistics.median(imports), statistics.median(quick), statistics.median(runs)
    print(f"1. tool overhead: oracle run {SEED.name}: {r:.2f} s; importing tf, torch, jax: {i:.2f} s; "
          f"ratio {r / i:.2f} (target <= 1.3; medians of {repeat}); against importing without the teardown: "
          f"{q:.2f} s, ratio {r / q:.2f}")


def audit() -> None:
    walls = {}
    for jobs in (1, 2):
        out = Path(tempfile.mkdtemp(prefix=f"oracle-audit-j{jobs}-"))
        try:
            walls[jobs] = _wall([sys.executable, "-m", "oracle", "audit", "cases", "--out", str(out), "--jobs",
                                 str(jobs)])
        finally:
            shutil.rmtree(out, ignore_errors=True)
    print(f"2. audit of cases/: --jobs 1 {walls[1]:.0f} s, --jobs 2 {walls[2]:.0f} s, "
          f"speed-up {walls[1] / walls[2]:.2f}")


def _by_hand(x: mpmath.mpf) -> tuple[mpmath.mpf, mpmath.mpf]:
    """FORMULA and its derivative, written directly in mpmath."""
    e, s, c, r, t, g = (mpmath.exp(-x), mpmath.sin(x), mpmath.cos(x), mpmath.sqrt(1 + x * x), mpmath.tanh(x / 3),
                        mpmath.exp(-(x * x)))
    value = mpmath.log1p(e) + x * x - s * c + r - t + g
    grad = -e / (1 + e) + 2 * x - (c * c - s * s) + x / r - (1 - t * t) / 3 - 2 * x * g
    return value, grad


def throughput(points: int) -> None:
    from oracle import formula, reference
    from oracle.floats import fmt
    from oracle.reference.program import trace

    f = fmt("float32")
    x = np.linspace(-20, 20, points, dtype=np.float32)
    program = trace(formula.parse(FORMULA, {"x"}), {"x": x.shape}, ["x"], batched=True)
    ref = reference.compute(program, {"x": x}, f)
    needed = sorted({int(p) for o in ref.outputs for p in np.unique(o.precision)})
    precisions, p = [], max(reference.START_PRECISION, 2 * f.precision)
    while not precisions or precisions[-1] < 2 * max(needed):  # what compute ran: doubling up to twice the need
        precisions.append(p)
        p *= 2

    def by_hand():
        for prec in precisions:
            with mpmath.workprec(prec):
                out = [_by_hand(mpmath.mpf(float(v))) for v in x]
        return out

    def timed(run) -> float:
        start = time.perf_counter()
        run()
        return time.perf_counter() - start

    runs = [(timed(lambda: reference.compute(program, {"x": x}, f)), timed(by_hand)) for _ in range(3)]  # alternated
    ours, baseline = (statistics.median(t) for t in zip(*runs))
    hand = by_hand()
    with mpmath.workprec(2 * max(needed)):  # and the two agree
        worst = max(abs(a - b) / max(abs(b), mpmath.mpf(2) ** -149) for o, k in zip(ref.outputs, (0, 1))
                    for a, b in zip(o.exact, (h[k] for h in hand)))
    print(f"3. reference: {points} points of a 20-operation formula, value and gradient, certified at "
          f"{precisions} bits: {points / ours:.0f} points/s; hand-written mpmath at the same precisions: "
          f"{points / baseline:.0f} points/s; ratio {baseline / ours:.2f} (target >= 0.5); largest relative "
          f"difference {mpmath.nstr(worst, 3)}")
    print(f"   mpmath backend: {mpmath.libmp.BACKEND} (target: gmpy)")


MVN = ("-0.5 * sum(solve_triangular(cholesky(S), x - mu) ** 2) - sum(log(diag(cholesky(S)))) "
       "- 0.5 * {n} * log(2 * pi)")


def engines(points: int, dimension: int, elements: int = 0) -> None:
    from oracle import formula, reference
    from oracle.floats import fmt
    from oracle.reference.program import trace

    f = fmt("float32")

    def timed(run):
        start = time.perf_counter()
        out = run()
        return time.perf_counter() - start, out

    def both(program, inputs):
        new, ref = timed(lambda: reference.compute(program, inputs, f))
        old, _ = timed(lambda: reference._compute(program, inputs, f, reference.START_PRECISION,
                                                  reference.MAX_PRECISION, reference.DIFF_LIMIT))
        return new, old, ref

    x = np.linspace(-20, 20, points, dtype=np.float32)
    program = trace(formula.parse(FORMULA, {"x"}), {"x": x.shape}, ["x"], batched=True)
    new, old, ref = both(program, {"x": x})
    print(f"4. engines: {points}-point sweep of the 20-operation formula: enclosure engine {points / new:.0f} points/s "
          f"({ref.engine}), mpmath engine {points / old:.0f} points/s; ratio {old / new:.2f} (target >= 5)")
    rng = np.random.default_rng(0)
    a = (rng.standard_normal((dimension, dimension)) / np.sqrt(dimension)).astype(np.float32)
    cov = (a @ a.T + np.eye(dimension)).astype(np.float32)
    cov = ((cov + cov.T) / 2).astype(np.float32)
    inputs = {"S": cov, "x": rng.standard_normal(dimension).astype(np.float32), "mu": np.zeros(dimension, np.float32)}
    program = trace(formula.parse(MVN.format(n=dimension), set(inputs)), {k: v.shape for k, v in inputs.items()},
                    ["x", "mu"])
    new, old, ref = both(program, inputs)
    print(f"   {dimension}-d MVN log-density and gradients (reference only): enclosure engine {new:.1f} s "
          f"({ref.engine}; {ref.second_opinion}), mpmath engine {old:.1f} s; ratio {old / new:.2f}")
    if elements:
        import resource

        x = np.linspace(-30, 30, elements, dtype=np.float32)
        program = trace(formula.parse("log1p(exp(-x)) + x * x", {"x"}), {"x": x.shape}, ["x"])
        new, old, ref = both(program, {"x": x})
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"   {elements}-element elementwise case: enclosure engine {new:.1f} s ({ref.engine}), mpmath engine "
              f"{old:.1f} s; ratio {old / new:.2f}; peak RSS of this process {peak:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the corpus audits (minutes each)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--points", type=int, default=1000)
    parser.add_argument("--engines-only", action="store_true", help="only the reference engines (4.)")
    parser.add_argument("--mvn", type=int, default=200, help="the MVN's dimension in 4.")
    parser.add_argument("--elements", type=int, default=0, help="also an elementwise case of N elements in 4.")
    args = parser.parse_args()
    if not args.engines_only:
        overhead(args.repeat)
        if not args.quick:
            audit()
        throughput(args.points)
    engines(args.points, args.mvn, args.elements)


if __name__ == "__main__":
    main()
