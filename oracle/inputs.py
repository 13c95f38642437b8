"""Case inputs: exact values from YAML scalars, nested lists and generators, then rounding.

An input is held exactly (an object array of `Fraction`, with inf/nan as floats)
until it is rounded once, correctly, to the dtype being evaluated. The reference
is computed for exactly those rounded values.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction

import mpmath
import numpy as np

from oracle.floats import Format, fmt, ordinal_range, ordinals_to_values, round_array

GENERATORS = ("eye", "diag", "fill", "linspace", "logspace", "normal", "uniform")
_HEX = re.compile(r"^([+-]?)0x([0-9a-f]*)(?:\.([0-9a-f]*))?p([+-]?[0-9]+)$")
_SPECIAL = {"inf": math.inf, "+inf": math.inf, "infinity": math.inf, "+infinity": math.inf,
            "-inf": -math.inf, "-infinity": -math.inf, "nan": math.nan}


class InputError(ValueError):
    """Bad input value; `path` locates it below the input (list indices, generator keys)."""

    def __init__(self, message: str, path: tuple = ()):
        super().__init__(message)
        self.path = path


MAX_DIMENSIONS, MAX_DIMENSION = 8, 10**7  # numpy allows 64 dimensions; nothing here needs more than a few
MAX_EXPONENT = 1000  # decimal; float64 spans 1e-324..1e308: an exact 1e999999999 would be a billion-digit integer


def scalar(value) -> Fraction | float:
    """An exact number from a YAML int, Decimal or string ("inf", "nan", "0x1p-126", "1e-8")."""
    if isinstance(value, bool):
        raise InputError(f"expected a number, got {value!r}")
    if isinstance(value, int):
        return Fraction(value)
    if isinstance(value, Decimal):
        if value.is_finite() and value and abs(value.adjusted()) > MAX_EXPONENT:
            raise InputError(f"{value:.3e}: exponent out of range (|exponent| <= {MAX_EXPONENT}; every dtype rounds "
                             "such a number to 0 or inf anyway)")
        return Fraction(value) if value.is_finite() else float(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _SPECIAL:
            return _SPECIAL[text]
        hexmatch = _HEX.match(text)
        if hexmatch:
            sign, whole, frac, exp = hexmatch.groups()
            frac = frac or ""
            if not whole and not frac:
                raise InputError(f"not a number: {value!r}")
            if abs(int(exp)) > 4 * MAX_EXPONENT:
                raise InputError(f"{value}: binary exponent out of range (|exponent| <= {4 * MAX_EXPONENT})")
            q = Fraction(int(whole + frac or "0", 16), 16 ** len(frac)) * Fraction(2) ** int(exp)
            return -q if sign == "-" else q
        try:
            return scalar(Decimal(text))
        except InvalidOperation:
            pass
    raise InputError(f"not a number: {value!r} (use a number, \"inf\", \"-inf\", \"nan\" or a hex float like \"0x1p-126\")")


def exact_value(spec, max_elements: int) -> np.ndarray:
    """The exact value of one input spec as an object array of Fraction / inf / nan."""
    if isinstance(spec, dict):
        return _generate(spec, max_elements)
    if isinstance(spec, list):
        array = _nested(spec, ())
        if array.size > max_elements:
            raise InputError(f"array has {array.size} elements, more than the cap of {max_elements}")
        return array
    out = np.empty((), dtype=object)
    out[()] = scalar(spec)
    return out


def _nested(items: list, path: tuple, depth: int = 1) -> np.ndarray:
    if not items:
        raise InputError("empty list", path)
    if depth > MAX_DIMENSIONS:  # checked on the way down: numpy refuses 65 and the frameworks fail far below
        raise InputError(f"nested list is more than {MAX_DIMENSIONS} levels deep (at most {MAX_DIMENSIONS} "
                         "dimensions)", path)
    if all(isinstance(i, list) for i in items):
        rows = [_nested(item, path + (k,), depth + 1) for k, item in enumerate(items)]
        if len({r.shape for r in rows}) != 1:
            raise InputError(f"ragged nested list: rows have shapes {sorted({r.shape for r in rows})}", path)
        return np.stack(rows)
    if any(isinstance(i, (list, dict)) for i in items):
        raise InputError("mixed numbers and lists in one level of a nested list", path)
    out = np.empty(len(items), dtype=object)
    for k, item in enumerate(items):
        try:
            out[k] = scalar(item)
        except InputError as e:
            raise InputError(str(e), path + (k,)) from None
    return out


def _shape(value, key: str) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in value):
        raise InputError(f"shape must be a list of non-negative integers, got {value!r}", (key, "shape"))
    if len(value) > MAX_DIMENSIONS or any(n > MAX_DIMENSION for n in value):
        raise InputError(f"shape {value!r} is too large: at most {MAX_DIMENSIONS} dimensions of at most "
                         f"{MAX_DIMENSION} each", (key, "shape"))
    return tuple(value)


def _count(shape: tuple[int, ...], max_elements: int, key: str) -> None:
    n = math.prod(shape)
    if n > max_elements:
        raise InputError(f"{key} would make {n} elements, more than the cap of {max_elements}", (key,))


def _fields(spec: dict, key: str, required: tuple, optional: tuple = ()) -> dict:
    body = spec[key]
    if not isinstance(body, dict):
        raise InputError(f"{key} takes a mapping with {', '.join(required + optional)}", (key,))
    unknown = set(body) - set(required) - set(optional)
    missing = set(required) - set(body)
    if unknown or missing:
        problem = f"unknown field(s) {sorted(unknown)}" if unknown else f"missing field(s) {sorted(missing)}"
        raise InputError(f"{key}: {problem}; fields: {', '.join(required + optional)}", (key,))
    return body


def _int(value, path: tuple, minimum: int = 0) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise InputError(f"expected an integer >= {minimum}, got {value!r}", path)
    return value


def _generate(spec: dict, max_elements: int) -> np.ndarray:
    keys = [k for k in spec if k in GENERATORS]
    if len(spec) != 1 or len(keys) != 1:
        raise InputError(f"a generator is a mapping with exactly one of: {', '.join(GENERATORS)}; got {sorted(spec)}")
    key = keys[0]
    body = spec[key]
    if key == "eye":
        n = _int(body, (key,), 1)
        _count((n, n), max_elements, key)
        return np.vectorize(Fraction, otypes=[object])(np.eye(n, dtype=int))
    if key == "diag":
        if not isinstance(body, list):
            raise InputError("diag takes a list of numbers", (key,))
        values = _nested(body, (key,))
        if values.ndim != 1:
            raise InputError("diag takes a flat list of numbers", (key,))
        _count((len(values), len(values)), max_elements, key)
        out = np.full((len(values), len(values)), Fraction(0), dtype=object)
        out[np.diag_indices(len(values))] = values
        return out
    if key == "fill":
        body = _fields(spec, key, ("value", "shape"))
        shape = _shape(body["shape"], key)
        _count(shape, max_elements, key)
        out = np.empty(shape, dtype=object)
        out.fill(scalar(body["value"]))
        return out
    if key in ("linspace", "logspace"):
        if not isinstance(body, list) or len(body) != 3:
            raise InputError(f"{key} takes [start, stop, num]", (key,))
        start, stop = scalar(body[0]), scalar(body[1])
        num = _int(body[2], (key, 2), 1)
        _count((num,), max_elements, key)
        if not all(isinstance(v, Fraction) for v in (start, stop)):
            raise InputError(f"{key} start and stop must be finite", (key,))
        points = [start + (stop - start) * Fraction(i, max(num - 1, 1)) for i in range(num)]
        if key == "logspace":  # 10**p to 256 bits, then rounded once to the dtype
            with mpmath.workprec(256):
                points = [mpmath.power(10, mpmath.mpf(p.numerator) / p.denominator) for p in points]
        out = np.empty(num, dtype=object)
        out[:] = points
        return out
    # normal / uniform: numpy's PCG64 draws in float64; only the rounded value matters downstream.
    params = {"normal": ("loc", "scale"), "uniform": ("low", "high")}[key]
    body = _fields(spec, key, ("shape", "seed"), params)
    shape = _shape(body["shape"], key)
    _count(shape, max_elements, key)
    rng = np.random.default_rng(_int(body["seed"], (key, "seed")))
    a, b = _draw_parameters(key, body, params)
    with np.errstate(over="ignore", invalid="ignore"):
        draws = rng.normal(a, b, shape) if key == "normal" else rng.uniform(a, b, shape)
    if not np.isfinite(draws).all():  # scale: 1e308 draws beyond float64; checked, not assumed from the parameters
        raise InputError(f"{key} draws values beyond float64's range with these parameters; make the spread smaller",
                         (key,))
    return np.vectorize(Fraction, otypes=[object])(draws) if draws.size else draws.astype(object)


def _draw_parameters(key: str, body: dict, params: tuple[str, str]) -> tuple[float, float]:
    """A sampler's two parameters, checked before numpy sees them: finite floats, a positive scale, low <= high
    with a width float64 can hold (numpy raises, or draws NaN, otherwise)."""
    values = []
    for name, default in zip(params, (0, 1)):
        try:
            value = float(scalar(body.get(name, default)))
        except OverflowError:
            value = math.inf
        if not math.isfinite(value):
            raise InputError(f"{name} must be a finite number within float64's range, got {body.get(name)!r}",
                             (key, name))
        values.append(value)
    a, b = values
    if key == "normal" and not b > 0:
        raise InputError(f"scale must be > 0, got {body.get('scale')!r} (a constant input is a fill)", (key, "scale"))
    if key == "uniform" and not (a <= b and math.isfinite(b - a)):
        problem = "low must be <= high" if a > b else "high - low must be within float64's range"
        raise InputError(f"{problem}, got low {body.get('low')!r}, high {body.get('high')!r}", (key,))
    return a, b


SWEEPS = ("linspace", "logspace", "float32_edges")
MAX_SWEEPS = 2  # two sweeps make a grid; three would make a cube nobody can plot or read


@dataclass(frozen=True)
class Sweep:
    """A swept scalar input: the case is evaluated at each of `values` (exact, 1-D).

    A searched input (`oracle hunt`) is a sweep of kind "search" whose values are the range's default grid
    (what `oracle run` evaluates); `low` and `high` are the range the hunt samples."""

    kind: str  # linspace, logspace, float32_edges or search
    values: np.ndarray
    low: Fraction | None = None
    high: Fraction | None = None

    @property
    def scale(self) -> str:
        """How to plot the axis: float32_edges spans -3.4e38..3.4e38 through 0 and the subnormals."""
        if self.kind == "search":
            return "log" if self.low > 0 else "symlog"
        return {"linspace": "linear", "logspace": "log", "float32_edges": "symlog"}[self.kind]


def _float32_edges() -> list[Fraction]:
    """0, the smallest and largest subnormals, the smallest normal, 1, the largest finite; and their negatives."""
    tiny, normal = Fraction(1, 2**149), Fraction(1, 2**126)
    positive = [tiny, normal - tiny, normal, Fraction(1), (2 - Fraction(1, 2**23)) * 2**127]
    return [-v for v in reversed(positive)] + [Fraction(0)] + positive


def sweep(spec: dict, max_elements: int) -> Sweep:
    """`{sweep: {linspace: [start, stop, num]}}`, `{sweep: {logspace: ...}}` or `{sweep: {float32_edges: true}}`."""
    if len(spec) != 1:
        raise InputError(f"a sweep is a mapping with the one key sweep; got {sorted(spec)}")
    spec = spec["sweep"]
    keys = [k for k in spec if k in SWEEPS] if isinstance(spec, dict) else []
    if len(keys) != 1 or len(spec) != 1:
        raise InputError(f"sweep takes a mapping with exactly one of: {', '.join(SWEEPS)}", ("sweep",))
    kind = keys[0]
    if kind == "float32_edges":
        if spec[kind] is not True:
            raise InputError("float32_edges takes true", ("sweep", kind))
        values = np.empty(11, dtype=object)
        values[:] = _float32_edges()
        return Sweep(kind, values)
    try:
        return Sweep(kind, _generate(spec, max_elements))
    except InputError as e:
        raise InputError(str(e), ("sweep", *e.path)) from None


def is_sweep(spec) -> bool:
    """Does an input spec sweep (rather than give one value)?"""
    return isinstance(spec, dict) and "sweep" in spec


INTEGER_DTYPES = {"int32": 32, "int64": 64}  # an integer input's dtype -> its width (two's complement)


def is_integer_input(spec) -> bool:
    """Does an input spec declare integers (`{int32: [[1, 2, 1]]}`: labels, lengths), rather than floats?"""
    return isinstance(spec, dict) and len(spec) == 1 and next(iter(spec)) in INTEGER_DTYPES


def integer_input(spec: dict, max_elements: int) -> tuple[str, np.ndarray]:
    """`{int32: value}` or `{int64: value}`: (dtype, exact values), the value a number, a nested list or a
    generator whose every element is an integer within the dtype's range. Such an input reaches every
    framework as an integer tensor and the reference exactly; it is never differentiated nor perturbed."""
    dtype, body = next(iter(spec.items()))
    if isinstance(body, dict) and ("sweep" in body or "search" in body or is_integer_input(body)):
        raise InputError(f"{dtype} takes a number, a nested list or a generator ({', '.join(GENERATORS)}); "
                         "integer inputs cannot sweep or be searched", (dtype,))
    try:
        values = exact_value(body, max_elements)
    except InputError as e:
        raise InputError(str(e), (dtype, *e.path)) from None
    bound = 2 ** (INTEGER_DTYPES[dtype] - 1)
    for index, v in np.ndenumerate(values):
        if not (isinstance(v, Fraction) and v.denominator == 1):
            where = f" at {list(index)}" if index else ""
            raise InputError(f"{dtype} input{where}: {_text(v)} is not an integer", (dtype,))
        if not -bound <= v < bound:
            where = f" at {list(index)}" if index else ""
            raise InputError(f"{dtype} input{where}: {v} is outside {dtype}'s range [-2**{INTEGER_DTYPES[dtype] - 1}, "
                             f"2**{INTEGER_DTYPES[dtype] - 1})", (dtype,))
    return dtype, values


def _text(v) -> str:
    return str(float(v)) if isinstance(v, Fraction) else str(v)


def round_inputs(exact: dict[str, np.ndarray], f: Format, integers: dict[str, str] | None = None) -> dict[str, np.ndarray]:
    """Each exact input rounded once to `f` (a Format), except the integer inputs (`integers`: name -> dtype),
    which become integer arrays of their own dtype, exactly."""
    integers = integers or {}
    return {name: np.array([int(v) for v in value.ravel()], dtype=integers[name]).reshape(value.shape)
            if name in integers else round_array(value, f) for name, value in exact.items()}


def all_integers(values: np.ndarray) -> bool:
    """Every exact value is a finite integer (a label, a count, an index, a 0/1 mask)."""
    return all(isinstance(v, Fraction) and v.denominator == 1 for v in np.ravel(values))


SEARCH_GRID = 21  # a search range's default grid (`oracle run`, `oracle check`): this many evenly spaced values
FLOAT32_MAX = (2 - Fraction(1, 2**23)) * 2**127  # and as many spread over its binades, like the hunt's samples


def is_search(spec) -> bool:
    """Does an input spec declare a range for `oracle hunt` to search?"""
    return isinstance(spec, dict) and "search" in spec


def search(spec: dict) -> Sweep:
    """`{search: {low: a, high: b}}` (a <= b, finite) or `{search: {float32: all}}` (every finite float32)."""
    if len(spec) != 1:
        raise InputError(f"a search is a mapping with the one key search; got {sorted(spec)}")
    body = spec["search"]
    if isinstance(body, dict) and set(body) == {"float32"}:
        if body["float32"] != "all":
            raise InputError("float32 takes all (every finite float32)", ("search", "float32"))
        low, high = -FLOAT32_MAX, FLOAT32_MAX
    elif isinstance(body, dict) and set(body) == {"low", "high"}:
        low, high = (scalar(body[k]) for k in ("low", "high"))
        for key, value in (("low", low), ("high", high)):
            if not isinstance(value, Fraction):
                raise InputError(f"{key} must be finite", ("search", key))
        if low > high:
            raise InputError(f"low {body['low']} is above high {body['high']}", ("search",))
    else:
        raise InputError("search takes {low: number, high: number} or {float32: all}", ("search",))
    even = [low + (high - low) * Fraction(i, SEARCH_GRID - 1) for i in range(SEARCH_GRID)]
    values = np.array(sorted(set(even + search_grid(low, high, SEARCH_GRID))), dtype=object)
    return Sweep("search", values, low, high)


def search_grid(low: Fraction, high: Fraction, num: int) -> list[Fraction]:
    """`num` float32 values from low to high, evenly spaced in the float32 order (bit patterns): equal numbers
    of points per binade, as the hunt samples; low and high (rounded to float32, toward the inside) included."""
    f = fmt("float32")
    first, last = ordinal_range(low, high, f)
    if first > last:
        raise InputError(f"no float32 value lies between {float(low)!r} and {float(high)!r}", ("search",))
    steps = np.unique(np.round(np.linspace(first, last, num)).astype(np.int64))
    return [Fraction(float(v)) for v in ordinals_to_values(steps, f)]
