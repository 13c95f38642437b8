"""The shared driver: evaluate a case's formula in one framework at one dtype.

Each backend module (tf, torch, jax) provides an op table `OPS`, `constant`,
`value_and_grads` and `version`; everything else is shared here. Backends are
imported only when a case asks for them (TensorFlow alone takes seconds).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from fractions import Fraction
from functools import cache

import mpmath
import numpy as np

from oracle import formula
from oracle.floats import Format, round_to

BACKENDS = ("tf", "torch", "jax")
PACKAGES = {"tf": "tensorflow", "torch": "torch", "jax": "jax"}


@dataclass
class Evaluation:
    """One framework's outputs for one case and dtype, or the error it raised."""

    framework: str
    dtype: str
    value: np.ndarray | None = None
    grads: dict[str, np.ndarray] | None = None
    error: str | None = None


def backend(name: str):
    if name not in BACKENDS:
        raise ValueError(f"unknown framework '{name}' (known: {', '.join(BACKENDS)})")
    return importlib.import_module(f"oracle.frameworks.{name}")


def exact_constant(value: Fraction | str, prec: int):
    """A formula constant as an mpf at `prec` bits (pi and e from mpmath, never from float64)."""
    with mpmath.workprec(prec):
        if value == "pi":
            return +mpmath.pi
        if value == "e":
            return +mpmath.e
        if value == "inf":
            return mpmath.inf
        return mpmath.mpf(value.numerator) / value.denominator


@cache
def rounded_constant(value: Fraction | str, f: Format) -> float:
    """A formula constant correctly rounded to `f`: what a literal means in a framework."""
    return round_to(value if isinstance(value, Fraction) else exact_constant(value, 4 * f.precision + 64), f)


def evaluate(tree: formula.Node, framework: str, inputs: dict[str, np.ndarray], wrt: list[str], f: Format) -> Evaluation:
    """Run `tree` on `inputs` (already rounded to `f`) with the framework's own ops."""
    result = Evaluation(framework, f.name)
    try:
        module = backend(framework)
        ops = {**formula.OPERATORS, **module.OPS,
               "constant": lambda v: module.constant(rounded_constant(v, f), f.name)}
        value, grads = module.value_and_grads(lambda env: formula.evaluate(tree, env, ops), inputs, wrt)
    except Exception as e:  # a framework that raises is a finding, not a crash
        result.error = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}".rstrip(": ")
        return result
    result.value = np.asarray(value)
    result.grads = {name: np.asarray(g) for name, g in grads.items()}
    return result


@cache
def subnormal_mode(framework: str, f: Format) -> dict[str, bool]:
    """How the framework treats subnormals at run time, measured, not assumed (XLA and TF on CPU flush them).

    flush_to_zero: a product whose exact result is subnormal comes back as 0;
    denormals_are_zero: a subnormal operand is read as 0."""
    def product(a: float, b: float) -> float:  # through the shared driver: JAX needs x64 enabled for float64
        value, _ = backend(framework).value_and_grads(lambda x: x["a"] * x["b"], {
            "a": np.asarray(a, f.numpy), "b": np.asarray(b, f.numpy)}, [])
        return float(value)

    products = product(float(f.min_normal), 0.5), product(float(f.min_normal / 2 ** (f.precision - 1)), 1.0)
    return {"flush_to_zero": float(products[0]) == 0.0, "denormals_are_zero": float(products[1]) == 0.0}


def versions(frameworks) -> dict[str, str]:
    """Installed versions of the named frameworks (imports them)."""
    return {PACKAGES[name]: backend(name).version() for name in frameworks}
