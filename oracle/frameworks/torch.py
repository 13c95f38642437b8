"""PyTorch backend: torch / torch.special / torch.linalg ops, gradients with autograd (eager, CPU)."""

from __future__ import annotations

from functools import cache

import numpy as np
import torch
import torch.nn.functional as F


def _reduce(op):
    """torch reductions take `dim`; axis=None reduces every dimension."""
    return lambda x, axis=None: op(x, dim=tuple(range(x.ndim)) if axis is None else axis)


def _solve_triangular(a, b):
    if b.ndim == 1:
        return torch.linalg.solve_triangular(a, b[:, None], upper=False)[:, 0]
    return torch.linalg.solve_triangular(a, b, upper=False)


def _betainc(a, b, x):
    raise NotImplementedError("PyTorch has no regularized incomplete beta function (no torch.special.betainc)")


OPS = {
    "exp": torch.exp, "log": torch.log, "log1p": torch.log1p, "expm1": torch.expm1,
    "sqrt": torch.sqrt, "square": torch.square, "abs": torch.abs, "sin": torch.sin,
    "cos": torch.cos, "tanh": torch.tanh, "sigmoid": torch.sigmoid, "log_sigmoid": F.logsigmoid,
    "softplus": F.softplus, "erf": torch.special.erf, "erfc": torch.special.erfc,
    "lgamma": torch.lgamma, "digamma": torch.digamma, "ndtr": torch.special.ndtr,
    "log_ndtr": torch.special.log_ndtr,
    "transpose": lambda x: x.permute(*reversed(range(x.ndim))), "diag": torch.diag, "tril": torch.tril,
    "cholesky": torch.linalg.cholesky, "logdet": lambda a: torch.linalg.slogdet(a)[1],
    "logsumexp": _reduce(torch.logsumexp), "sum": _reduce(torch.sum), "mean": _reduce(torch.mean),
    "max": _reduce(torch.amax), "min": _reduce(torch.amin),
    "maximum": torch.maximum, "minimum": torch.minimum, "where": torch.where,
    "matmul": torch.matmul, "solve_triangular": _solve_triangular, "hypot": torch.hypot,
    "i0e": torch.special.i0e, "i1e": torch.special.i1e, "erfinv": torch.special.erfinv,
    "gammainc": torch.special.gammainc, "gammaincc": torch.special.gammaincc, "betainc": _betainc,
    "polygamma": lambda n, x: torch.special.polygamma(int(n), x),  # n is an integer literal
    "xlogy": torch.special.xlogy, "xlog1py": torch.special.xlog1py,
    "lbeta": lambda a, b: torch.lgamma(a) + torch.lgamma(b) - torch.lgamma(a + b),  # as torch.distributions.Beta
}


def version() -> str:
    return torch.__version__


def largest(fn, inputs: dict[str, np.ndarray], wrt: list[str]) -> tuple[int, tuple[int, ...]]:
    """The largest tensor value_and_grads(fn, ...) would compute, on meta tensors (nothing is allocated).

    Distributions' argument validation reads values, which meta tensors have not: it is off during this pass."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    class Sizes(TorchDispatchMode):
        best = (0, ())

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in tree_flatten(out)[0]:
                if isinstance(t, torch.Tensor):
                    self.best = max(self.best, (t.numel(), tuple(t.shape)))
            return out

    validate = torch.distributions.Distribution._validate_args
    torch.distributions.Distribution.set_default_validate_args(False)
    try:
        with torch.device("meta"), Sizes() as sizes:  # constants the impl makes are meta tensors too
            tensors = {name: torch.empty(value.shape, dtype=getattr(torch, value.dtype.name), device="meta",
                                         requires_grad=name in wrt) for name, value in inputs.items()}
            value = fn(tensors)
            if value.requires_grad:
                torch.autograd.grad(value.sum(), [tensors[n] for n in wrt], allow_unused=True)
    finally:
        torch.distributions.Distribution.set_default_validate_args(validate)
    return sizes.best


def constant(value: float, dtype: str):
    return torch.tensor(value, dtype=getattr(torch, dtype))


def value_and_grads(fn, inputs: dict[str, np.ndarray], wrt: list[str], batched: bool = False):
    """f(inputs) and the gradient of sum(f) with respect to each `wrt` input; `batched`: of each point
    along the inputs' leading axis, with torch.func.vmap."""
    if batched:
        return _vmapped(fn, inputs, wrt)
    tensors = {name: torch.tensor(value, requires_grad=name in wrt) for name, value in inputs.items()}
    value = fn(tensors)
    if value.requires_grad:  # sum's backward seeds exactly the ones a grad_outputs tensor would, without
        # autograd's shape check of grad_outputs, which imports sympy (0.5 s)
        grads = torch.autograd.grad(value.sum(), [tensors[n] for n in wrt], allow_unused=True)
    else:
        grads = [None] * len(wrt)
    grads = [torch.zeros_like(tensors[n]) if g is None else g for n, g in zip(wrt, grads)]
    return value.detach().numpy(), {name: g.numpy() for name, g in zip(wrt, grads)}


def _vmapped(fn, inputs: dict[str, np.ndarray], wrt: list[str]):
    from torch.func import vjp, vmap

    def point(tensors):
        value, pullback = vjp(lambda diff: fn({**tensors, **diff}), {n: tensors[n] for n in wrt})
        (grads,) = pullback(torch.ones_like(value))
        return value, grads

    value, grads = vmap(point)({name: torch.tensor(value) for name, value in inputs.items()})
    return value.detach().numpy(), {name: grads[name].detach().numpy() for name in wrt}


# ---------------------------------------------------------------- recording

# torch's own dispatch and wrapper frames: skipped when locating the library line behind an op
_MACHINERY = ("torch/utils/", "torch/_ops.py", "torch/_tensor.py", "torch/overrides.py", "torch/autograd/",
              "torch/_compile.py", "torch/_dynamo/", "torch/_prims", "torch/_refs/", "torch/_decomp/",
              "torch/functional.py", "torch/_jit_internal.py")
# number arguments that are data (mul.Scalar's other, a clamp's bounds): operands, like tensors; the others
# (alpha, beta, threshold) are parameters of the op
_DATA_NUMBERS = {"self", "other", "exponent", "min", "max", "value", "fill_value"}
_CHECKS = {"aten._local_scalar_dense.default", "aten._is_all_true.default", "aten.is_nonzero.default",
           "aten._assert_async.msg", "aten._assert_async.default"}


def _library_line() -> str | None:
    """file:line (function) of the innermost torch library frame (distributions, nn.functional, ...)."""
    import sys

    frame = sys._getframe(2)
    while frame is not None:
        name = frame.f_code.co_filename
        if "/torch/" in name and not any(m in name for m in _MACHINERY):
            return f"torch/{name.split('/torch/', 1)[1]}:{frame.f_lineno} ({frame.f_code.co_name})"
        frame = frame.f_back
    return None


def record(fn, inputs: dict[str, np.ndarray], wrt: list[str]):
    """Run fn like value_and_grads and record every aten op of the forward and the backward pass.

    A TorchDispatchMode sees each op below autograd, in both passes, with its real
    operands: they are linked to the op that produced them by tensor identity (every
    tensor is kept alive, so no identity is reused). A backward op is attributed to the
    forward op whose autograd node runs it. `fn(tensors, scope)`: `scope` is a context
    manager taking a formula node, so each op knows the sub-expression it computes."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    from oracle.frameworks.recording import Recording, Ref, Scopes, Step

    keep, produced, steps, ignored, scopes = [], {}, [], [], Scopes()
    node_step: dict[int, int] = {}  # id of a forward output's autograd node -> the forward step

    def ref(t, dtype=None) -> Ref:
        if not isinstance(t, torch.Tensor):  # a Python number where the schema says Tensor (a wrapped scalar)
            return Ref(value=np.asarray(t).astype(dtype))
        found = produced.get(t._cdata)
        if found is not None:
            return found
        return Ref(value=t.detach().numpy().copy())

    class Recorder(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            name = str(func)
            flat = [t for t in tree_flatten(out)[0]]
            if name in _CHECKS or not all(isinstance(t, torch.Tensor) for t in flat):
                ignored.append(name)
                return out
            keep.append((args, kwargs, out))
            node = torch._C._current_autograd_node()
            operands, params, slots = [], {}, []
            schema = func._schema.arguments
            dtype = str(next((t.dtype for t in flat if t.dtype.is_floating_point), torch.float64)).removeprefix("torch.")
            for i, arg in enumerate(schema):
                value = args[i] if i < len(args) and not arg.kwarg_only else kwargs.get(
                    arg.name, arg.default_value if arg.has_default_value() else None)
                kind = str(arg.type)
                if "Tensor" in kind:
                    group = list(value) if isinstance(value, (list, tuple)) else [value]
                    slots.append((arg, len(group) if isinstance(value, (list, tuple)) else None))
                    operands += [None if t is None else ref(t, dtype) for t in group]
                elif kind in ("number", "Optional[number]") and arg.name in _DATA_NUMBERS:
                    slots.append((arg, None))
                    operands.append(None if value is None else ref(value, dtype))
                else:
                    params[arg.name] = value
            forward = node is None
            origin = None if forward else node_step.get(id(node))
            source = _library_line() if forward else (None if origin is None else steps[origin].source)
            text = scopes.current if forward else (None if origin is None else steps[origin].params.get("_where"))
            index = len(steps)
            steps.append(Step(name, operands, {**params, "_where": text}, [t.detach().numpy().copy() for t in flat],
                              source, "forward" if forward else "backward", _rerun(func, schema, args, kwargs, slots)))
            for k, t in enumerate(flat):
                produced[t._cdata] = Ref(step=index, output=k)
            return out

    tensors = {name: torch.tensor(value, requires_grad=name in wrt) for name, value in inputs.items()}
    for name, t in tensors.items():
        produced[t._cdata] = Ref(input=name)
    with Recorder():
        value = fn(tensors, scopes)
        for i, (_args, _kwargs, out) in enumerate(keep[:len(steps)]):  # each forward step's autograd node, so a
            for t in tree_flatten(out)[0]:                                 # backward op knows what it differentiates
                if t.grad_fn is not None:
                    keep.append(t.grad_fn)
                    node_step.setdefault(id(t.grad_fn), i)
        if value.requires_grad:
            grads = torch.autograd.grad(value.sum(), [tensors[n] for n in wrt], allow_unused=True)
        else:
            grads = [None] * len(wrt)
    outputs = [ref(value)] + [Ref(value=np.zeros(inputs[n].shape, inputs[n].dtype)) if g is None else ref(g)
                              for n, g in zip(wrt, grads)]
    return Recording("torch", steps, outputs, ignored)


def _rerun(func, schema, args, kwargs, slots):
    """The op again on other operand values (numpy arrays, in the operands' order), nothing else changed."""
    def rerun(values):
        values = list(values)
        new_args, new_kwargs = list(args), dict(kwargs)
        slot = iter(slots)
        for i, arg in enumerate(schema):
            kind = str(arg.type)
            if "Tensor" not in kind and not (kind in ("number", "Optional[number]") and arg.name in _DATA_NUMBERS):
                continue
            _, count = next(slot)
            taken = [values.pop(0) for _ in range(count or 1)]
            was = args[i] if i < len(args) and not arg.kwarg_only else kwargs.get(arg.name)
            tensor = isinstance(was, torch.Tensor) or isinstance(was, (list, tuple))
            made = [None if v is None else (torch.tensor(v) if tensor else v.item()) for v in taken]
            value = made if count is not None else made[0]
            if i < len(args) and not arg.kwarg_only:
                new_args[i] = value
            elif arg.name in kwargs or value is not None:
                new_kwargs[arg.name] = value
        out = func(*new_args, **new_kwargs)
        from torch.utils._pytree import tree_flatten
        return [t.detach().numpy().copy() for t in tree_flatten(out)[0]]

    return rerun


# ---------------------------------------------------------------- exact replay

def _exact_table() -> dict:
    """aten op -> Rule: each op exactly on exact operands (schema order: tensors and numbers; None when absent)."""
    import dataclasses

    from oracle.frameworks.recording import Rule, composite, identity, primitive, put

    def scaled(ops, b, alpha):  # add/sub's `alpha * other`
        return b if alpha == 1 else ops("mul", b, np.asarray(_mpf(alpha), dtype=object))

    def axes(x, dim):
        dims = range(x.ndim) if dim is None or (isinstance(dim, (list, tuple)) and len(dim) == 0) else (
            [dim] if isinstance(dim, int) else dim)
        return tuple(sorted(d % max(x.ndim, 1) for d in dims))

    def keep(ops, out, x, dims, keepdim):
        return out if not keepdim else np.reshape(out, [1 if d in dims else n for d, n in enumerate(x.shape)])

    def reduce(kind):
        def fn(ops, x, dim=None, keepdim=False, **_):
            dims = axes(x, dim)
            return keep(ops, ops(f"reduce_{kind}", x, axes=dims), x, dims, keepdim)
        return fn

    def logsumexp(ops, x, dim=None, keepdim=False, **_):
        dims = axes(x, dim)
        return keep(ops, ops("log", ops("reduce_sum", ops("exp", x), axes=dims)), x, dims, keepdim)

    def mean(ops, x, dim=None, keepdim=False, **_):
        dims = axes(x, dim)
        count = int(np.prod([x.shape[d] for d in dims], dtype=int))
        total = ops("reduce_sum", x, axes=dims)
        return keep(ops, ops("div", total, np.asarray(_mpf(count), dtype=object)), x, dims, keepdim)

    def log_softmax(ops, x, dim, **_):
        return ops("sub", x, logsumexp(ops, x, dim, True))

    def softplus(ops, x, beta=1, threshold=20, **_):  # x itself where beta x > threshold
        beta, threshold = (np.asarray(_mpf(v), dtype=object) for v in (beta, threshold))
        bx = ops("mul", x, beta)
        smooth = ops("div", ops("log1p", ops("exp", bx)), beta)
        return ops("select_n", ops("gt", bx, threshold), smooth, x)

    def softplus_backward(ops, g, x, beta=1, threshold=20, **_):
        beta, threshold = (np.asarray(_mpf(v), dtype=object) for v in (beta, threshold))
        bx = ops("mul", x, beta)
        return ops("select_n", ops("gt", bx, threshold), ops("mul", g, ops("logistic", bx)), g)

    def bce(ops, x, t, weight, reduction=1, **_):  # torch clamps each log at -100
        floor = np.asarray(_mpf(-100), dtype=object)
        one = np.asarray(_mpf(1), dtype=object)
        logs = ops("add", ops("mul", t, ops("max", ops("log", x), floor)),
                   ops("mul", ops("sub", one, t), ops("max", ops("log1p", ops("neg", x)), floor)))
        loss = ops("neg", logs if weight is None else ops("mul", weight, logs))
        return _reduced(ops, loss, reduction)

    def bce_backward(ops, g, x, t, weight, reduction=1, **_):  # g (x - t) / max((1 - x) x, 1e-12)
        eps = np.asarray(_mpf(1e-12), dtype=object)
        one = np.asarray(_mpf(1), dtype=object)
        out = ops("div", ops("mul", g, ops("sub", x, t)), ops("max", ops("mul", ops("sub", one, x), x), eps))
        out = out if weight is None else ops("mul", out, weight)
        return out if reduction != 1 else ops("div", out, np.asarray(_mpf(x.size), dtype=object))

    def bce_logits(ops, x, t, weight, pos_weight, reduction=1, **_):
        one = np.asarray(_mpf(1), dtype=object)
        softplus_neg = ops("log1p", ops("exp", ops("neg", x)))  # -log sigmoid(x), exactly
        if pos_weight is None:
            loss = ops("add", ops("mul", ops("sub", one, t), x), softplus_neg)
        else:
            coef = ops("add", one, ops("mul", ops("sub", pos_weight, one), t))
            loss = ops("add", ops("mul", ops("sub", one, t), x), ops("mul", coef, softplus_neg))
        return _reduced(ops, loss if weight is None else ops("mul", loss, weight), reduction)

    def remainder(ops, x, y, **_):  # Python's modulo: the sign of the divisor
        if x.dtype != object:
            return np.remainder(x, y)
        return ops("sub", x, ops("mul", ops("floor", ops("div", x, y)), y))

    def diagonal_backward(ops, g, input_sizes, offset=0, dim1=0, dim2=1, **_):
        out = np.full(tuple(input_sizes), _mpf(0), dtype=object)
        moved = np.moveaxis(out, (dim1, dim2), (-2, -1))  # a view: writing it writes out
        k = g.shape[-1]
        rows, cols = np.arange(k) + max(-offset, 0), np.arange(k) + max(offset, 0)
        moved[..., rows, cols] = g
        return out

    def select_backward(ops, g, input_sizes, dim, index, **_):
        out = np.full(tuple(input_sizes), _mpf(0), dtype=object)
        put(np.moveaxis(out, dim, 0), (index,), g)
        return out

    def scatter_add(ops, x, index, src, dim, **_):
        out = np.array(x, dtype=object, copy=True)
        for at in np.ndindex(index.shape):
            target = list(at)
            target[dim] = int(index[at])
            out[tuple(target)] = out[tuple(target)] + src[at]
        return out

    def index_put(ops, x, *rest, accumulate=False, **_):  # x[indices] = values (+= with accumulate)
        *indices, values = rest
        out = np.array(x, dtype=x.dtype, copy=True)
        where = tuple(slice(None) if i is None else i for i in indices)
        out[where] = np.asarray(ops("add", out[where], values) if accumulate else values, dtype=out.dtype)
        return out

    def logit(ops, x, eps=None, **_):  # log(x / (1 - x)), x clamped to [eps, 1 - eps] when eps is given
        one = np.asarray(_mpf(1), dtype=object)
        if eps is not None:
            x = ops("min", ops("max", x, np.asarray(_mpf(eps), dtype=object)), ops(
                "sub", one, np.asarray(_mpf(eps), dtype=object)))
        return ops("log", ops("div", x, ops("sub", one, x)))

    def entr(ops, x, **_):  # -x log x; 0 at 0; -inf below
        zero = np.asarray(_mpf(0), dtype=object)
        inside = ops("neg", ops("mul", x, ops("log", x)))  # NaN below 0, where it is not picked
        return ops("select_n", ops("gt", x, zero), ops("select_n", ops("eq", x, zero),
                                                       np.asarray(-_mpf("inf"), dtype=object), zero), inside)

    def huber(ops, x, t, reduction=1, delta=1.0, **_):
        d = ops("abs", ops("sub", x, t))
        delta = np.asarray(_mpf(delta), dtype=object)
        half = np.asarray(_mpf(0.5), dtype=object)
        quadratic = ops("mul", half, ops("square", d))
        linear = ops("mul", delta, ops("sub", d, ops("mul", half, delta)))
        return _reduced(ops, ops("select_n", ops("lt", d, delta), linear, quadratic), reduction)

    def huber_backward(ops, g, x, t, reduction=1, delta=1.0, **_):
        delta = np.asarray(_mpf(delta), dtype=object)
        d = ops("min", ops("max", ops("sub", x, t), ops("neg", delta)), delta)
        return _mean_grad(ops, ops("mul", g, d), reduction)

    def as_strided(ops, x, size, stride, storage_offset=None, **_):
        """A strided view of x's elements, read as if x were contiguous (the move check refuses it otherwise)."""
        flat = np.ascontiguousarray(x).reshape(-1)
        index = (storage_offset or 0) + sum(np.arange(n).reshape([-1 if d == k else 1 for d in range(len(size))]) * s
                                            for k, (n, s) in enumerate(zip(size, stride)))
        return flat[np.broadcast_to(index, tuple(size))] if size else flat[storage_offset or 0]

    def max_dim(ops, x, dim, keepdim=False, **_):
        values = keep(ops, ops("reduce_max", x, axes=(dim % x.ndim,)), x, (dim % x.ndim,), keepdim)
        indices = np.argmax(x, axis=dim)  # the first largest, as torch's CPU kernel picks it
        return values, (np.expand_dims(indices, dim) if keepdim else indices).astype(np.int64)

    def where(ops, cond, a, b, **_):
        return ops("select_n", cond, b, a)

    def clamp(ops, x, lo, hi, **_):
        if lo is not None:
            x = ops("max", x, lo)
        return x if hi is None else ops("min", x, hi)

    def xlogy(ops, x, y, **_):
        zero = np.asarray(_mpf(0), dtype=object)
        return ops("select_n", ops("eq", x, zero), ops("mul", x, ops("log", y)), zero)

    def xlog1py(ops, x, y, **_):
        zero = np.asarray(_mpf(0), dtype=object)
        return ops("select_n", ops("eq", x, zero), ops("mul", x, ops("log1p", y)), zero)

    def power(ops, x, p, **_):
        p = np.asarray(p)
        if p.shape == () and p.dtype == object and p[()] == int(p[()]) and abs(p[()]) < 2**31:
            return ops("integer_pow", x, y=int(p[()]))
        return ops("pow", x, p)

    def dot(dims):
        return lambda ops, a, b, **_: ops("dot_general", a, b, dimension_numbers=dims)

    def solve_triangular(ops, a, b, upper=False, left=True, unitriangular=False, **_):
        return ops("triangular_solve", a, b, left_side=left, lower=not upper, transpose_a=False, conjugate_a=False,
                   unit_diagonal=unitriangular)

    def cholesky_ex(ops, a, upper=False, **_):
        lower = ops("cholesky", a)
        info = np.zeros(a.shape[:-2], dtype=np.int32)
        return (np.swapaxes(lower, -1, -2) if upper else lower), info

    def log_sigmoid_forward(ops, x, **_):
        out = ops("neg", ops("log1p", ops("exp", ops("neg", x))))
        return out, ops("exp", ops("neg", ops("abs", x)))

    def expand(ops, x, size, **_):
        shape = tuple(x.shape[i - (len(size) - x.ndim)] if s == -1 else s for i, s in enumerate(size))
        return np.broadcast_to(np.reshape(x, (1,) * (len(shape) - x.ndim) + x.shape), shape)

    def view(ops, x, size=None, shape=None, **_):
        return np.reshape(x, tuple(size if size is not None else shape))

    def unary(name):
        return primitive(name, arity=1)

    def sum_all(ops, x, **_):
        return ops("reduce_sum", x, axes=tuple(range(x.ndim)))

    table = {f"aten.{op}.default": unary(prim) for op, prim in {
        "exp": "exp", "log": "log", "log1p": "log1p", "expm1": "expm1", "sqrt": "sqrt", "rsqrt": "rsqrt",
        "neg": "neg", "abs": "abs", "sigmoid": "logistic", "tanh": "tanh", "lgamma": "lgamma",
        "digamma": "digamma", "erf": "erf", "erfc": "erfc", "sin": "sin", "cos": "cos", "sign": "sign",
        "floor": "floor", "ceil": "ceil", "square": "square", "sgn": "sign", "special_i0e": "bessel_i0e",
        "special_i1e": "bessel_i1e", "erfinv": "erf_inv", "asinh": "asinh", "acosh": "acosh", "atan": "atan",
        "sinh": "sinh", "cosh": "cosh"}.items()}
    table |= {f"aten.{op}.{kind}": primitive(op, arity=2) for op in ("mul", "div") for kind in ("Tensor", "Scalar")}
    table |= {f"aten.{op}.default": primitive(op[:3], arity=2) for op in ("maximum", "minimum")}
    table |= {f"aten.{op}.{kind}": primitive(op, "elementwise") for op in ("gt", "lt", "ge", "le", "eq", "ne")
              for kind in ("Tensor", "Scalar")}
    table |= {f"aten.logical_{op}.default": primitive(op, "elementwise") for op in ("and", "or", "not", "xor")}
    table |= {f"aten.{op}.default": identity() for op in ("detach", "alias", "clone", "lift_fresh", "_to_copy",
                                                          "lift_fresh_copy", "contiguous")}
    table |= {f"aten.{op}.default": Rule("constant", None) for op in (
        "ones_like", "zeros_like", "full_like", "scalar_tensor", "full", "zeros", "ones", "new_zeros", "new_ones",
        "new_full", "new_empty", "empty_like", "arange", "eye", "new_empty_strided", "empty_strided", "empty")}
    table |= {name: composite(fn, sem) for name, fn, sem in [
        ("aten.add.Tensor", lambda ops, a, b, alpha=1, **_: ops("add", a, scaled(ops, b, alpha)), "add"),
        ("aten.add.Scalar", lambda ops, a, b, alpha=1, **_: ops("add", a, scaled(ops, b, alpha)), "add"),
        ("aten.sub.Tensor", lambda ops, a, b, alpha=1, **_: ops("sub", a, scaled(ops, b, alpha)), "sub"),
        ("aten.sub.Scalar", lambda ops, a, b, alpha=1, **_: ops("sub", a, scaled(ops, b, alpha)), "sub"),
        ("aten.rsub.Scalar", lambda ops, a, b, alpha=1, **_: ops("sub", b, scaled(ops, a, alpha)), "sub"),
        ("aten.rsub.Tensor", lambda ops, a, b, alpha=1, **_: ops("sub", b, scaled(ops, a, alpha)), "sub"),
        ("aten.reciprocal.default", lambda ops, x, **_: ops("div", np.asarray(_mpf(1), dtype=object), x), "div"),
        ("aten.pow.Tensor_Scalar", power, "pow"), ("aten.pow.Tensor_Tensor", power, "pow"),
        ("aten.pow.Scalar", lambda ops, a, p, **_: ops("pow", a, p), "pow"),
        ("aten.where.self", where, "select_n"),
        ("aten.clamp.default", clamp, "clamp"), ("aten.clamp.Tensor", clamp, "clamp"),
        ("aten.clamp_min.default", lambda ops, x, lo, **_: ops("max", x, lo), "max"),
        ("aten.clamp_max.default", lambda ops, x, hi, **_: ops("min", x, hi), "min"),
        ("aten.xlogy.Tensor", xlogy, "mul"), ("aten.special_xlog1py.default", xlog1py, "mul"),
        ("aten.softplus.default", softplus, "elementwise"),
        ("aten.softplus_backward.default", softplus_backward, "elementwise"),
        ("aten.sigmoid_backward.default", lambda ops, g, y, **_: ops(
            "mul", g, ops("mul", y, ops("sub", np.asarray(_mpf(1), dtype=object), y))), "elementwise"),
        ("aten.tanh_backward.default", lambda ops, g, y, **_: ops(
            "mul", g, ops("sub", np.asarray(_mpf(1), dtype=object), ops("mul", y, y))), "elementwise"),
        ("aten.log_sigmoid_forward.default", log_sigmoid_forward, "elementwise"),
        ("aten.log_sigmoid_backward.default", lambda ops, g, x, buffer, **_: ops(
            "mul", g, ops("logistic", ops("neg", x))), "elementwise"),
        ("aten.special_ndtr.default", lambda ops, x, **_: ops("mul", np.asarray(_mpf(0.5), dtype=object), ops(
            "erfc", ops("div", ops("neg", x), ops("sqrt", np.asarray(_mpf(2), dtype=object))))), "elementwise"),
        ("aten.special_log_ndtr.default", lambda ops, x, **_: ops("log", ops(
            "mul", np.asarray(_mpf(0.5), dtype=object), ops("erfc", ops("div", ops("neg", x), ops(
                "sqrt", np.asarray(_mpf(2), dtype=object)))))), "elementwise"),
        ("aten.binary_cross_entropy.default", bce, "other"),
        ("aten.binary_cross_entropy_backward.default", bce_backward, "other"),
        ("aten.binary_cross_entropy_with_logits.default", bce_logits, "other"),
        ("aten.sum.default", sum_all, "reduce_sum"), ("aten.sum.dim_IntList", reduce("sum"), "reduce_sum"),
        ("aten.mean.dim", mean, "other"), ("aten.mean.default", lambda ops, x, **_: mean(ops, x), "other"),
        ("aten.amax.default", reduce("max"), "other"), ("aten.amin.default", reduce("min"), "other"),
        ("aten.prod.default", lambda ops, x, **_: ops("reduce_prod", x, axes=tuple(range(x.ndim))), "other"),
        ("aten.logsumexp.default", logsumexp, "other"),
        ("aten._log_softmax.default", log_softmax, "other"),
        ("aten._log_softmax_backward_data.default", lambda ops, g, out, dim, **_: ops("sub", g, ops(
            "mul", ops("exp", out), reduce("sum")(ops, g, dim, True))), "other"),
        ("aten._softmax.default", lambda ops, x, dim, **_: ops("exp", log_softmax(ops, x, dim)), "other"),
        ("aten._softmax_backward_data.default", lambda ops, g, out, dim, **_: ops("mul", out, ops("sub", g, reduce(
            "sum")(ops, ops("mul", g, out), dim, True))), "other"),
        ("aten.expand.default", expand, "broadcast"), ("aten.view.default", view, "reshape"),
        ("aten._unsafe_view.default", view, "reshape"), ("aten.reshape.default", view, "reshape"),
        ("aten.unsqueeze.default", lambda ops, x, dim, **_: np.expand_dims(x, dim % (x.ndim + 1)), "reshape"),
        ("aten.squeeze.dim", lambda ops, x, dim, **_: np.squeeze(x, dim) if x.shape[dim] == 1 else x, "reshape"),
        ("aten.squeeze.dims", lambda ops, x, dim, **_: np.squeeze(x, tuple(d for d in dim if x.shape[d] == 1)),
         "reshape"),
        ("aten.squeeze.default", lambda ops, x, **_: np.squeeze(x), "reshape"),
        ("aten.permute.default", lambda ops, x, dims, **_: np.transpose(x, dims), "move"),
        ("aten.t.default", lambda ops, x, **_: x.T, "move"),
        ("aten.transpose.int", lambda ops, x, dim0, dim1, **_: np.swapaxes(x, dim0, dim1), "move"),
        ("aten.select.int", lambda ops, x, dim, index, **_: np.asarray(np.moveaxis(x, dim, 0)[index], dtype=object)
         if x.dtype == object else np.moveaxis(x, dim, 0)[index], "move"),
        ("aten.slice.Tensor", lambda ops, x, dim=0, start=None, end=None, step=1, **_: x[
            (slice(None),) * (dim % x.ndim) + (slice(start, end, step),)], "move"),
        ("aten.diagonal.default", lambda ops, x, offset=0, dim1=0, dim2=1, **_: np.diagonal(
            x, offset, dim1, dim2), "move"),
        ("aten.tril.default", lambda ops, x, diagonal=0, **_: np.where(
            np.tri(*x.shape[-2:], diagonal, dtype=bool), x, _mpf(0)), "move"),
        ("aten.mm.default", dot((((1,), (0,)), ((), ()))), "other"),
        ("aten.mv.default", dot((((1,), (0,)), ((), ()))), "other"),
        ("aten.dot.default", dot((((0,), (0,)), ((), ()))), "other"),
        ("aten.bmm.default", dot((((2,), (1,)), ((0,), (0,)))), "other"),
        ("aten.linalg_solve_triangular.default", solve_triangular, "other"),
        ("aten.linalg_cholesky_ex.default", cholesky_ex, "other"),
        ("aten.remainder.Scalar", remainder, "elementwise"), ("aten.remainder.Tensor", remainder, "elementwise"),
        ("aten.diagonal_backward.default", diagonal_backward, "move"),
        ("aten.select_backward.default", select_backward, "move"),
        ("aten.stack.default", lambda ops, *xs, dim=0, **_: np.stack(xs, axis=dim), "move"),
        ("aten.cat.default", lambda ops, *xs, dim=0, **_: np.concatenate(xs, axis=dim), "move"),
        ("aten.flip.default", lambda ops, x, dims, **_: np.flip(x, tuple(dims)), "move"),
        ("aten.masked_fill.Scalar", lambda ops, x, mask, value, **_: ops("select_n", mask, x, value), "select_n"),
        ("aten.masked_fill.Tensor", lambda ops, x, mask, value, **_: ops("select_n", mask, x, value), "select_n"),
        ("aten.max.dim", max_dim, "other"),
        ("aten.logit.default", logit, "elementwise"),
        ("aten.special_entr.default", entr, "elementwise"),
        ("aten.special_erfcx.default", lambda ops, x, **_: ops("mul", ops("exp", ops("mul", x, x)), ops("erfc", x)),
         "elementwise"),
        ("aten.mse_loss.default", lambda ops, x, t, reduction=1, **_: _reduced(ops, ops("square", ops("sub", x, t)),
                                                                            reduction), "other"),
        ("aten.huber_loss.default", huber, "other"),
        ("aten.huber_loss_backward.default", huber_backward, "other"),
        ("aten.mse_loss_backward.default", lambda ops, g, x, t, reduction=1, **_: _mean_grad(
            ops, ops("mul", g, ops("mul", np.asarray(_mpf(2), dtype=object), ops("sub", x, t))), reduction), "other"),
        ("aten.logit_backward.default", lambda ops, g, x, eps=None, **_: ops("div", g, ops(
            "mul", x, ops("sub", np.asarray(_mpf(1), dtype=object), x))), "elementwise"),
        ("aten.copy_.default", lambda ops, x, src, **_: np.broadcast_to(src, x.shape), "move"),
        ("aten.as_strided.default", as_strided, "move"),
        ("aten.special_igamma.default", lambda ops, a, x, **_: ops("igamma", a, x), "elementwise"),
        ("aten.special_igammac.default", lambda ops, a, x, **_: ops("igammac", a, x), "elementwise"),
        ("aten.index_put.default", index_put, "other"),
        ("aten.gather.default", lambda ops, x, index, dim, **_: np.take_along_axis(x, index, axis=dim), "move"),
        ("aten.scatter_add.default", scatter_add, "other"),
        ("aten.polygamma.default", lambda ops, x, n=0, **_: ops("polygamma", np.asarray(_mpf(n), dtype=object), x),
         "elementwise"),
        ("aten.isnan.default", lambda ops, x, **_: np.asarray(np.frompyfunc(_isnan, 1, 1)(x), dtype=bool),
         "elementwise"),
    ]}
    table |= {f"aten.bitwise_{op}.Tensor": composite(lambda ops, a, b, fn=fn, **_: fn(a, b), "elementwise")
              for op, fn in (("and", np.bitwise_and), ("or", np.bitwise_or), ("xor", np.bitwise_xor))}
    table["aten.bitwise_not.default"] = composite(lambda ops, a, **_: np.invert(a), "elementwise")
    table["aten.atanh.default"] = composite(lambda ops, x, **_: ops("mul", np.asarray(_mpf(0.5), dtype=object), ops(
        "sub", ops("log1p", x), ops("log1p", ops("neg", x)))))
    table["aten.log2.default"] = composite(lambda ops, x, **_: ops("div", ops("log", x), ops(
        "log", np.asarray(_mpf(2), dtype=object))))
    def summed_axes(step, operands):
        dim = step.params.get("dim")
        return {"axes": axes(operands[0], dim)}

    table["aten.where.self"] = dataclasses.replace(table["aten.where.self"], order=(0, 2, 1))
    for name in ("aten.masked_fill.Scalar", "aten.masked_fill.Tensor"):  # masked_fill(x, mask, v): select_n(mask, x, v)
        table[name] = dataclasses.replace(table[name], order=(1, 0, 2))
    for name in ("aten.sum.default", "aten.sum.dim_IntList"):
        table[name] = dataclasses.replace(table[name], shape_params=summed_axes)
    # an in-place variant (logical_and_, add_) computes what its functional twin does
    table |= {f"{name.rsplit('.', 1)[0]}_.{name.rsplit('.', 1)[1]}": rule for name, rule in list(table.items())}
    return table


def _mean_grad(ops, grad, reduction):
    """A loss's elementwise gradient, divided by the count under reduction='mean' (1)."""
    return grad if reduction != 1 else ops("div", grad, np.asarray(_mpf(grad.size), dtype=object))


def _reduced(ops, loss, reduction):
    if reduction == 0:
        return loss
    total = ops("reduce_sum", loss, axes=tuple(range(loss.ndim)))
    return total if reduction == 2 else ops("div", total, np.asarray(_mpf(loss.size), dtype=object))


def _isnan(x) -> bool:
    import mpmath

    return bool(mpmath.isnan(x))


def _mpf(x):
    import mpmath

    return mpmath.mpf(x)


@cache
def exact_rules() -> dict:
    """aten op -> Rule: each op exactly on exact operands (schema order: tensors and numbers; None when absent)."""
    return _exact_table()
