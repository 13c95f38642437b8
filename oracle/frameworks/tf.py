"""TensorFlow backend: tf.math / tf.linalg ops (TFP for ndtr), gradients with GradientTape (eager, CPU)."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


def _standard_normal(method: str):
    def op(x):
        import tensorflow_probability as tfp  # slow import: only when a formula uses it

        dist = tfp.distributions.Normal(tf.zeros([], x.dtype), tf.ones([], x.dtype))
        return getattr(dist, method)(x)

    return op


def _matmul(a, b):
    """numpy matmul semantics (tf.linalg.matmul rejects vectors)."""
    a2 = a[None, :] if a.shape.rank == 1 else a
    b2 = b[:, None] if b.shape.rank == 1 else b
    out = tf.linalg.matmul(a2, b2)
    if b.shape.rank == 1:
        out = out[..., 0]
    if a.shape.rank == 1:
        out = out[..., 0, :] if b.shape.rank != 1 else out[..., 0]
    return out


def _solve_triangular(a, b):
    if b.shape.rank == 1:
        return tf.linalg.triangular_solve(a, b[:, None], lower=True)[:, 0]
    return tf.linalg.triangular_solve(a, b, lower=True)


@tf.custom_gradient
def _hypot_same_shape(x, y):
    a, b = tf.math.abs(x), tf.math.abs(y)
    hi, lo = tf.math.maximum(a, b), tf.math.minimum(a, b)
    zero = tf.math.equal(hi, 0)
    ratio = lo / tf.where(zero, tf.ones_like(hi), hi)
    out = tf.where(zero, hi, hi * tf.math.sqrt(1 + tf.math.square(ratio)))
    out = tf.where(tf.math.logical_or(tf.math.is_inf(a), tf.math.is_inf(b)), tf.constant(float("inf"), out.dtype), out)

    def grad(upstream):  # x / hypot is at most 1: no 1/hi**2 to overflow or flush to zero
        safe = tf.where(tf.math.equal(out, 0), tf.ones_like(out), out)
        return upstream * (x / safe), upstream * (y / safe)

    return out, grad


def _hypot(x, y):
    """sqrt(x**2 + y**2) as max * sqrt(1 + (min/max)**2), gradient x / hypot (0 at the origin).

    TF has no stable hypot (tf.experimental.numpy.hypot squares its arguments and overflows)."""
    shape = tf.broadcast_dynamic_shape(tf.shape(x), tf.shape(y))
    return _hypot_same_shape(tf.broadcast_to(x, shape), tf.broadcast_to(y, shape))


def _lbeta(a, b):
    import tensorflow_probability as tfp  # slow import: only when a formula uses it

    return tfp.math.lbeta(a, b)


def _betainc(a, b, x):
    """tf.math.betainc wants its three operands of one shape."""
    shape = tf.broadcast_dynamic_shape(tf.broadcast_dynamic_shape(tf.shape(a), tf.shape(b)), tf.shape(x))
    return tf.math.betainc(*(tf.broadcast_to(t, shape) for t in (a, b, x)))


OPS = {
    "exp": tf.math.exp, "log": tf.math.log, "log1p": tf.math.log1p, "expm1": tf.math.expm1,
    "sqrt": tf.math.sqrt, "square": tf.math.square, "abs": tf.math.abs, "sin": tf.math.sin,
    "cos": tf.math.cos, "tanh": tf.math.tanh, "sigmoid": tf.math.sigmoid,
    "log_sigmoid": tf.math.log_sigmoid, "softplus": tf.math.softplus,
    "erf": tf.math.erf, "erfc": tf.math.erfc, "lgamma": tf.math.lgamma, "digamma": tf.math.digamma,
    "ndtr": _standard_normal("cdf"), "log_ndtr": _standard_normal("log_cdf"),
    "transpose": tf.transpose,
    "diag": lambda x: tf.linalg.diag(x) if x.shape.rank == 1 else tf.linalg.diag_part(x),
    "tril": lambda x: tf.linalg.band_part(x, -1, 0),
    "cholesky": tf.linalg.cholesky, "logdet": lambda a: tf.linalg.slogdet(a)[1],
    "logsumexp": lambda x, axis=None: tf.math.reduce_logsumexp(x, axis=axis),
    "sum": lambda x, axis=None: tf.math.reduce_sum(x, axis=axis),
    "mean": lambda x, axis=None: tf.math.reduce_mean(x, axis=axis),
    "max": lambda x, axis=None: tf.math.reduce_max(x, axis=axis),
    "min": lambda x, axis=None: tf.math.reduce_min(x, axis=axis),
    "maximum": tf.math.maximum, "minimum": tf.math.minimum, "where": tf.where,
    "matmul": _matmul, "solve_triangular": _solve_triangular, "hypot": _hypot,
    "i0e": tf.math.bessel_i0e, "i1e": tf.math.bessel_i1e, "erfinv": tf.math.erfinv, "gammainc": tf.math.igamma,
    "gammaincc": tf.math.igammac, "betainc": _betainc, "polygamma": tf.math.polygamma, "xlogy": tf.math.xlogy,
    "xlog1py": tf.math.xlog1py, "lbeta": _lbeta,
}


def version() -> str:
    return tf.__version__


def largest(fn, inputs: dict[str, np.ndarray], wrt: list[str]) -> tuple[int, tuple[int, ...]]:
    """The largest tensor value_and_grads(fn, ...) would compute, from a traced graph (nothing is run)."""
    names = list(inputs)

    def run(*args):
        return _taped(fn, dict(zip(names, args)), wrt)

    graph = tf.function(run, autograph=False).get_concrete_function(
        *[tf.TensorSpec(inputs[n].shape, tf.as_dtype(inputs[n].dtype)) for n in names]).graph
    best = (0, ())
    for op in graph.get_operations():
        for out in op.outputs:
            dims = out.shape.as_list() if out.shape.rank is not None else None
            if dims is not None and None not in dims:
                best = max(best, (int(np.prod(dims, dtype=object)), tuple(dims)))
    return best


def _taped(fn, tensors: dict, wrt: list[str]):
    """fn(tensors) and the gradient of its sum with respect to each `wrt` tensor, eager or in a graph."""
    with tf.GradientTape() as tape:
        for name in wrt:
            tape.watch(tensors[name])
        value = fn(tensors)
    grads = tape.gradient(value, [tensors[name] for name in wrt], output_gradients=tf.ones_like(value),
                          unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return value, grads


def constant(value: float, dtype: str):
    return tf.constant(value, dtype=dtype)


def value_and_grads(fn, inputs: dict[str, np.ndarray], wrt: list[str], batched: bool = False):
    """f(inputs) and the gradient of sum(f) with respect to each `wrt` input; `batched`: of each point
    along the inputs' leading axis, with tf.vectorized_map (a while loop where pfor has no rule for an op)."""
    tensors = {name: tf.constant(value) for name, value in inputs.items()}
    if batched:
        value, grads = tf.vectorized_map(lambda args: _taped(fn, args, wrt), tensors, fallback_to_while_loop=True)
    else:
        value, grads = _taped(fn, tensors, wrt)
    return value.numpy(), {name: g.numpy() for name, g in zip(wrt, grads)}
