"""Benchmarks of issue 5, each measured in this one run (these machines are noisy: compare ratios, not seconds).

1. Tool overhead: wall time of `oracle run` on one seed case against the time to just import the frameworks
   it uses (both as fresh processes, alternated, median of --repeat). Target: at most 1.3x.
2. Audit wall time of the shipped corpus at --jobs 1 and --jobs 2 (skipped with --quick).
3. Reference throughput: certified points per second on a 1,000-point sweep of a 20-operation formula (value
   and gradient), against the same formula and its hand-derived gradient written directly in mpmath and
   evaluated at the same precisions the certification used. Target: at least half. Also: gmpy2 active.

4. Reference engines (issue 14), each pair measured in this run: the enclosure engine (reference.compute: Arb balls,
   exact values from balls at twice the certifying precision, mpmath's second opinion at the certifying precision,
   on a sample of the points beyond 64, the gradient check) against the two-precision mpmath engine alone
   (reference._compute, the engine before issue 14) on the 20-operation sweep of 3. (certified points per second;
   target >= 5x); an --mvn-dimensional MVN log-density (covariance A A^T + I, cholesky and solve_triangular,
   gradients with respect to x and mu) with its condition numbers (kappa, as the runner computes them), wall
   seconds (target <= 60 s; the mpmath kappa took over 14 minutes at 200-d, so it runs only with
   --kappa-baseline); with --elements N, an N-element elementwise case computed in a fresh process (wall and
   peak RSS of that process; target 1e6 in <= 60 s and <= 2 GB) against the mpmath engine on
   --baseline-elements of them in this process (a per-element ratio).

Usage: python scripts/bench.py [--quick] [--repeat N] [--points N] [--engines-only] [--mvn N] [--elements N]
                               [--baseline-elements N] [--kappa-baseline]
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


def engines(points: int, dimension: int, elements: int = 0, baseline_elements: int = 100_000,
            kappa_baseline: bool = False) -> None:
    from oracle import formula, reference
    from oracle.floats import fmt
    from oracle.reference import condition
    from oracle.reference.program import trace

    f = fmt("float32")

    def timed(run):
        start = time.perf_counter()
        out = run()
        return time.perf_counter() - start, out

    def old_engine(program, inputs):
        return reference._compute(program, inputs, f, reference.START_PRECISION, reference.MAX_PRECISION,
                                  reference.DIFF_LIMIT)

    x = np.linspace(-20, 20, points, dtype=np.float32)
    program = trace(formula.parse(FORMULA, {"x"}), {"x": x.shape}, ["x"], batched=True)
    reference.compute(program, {"x": x}, f)  # warm: the sample's program is traced once per size
    runs = [(timed(lambda: reference.compute(program, {"x": x}, f)), timed(lambda: old_engine(program, {"x": x})))
            for _ in range(3)]  # alternated, medians
    new, old = (statistics.median(t[0] for t in side) for side in zip(*runs))
    ref = runs[-1][0][1]
    print(f"4. engines: (a) {points}-point sweep of the 20-operation formula: enclosure engine {points / new:.0f} "
          f"points/s ({ref.engine}; {ref.second_opinion}), mpmath engine {points / old:.0f} points/s; ratio "
          f"{old / new:.2f} (target >= 5; medians of 3, alternated)")
    rng = np.random.default_rng(0)
    a = (rng.standard_normal((dimension, dimension)) / np.sqrt(dimension)).astype(np.float32)
    cov = (a @ a.T + np.eye(dimension)).astype(np.float32)
    cov = ((cov + cov.T) / 2).astype(np.float32)
    inputs = {"S": cov, "x": rng.standard_normal(dimension).astype(np.float32), "mu": np.zeros(dimension, np.float32)}
    program = trace(formula.parse(MVN.format(n=dimension), set(inputs)), {k: v.shape for k, v in inputs.items()},
                    ["x", "mu"])
    new, ref = timed(lambda: reference.compute(program, inputs, f))
    prec = max(ref.precision, reference.START_PRECISION)  # as oracle.runner asks for kappa
    kappa_time, kappa = timed(lambda: condition.condition_numbers(program, inputs, prec))
    old, _ = timed(lambda: old_engine(program, inputs))
    settled = sum(int(k.sum()) for k in kappa.agrees), sum(k.size for k in kappa.agrees)
    line = (f"   (b) {dimension}-d MVN log-density, gradients in x and mu, with kappa: enclosure engine {new + kappa_time:.1f} s "
            f"(reference {new:.1f} s, {ref.engine}, {ref.precision} bits, {ref.second_opinion}; kappa {kappa_time:.1f} s, "
            f"{kappa.method}, {settled[0]} of {settled[1]} settled) (target <= 60 s); mpmath engine reference alone "
            f"{old:.1f} s")
    if kappa_baseline:
        balls, condition._by_balls = condition._by_balls, _no_balls
        try:
            mp_kappa, _ = timed(lambda: condition.condition_numbers(program, inputs, prec))
        finally:
            condition._by_balls = balls
        line += f", its kappa {mp_kappa:.1f} s; ratio {(old + mp_kappa) / (new + kappa_time):.2f}"
    print(line)
    if elements:
        child = subprocess.run([sys.executable, __file__, "--elements-child", str(elements)], check=True,
                               capture_output=True, text=True, cwd=ROOT)
        seconds, peak, engine, check = child.stdout.strip().split("\t")
        x = np.linspace(-30, 30, baseline_elements, dtype=np.float32)
        program = trace(formula.parse(ELEMENTWISE, {"x"}), {"x": x.shape}, ["x"])
        old, _ = timed(lambda: old_engine(program, {"x": x}))
        print(f"   (c) {elements}-element elementwise case {ELEMENTWISE}: enclosure engine {float(seconds):.1f} s, peak RSS "
              f"{float(peak):.0f} MB (a fresh process: imports included) ({engine}; {check}) (target <= 60 s, <= 2048 MB); "
              f"mpmath engine {old:.1f} s on {baseline_elements} of them; per-element ratio "
              f"{old / baseline_elements / (float(seconds) / elements):.2f}")


ELEMENTWISE = "log1p(exp(-x)) + x * x"


def _no_balls(*_, **__):
    from oracle.reference import arb_eval

    raise arb_eval.Undecided("--kappa-baseline: the mpmath path")


def elements_child(elements: int) -> None:
    """The enclosure engine on an N-element elementwise case, alone in this process: seconds, peak RSS (MB)."""
    import resource

    from oracle import formula, reference
    from oracle.floats import fmt
    from oracle.reference.program import trace

    x = np.linspace(-30, 30, elements, dtype=np.float32)
    program = trace(formula.parse(ELEMENTWISE, {"x"}), {"x": x.shape}, ["x"])
    start = time.perf_counter()
    ref = reference.compute(program, {"x": x}, fmt("float32"))
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{seconds}\t{peak}\t{ref.engine}\t{ref.second_opinion}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the corpus audits (minutes each)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--points", type=int, default=1000)
    parser.add_argument("--engines-only", action="store_true", help="only the reference engines (4.)")
    parser.add_argument("--mvn", type=int, default=200, help="the MVN's dimension in 4.")
    parser.add_argument("--elements", type=int, default=0, help="also an elementwise case of N elements in 4.")
    parser.add_argument("--baseline-elements", type=int, default=100_000,
                        help="elements the mpmath engine computes for the ratio in 4. (c)")
    parser.add_argument("--kappa-baseline", action="store_true", help="also the mpmath kappa in 4. (b) (slow)")
    parser.add_argument("--elements-child", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.elements_child:
        elements_child(args.elements_child)
        return
    if not args.engines_only:
        overhead(args.repeat)
        if not args.quick:
            audit()
        throughput(args.points)
    engines(args.points, args.mvn, args.elements, args.baseline_elements, args.kappa_baseline)


if __name__ == "__main__":
    main()
