"""Gather and scatter on exact (object) arrays: XLA says where each element goes, no float is computed.

lax.gather and the scatters only move elements, but their dimension numbers, slice
sizes, batching dimensions and out-of-bounds modes are intricate. Rather than
re-derive XLA's index arithmetic, the same primitive runs on an int32 array of
element positions (exact in any integer type) and the positions then pick, or
receive, the exact values. jnp indexing, take_along_axis and their transposes
(scatter-add) all come through here.
"""

from __future__ import annotations

import numpy as np
from jax import lax
from mpmath import mp

_DROPPED = -1  # the position of an element a fill-or-drop gather fills in (or a scatter drops)


def _positions(shape: tuple[int, ...]) -> np.ndarray:
    return np.arange(int(np.prod(shape, dtype=int)), dtype=np.int32).reshape(shape)


def _where_from(operand_shape, indices: np.ndarray, dimension_numbers, slice_sizes, mode) -> np.ndarray:
    """For each element of the gather's result, the flat position in the operand it reads (_DROPPED: filled)."""
    mode = lax.GatherScatterMode.from_any(mode)
    return np.asarray(lax.gather_p.bind(
        _positions(operand_shape), np.asarray(indices), dimension_numbers=dimension_numbers,
        slice_sizes=tuple(slice_sizes), indices_are_sorted=False, unique_indices=False, mode=mode,
        fill_value=_DROPPED if mode == lax.GatherScatterMode.FILL_OR_DROP else None))


def gather(operand: np.ndarray, indices: np.ndarray, *, dimension_numbers, slice_sizes, mode, fill_value=None,
           **_) -> np.ndarray:
    """lax.gather. A float element filled in for an out-of-bounds slice is `fill_value`, NaN by default (JAX's)."""
    if operand.dtype != object:  # integers and booleans: XLA's own gather is exact
        return np.asarray(lax.gather_p.bind(operand, np.asarray(indices), dimension_numbers=dimension_numbers,
                                            slice_sizes=tuple(slice_sizes), indices_are_sorted=False,
                                            unique_indices=False, mode=mode, fill_value=fill_value))
    where = _where_from(operand.shape, indices, dimension_numbers, slice_sizes, mode)
    out = np.empty(where.shape, dtype=object)
    out[...] = np.asarray(operand).reshape(-1)[np.maximum(where, 0)]  # a 0-d position picks a bare mpf
    out[where == _DROPPED] = mp.nan if fill_value is None else mp.mpf(fill_value)
    return out


def scatter(combine, operand: np.ndarray, indices: np.ndarray, updates: np.ndarray, *, dimension_numbers,
            mode, **_) -> np.ndarray:
    """lax.scatter (combine None: an update replaces the element) and scatter-add/mul/min/max (combine: a ufunc
    whose .at accumulates every update that lands on an element, in order).

    Where an update lands is the gather that is the scatter's transpose, run on positions:
    update_window_dims are its offset dims, inserted_window_dims its collapsed slice dims.
    An out-of-bounds update window is dropped (XLA's scatter semantics), or clamped in clip mode."""
    d = dimension_numbers
    windows = iter(updates.shape[k] for k in d.update_window_dims)
    slice_sizes = [1 if axis in d.inserted_window_dims or axis in d.operand_batching_dims else next(windows)
                   for axis in range(operand.ndim)]
    dual = lax.GatherDimensionNumbers(offset_dims=d.update_window_dims, collapsed_slice_dims=d.inserted_window_dims,
                                      start_index_map=d.scatter_dims_to_operand_dims,
                                      operand_batching_dims=d.operand_batching_dims,
                                      start_indices_batching_dims=d.scatter_indices_batching_dims)
    clip = lax.GatherScatterMode.from_any(mode) == lax.GatherScatterMode.CLIP
    target = _where_from(operand.shape, indices, dual, slice_sizes,
                         lax.GatherScatterMode.CLIP if clip else lax.GatherScatterMode.FILL_OR_DROP)
    out = np.array(operand).reshape(-1)  # a copy: the operand may be a read-only broadcast
    landed = target != _DROPPED
    values = np.broadcast_to(updates, target.shape)[landed]
    if combine is None:
        out[target[landed]] = values
    else:
        combine.at(out, target[landed], values)
    return out.reshape(operand.shape)
