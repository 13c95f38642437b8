"""The shared driver: evaluate a case's formula, or one of its impls, in one framework at one dtype.

Each backend module (tf, torch, jax) provides an op table `OPS`, `constant`,
`value_and_grads` and `version`; everything else is shared here. Backends are
imported only when a case asks for them (TensorFlow alone takes seconds); an
impl's library paths (`oracle.native`) are resolved only when it runs.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from fractions import Fraction
from functools import cache, partial

import mpmath
import numpy as np

from oracle import formula, native
from oracle.floats import Format, round_to

BACKENDS = ("tf", "torch", "jax")
PACKAGES = {"tf": "tensorflow", "torch": "torch", "jax": "jax"}
# libraries an impl may call, recorded in the report's versions once imported
LIBRARIES = {"tf": ("tensorflow_probability", "keras"), "torch": (), "jax": ("numpyro", "optax")}


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


def native_ops(framework: str) -> dict:
    """The op-table entries an impl tree needs: allowlisted library paths and methods, resolved lazily."""
    return {"native": partial(native.resolve, framework), "method": partial(native.method, framework)}


def evaluate(tree: formula.Node, framework: str, inputs: dict[str, np.ndarray], wrt: list[str], f: Format,
             max_elements: int | None = None) -> Evaluation:
    """Run `tree` (a formula or an impl of this framework) on `inputs` (already rounded to `f`) with the framework's own ops.

    With `max_elements`, an impl (library code, whose sizes no case check can see) is first traced without
    running (JAX: a jaxpr; TensorFlow: a graph; PyTorch: meta tensors), and refused, as an error, if any
    tensor it would compute has more elements. Code that cannot be traced that way (data-dependent
    shapes) runs as usual: its own error, if any, is the finding."""
    result = Evaluation(framework, f.name)
    try:
        module = backend(framework)
        ops = {**formula.OPERATORS, **module.OPS, **native_ops(framework),
               "constant": lambda v: module.constant(rounded_constant(v, f), f.name)}

        def fn(env):
            return _tensor(formula.evaluate(tree, env, ops), framework)

        if max_elements is not None and is_impl(tree):
            try:
                size, shape = module.largest(fn, inputs, wrt)
            except Exception:  # noqa: BLE001 - what cannot be traced abstractly (data-dependent code) runs as usual
                size, shape = 0, ()
            if size > max_elements:
                result.error = (f"not run: it would compute a tensor of {size} elements (shape {list(shape)}), more "
                                f"than the cap of {max_elements} (--max-elements)")
                return result
        value, grads = module.value_and_grads(fn, inputs, wrt)
    except Exception as e:  # a framework that raises is a finding, not a crash
        result.error = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}".rstrip(": ")
        return result
    result.value = np.asarray(value)
    result.grads = {name: np.asarray(g) for name, g in grads.items()}
    return result


def is_impl(tree: formula.Node) -> bool:
    """Does the tree call library code (an impl), rather than only the formula language's ops?"""
    return any(isinstance(node, (formula.Native, formula.Method)) for node in formula.walk(tree))


def _tensor(value, framework: str):
    """The result itself if it is one of the framework's tensors; an impl returning anything else is an error."""
    if isinstance(value, tuple):
        raise TypeError(f"returned a tuple of {len(value)} ({type(value).__name__}), not a {framework} tensor: "
                        "index it, e.g. [1]")
    if isinstance(value, (list, dict, np.ndarray, np.generic)) or not hasattr(value, "dtype") \
            or not hasattr(value, "shape"):
        raise TypeError(f"returned a {type(value).__name__}, not a {framework} tensor")
    return value


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
    """Installed versions of the named frameworks (imports them), and of the impl libraries they ran with."""
    out = {PACKAGES[name]: backend(name).version() for name in frameworks}
    for name in frameworks:
        for library in LIBRARIES[name]:
            module = sys.modules.get(library)
            if module is not None and getattr(module, "__version__", None):
                out[library] = str(module.__version__)
    return out
