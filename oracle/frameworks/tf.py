"""TensorFlow backend: tf.math / tf.linalg ops (TFP for ndtr), gradients with GradientTape (eager, CPU)."""

from __future__ import annotations

import os
import re
import sys
from functools import cache

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


# ---------------------------------------------------------------- recording

_LIBRARY = re.compile(r"/(tensorflow_probability/python/(?!internal/)|tf_keras/|keras/src/(?!backend/)"
                      r"|tensorflow/python/ops/\w+_grad\.py|tensorflow/python/ops/nn_impl\.py)")


def _library_line() -> str | None:
    """file:line (function) of the innermost library frame (TFP, keras, a gradient function of TF's)."""
    frame = sys._getframe(2)
    while frame is not None:
        name = frame.f_code.co_filename
        found = _LIBRARY.search(name)
        if found:
            return f"{name[found.start() + 1:]}:{frame.f_lineno} ({frame.f_code.co_name})"
        frame = frame.f_back
    return None


def _forward_op_of_gradient():
    """The forward op a gradient function (math_grad.py's _ExpGrad(op, grad), ...) is differentiating."""
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code.co_filename.endswith("_grad.py"):
            op = frame.f_locals.get("op")
            outputs = getattr(op, "outputs", None)
            if outputs:
                return outputs[0]
        frame = frame.f_back
    return None


def record(fn, inputs: dict[str, np.ndarray], wrt: list[str]):
    """Run fn like value_and_grads and record every op that eager execution and GradientTape run.

    TF's op callbacks (the mechanism behind tf.debugging.enable_check_numerics) see each
    executed op with its operand and result tensors; tf.functions inside libraries run
    eagerly meanwhile, so their ops are seen one by one too (a graph would hide them in
    one call op). Operands are linked to the op that produced them by tensor identity
    (every tensor is kept alive); a tensor no op produced is a constant the library made.
    `fn(tensors, scope)`: `scope` is a context manager taking a formula node."""
    from tensorflow.python.eager import context, execute
    from tensorflow.python.framework import op_callbacks

    from oracle.frameworks.recording import Recording, Ref, Scopes, Step

    keep, produced, steps, scopes, backward = [], {}, [], Scopes(), []

    def ref(t) -> Ref:
        found = produced.get(id(t))
        return found if found is not None else Ref(value=np.asarray(t.numpy()).copy())

    def callback(op_type, op_inputs, attrs, outputs, op_name=None, graph=None):
        if graph is not None or not outputs:
            return None
        keep.append((op_inputs, outputs))
        attrs = tuple(attrs or ())
        text, source = scopes.current, _library_line()
        if backward:
            forward = _forward_op_of_gradient()
            origin = None if forward is None else produced.get(id(forward))
            if origin is not None and origin.step is not None:
                text = steps[origin.step].params.get("_where")
        index = len(steps)

        def rerun(values, op_type=op_type, attrs=attrs, count=len(outputs)):
            tensors = [tf.constant(v) for v in values]
            return [np.asarray(t.numpy()).copy() for t in execute.quick_execute(op_type, count, tensors, attrs,
                                                                                     context.context())]

        op_type = op_type.decode() if isinstance(op_type, bytes) else op_type
        steps.append(Step(op_type, [ref(t) for t in op_inputs], {**dict(zip(attrs[::2], attrs[1::2])), "_where": text},
                          [np.asarray(t.numpy()).copy() for t in outputs], source,
                          "backward" if backward else "forward", rerun))
        for k, t in enumerate(outputs):
            produced[id(t)] = Ref(step=index, output=k)
        return None

    tensors = {name: tf.constant(value) for name, value in inputs.items()}
    for name, t in tensors.items():
        produced[id(t)] = Ref(input=name)
    eager = tf.config.functions_run_eagerly()
    tf.config.run_functions_eagerly(True)
    op_callbacks.add_op_callback(callback)
    try:
        with tf.GradientTape() as tape:
            for name in wrt:
                tape.watch(tensors[name])
            value = fn(tensors, scopes)
        backward.append(True)
        seed = tf.ones_like(value)
        grads = tape.gradient(value, [tensors[n] for n in wrt], output_gradients=seed,
                              unconnected_gradients=tf.UnconnectedGradients.ZERO)
    finally:
        op_callbacks.remove_op_callback(callback)
        tf.config.run_functions_eagerly(eager)
    return Recording("tf", steps, [ref(value)] + [ref(g) for g in grads])


# ---------------------------------------------------------------- exact replay

@cache
def exact_rules() -> dict:
    """TF op name -> Rule: each op exactly on exact operands (its inputs in order; attributes as params)."""
    return _exact_table()


def _refuse(what: str):
    raise ValueError(f"{what} are not replayed")


def _exact_table() -> dict:
    import dataclasses

    import mpmath

    from oracle.frameworks.recording import Rule, composite, identity, primitive, put

    def const(x):
        return np.asarray(mpmath.mpf(x), dtype=object)

    def axes(x, indices):
        dims = np.asarray(indices).ravel().tolist()
        return tuple(sorted(int(d) % max(x.ndim, 1) for d in dims))

    def reduce(kind):
        def fn(ops, x, indices, keep_dims=False, **_):
            dims = axes(x, indices)
            out = ops(f"reduce_{kind}", x, axes=dims)
            return np.reshape(out, [1 if d in dims else n for d, n in enumerate(x.shape)]) if keep_dims else out
        return fn

    def mean(ops, x, indices, keep_dims=False, **_):
        dims = axes(x, indices)
        count = int(np.prod([x.shape[d] for d in dims], dtype=int))
        out = ops("div", ops("reduce_sum", x, axes=dims), const(count))
        return np.reshape(out, [1 if d in dims else n for d, n in enumerate(x.shape)]) if keep_dims else out

    def log_softmax(ops, x, **_):
        last = (x.ndim - 1,)
        total = ops("log", ops("reduce_sum", ops("exp", x), axes=last))
        return ops("sub", x, np.expand_dims(total, -1))

    def softmax_xent(ops, features, labels, **_):  # (loss, backprop) per row of the last axis
        log_p = log_softmax(ops, features)
        loss = ops("neg", ops("reduce_sum", ops("mul", labels, log_p), axes=(features.ndim - 1,)))
        return loss, ops("sub", ops("exp", log_p), labels)

    def sparse_softmax_xent(ops, features, labels, **_):  # labels are class indices
        onehot = np.zeros(features.shape, dtype=object)
        onehot[...] = mpmath.mpf(0)
        np.put_along_axis(onehot, np.asarray(labels)[..., None].astype(np.int64), mpmath.mpf(1), axis=-1)
        return softmax_xent(ops, features, onehot)

    def set_diag(ops, x, d, k, **_):
        if int(np.asarray(k).ravel()[0]) != 0 or np.asarray(k).size != 1:
            raise ValueError("only the main diagonal is replayed")
        out = np.array(x, dtype=object, copy=True)
        n = min(x.shape[-2:])
        out[..., np.arange(n), np.arange(n)] = d
        return out

    def softplus(ops, x, **_):
        return ops("log1p", ops("exp", x))

    def xlogy(fn):
        def rule(ops, x, y, **_):
            zero = const(0)
            return ops("select_n", ops("eq", x, zero), ops("mul", x, ops(fn, y)), zero)
        return rule

    def div_no_nan(ops, x, y, **_):
        zero = const(0)
        return ops("select_n", ops("eq", y, zero), ops("div", x, y), zero)

    def mul_no_nan(ops, x, y, **_):
        zero = const(0)
        return ops("select_n", ops("eq", y, zero), ops("mul", x, y), zero)

    def power(ops, x, p, **_):
        return ops("pow", x, p)

    def batch_matmul(ops, a, b, adj_x=False, adj_y=False, transpose_a=False, transpose_b=False, **_):
        if adj_x or transpose_a:
            a = np.swapaxes(a, -1, -2)
        if adj_y or transpose_b:
            b = np.swapaxes(b, -1, -2)
        return np.matmul(a, b)

    def triangular_solve(ops, a, b, lower=True, adjoint=False, **_):
        return ops("triangular_solve", a, b, left_side=True, lower=lower, transpose_a=adjoint, conjugate_a=False,
                   unit_diagonal=False)

    def band_part(ops, x, lower, upper, **_):
        n, m = x.shape[-2:]
        i, j = np.arange(n)[:, None], np.arange(m)[None, :]
        lo, hi = int(np.asarray(lower)), int(np.asarray(upper))
        keep = ((lo < 0) | (i - j <= lo)) & ((hi < 0) | (j - i <= hi))
        return np.where(keep, x, mpmath.mpf(0))

    def diag_part(ops, x, k, padding=None, **_):  # the main diagonal (k = 0): what TFP's MVN reads
        if int(np.asarray(k).ravel()[0]) != 0 or np.asarray(k).size != 1:
            raise ValueError("only the main diagonal is replayed")
        return np.diagonal(x, 0, -2, -1)

    def diag(ops, d, k, rows=None, cols=None, padding=None, **_):
        if int(np.asarray(k).ravel()[0]) != 0 or np.asarray(k).size != 1:
            raise ValueError("only the main diagonal is replayed")
        n = d.shape[-1]
        out = np.full((*d.shape, n), mpmath.mpf(0), dtype=object)
        out[..., np.arange(n), np.arange(n)] = d
        return out

    def sliced(begin, end, strides, begin_mask=0, end_mask=0, ellipsis_mask=0, new_axis_mask=0, shrink_axis_mask=0,
               **_):
        """The numpy index of a strided slice: bit i of a mask applies to entry i of begin/end/strides."""
        index = []
        for i, (b, e, k) in enumerate(zip(*(np.asarray(v).tolist() for v in (begin, end, strides)))):
            if ellipsis_mask >> i & 1:
                index.append(Ellipsis)
            elif new_axis_mask >> i & 1:
                index.append(np.newaxis)
            elif shrink_axis_mask >> i & 1:
                index.append(b)
            else:
                index.append(slice(None if begin_mask >> i & 1 else b, None if end_mask >> i & 1 else e, k))
        return tuple(index)

    def strided_slice(ops, x, begin, end, strides, **masks):
        return x[sliced(begin, end, strides, **masks)]

    def strided_slice_grad(ops, shape, begin, end, strides, dy, **masks):
        out = np.full(tuple(np.asarray(shape).tolist()), mpmath.mpf(0), dtype=object)
        index = sliced(begin, end, strides, **masks)
        return put(out, index, np.reshape(dy, np.shape(out[index])))

    def select(ops, cond, a, b, **_):
        return ops("select_n", np.broadcast_to(cond, np.broadcast_shapes(cond.shape, a.shape, b.shape)), b, a)

    def add_n(ops, *xs, **_):
        out = xs[0]
        for x in xs[1:]:
            out = ops("add", out, x)
        return out

    def sum_shape(step, operands):
        return {"axes": axes(operands[0], operands[1])}

    unary = {"Exp": "exp", "Log": "log", "Log1p": "log1p", "Expm1": "expm1", "Sqrt": "sqrt", "Rsqrt": "rsqrt",
             "Neg": "neg", "Abs": "abs", "Sigmoid": "logistic", "Tanh": "tanh", "Lgamma": "lgamma",
             "Digamma": "digamma", "Erf": "erf", "Erfc": "erfc", "Sin": "sin", "Cos": "cos", "Sign": "sign",
             "Floor": "floor", "Ceil": "ceil", "Square": "square", "BesselI0e": "bessel_i0e",
             "BesselI1e": "bessel_i1e", "Erfinv": "erf_inv", "Asinh": "asinh", "Acosh": "acosh", "Atanh": "atanh",
             "Atan": "atan", "Sinh": "sinh", "Cosh": "cosh"}
    table = {name: primitive(prim) for name, prim in unary.items()}
    table |= {name: primitive(prim) for name, prim in {
        "AddV2": "add", "Add": "add", "Sub": "sub", "Mul": "mul", "RealDiv": "div", "Div": "div",
        "Maximum": "max", "Minimum": "min", "Atan2": "atan2", "Igamma": "igamma", "Igammac": "igammac",
        "IgammaGradA": "igamma_grad_a"}.items()}
    table |= {name: primitive(prim, "elementwise") for name, prim in {
        "Greater": "gt", "Less": "lt", "GreaterEqual": "ge", "LessEqual": "le", "Equal": "eq", "NotEqual": "ne",
        "LogicalAnd": "and", "LogicalOr": "or", "LogicalNot": "not"}.items()}
    table |= {name: identity() for name in ("Identity", "StopGradient", "Cast", "Snapshot", "PreventGradient")}
    # values that depend on no float operand's value: exactly what the framework made
    table |= {name: Rule("constant", None) for name in ("ZerosLike", "OnesLike", "Shape", "ShapeN", "Size", "Rank",
                                                        "BroadcastGradientArgs", "Range")}
    rules = {
        "Reciprocal": composite(lambda ops, x, **_: ops("div", const(1), x), "div"),
        "Pow": composite(power, "pow"),
        "SquaredDifference": composite(lambda ops, x, y, **_: ops("square", ops("sub", x, y)), "elementwise"),
        "Softplus": composite(softplus), "Xlogy": composite(xlogy("log"), "mul"),
        "Xlog1py": composite(xlogy("log1p"), "mul"),
        "Xdivy": composite(lambda ops, x, y, **_: ops("select_n", ops("eq", x, const(0)), ops("div", x, y), const(0)),
                           "div"),
        "DivNoNan": composite(div_no_nan, "div"), "MulNoNan": composite(mul_no_nan, "mul"),
        "SelectV2": composite(select, "select_n"), "Select": composite(select, "select_n"),
        "AddN": composite(add_n, "add_any"),
        "SigmoidGrad": composite(lambda ops, y, g, **_: ops("mul", g, ops("mul", y, ops("sub", const(1), y)))),
        "TanhGrad": composite(lambda ops, y, g, **_: ops("mul", g, ops("sub", const(1), ops("mul", y, y)))),
        "SoftplusGrad": composite(lambda ops, g, x, **_: ops("mul", g, ops("logistic", x))),
        "RsqrtGrad": composite(lambda ops, y, g, **_: ops("mul", g, ops("mul", const(-0.5), ops(
            "mul", y, ops("mul", y, y))))),
        "SqrtGrad": composite(lambda ops, y, g, **_: ops("div", ops("mul", g, const(0.5)), y)),
        "ReciprocalGrad": composite(lambda ops, y, g, **_: ops("neg", ops("mul", g, ops("mul", y, y)))),
        "Sum": composite(reduce("sum"), "reduce_sum"), "Max": composite(reduce("max"), "other"),
        "Min": composite(reduce("min"), "other"), "Mean": composite(mean, "other"),
        "Prod": composite(reduce("prod"), "other"),
        "LogSoftmax": composite(log_softmax, "other"),
        "Softmax": composite(lambda ops, x, **_: ops("exp", log_softmax(ops, x)), "other"),
        "Reshape": composite(lambda ops, x, shape, **_: np.reshape(x, tuple(np.asarray(shape).tolist())), "reshape"),
        "ExpandDims": composite(lambda ops, x, dim, **_: np.expand_dims(x, int(np.asarray(dim)) % (x.ndim + 1)),
                                "reshape"),
        "Squeeze": composite(lambda ops, x, squeeze_dims=(), **_: np.squeeze(x, tuple(squeeze_dims) or None),
                             "reshape"),
        "BroadcastTo": composite(lambda ops, x, shape, **_: np.broadcast_to(x, tuple(np.asarray(shape).tolist())),
                                 "broadcast"),
        "Transpose": composite(lambda ops, x, perm, **_: np.transpose(x, np.asarray(perm).tolist()), "move"),
        "BatchMatMulV2": composite(batch_matmul, "other"), "BatchMatMulV3": composite(batch_matmul, "other"),
        "MatMul": composite(batch_matmul, "other"),
        "Cholesky": composite(lambda ops, a, **_: ops("cholesky", a), "other"),
        "MatrixTriangularSolve": composite(triangular_solve, "other"),
        "MatrixBandPart": composite(band_part, "move"),
        "Fill": composite(lambda ops, dims, value, **_: np.broadcast_to(value, tuple(np.asarray(dims).tolist())),
                          "broadcast"),
        "Tile": composite(lambda ops, x, multiples, **_: np.tile(x, np.asarray(multiples).tolist()), "move"),
        "Pack": composite(lambda ops, *xs, axis=0, **_: np.stack(xs, axis=axis), "move"),
        "ConcatV2": composite(lambda ops, *xs, **_: np.concatenate(xs[:-1], axis=int(np.asarray(xs[-1]))), "move"),
        "GatherV2": composite(lambda ops, x, indices, axis, batch_dims=0, **_: np.take(
            x, np.asarray(indices), axis=int(np.asarray(axis))) if not batch_dims else _refuse("batched gathers"),
            "other"),
        "StridedSlice": composite(strided_slice, "move"),
        "StridedSliceGrad": composite(strided_slice_grad, "move"),
        "Polygamma": composite(lambda ops, a, x, **_: ops("polygamma", a, x)),
        "IsFinite": composite(lambda ops, x, **_: np.asarray(np.frompyfunc(mpmath.isfinite, 1, 1)(x), dtype=bool)),
        "MatrixSetDiagV3": composite(set_diag, "move"),
        "SparseSoftmaxCrossEntropyWithLogits": composite(sparse_softmax_xent, "other"),
        "SoftmaxCrossEntropyWithLogits": composite(softmax_xent, "other"),
        "MatrixDiagPartV3": composite(diag_part, "move"), "MatrixDiagV3": composite(diag, "move"),
    }
    table |= rules
    table["Sum"] = dataclasses.replace(table["Sum"], shape_params=sum_shape)
    for name in ("Select", "SelectV2"):  # select(cond, a, b) is select_n(cond, b, a)
        table[name] = dataclasses.replace(table[name], order=(0, 2, 1))
    return table
