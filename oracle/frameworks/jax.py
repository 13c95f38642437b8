"""JAX backend: jax.numpy / jax.nn / jax.scipy ops, gradients with jax.vjp (eager, CPU)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import jax.scipy.special as jss
import numpy as np

OPS = {
    "exp": jnp.exp, "log": jnp.log, "log1p": jnp.log1p, "expm1": jnp.expm1, "sqrt": jnp.sqrt,
    "square": jnp.square, "abs": jnp.abs, "sin": jnp.sin, "cos": jnp.cos, "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid, "log_sigmoid": jax.nn.log_sigmoid, "softplus": jax.nn.softplus,
    "erf": jss.erf, "erfc": jss.erfc, "lgamma": jss.gammaln, "digamma": jss.digamma,
    "ndtr": jss.ndtr, "log_ndtr": jss.log_ndtr,
    "transpose": jnp.transpose, "diag": jnp.diag, "tril": jnp.tril,
    "cholesky": jnp.linalg.cholesky, "logdet": lambda a: jnp.linalg.slogdet(a)[1],
    "logsumexp": lambda x, axis=None: jss.logsumexp(x, axis=axis),
    "sum": lambda x, axis=None: jnp.sum(x, axis=axis),
    "mean": lambda x, axis=None: jnp.mean(x, axis=axis),
    "max": lambda x, axis=None: jnp.max(x, axis=axis),
    "min": lambda x, axis=None: jnp.min(x, axis=axis),
    "maximum": jnp.maximum, "minimum": jnp.minimum, "where": jnp.where, "matmul": jnp.matmul,
    "hypot": jnp.hypot,
    "solve_triangular": lambda a, b: jsl.solve_triangular(a, b, lower=True),
    "i0e": jss.i0e, "i1e": jss.i1e, "erfinv": jss.erfinv, "gammainc": jss.gammainc, "gammaincc": jss.gammaincc,
    "betainc": jss.betainc, "xlogy": jss.xlogy, "xlog1py": jss.xlog1py, "lbeta": jss.betaln,
    "polygamma": lambda n, x: jss.polygamma(jnp.asarray(n).astype(jnp.int32), x),  # n is an integer literal
}


def version() -> str:
    return jax.__version__


def largest_in_jaxpr(jaxpr) -> tuple[int, tuple[int, ...]]:
    """The element count and shape of the largest value a jaxpr computes (nested jaxprs included)."""
    best = (0, ())
    jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
    for eqn in jaxpr.eqns:
        for var in eqn.outvars:
            shape = tuple(getattr(var.aval, "shape", ()))
            best = max(best, (int(np.prod(shape, dtype=object)), shape))
        for param in eqn.params.values():
            for sub in param if isinstance(param, (tuple, list)) else (param,):
                if hasattr(sub, "eqns") or hasattr(getattr(sub, "jaxpr", None), "eqns"):
                    best = max(best, largest_in_jaxpr(sub))
    return best


def largest(fn, inputs: dict[str, np.ndarray], wrt: list[str]) -> tuple[int, tuple[int, ...]]:
    """The largest tensor value_and_grads(fn, ...) would compute, from an abstract trace (nothing is allocated)."""
    with jax.enable_x64(any(v.dtype == np.float64 for v in inputs.values())):
        avals = {name: jax.ShapeDtypeStruct(value.shape, value.dtype) for name, value in inputs.items()}
        return largest_in_jaxpr(jax.make_jaxpr(_point(fn, wrt))(avals))


def _point(fn, wrt: list[str]):
    """args -> (fn(args), the gradient of its sum with respect to each `wrt` arg): what runs, and what is sized."""
    def point(args):
        value, pullback = jax.vjp(lambda diff: fn({**args, **diff}), {name: args[name] for name in wrt})
        (grads,) = pullback(jnp.ones_like(value))
        return value, grads

    return point


def constant(value: float, dtype: str):
    return jnp.asarray(value, dtype=dtype)


def value_and_grads(fn, inputs: dict[str, np.ndarray], wrt: list[str], batched: bool = False):
    """f(inputs) and the gradient of sum(f) with respect to each `wrt` input; `batched`: of each point
    along the inputs' leading axis, with jax.vmap."""
    point = _point(fn, wrt)
    with jax.enable_x64(any(v.dtype == np.float64 for v in inputs.values())):  # float64 for this run only
        value, grads = (jax.vmap(point) if batched else point)({n: jnp.asarray(v) for n, v in inputs.items()})
        return np.asarray(value), {name: np.asarray(g) for name, g in grads.items()}
