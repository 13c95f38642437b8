"""Library calls a case's `impl` may make: an explicit allowlist of pure mathematical APIs per framework.

A case file is untrusted, so an `impl` expression may name only the dotted paths
listed here, exactly as written in the case (`tf.math.log1p`,
`tfp.distributions.Normal`, `torch.nn.functional.binary_cross_entropy_with_logits`,
`jax.scipy.stats.norm.logpdf`, `numpyro.distributions.Normal`,
`optax.sigmoid_binary_cross_entropy`), and, on an object such a call returns
(a distribution), only the METHODS and PROPERTIES named here. Functions and
methods are listed by name, never whole modules: nothing that reads or writes
files, loads, saves, spawns or imports; nothing that allocates from a size
argument (ones, zeros, eye, arange, full, sample, one_hot, broadcast_to, ...);
no attribute that starts with `_`.

Each path belongs to one framework (tf and tfp paths to the tf impl; torch paths
to torch; jax, numpyro and optax paths to jax). Checking a path needs no
framework; `resolve` imports the root package lazily, at evaluation time, and
walks its attributes (importing the allowlisted submodule a path runs through
when the package does not import it itself).
"""

from __future__ import annotations

import difflib
import importlib
from functools import cache

# the first component of a path -> the package it names
ROOTS = {"tf": "tensorflow", "tfp": "tensorflow_probability", "torch": "torch", "jax": "jax",
         "numpyro": "numpyro", "optax": "optax"}
FRAMEWORK_ROOTS = {"tf": ("tf", "tfp"), "torch": ("torch",), "jax": ("jax", "numpyro", "optax")}

# Names that create tensors from a size, draw random numbers, or touch the outside world: never allowlisted,
# and named in the refusal message when a case asks for one.
REFUSED_NAMES = frozenset("""
    ones zeros empty full eye identity_matrix arange range linspace logspace geomspace meshgrid tri
    ones_like zeros_like empty_like full_like rand randn randint rand_like randn_like normal uniform_
    sample rsample sample_n sample_and_log_prob sample_with_intermediates enumerate_support expand expand_by
    broadcast_to tile repeat repeat_interleave one_hot pad kron outer vander diag diag_embed tensor_diag
    bernoulli multinomial poisson_sample load save open read write numpy tolist item eval exec compile
    getattr setattr delattr globals locals vars import_module system popen spawn fork run
    set_default_validate_args register_kl
""".split())


def _group(prefix: str, names: str) -> set[str]:
    return {f"{prefix}.{name}" for name in names.split()}


def _scipy_stats(spec: dict[str, str]) -> set[str]:
    return {path for dist, functions in spec.items() for path in _group(f"jax.scipy.stats.{dist}", functions)}


_TF_DISTRIBUTIONS = """
    Normal MultivariateNormalTriL MultivariateNormalDiag MultivariateNormalFullCovariance
    MultivariateNormalDiagPlusLowRankCovariance Bernoulli ProbitBernoulli ContinuousBernoulli Categorical
    OneHotCategorical Beta BetaBinomial Gamma ExpGamma InverseGamma LogNormal Laplace StudentT HalfStudentT
    Poisson Binomial Multinomial Dirichlet DirichletMultinomial Exponential Uniform Cauchy HalfNormal HalfCauchy
    Logistic LogLogistic LogitNormal Gumbel Weibull Chi Chi2 NoncentralChi2 Geometric NegativeBinomial
    TruncatedNormal TruncatedCauchy VonMises Pareto GeneralizedPareto Kumaraswamy Horseshoe GeneralizedNormal
    Moyal SinhArcsinh JohnsonSU InverseGaussian ExponentiallyModifiedGaussian Skellam Triangular TwoPieceNormal
    Zipf Independent MixtureSameFamily LKJ CholeskyLKJ WishartTriL kl_divergence
"""

TF = frozenset(
    _group("tf.math", """
        abs acos acosh add asin asinh atan atan2 atanh bessel_i0 bessel_i0e bessel_i1 bessel_i1e betainc cos cosh
        cumprod cumsum cumulative_logsumexp digamma divide divide_no_nan erf erfc erfcinv erfinv exp expm1 igamma
        igammac l2_normalize lbeta lgamma log log1p log_sigmoid log_softmax maximum minimum multiply
        multiply_no_nan ndtri negative polygamma pow reciprocal reciprocal_no_nan reduce_euclidean_norm
        reduce_logsumexp reduce_max reduce_mean reduce_min reduce_prod reduce_std reduce_sum reduce_variance rsqrt
        sigmoid sign sin sinh softmax softplus softsign sqrt square squared_difference subtract tan tanh truediv
        xdivy xlog1py xlogy zeta""")
    | _group("tf.math.special", """
        bessel_i0 bessel_i0e bessel_i1 bessel_i1e bessel_j0 bessel_j1 bessel_k0 bessel_k0e bessel_k1 bessel_k1e
        bessel_y0 bessel_y1 dawsn expint fresnel_cos fresnel_sin spence""")
    | _group("tf", """
        abs add clip_by_value cos cosh divide exp matmul maximum minimum multiply negative pow reduce_logsumexp
        reduce_max reduce_mean reduce_min reduce_prod reduce_sum sigmoid sign sin sinh sqrt square stop_gradient
        subtract tan tanh transpose truediv where""")
    | _group("tf.nn", """
        elu gelu l2_loss l2_normalize leaky_relu log_poisson_loss log_softmax moments relu relu6 selu sigmoid
        sigmoid_cross_entropy_with_logits silu softmax softmax_cross_entropy_with_logits softplus softsign
        sparse_softmax_cross_entropy_with_logits swish tanh weighted_cross_entropy_with_logits ctc_loss""")
    | _group("tf.linalg", """
        adjoint band_part cholesky cholesky_solve cross det diag_part eigh eigvalsh expm inv l2_normalize logdet
        lstsq matmul matrix_transpose matvec norm normalize pinv qr slogdet solve sqrtm svd trace
        triangular_solve""")
    | _group("tf.keras.losses", """
        binary_crossentropy binary_focal_crossentropy categorical_crossentropy categorical_focal_crossentropy
        categorical_hinge cosine_similarity hinge huber kld kullback_leibler_divergence logcosh mae mape mse msle
        poisson sparse_categorical_crossentropy squared_hinge""")
    | _group("tfp.math", """
        atan_difference bessel_iv_ratio bessel_ive bessel_kve betainc betaincinv clip_by_value_preserve_gradient
        dawsn erfcinv erfcx fill_triangular fill_triangular_inverse igammacinv igammainv lambertw
        lambertw_winitzki_approx lbeta log1mexp log1psquare log_add_exp log_bessel_ive log_bessel_kve
        log_combinations log_cosh log_cumsum_exp log_gamma_correction log_gamma_difference log_sub_exp logerfc
        logerfcx owens_t reduce_kahan_sum reduce_log_harmonic_mean_exp reduce_logmeanexp
        reduce_weighted_logsumexp smootherstep soft_threshold softplus_inverse sqrt1pm1""")
    | _group("tfp.distributions", _TF_DISTRIBUTIONS)
)

TORCH = frozenset(
    _group("torch", """
        abs acos acosh add amax amin asin asinh atan atan2 atanh cdist clamp clip cos cosh cumprod cumsum det
        diagonal digamma dist div dot erf erfc erfinv exp exp2 expm1 hypot i0 inverse lgamma log log10 log1p log2
        log_softmax logaddexp logaddexp2 logcumsumexp logdet logit logsumexp matmul maximum mean minimum mm mul
        mv mvlgamma nan_to_num neg norm polygamma pow prod reciprocal rsqrt sigmoid sign sin sinc sinh slogdet
        softmax sqrt square std sub sum tan tanh trace tril triu true_divide var where xlogy""")
    | _group("torch.special", """
        airy_ai bessel_j0 bessel_j1 bessel_y0 bessel_y1 digamma entr erf erfc erfcx erfinv exp2 expit expm1
        gammainc gammaincc gammaln i0 i0e i1 i1e log1p log_ndtr log_softmax logit logsumexp modified_bessel_i0
        modified_bessel_i1 modified_bessel_k0 modified_bessel_k1 multigammaln ndtr ndtri polygamma psi
        scaled_modified_bessel_k0 scaled_modified_bessel_k1 sinc softmax spherical_bessel_j0 xlog1py xlogy
        zeta""")
    | _group("torch.nn.functional", """
        binary_cross_entropy binary_cross_entropy_with_logits celu cosine_embedding_loss cosine_similarity
        cross_entropy elu gaussian_nll_loss gelu hardsigmoid hardswish hardtanh hinge_embedding_loss huber_loss
        kl_div l1_loss leaky_relu log_softmax logsigmoid margin_ranking_loss mish mse_loss
        multilabel_soft_margin_loss nll_loss normalize pairwise_distance poisson_nll_loss relu relu6 selu sigmoid
        silu smooth_l1_loss soft_margin_loss softmax softmin softplus softshrink softsign tanh tanhshrink ctc_loss
        triplet_margin_loss""")
    | _group("torch.linalg", """
        cholesky cholesky_ex cond cross det diagonal eigh eigvalsh inv inv_ex lstsq matmul matrix_exp matrix_norm
        matrix_power norm pinv qr slogdet solve solve_ex solve_triangular svd svdvals vecdot vector_norm""")
    | _group("torch.distributions", """
        Bernoulli Beta Binomial Categorical Cauchy Chi2 ContinuousBernoulli Dirichlet Exponential FisherSnedecor
        Gamma GeneralizedPareto Geometric Gumbel HalfCauchy HalfNormal Independent InverseGamma Kumaraswamy
        LKJCholesky Laplace LogNormal LogisticNormal LowRankMultivariateNormal MixtureSameFamily Multinomial
        MultivariateNormal NegativeBinomial Normal OneHotCategorical Pareto Poisson StudentT Uniform VonMises
        Weibull Wishart kl_divergence""")
    | {"torch.distributions.kl.kl_divergence"}
)

JAX = frozenset(
    _group("jax.numpy", """
        abs absolute add amax amin arccos arccosh arcsin arcsinh arctan arctan2 arctanh cbrt clip cos cosh
        cumprod cumsum diagonal divide dot exp exp2 expm1 hypot i0 inner log log10 log1p log2 logaddexp
        logaddexp2 matmul max maximum mean min minimum multiply nan_to_num negative power prod reciprocal sign sin
        sinc sinh sqrt square std subtract sum tan tanh trace transpose tril triu true_divide var vdot where""")
    | _group("jax.numpy.linalg", "cholesky det eigh eigvalsh inv lstsq matrix_power norm pinv qr slogdet solve svd")
    | _group("jax.nn", """
        celu elu gelu glu hard_sigmoid hard_silu hard_swish hard_tanh identity leaky_relu log1mexp log_sigmoid
        log_softmax logmeanexp logsumexp mish relu relu6 selu sigmoid silu soft_sign softmax softplus sparse_plus
        sparse_sigmoid squareplus standardize swish tanh""")
    | _scipy_stats({
        "bernoulli": "cdf logpmf pmf ppf", "beta": "cdf logcdf logpdf logsf pdf sf", "betabinom": "logpmf pmf",
        "binom": "logpmf pmf", "cauchy": "cdf isf logcdf logpdf logsf pdf ppf sf",
        "chi2": "cdf logcdf logpdf logsf pdf sf", "dirichlet": "logpdf pdf",
        "expon": "cdf logcdf logpdf logsf pdf ppf sf", "gamma": "cdf logcdf logpdf logsf pdf sf",
        "gennorm": "cdf logpdf pdf", "geom": "logpmf pmf", "gumbel_l": "cdf logcdf logpdf logsf pdf ppf sf",
        "gumbel_r": "cdf logcdf logpdf logsf pdf ppf sf", "laplace": "cdf logpdf pdf",
        "logistic": "cdf isf logpdf pdf ppf sf", "multinomial": "logpmf pmf", "multivariate_normal": "logpdf pdf",
        "nbinom": "logpmf pmf", "norm": "cdf isf logcdf logpdf logsf pdf ppf sf",
        "pareto": "cdf logcdf logpdf logsf pdf ppf sf", "poisson": "cdf entropy logpmf pmf", "t": "logpdf pdf",
        "truncnorm": "cdf logcdf logpdf logsf pdf sf", "uniform": "cdf logpdf pdf ppf", "vonmises": "logpdf pdf",
        "wrapcauchy": "logpdf pdf"})
    | _group("jax.scipy.special", """
        beta betainc betaln boxcox boxcox1p comb dawsn digamma entr erf erfc erfcx erfinv exp1 expi expit expn
        gamma gammainc gammaincc gammaln gammasgn hyp1f1 i0 i0e i1 i1e kl_div log_ndtr log_softmax loggamma logit
        logsumexp multigammaln ndtr ndtri owens_t poch polygamma rel_entr softmax spence xlog1py xlogy zeta""")
    | _group("jax.scipy.linalg", "cholesky det eigh expm inv qr solve solve_triangular sqrtm svd")
    | _group("numpyro.distributions", """
        AsymmetricLaplace Bernoulli BernoulliLogits BernoulliProbs Beta BetaBinomial BetaProportion Binomial
        BinomialLogits BinomialProbs Categorical CategoricalLogits CategoricalProbs Cauchy Chi2 Dirichlet
        DirichletMultinomial Exponential Gamma GammaPoisson Geometric GeometricLogits GeometricProbs Gompertz
        Gumbel HalfCauchy HalfNormal Independent InverseGamma Kumaraswamy LKJCholesky Laplace Levy LogNormal
        LogUniform Logistic LowRankMultivariateNormal MixtureSameFamily Multinomial MultinomialLogits
        MultinomialProbs MultivariateNormal MultivariateStudentT NegativeBinomial2 NegativeBinomialLogits
        NegativeBinomialProbs Normal Pareto Poisson SoftLaplace StudentT TruncatedNormal Uniform VonMises Weibull
        ZeroInflatedPoisson kl_divergence""")
    | _group("optax", """
        convex_kl_divergence cosine_distance cosine_similarity hinge_loss huber_loss kl_divergence l2_loss
        log_cosh safe_softmax_cross_entropy sigmoid_binary_cross_entropy sigmoid_focal_loss
        softmax_cross_entropy softmax_cross_entropy_with_integer_labels squared_error ctc_loss""")
    | _group("optax.losses", """
        convex_kl_divergence cosine_distance cosine_similarity generalized_kl_divergence hinge_loss huber_loss
        kl_divergence kl_divergence_with_log_targets l2_loss log_cosh multiclass_hinge_loss
        multiclass_perceptron_loss multiclass_sparsemax_loss perceptron_loss poly_loss_cross_entropy
        safe_softmax_cross_entropy sigmoid_binary_cross_entropy sigmoid_focal_loss smooth_labels
        softmax_cross_entropy softmax_cross_entropy_with_integer_labels sparsemax_loss squared_error ctc_loss""")
)

PATHS: dict[str, frozenset[str]] = {"tf": TF, "torch": TORCH, "jax": JAX}

# Methods callable on an object an allowlisted call returned (a distribution), and attributes readable on it.
METHODS: dict[str, frozenset[str]] = {
    "tf": frozenset("""log_prob prob cdf log_cdf survival_function log_survival_function entropy mean stddev
                       variance mode covariance quantile kl_divergence cross_entropy unnormalized_log_prob""".split()),
    "torch": frozenset("log_prob cdf icdf entropy perplexity".split()),
    "jax": frozenset("log_prob cdf log_cdf icdf entropy to_event".split()),
}
PROPERTIES: dict[str, frozenset[str]] = {
    "tf": frozenset(),
    "torch": frozenset("mean stddev variance mode".split()),
    "jax": frozenset("mean variance mode".split()),
}


# Functions whose parameter `inplace` (overwrite the input) or `out` (write into a tensor) can be reached
# positionally: path -> (positional arguments allowed, that parameter). The keywords themselves are refused
# by the parser; tests check this table against the installed signatures.
POSITIONAL_LIMITS: dict[str, tuple[int, str]] = {
    **{f"torch.nn.functional.{name}": (count, "inplace") for name, count in (
        ("celu", 2), ("elu", 2), ("hardsigmoid", 1), ("hardswish", 1), ("hardtanh", 3), ("leaky_relu", 2),
        ("mish", 1), ("relu", 1), ("relu6", 1), ("selu", 1), ("silu", 1))},
    "torch.nn.functional.normalize": (4, "out"),
    "torch.norm": (4, "out"),
    **{f"jax.numpy.{name}": (count, "out") for name, count in (
        ("amax", 2), ("amin", 2), ("cumprod", 3), ("cumsum", 3), ("max", 2), ("mean", 3), ("min", 2), ("prod", 3),
        ("std", 3), ("sum", 3), ("trace", 5), ("var", 3))},
}


# Functions with an integer parameter that sizes work or memory per element (a dimension): their integer
# literal arguments are capped lower than the general 2**24, so that they cannot multiply an input's size.
SIZE_LIKE = 1000
INTEGER_LIMITS: dict[str, int] = {path: SIZE_LIKE for path in (
    "jax.scipy.special.multigammaln", "torch.special.multigammaln", "torch.mvlgamma",
    "tfp.distributions.LKJ", "tfp.distributions.CholeskyLKJ", "torch.distributions.LKJCholesky",
    "numpyro.distributions.LKJCholesky")}


def check_integer(path: str, value: int) -> None:
    """Raise NativeError when an integer argument of `path` exceeds its size-like cap."""
    limit = INTEGER_LIMITS.get(path)
    if limit is not None and abs(value) > limit:
        raise NativeError(f"integer argument {value} of '{path}' is too large: it sizes the work per element "
                          f"(at most {limit})")


def check_positional(path: str, count: int) -> None:
    """Raise NativeError when `count` positional arguments would reach an `inplace` or `out` parameter."""
    limit = POSITIONAL_LIMITS.get(path)
    if limit is not None and count > limit[0]:
        said = "overwrites its input" if limit[1] == "inplace" else "writes into a tensor"
        raise NativeError(f"'{path}' takes at most {limit[0]} positional argument{'s' if limit[0] != 1 else ''} "
                          f"here: the next one is its parameter '{limit[1]}', which {said} (not allowed)")


class NativeError(ValueError):
    """A path, method or attribute outside the allowlist (the message says what is allowed nearby)."""


def owner(path: str) -> str | None:
    """The framework whose impl may use a path with this root (`tfp.x` -> tf), or None for an unknown root."""
    root = path.split(".", 1)[0]
    return next((fw for fw, roots in FRAMEWORK_ROOTS.items() if root in roots), None)


def check_path(framework: str, path: str) -> None:
    """Raise NativeError unless `path` may be called in `framework`'s impl."""
    if path in PATHS[framework]:
        return
    roots = " and ".join(FRAMEWORK_ROOTS[framework])
    for part in path.split("."):
        if part.startswith("_"):
            raise NativeError(f"'{path}': attributes starting with '_' are never allowed")
    other = next((fw for fw in PATHS if path in PATHS[fw]), None)
    if other is not None:
        raise NativeError(f"'{path}' belongs to the {other} impl; the {framework} impl may use only {roots} paths")
    last = path.rsplit(".", 1)[-1]
    if last in REFUSED_NAMES:
        raise NativeError(f"'{path}' is not allowed: impl calls are pure math functions, nothing that creates tensors "
                          "from a size, samples, or reads or writes anything")
    close = difflib.get_close_matches(path, sorted(PATHS[framework]), n=3, cutoff=0.75)
    hint = f"; did you mean {', '.join(close)}?" if close else f" (the {framework} impl may call allowlisted {roots} paths)"
    raise NativeError(f"'{path}' is not an allowed {framework} call{hint}")


def check_method(framework: str, name: str, called: bool) -> None:
    """Raise NativeError unless `name` may be called (or, if not `called`, read) on a constructed object."""
    allowed = METHODS[framework] if called else PROPERTIES[framework]
    if name in allowed:
        return
    if name.startswith("_"):
        raise NativeError(f"attribute '{name}': attributes starting with '_' are never allowed")
    if called and name in PROPERTIES[framework]:
        raise NativeError(f"'{name}' is a property in {framework}: write .{name}, not .{name}()")
    if not called and name in METHODS[framework]:
        raise NativeError(f"'{name}' is a method: call it, e.g. .{name}(x)")
    kind = "method" if called else "attribute"
    listed = ", ".join(sorted(allowed)) or "none"
    raise NativeError(f"{kind} '{name}' is not allowed on {framework} objects (allowed {kind}s: {listed})")


def _import(name: str):
    return importlib.import_module(name)


@cache
def resolve(framework: str, path: str):
    """The callable an allowlisted path names, importing its package now (TFP takes seconds)."""
    check_path(framework, path)
    parts = path.split(".")
    real = [ROOTS[parts[0]], *parts[1:]]
    if real[0] == "tensorflow":
        import os

        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    obj = _import(real[0])
    for k, part in enumerate(real[1:], start=1):
        try:
            obj = getattr(obj, part)
        except AttributeError:  # a submodule its package does not import itself (jax.scipy.stats)
            obj = _import(".".join(real[: k + 1]))
    if not callable(obj):
        raise NativeError(f"'{path}' is not callable in this version")
    return obj


def method(framework: str, obj, name: str, called: bool = True):
    """An allowlisted method (bound) or property of an object an allowlisted call returned."""
    check_method(framework, name, called)
    return getattr(obj, name)


def size() -> dict[str, int]:
    return {fw: len(paths) for fw, paths in PATHS.items()}
