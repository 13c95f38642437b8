"""PyTorch backend: torch / torch.special / torch.linalg ops, gradients with autograd (eager, CPU)."""

from __future__ import annotations

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
