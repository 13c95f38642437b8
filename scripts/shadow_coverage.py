"""Which numpyro distributions, jax.scipy.stats pmfs and jax.scipy.special functions the shadow replays exactly.

For each impl below, the JAX shadow replays its jaxpr (forward and backward) in floats and in mpmath;
a primitive without an exact rule makes it unavailable, and the primitive is counted. The parameters are
ordinary (no edge case): this measures coverage, not accuracy.

Usage: PYTHONPATH=$PWD python scripts/shadow_coverage.py
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from oracle import formula, shadow
from oracle.floats import fmt

VALUES = {"a": 1.5, "b": 2.5, "x": 0.3, "y": 1.7, "k": 3.0, "v": [0.2, 0.3, 0.5], "kv": [2.0, 1.0, 2.0],
          "m": [0.1, -0.2, 0.3], "W": [[1.0, 0.0, 0.0], [0.5, 2.0, 0.0], [0.25, 0.5, 1.5]]}
DATA = {"k", "kv"}  # counts: not differentiated
D = "numpyro.distributions."
DISCRETE = [
    "Binomial(10, probs=x).log_prob(k)", "Binomial(10, logits=x).log_prob(k)", "Poisson(a).log_prob(k)",
    "NegativeBinomial2(a, b).log_prob(k)", "NegativeBinomialProbs(a, x).log_prob(k)",
    "NegativeBinomialLogits(a, x).log_prob(k)", "GammaPoisson(a, b).log_prob(k)", "Geometric(probs=x).log_prob(k)",
    "Geometric(logits=x).log_prob(k)", "Bernoulli(logits=x).log_prob(0 * x + 1)",
    "Bernoulli(probs=x).log_prob(0 * x + 1)",
    "BetaBinomial(a, b, 10).log_prob(k)", "ZeroInflatedPoisson(x, a).log_prob(k)", "Categorical(logits=m).log_prob(1)",
    "Categorical(probs=v).log_prob(1)", "Multinomial(5, probs=v).log_prob(kv)",
    "DirichletMultinomial(kv, total_count=5).log_prob(kv)",
]
SCIPY = ["jax.scipy.stats.binom.logpmf(k, 10.0, x)", "jax.scipy.stats.poisson.logpmf(k, a)",
         "jax.scipy.stats.nbinom.logpmf(k, a, x)", "jax.scipy.stats.geom.logpmf(k, x)"]
CONTINUOUS = [
    "AsymmetricLaplace(x, a, b).log_prob(y)", "Beta(a, b).log_prob(x)", "Beta(a, b).cdf(x)",
    "BetaProportion(x, b).log_prob(x)", "Cauchy(x, a).log_prob(y)", "Cauchy(x, a).cdf(y)", "Chi2(a).log_prob(y)",
    "Dirichlet(kv).log_prob(v)", "Exponential(a).log_prob(y)", "Exponential(a).cdf(y)", "Gamma(a, b).log_prob(y)",
    "Gamma(a, b).cdf(y)", "Gompertz(a, b).log_prob(y)", "Gumbel(x, a).log_prob(y)", "HalfCauchy(a).log_prob(y)",
    "HalfNormal(a).log_prob(y)", "HalfNormal(a).cdf(y)", "InverseGamma(a, b).log_prob(y)",
    "Kumaraswamy(a, b).log_prob(x)", "Laplace(x, a).log_prob(y)", "Laplace(x, a).cdf(y)", "Levy(x, a).log_prob(y)",
    "LogNormal(x, a).log_prob(y)", "LogNormal(x, a).cdf(y)", "LogUniform(x, b).log_prob(y)",
    "Logistic(x, a).log_prob(y)", "Logistic(x, a).cdf(y)", "MultivariateStudentT(a, m, scale_tril=W).log_prob(v)",
    "Pareto(x, a).log_prob(y)", "SoftLaplace(x, a).log_prob(y)", "StudentT(a, x, b).log_prob(y)",
    "StudentT(a, x, b).cdf(y)", "TruncatedNormal(x, a, low=-1.0, high=2.0).log_prob(y)", "Uniform(x, b).log_prob(y)",
    "VonMises(x, a).log_prob(y)", "Weibull(a, b).log_prob(y)", "Normal(x, a).cdf(y)", "Normal(x, a).log_cdf(y)",
    "Normal(x, a).icdf(x)", "Normal(x, a).entropy()", "Gamma(a, b).entropy()", "Beta(a, b).entropy()",
    "StudentT(a, x, b).entropy()", "LowRankMultivariateNormal(m, W, kv).log_prob(v)",
    "MixtureSameFamily(numpyro.distributions.Categorical(probs=v), numpyro.distributions.Normal(m, kv))"
    ".log_prob(y + 0 * v)",
    "kl_divergence(numpyro.distributions.Normal(x, a), numpyro.distributions.Normal(y, b))",
    "kl_divergence(numpyro.distributions.Beta(a, b), numpyro.distributions.Beta(b, a))",
    "kl_divergence(numpyro.distributions.Gamma(a, b), numpyro.distributions.Gamma(b, a))",
    "kl_divergence(numpyro.distributions.Dirichlet(kv), numpyro.distributions.Dirichlet(v))",
]

SPECIAL = ["betainc(a, b, x)", "gammainc(a, y)", "gammaincc(a, y)", "erfcx(y)", "expi(y)", "exp1(y)", "spence(y)",
           "i0(y)", "i1(y)", "i0e(y)", "i1e(y)", "dawsn(y)", "ndtri(x)", "owens_t(y, a)", "zeta(a, y)", "entr(x)",
           "kl_div(x, y)", "rel_entr(x, y)", "xlogy(x, y)", "xlog1py(x, y)", "log_ndtr(y)", "hyp1f1(a, b, y)",
           "poch(a, y)", "erfinv(x)", "logit(x)", "expit(y)", "gammasgn(y)", "beta(a, b)", "betaln(a, b)",
           "polygamma(1, y)", "multigammaln(a, 2)", "boxcox(y, a)", "boxcox1p(y, a)", "digamma(y)", "gamma(y)",
           "loggamma(y)", "comb(b, a)", "expn(2, y)"]


def replay(source: str) -> str:
    """'ok', 'missing <primitive>' or 'error <type>' (the impl itself fails to trace at the installed versions)."""
    words = set(source.replace("(", " ").replace(")", " ").replace(",", " ").replace("=", " ").split())
    inputs = {n: np.asarray(v, dtype=np.float32) for n, v in VALUES.items() if n in words}
    try:
        tree = formula.parse(source, set(inputs), impl="jax")
        shadow.run(tree, inputs, [n for n in inputs if n not in DATA], fmt("float32"), 128)
    except shadow.ShadowUnavailable as e:
        return f"missing {e.primitive}"
    except Exception as e:  # noqa: BLE001 - reported, the survey goes on
        return f"error {type(e).__name__}: {str(e).splitlines()[0][:100]}"
    return "ok"


def main() -> None:
    for title, sources in (("numpyro discrete", [D + s for s in DISCRETE]), ("jax.scipy.stats pmfs", SCIPY),
                           ("numpyro continuous, cdfs, entropies, KLs", [D + s for s in CONTINUOUS]),
                           ("jax.scipy.special", ["jax.scipy.special." + s for s in SPECIAL])):
        outcomes = {s: replay(s) for s in sources}
        missing = Counter(o.split()[1] for o in outcomes.values() if o.startswith("missing"))
        replayed = sum(o == "ok" for o in outcomes.values())
        print(f"{title}: {replayed} of {len(sources)} replayed; missing primitives: {dict(missing)}")
        for source, outcome in outcomes.items():
            if outcome != "ok":
                print(f"  {outcome}: {source}")


if __name__ == "__main__":
    main()
