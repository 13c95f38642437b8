"""Binary floating-point formats, exact rounding into them, and ULP distances.

Everything here works on exact rationals (``Fraction``) or mpmath numbers, never
through float64 arithmetic: a Python float is used only as an exact container for
a value already representable in the target format.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property

import mpmath
import numpy as np
from mpmath import libmp


@dataclass(frozen=True)
class Format:
    """An IEEE-754 binary format: `precision` significand bits, normal exponents emin..emax."""

    name: str
    precision: int
    emin: int
    emax: int
    width: int

    @property
    def numpy(self) -> np.dtype:
        return np.dtype(self.name)

    @cached_property
    def max_finite(self) -> Fraction:
        return Fraction(2**self.precision - 1) * Fraction(2) ** (self.emax - self.precision + 1)

    @cached_property
    def max_finite_float(self) -> float:  # round_to compares with it once per value: a Fraction made it 9x slower
        return float(self.max_finite)

    @cached_property
    def min_normal(self) -> Fraction:
        return Fraction(2) ** self.emin

    @property
    def max_ulps(self) -> int:
        """The error assigned to NaN-vs-number or finite-vs-infinite: every value of the format."""
        return 2**self.width


FORMATS = {
    "float16": Format("float16", 11, -14, 15, 16),
    "float32": Format("float32", 24, -126, 127, 32),
    "float64": Format("float64", 53, -1022, 1023, 64),
}


def fmt(dtype: str) -> Format:
    return FORMATS[dtype]


def to_fraction(x) -> Fraction | float:
    """Exact rational value of a Fraction, int, float or finite mpf; inf/nan stay floats."""
    if isinstance(x, Fraction):
        return x
    if isinstance(x, int):
        return Fraction(x)
    if isinstance(x, float):
        return x if not math.isfinite(x) else Fraction(x)
    parts = getattr(x, "_mpf_", None)  # mpmath.mpf: (sign, mantissa, exponent, bits), an exact dyadic
    if parts is None:
        raise TypeError(f"not a real number: {x!r}")
    sign, man, exp, _ = parts
    if not man:
        return float(x) if exp else Fraction(0)  # inf/nan carry a nonzero exponent code
    return (-1) ** sign * Fraction(int(man)) * Fraction(2) ** int(exp)


def round_to(x, f: Format) -> float:
    """Correctly round (to nearest, ties to even) an exact real into format `f`.

    Handles subnormals and overflow to infinity. Returns a Python float holding
    the rounded value exactly (every float16/32/64 value is a float64 value).
    """
    parts = getattr(x, "_mpf_", None)
    if parts is not None and parts[1]:
        return _round_mpf(parts, f)
    q = to_fraction(x)
    if isinstance(q, float):
        return q
    if q == 0:
        return 0.0
    sign = -1 if q < 0 else 1
    a = abs(q)
    e = a.numerator.bit_length() - a.denominator.bit_length()  # 2**e <= a < 2**(e+2)
    if Fraction(2) ** e > a:
        e -= 1
    quantum = max(e, f.emin) - (f.precision - 1)
    n = round(a / Fraction(2) ** quantum)  # Fraction.__round__ ties to even
    rounded = Fraction(n) * Fraction(2) ** quantum
    if rounded > f.max_finite:
        return sign * math.inf
    return sign * math.ldexp(n, quantum)


def round_array(exact: np.ndarray, f: Format) -> np.ndarray:
    """round_to on every element of an array of exact values (Fractions, mpf): an array of dtype `f`."""
    out = np.empty(exact.shape, dtype=f.numpy)
    for index, value in np.ndenumerate(exact):
        out[index] = round_to(value, f)
    return out


def _round_mpf(parts: tuple, f: Format) -> float:
    """round_to for a finite nonzero mpf, by mpmath's own round-to-nearest-even at the bits `f` has there
    (fewer below the normal range): exact, and without a Fraction (exp(3.4e38) is a fine mpf but a
    2**(4.9e38)-sized Fraction)."""
    sign, man, exp, bits = parts
    top = exp + bits - 1  # 2**top <= |x| < 2**(top + 1)
    if top > f.emax + 1:
        return -math.inf if sign else math.inf
    precision = f.precision - max(0, f.emin - top)  # the quantum is 2**(emin - precision + 1) below normal
    if precision < 1:  # below half the smallest subnormal, or in (half, 1) of it: decided against that half
        half = f.emin - f.precision  # log2 of half the smallest subnormal
        above_half = top > half or (top == half and man != 1)
        value = math.ldexp(1.0, half + 1) if precision == 0 and above_half else 0.0
        return -value if sign else value
    value = libmp.to_float(libmp.normalize(sign, man, exp, bits, precision, libmp.round_nearest))
    return math.copysign(math.inf, value) if abs(value) > f.max_finite_float else value


_INT = {16: np.int16, 32: np.int32, 64: np.int64}


def _ordinals(x: np.ndarray, f: Format) -> np.ndarray:
    """Position of each finite value on the line of representable values (+0 == -0 == 0).

    IEEE-754 bit patterns are sign-magnitude integers ordered like the values.
    """
    bits = np.asarray(x, dtype=f.numpy).view(_INT[f.width])
    magnitude = bits & _INT[f.width](2 ** (f.width - 1) - 1)
    return np.where(bits < 0, -magnitude, magnitude).astype(object)  # differences need Python ints


def ulps(got, ref, f: Format) -> np.ndarray:
    """Elementwise distance in representable values of `f` between arrays of `f`'s values.

    +0 and -0 are equal, an infinity equals the same infinity, NaN equals NaN, and
    NaN against anything else, or a finite value against an infinity, is `f.max_ulps`.
    Returns an object array of Python ints (float64 widths overflow int64 math).
    """
    got = np.asarray(got, dtype=f.numpy)
    ref = np.asarray(ref, dtype=f.numpy)
    finite = np.isfinite(got) & np.isfinite(ref)
    same = (np.isinf(got) & (got == ref)) | (np.isnan(got) & np.isnan(ref))
    # object arithmetic on 0-d arrays returns bare scalars, and np.abs of one beyond int64 is a Python int (or
    # numpy's uint64 below 2**64): keep every distance a Python int inside an array of got's shape
    diff = np.asarray(_ordinals(np.where(finite, got, 0), f) - _ordinals(np.where(finite, ref, 0), f), dtype=object)
    dist = np.where(diff < 0, -diff, diff)
    worst = np.full(dist.shape, f.max_ulps, dtype=object)
    worst[same] = 0
    return np.where(finite, dist, worst)


def error_bits(n_ulps: int) -> float:
    """log2(1 + ulps): 0 when exact, 1 for one ULP, the format's width for the maximum error."""
    return math.log2(1 + n_ulps)


HUGE_EXPONENT = 1 << 16  # bits: mpmath.nstr of a number beyond 2**65536 computes 10**digits exactly (minutes)


def nstr(x, n: int) -> str:
    """mpmath.nstr(x, n), except that a finite number of astronomically large or small magnitude (exp nested five
    deep, a power tower) is written from its logarithm in milliseconds instead of from an exact power of ten."""
    parts = getattr(x, "_mpf_", None)
    if parts is None or not parts[1] or abs(parts[2] + parts[3]) < HUGE_EXPONENT:
        return mpmath.nstr(x, n)
    sign, man, exp, bits = parts
    if abs(exp + bits).bit_length() > 4000:  # the decimal exponent has too many digits to write: its binary one
        return f"{'-' if sign else ''}2**{'-' if exp + bits < 0 else ''}({mpmath.nstr(mpmath.mpf(abs(exp + bits)), n)})"
    with mpmath.workprec(4 * n + 2 * (abs(exp) + bits).bit_length() + 16):
        log10 = (mpmath.log(man) + exp * mpmath.ln2) / mpmath.ln10
        decimal = int(mpmath.floor(log10))
        mantissa = mpmath.power(10, log10 - decimal)
    digits = mpmath.nstr(mantissa, n)
    if digits.startswith("10"):  # rounding carried into the next decade
        digits, decimal = mpmath.nstr(mantissa / 10, n), decimal + 1
    return f"{'-' if sign else ''}{digits}e{'+' if decimal >= 0 else ''}{decimal}"


# The dtype's values in order, as integers: what the hunt samples uniformly and bisects over.


def to_ordinals(x, f: Format) -> np.ndarray:
    """int64 positions of finite values of `f` on its ordered line (-0 and +0 are both 0; neighbours differ by 1):
    the sign-magnitude bit pattern read as a signed integer."""
    bits = np.asarray(x, dtype=f.numpy).view(_INT[f.width]).astype(np.int64)
    magnitude = bits & np.int64(2 ** (f.width - 1) - 1)
    return np.where(bits < 0, -magnitude, magnitude)


def ordinals_to_values(n, f: Format) -> np.ndarray:
    """The values of `f` at integer positions `n` (the inverse of to_ordinals; 0 is +0)."""
    n = np.asarray(n, dtype=np.int64)
    sign = np.where(n < 0, np.int64(1) << (f.width - 1), np.int64(0))
    pattern = (np.abs(n) | sign)
    if f.width < 64:
        pattern = pattern.astype(_INT[f.width])
    return pattern.view(f.numpy)


def ordinal_range(low, high, f: Format) -> tuple[int, int]:
    """Positions of the first and last values of `f` inside [low, high] (exact bounds, rounded inward)."""
    lo, hi = round_to(low, f), round_to(high, f)
    lo = float(np.nextafter(f.numpy.type(lo), f.numpy.type(np.inf))) if Fraction(lo) < low else lo
    hi = float(np.nextafter(f.numpy.type(hi), f.numpy.type(-np.inf))) if Fraction(hi) > high else hi
    return int(to_ordinals(lo, f)), int(to_ordinals(hi, f))
