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
    vectorised: bool | None = None  # a sweep: by the framework's vmap (True) or point by point (False, see note)
    note: str | None = None
    failed: dict[int, str] | None = None  # sweep points (run point by point) that raised: their outputs are NaN


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
             max_elements: int | None = None, batched: bool = False) -> Evaluation:
    """Run `tree` (a formula or an impl of this framework) on `inputs` (already rounded to `f`) with the framework's own ops.

    With `max_elements`, an impl (library code, whose sizes no case check can see) is first traced without
    running (JAX: a jaxpr; TensorFlow: a graph; PyTorch: meta tensors), and refused, as an error, if any
    tensor it would compute has more elements. Code that cannot be traced that way (data-dependent
    shapes) runs as usual: its own error, if any, is the finding.

    `batched`: the inputs have a leading axis of sweep points, evaluated as independent points."""
    result = Evaluation(framework, f.name)
    try:
        module = backend(framework)
        ops = {**formula.OPERATORS, **module.OPS, **native_ops(framework),
               "constant": lambda v: module.constant(rounded_constant(v, f), f.name)}

        def fn(env):
            return _tensor(formula.evaluate(tree, env, ops), framework)

        if max_elements is not None and is_impl(tree):
            try:
                size, shape = module.largest(fn, {n: v[0] for n, v in inputs.items()} if batched else inputs, wrt)
            except Exception:  # noqa: BLE001 - what cannot be traced abstractly (data-dependent code) runs as usual
                size, shape = 0, ()
            if batched:  # vmap gives every value a leading axis of the points
                points = len(next(iter(inputs.values())))
                size, shape = size * points, (points, *shape)
            if size > max_elements:
                result.error = (f"not run: it would compute a tensor of {size} elements (shape {list(shape)}), more "
                                f"than the cap of {max_elements} (--max-elements)")
                return result
        value, grads = _batched(module, fn, inputs, wrt, result) if batched else module.value_and_grads(fn, inputs, wrt)
    except Exception as e:  # a framework that raises is a finding, not a crash
        result.error = _message(e)
        return result
    result.value = np.asarray(value)
    result.grads = {name: np.asarray(g) for name, g in grads.items()}
    return result


def record(tree: formula.Node, framework: str, inputs: dict[str, np.ndarray], wrt: list[str], f: Format):
    """Run `tree` in TensorFlow or PyTorch as `evaluate` does, recording every op it executes
    (`oracle.frameworks.recording`), each op knowing the formula sub-expression it computes."""
    module = backend(framework)
    ops = {**formula.OPERATORS, **module.OPS, **native_ops(framework),
           "constant": lambda v: module.constant(rounded_constant(v, f), f.name)}
    return module.record(lambda env, scope: _tensor(formula.evaluate(tree, env, {**ops, "scope": scope}), framework),
                         inputs, wrt)


def _message(e: Exception) -> str:
    return f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}".rstrip(": ")


def _batched(module, fn, inputs: dict[str, np.ndarray], wrt: list[str], result: Evaluation):
    """Every sweep point at once with the framework's vmap; where that cannot run (Python control flow on
    values, such as torch.distributions' argument checks), one call per point, and the result says so.
    Point by point, a point that raises is recorded in `result.failed` and the others still count."""
    try:
        value, grads = module.value_and_grads(fn, inputs, wrt, batched=True)
        result.vectorised = True
        return value, grads
    except Exception as e:  # noqa: BLE001 - the reason is reported; the points still run
        result.vectorised, result.note = False, f"not vectorised ({_message(e)}): evaluated point by point"
    runs, failed = [], {}
    for p in range(len(next(iter(inputs.values())))):
        try:
            runs.append(module.value_and_grads(fn, {n: v[p] for n, v in inputs.items()}, wrt))
        except Exception as e:  # noqa: BLE001 - a finding at this point
            runs.append(None)
            failed[p] = _message(e)
    good = next((run for run in runs if run is not None), None)
    if good is None:
        raise RuntimeError(f"every point raised; the first: {failed[0]}")
    nan = (np.full_like(good[0], np.nan), {n: np.full_like(g, np.nan) for n, g in good[1].items()})
    runs = [nan if run is None else run for run in runs]
    result.failed = failed or None
    return np.stack([v for v, _ in runs]), {n: np.stack([g[n] for _, g in runs]) for n in wrt}


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
