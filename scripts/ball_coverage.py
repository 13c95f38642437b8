"""Which programs of the corpus contain a primitive the ball engine has no rule for (so the mpmath engine certifies
them instead): each case's reference, and what JAX runs for its formula and jax impls (the programs the runner
evaluates exactly to classify, runner._exact). Static: the jaxprs are traced, not evaluated.

Usage: python scripts/ball_coverage.py [paths ...] (default: cases/)
"""

from __future__ import annotations

import collections
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# primitives mp_eval has and arb_eval has not: Arb has no derivative of the incomplete gamma function in its
# parameter, python-flint no enclosure of a symmetric matrix's eigenvectors; neither engine has cumlogsumexp
NO_BALL_RULE = {"igamma_grad_a", "eigh", "cumlogsumexp"}


def primitives(jaxpr, out: set) -> set:
    for eqn in jaxpr.eqns:
        out.add(eqn.primitive.name)
        for param in eqn.params.values():
            for sub in param if isinstance(param, (tuple, list)) else (param,):
                inner = sub if hasattr(sub, "eqns") else getattr(sub, "jaxpr", None)
                if hasattr(inner, "eqns"):
                    primitives(inner, out)
    return out


def main(paths: list[str]) -> None:
    from oracle.case import load_all
    from oracle.frameworks import jax as jax_backend
    from oracle.frameworks import native_ops
    from oracle.reference.program import trace

    cases, _ = load_all(paths or [str(ROOT / "cases")])
    own = {**jax_backend.OPS, **native_ops("jax")}
    tally = collections.Counter()
    for case in cases:
        shapes = {n: v.shape for n, v in case.batched_inputs().items()}
        programs = [("reference", case.reference, {})]
        programs += [("formula", case.formula, {"ops": own})] if case.formula is not None else []
        programs += [(label, tree, {"ops": own}) for label, tree in case.impls.get("jax", [])]
        for label, tree, ops in programs:
            try:
                program = trace(tree, shapes, case.wrt, batched=bool(case.sweeps), integers=case.integers, **ops)
            except Exception as e:  # noqa: BLE001 - a library call JAX cannot trace here: counted, named
                tally["untraceable"] += 1
                print(f"{case.id:<48} {label:<40} untraceable: {type(e).__name__}")
                continue
            tally["programs"] += 1
            missing = sorted(primitives(program.full.jaxpr, set()) & NO_BALL_RULE)
            if missing:
                tally["without a ball rule"] += 1
                print(f"{case.id:<48} {label:<40} {', '.join(missing)}")
    print(f"{len(cases)} cases: {dict(tally)}")


if __name__ == "__main__":
    main(sys.argv[1:])
