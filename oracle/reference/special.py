"""Exact rules for the special-function primitives of JAX's jaxprs, in mpmath.

Each rule is the mathematical function at the current mpmath precision, with
IEEE-like conventions where mathematics is silent (a NaN operand gives NaN, an
argument outside the domain gives NaN, a pole a signed infinity) and the limits
at the infinities. JAX's own kernels (series with rounded coefficients, and
for igamma_grad_a an approximation) play no part: only the primitive's name and
operands are read. Rules work on scalars; the interpreter maps them elementwise.
"""

from __future__ import annotations

import mpmath
from mpmath import mp

NAN = mpmath.mpf("nan")
INF = mpmath.mpf("inf")
ZERO = mpmath.mpf(0)
ONE = mpmath.mpf(1)


def _nan(*xs) -> bool:
    return any(mpmath.isnan(x) for x in xs)


def bessel_i0e(x):
    """exp(-|x|) I0(x); 0 at the infinities."""
    if _nan(x):
        return NAN
    if mpmath.isinf(x):
        return ZERO
    return mp.exp(-abs(x)) * mp.besseli(0, x)


def bessel_i1e(x):
    """exp(-|x|) I1(x); 0 at the infinities."""
    if _nan(x):
        return NAN
    if mpmath.isinf(x):
        return ZERO
    return mp.exp(-abs(x)) * mp.besseli(1, x)


def erf_inv(x):
    """The inverse of erf on (-1, 1); +-inf at +-1, NaN outside."""
    if _nan(x) or abs(x) > 1:
        return NAN
    if abs(x) == 1:
        return x * INF
    return mp.erfinv(x)


def _gamma_domain(a, x):
    """None if the regularized incomplete gamma is defined by a formula at (a, x), else its value there."""
    if _nan(a, x) or a <= 0 or x < 0:
        return NAN
    if x == 0:
        return ZERO
    return None


def igamma(a, x):
    """P(a, x) = gamma(a, x) / Gamma(a), the regularized lower incomplete gamma function."""
    special = _gamma_domain(a, x)
    if special is not None:
        return special
    if mpmath.isinf(x):
        return ONE if not mpmath.isinf(a) else NAN
    if mpmath.isinf(a):
        return ZERO
    return mp.gammainc(a, 0, x, regularized=True)


def igammac(a, x):
    """Q(a, x) = 1 - P(a, x), computed directly (no cancellation where P is near 1)."""
    special = _gamma_domain(a, x)
    if special is not None:
        return ONE if special == 0 else special
    if mpmath.isinf(x):
        return ZERO if not mpmath.isinf(a) else NAN
    if mpmath.isinf(a):
        return ONE
    return mp.gammainc(a, x, mp.inf, regularized=True)


def igamma_grad_a(a, x):
    """dP(a, x)/da, the mathematical derivative (JAX's kernel approximates it).

    dP/da = (d gamma(a, x)/da) / Gamma(a) - P(a, x) digamma(a), with the derivative of
    the unregularized function taken from the side where it does not cancel:
    for x > a, dP/da = -dQ/da and d Gamma(a, x)/da = e^-x int_0^inf (x+u)^(a-1) e^-u ln(x+u) du;
    for x <= a, d gamma(a, x)/da = int_0^x t^(a-1) e^-t ln t dt, or, for x <= 2, the series
    ln(x) gamma(a, x) - x^a / a^2 2F2(a, a; a+1, a+1; -x) (the integral's endpoint is
    singular for small a). Both are evaluated with 20 guard bits; the reference's
    two-precision agreement judges the result like any other."""
    special = _gamma_domain(a, x)
    if special is not None:
        return special
    if mpmath.isinf(a) or mpmath.isinf(x):
        return ZERO if not (mpmath.isinf(a) and mpmath.isinf(x)) else NAN
    with mp.workprec(mp.prec + 20):
        gamma_a, psi_a = mp.gamma(a), mp.digamma(a)
        if x > a:
            upper = mp.gammainc(a, x, mp.inf)
            d_upper = mp.exp(-x) * mp.quad(lambda u: (x + u) ** (a - 1) * mp.exp(-u) * mp.log(x + u), [0, mp.inf])
            out = -(d_upper / gamma_a - upper / gamma_a * psi_a)
        else:
            lower = mp.gammainc(a, 0, x)
            if x <= 2:
                d_lower = mp.log(x) * lower - x ** a / a ** 2 * mp.hyp2f2(a, a, a + 1, a + 1, -x)
            else:
                d_lower = mp.quad(lambda t: t ** (a - 1) * mp.exp(-t) * mp.log(t), [0, x])
            out = d_lower / gamma_a - lower / gamma_a * psi_a
    return +out


def regularized_incomplete_beta(a, b, x):
    """I_x(a, b); 0 at x = 0, 1 at x = 1, NaN outside [0, 1] or for a, b <= 0."""
    if _nan(a, b, x) or a <= 0 or b <= 0 or x < 0 or x > 1 or mpmath.isinf(a) or mpmath.isinf(b):
        return NAN
    if x == 0:
        return ZERO
    if x == 1:
        return ONE
    if x > 1 / mpmath.mpf(2):  # I_x(a, b) = 1 - I_(1-x)(b, a): the small side is computed, the other is 1 - it
        return 1 - mp.betainc(b, a, 0, 1 - x, regularized=True)
    return mp.betainc(a, b, 0, x, regularized=True)


UNARY = {"bessel_i0e": bessel_i0e, "bessel_i1e": bessel_i1e, "erf_inv": erf_inv}
BINARY = {"igamma": igamma, "igammac": igammac, "igamma_grad_a": igamma_grad_a}
TERNARY = {"regularized_incomplete_beta": regularized_incomplete_beta}
