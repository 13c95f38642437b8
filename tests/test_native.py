"""Auditing library calls (`impl`): the allowlist, the parser's impl mode, case loading and real runs."""

from __future__ import annotations

import inspect
import json
import re
import subprocess
import sys
import textwrap
from fractions import Fraction

import pytest
from typer.testing import CliRunner

from oracle import formula, native
from oracle.case import CaseError, load
from oracle.cli import app
from oracle.formula import Const, FormulaError, Method, Name, Native, Option, parse
from oracle.runner import check_shapes

EXAMPLE = """\
id: normal-logprob-impls
title: Normal log-density, library calls side by side
kind: logprob
inputs:
  x: 1.5
  loc: 0.25
  scale: 2.0
impl:                       # framework -> one call, or a mapping label -> call
  tf: tfp.distributions.Normal(loc, scale).log_prob(x)
  torch:
    distributions: torch.distributions.Normal(loc, scale).log_prob(x)
    manual: -0.5 * ((x - loc) / scale) ** 2 - log(scale) - 0.5 * log(2 * pi)
  jax:
    scipy: jax.scipy.stats.norm.logpdf(x, loc, scale)
    numpyro: numpyro.distributions.Normal(loc, scale).log_prob(x)
reference: -0.5 * ((x - loc) / scale) ** 2 - log(scale) - 0.5 * log(2 * pi)
"""

# log Phi(-40): the cdf underflows float32 (and float64) while its log, -804.6, is an ordinary number
LOG_CDF = """\
id: log-normal-cdf-impls
title: log of the standard normal cdf at x = -40
kind: logprob
inputs:
  x: -40.0
impl:
  tf:
    naive: log(tfp.distributions.Normal(0.0, 1.0).cdf(x))
    log_cdf: tfp.distributions.Normal(0.0, 1.0).log_cdf(x)
  torch:
    naive: log(torch.distributions.Normal(0.0, 1.0).cdf(x))
    log_ndtr: torch.special.log_ndtr(x)
  jax:
    naive: log(jax.scipy.stats.norm.cdf(x))
    logcdf: jax.scipy.stats.norm.logcdf(x)
reference: log(ndtr(x))
"""

# -log p for a Bernoulli(p) observation y = 1 at p = 1e-10
BERNOULLI = """\
id: bernoulli-tiny-probability-impls
title: -log p of y = 1 under Bernoulli(p), p = 1e-10
kind: loss
inputs:
  p: 1.0e-10
  y: 1.0
wrt: [p]
formula: -(y * log(p) + (1 - y) * log1p(-p))
impl:
  tf: -tfp.distributions.Bernoulli(probs=p).log_prob(y)
  torch:
    distributions: -torch.distributions.Bernoulli(probs=p).log_prob(y)
    functional: torch.nn.functional.binary_cross_entropy(p, y)
  jax: -numpyro.distributions.Bernoulli(probs=p).log_prob(y)
frameworks: [torch, jax]
"""


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


# --- the allowlist -------------------------------------------------------------------------------------------

def _distribution(framework: str):
    if framework == "tf":
        import tensorflow_probability as tfp

        return tfp.distributions.Normal(0.0, 1.0)
    if framework == "torch":
        import torch

        return torch.distributions.Normal(0.0, 1.0)
    import numpyro.distributions as nd

    return nd.Normal(0.0, 1.0)


@pytest.mark.parametrize("framework", ["tf", "torch", "jax"])
def test_every_allowlisted_path_method_and_property_resolves(framework):
    missing = []
    for path in sorted(native.PATHS[framework]):
        try:
            assert callable(native.resolve(framework, path))
        except Exception as e:  # noqa: BLE001 - collect them all
            missing.append(f"{path}: {type(e).__name__}: {e}")
    assert not missing, missing
    dist = _distribution(framework)
    assert all(callable(getattr(dist, name)) for name in native.METHODS[framework])
    for name in native.PROPERTIES[framework]:  # a property gives a tensor, not a method
        assert isinstance(inspect.getattr_static(type(dist), name), property), name


@pytest.mark.parametrize("framework", ["tf", "torch", "jax"])
def test_positional_limits_keep_inplace_and_out_out_of_reach(framework):
    """Every allowlisted function whose signature has a positional `inplace` or `out` is limited before it."""
    found = {}
    for path in sorted(native.PATHS[framework]):
        try:
            parameters = list(inspect.signature(native.resolve(framework, path)).parameters.values())
        except (TypeError, ValueError):  # a builtin without a signature: torch's `out` is keyword-only there
            continue
        for k, parameter in enumerate(parameters):
            if parameter.name in ("out", "inplace") and parameter.kind in (parameter.POSITIONAL_ONLY,
                                                                            parameter.POSITIONAL_OR_KEYWORD):
                found[path] = (k, parameter.name)
                break
    expected = {path: limit for path, limit in native.POSITIONAL_LIMITS.items() if native.owner(path) == framework}
    assert found == expected


def test_allowlist_is_explicit_pure_math_and_per_framework():
    assert {fw: len(p) for fw, p in native.PATHS.items()} == native.size()
    assert min(native.size().values()) > 200
    for framework, paths in native.PATHS.items():
        for path in paths:
            parts = path.split(".")
            assert parts[0] in native.FRAMEWORK_ROOTS[framework], path
            assert not any(part.startswith("_") for part in parts), path
            assert parts[-1] not in native.REFUSED_NAMES, path
    assert not native.PATHS["tf"] & native.PATHS["torch"] and not native.PATHS["torch"] & native.PATHS["jax"]
    for wanted in ("tfp.distributions.MultivariateNormalTriL", "tfp.distributions.kl_divergence", "tf.math.log1p",
                   "tf.nn.sigmoid_cross_entropy_with_logits", "tf.keras.losses.binary_crossentropy",
                   "torch.nn.functional.binary_cross_entropy_with_logits", "torch.distributions.kl_divergence",
                   "torch.special.log_ndtr", "torch.linalg.solve_triangular", "jax.scipy.stats.norm.logpdf",
                   "jax.scipy.special.xlog1py", "numpyro.distributions.kl_divergence",
                   "optax.sigmoid_binary_cross_entropy", "jax.nn.log_sigmoid"):
        assert wanted in native.PATHS[native.owner(wanted)], wanted
    for method in ("log_prob", "cdf", "entropy"):
        assert all(method in native.METHODS[fw] for fw in native.METHODS)


# --- parsing ---------------------------------------------------------------------------------------------------

def test_the_issue_example_parses_into_native_and_method_nodes():
    names = {"x", "loc", "scale"}
    tree = parse("tfp.distributions.Normal(loc, scale).log_prob(x)", names, impl="tf")
    assert isinstance(tree, Method) and tree.name == "log_prob" and tree.args == (Name("x", "x"),)
    assert tree.obj == Native("tfp.distributions.Normal(loc, scale)", "tfp.distributions.Normal",
                              (Name("loc", "loc"), Name("scale", "scale")))
    assert formula.callee(tree) == "tfp.distributions.Normal.log_prob"
    assert formula.callee(parse("jax.scipy.stats.norm.logpdf(x, loc, scale)", names, impl="jax")) == \
        "jax.scipy.stats.norm.logpdf"
    assert formula.callee(parse("-0.5 * log(scale)", names, impl="torch")) is None
    kl = parse("tfp.distributions.kl_divergence(tfp.distributions.Normal(loc, scale), "
               "tfp.distributions.Normal(0.0, 1.0))", names, impl="tf")
    assert formula.callee(kl) == "tfp.distributions.kl_divergence"


def test_arguments_integers_options_and_tensors():
    tree = parse('torch.nn.functional.binary_cross_entropy_with_logits(x, y, reduction="sum", pos_weight=2.5)',
                 {"x", "y"}, impl="torch")
    assert dict(tree.kwargs) == {"reduction": Option('"sum"', "sum"), "pos_weight": Const("2.5", Fraction(5, 2))}
    tree = parse("numpyro.distributions.Normal(0.0, 1).to_event(1).log_prob(x)", {"x"}, impl="jax")
    assert tree.obj.args == (Option("1", 1),) and tree.obj.obj.args == (Const("0.0", Fraction(0)), Option("1", 1))
    assert parse("jax.numpy.sum(x, axis=(0, -1))", {"x"}, impl="jax").kwargs == (("axis", Option("(0, -1)", (0, -1))),)
    assert parse("torch.distributions.Normal(x, 1.0).mean", {"x"}, impl="torch").called is False
    assert parse("torch.linalg.slogdet(x)[1]", {"x"}, impl="torch").key == (1,)


REFUSED = [
    ("tf", "tfp.distributions.Normal(x, 1.0).log_prob(x) + torch.exp(x)", "'torch.exp' belongs to the torch impl"),
    ("jax", "tfp.distributions.Normal(x, 1.0).log_prob(x)", "belongs to the tf impl; the jax impl may use only jax"),
    ("tf", "tf.math.logp1(x)", "'tf.math.logp1' is not an allowed tf call; did you mean tf.math.log1p"),
    ("torch", "torch.distributions.Normal(x, 1.0).sample()", "method 'sample' is not allowed on torch objects"),
    ("torch", "torch.distributions.Normal(x, 1.0).rsample()", "method 'rsample' is not allowed"),
    ("torch", "torch.distributions.Normal(x, 1.0).mean()", "'mean' is a property in torch: write .mean"),
    ("torch", "torch.distributions.Normal(x, 1.0)._validate_sample(x)", "attributes starting with '_' are never"),
    ("torch", "torch.distributions.Normal.__init__.__globals__", "'__globals__'"),
    ("jax", "jax.numpy.exp(x).__class__", "'__class__'"),
    ("torch", "x.__class__", "'__class__'"),
    ("torch", "x.exp()", "attributes of inputs are not allowed"),
    ("torch", "torch.exp(x).log_prob(x)", "only on an object an allowlisted constructor returns"),
    ("torch", "torch.exp(x, 'save')", "string literal 'save' is allowed only as a keyword argument's value"),
    ("torch", "getattr(torch, 'save')", "unknown function 'getattr'"),
    ("torch", "getattr(x, x)", "unknown function 'getattr'"),
    ("jax", "eval(x)", "unknown function 'eval'"),
    ("jax", "__import__(x)", "unknown function '__import__'"),
    ("torch", "torch.ones(3)", "'torch.ones' is not allowed: impl calls are pure math functions"),
    ("jax", "jax.numpy.zeros(3) + x", "'jax.numpy.zeros' is not allowed"),
    ("tf", "tf.broadcast_to(x, (100000, 100000))", "'tf.broadcast_to' is not allowed"),
    ("torch", "torch.save(x)", "'torch.save' is not allowed"),
    ("torch", "torch.load(x)", "'torch.load' is not allowed"),
    ("tf", "tf.io.write_file(x, x)", "'tf.io.write_file' is not an allowed tf call"),
    ("torch", "torch.nn.functional.np.save(x)", "'torch.nn.functional.np.save' is not allowed"),
    ("torch", "torch.sum(x, dim=100000000)", "integer 100000000 is too large for an impl (at most 2**24"),
    ("torch", "x ** 99999999999", "too large"),
    ("torch", "torch.logsumexp(x, -99999999999)", "too large"),
    ("torch", "'text'", "string literal 'text' is allowed only as a keyword argument's value"),
    ("torch", "torch.sum(x, 'a')", "string literal 'a' is allowed only as a keyword argument's value"),
    ("torch", "torch.sum(x, True)", "True is allowed only as a keyword argument's value"),
    ("torch", 'torch.nn.functional.mse_loss(x, x, reduction="../../etc/passwd")', "short identifier-like"),
    ("torch", "torch.exp(x, out=x)", "keyword argument 'out' is not allowed"),
    ("torch", "torch.nn.functional.relu(x, inplace=True)", "keyword argument 'inplace' is not allowed"),
    ("torch", "torch.nn.functional.relu(x, 1)", "the next one is its parameter 'inplace', which overwrites its input"),
    ("torch", "torch.nn.functional.normalize(x, 2.0, 0, 1e-12, x)", "its parameter 'out', which writes into"),
    ("jax", "jax.scipy.special.multigammaln(x, 16777216)", "integer argument 16777216 of "
                                                           "'jax.scipy.special.multigammaln' is too large"),
    ("tf", "tfp.distributions.LKJ(dimension=5000, concentration=x).log_prob(x)", "(at most 1000)"),
    ("torch", "torch.exp(x, _hidden=1)", "names starting with '_' are not allowed"),
    ("torch", "torch.exp(**x)", "**kwargs is not allowed"),
    ("torch", "torch.exp(*x)", "*args is not allowed"),
    ("torch", "torch.exp", "'torch.exp' is a function: call it"),
    ("torch", "torch", "'torch' is a library"),
    ("torch", "torch(x)", "'torch' is a library, not a function"),
    ("tf", "tf.keras.losses.Huber()(x, x)", "only formula functions, allowlisted library paths and methods can be"),
    ("jax", "(lambda: x)()", "only formula functions, allowlisted library paths and methods can be called"),
    ("jax", "jax.numpy.stack([v for v in x])", "'jax.numpy.stack' is not an allowed jax call"),
    ("jax", "foo.bar(x)", "unknown name 'foo' in 'foo.bar'"),
]


@pytest.mark.parametrize("framework, source, words", REFUSED)
def test_impl_refusals(framework, source, words, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FormulaError) as info:
        parse(source, {"x"}, impl=framework)
    assert words in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_formula_mode_is_unchanged_by_impl_mode():
    with pytest.raises(FormulaError, match="only plain function names can be called, not 'tf.math.exp'"):
        parse("tf.math.exp(x)", {"x"})
    with pytest.raises(FormulaError, match="Attribute is outside the formula language"):
        parse("torch.pi * x", {"x"})
    with pytest.raises(FormulaError, match="integer exponent .* is too large"):
        parse("x ** 1000000000000", {"x"})
    with pytest.raises(FormulaError, match="out of range"):
        parse("x * 1e999999999", {"x"})
    assert parse("x ** 16777216", {"x"}).right == Const("16777216", Fraction(2**24))


def test_one_evaluator_calls_natives_and_methods_through_the_op_table():
    calls = []

    class Dist:
        def __init__(self, loc, scale):
            self.loc, self.scale = loc, scale

        def log_prob(self, x, shift=0):
            return -((x - self.loc) / self.scale) ** 2 + shift

    def resolve(path):
        calls.append(path)
        return {"torch.distributions.Normal": Dist, "torch.logsumexp": lambda x, dim: x * 10 + dim}[path]

    def method(obj, name, called):
        native.check_method("torch", name, called)
        return getattr(obj, name)

    ops = {**formula.OPERATORS, "constant": float, "native": resolve, "method": method, "log": lambda v: v}
    tree = parse("log(torch.distributions.Normal(loc, 2.0).log_prob(x)) + torch.logsumexp(x, dim=-1)",
                 {"x", "loc"}, impl="torch")
    assert formula.evaluate(tree, {"x": 5.0, "loc": 1.0}, ops) == -4.0 + 49.0
    assert calls == ["torch.distributions.Normal", "torch.logsumexp"]
    assert {type(n).__name__ for n in formula.walk(tree)} >= {"Native", "Method", "Option", "Const", "Name"}


# --- case files --------------------------------------------------------------------------------------------------

def test_loading_the_example_labels_each_impl(tmp_path):
    case = load(write(tmp_path, "case.yaml", EXAMPLE))
    assert case.formula is None
    assert {fw: [label for label, _ in impls] for fw, impls in case.impls.items()} == {
        "tf": ["tfp.distributions.Normal.log_prob"], "torch": ["distributions", "manual"],
        "jax": ["scipy", "numpyro"]}
    assert isinstance(case.impls["torch"][1][1], formula.Binary)


@pytest.mark.parametrize("change, field, line, words", [
    (("  tf: tfp.distributions.Normal(loc, scale).log_prob(x)", "  tf: torch.exp(x)"), "impl.tf", 9,
     "'torch.exp' belongs to the torch impl; the tf impl may use only tf and tfp paths (column 1)"),
    (("manual: -0.5", "manual: torch.ones(3) + -0.5"), "impl.torch.manual", 12, "'torch.ones' is not allowed"),
    (("numpyro: numpyro.distributions.Normal(loc, scale).log_prob(x)",
      "numpyro: numpyro.distributions.Normal(loc, scale).sample(x)"), "impl.jax.numpyro", 15,
     "method 'sample' is not allowed on jax objects"),
    (("scipy: jax.scipy", "scipy: y + jax.scipy"), "impl.jax.scipy", 14, "unknown name 'y' (inputs: loc, scale, x"),
    (("    distributions: torch", "    formula: torch"), "impl.torch.formula", 11, "label 'formula' must match"),
    (("    manual:", "    a/b:"), "impl.torch.a/b", 12, "label 'a/b' must match"),
    (("reference: -0.5 * ((x - loc) / scale) ** 2 - log(scale) - 0.5 * log(2 * pi)\n", ""), "reference", 8,
     "required when impl is given without a formula"),
    (("  jax:\n", "  mxnet: x\n  jax:\n"), "impl.mxnet", 13, "unknown framework 'mxnet' (known: tf, torch, jax)"),
    (("  x: 1.5", "  x: 1.5\n  torch: 1.0"), "inputs.torch", 6, "input name 'torch' is a library"),
    (("  tf: tfp.distributions.Normal(loc, scale).log_prob(x)", "  tf: 3"), "impl.tf", 9,
     "expected one expression (a string) or a mapping label -> expression"),
])
def test_impl_errors_name_the_field_and_line(tmp_path, change, field, line, words):
    text = EXAMPLE.replace(*change)
    assert text != EXAMPLE
    with pytest.raises(CaseError) as info:
        load(write(tmp_path, "case.yaml", text))
    e = info.value
    assert (e.field, e.line) == (field, line), str(e)
    assert words in e.message, e.message
    assert str(e).startswith(f"{tmp_path / 'case.yaml'}:{line}: {field}: ")


def test_a_case_needs_formula_or_impl(tmp_path):
    text = EXAMPLE.split("impl:")[0] + "reference: x\n"
    with pytest.raises(CaseError) as info:
        load(write(tmp_path, "case.yaml", text))
    assert info.value.field == "formula" and "a case has formula, impl, or both" in info.value.message


def test_control_characters_in_a_label_are_escaped_in_the_message(tmp_path):
    text = EXAMPLE.replace("    manual:", '    "ok\\n\\u001b[32mok":')
    with pytest.raises(CaseError) as info:
        load(write(tmp_path, "case.yaml", text))
    assert info.value.field == "impl.torch.ok\n\x1b[32mok"
    assert "\n" not in str(info.value) and "\x1b" not in str(info.value)


def test_validate_imports_no_impl_framework(tmp_path):
    """Loading and validating an impl case checks the allowlist as data: nothing but JAX (the reference's shape
    check) is imported; running the JAX impls imports only JAX and the libraries they call."""
    path = write(tmp_path, "case.yaml", EXAMPLE)
    code = textwrap.dedent(f"""
        import sys
        from typer.testing import CliRunner
        from oracle.cli import app
        from oracle.case import load
        load({str(path)!r})
        loaded = sorted(m for m in ("tensorflow", "tensorflow_probability", "torch", "jax", "numpyro", "optax")
                        if m in sys.modules)
        result = CliRunner().invoke(app, ["validate", {str(path)!r}])
        assert result.exit_code == 0, result.output
        validated = sorted(m for m in ("tensorflow", "tensorflow_probability", "torch", "numpyro", "optax")
                           if m in sys.modules)
        result = CliRunner().invoke(app, ["run", {str(path)!r}, "--framework", "jax", "--json"])
        assert result.exit_code == 0, result.output
        ran = sorted(m for m in ("tensorflow", "tensorflow_probability", "torch", "numpyro", "optax")
                     if m in sys.modules)
        print(loaded, validated, ran)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "[] [] ['numpyro']"


# --- running ---------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("impl-cases")
    paths = [write(folder, name, text) for name, text in
             (("example.yaml", EXAMPLE), ("log-cdf.yaml", LOG_CDF), ("bernoulli.yaml", BERNOULLI))]
    result = CliRunner().invoke(app, ["run", *map(str, paths), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    return {case["id"]: {(r["framework"], r["impl"], r["output"]): r for r in case["results"]} | {"_": case}
            for case in doc["cases"]} | {"environment": doc["environment"]}


def test_the_issue_example_runs_side_by_side(report):
    rows = report["normal-logprob-impls"]
    rows.pop("_")
    assert {(fw, impl) for fw, impl, _ in rows} == {
        ("tf", "tfp.distributions.Normal.log_prob"), ("torch", "distributions"), ("torch", "manual"),
        ("jax", "scipy"), ("jax", "numpyro")}
    assert len(rows) == 5 * 4  # value and three gradients each
    # log N(1.5; 0.25, 2) = -(1.25/2)**2/2 - log 2 - log(2 pi)/2; d/dx = -(x - loc)/scale**2 = -0.3125
    expected = {"value": "-1.8073982", "grad.x": "-0.3125", "grad.loc": "0.3125", "grad.scale": "-0.3046875"}
    for (_, _, output), row in rows.items():
        assert row["verdict"] == "ok", row
        assert row["reference"] == expected[output] and row["ulps"] <= 1, row
        assert row["rewrite"] is None
    assert rows[("jax", "numpyro", "value")]["got"] == "-1.8073982"
    versions = report["environment"]["versions"]
    assert {"tensorflow_probability", "numpyro"} <= set(versions)


def test_a_library_call_that_underflows_is_measured_and_explained(report):
    rows = report["log-normal-cdf-impls"]
    case = rows.pop("_")
    # log Phi(-40) = -804.60844201375378817: the cdf itself, 3.7e-350, is below every float's range
    for framework in ("tf", "torch", "jax"):
        naive = rows[(framework, "naive", "value")]
        assert naive["got"] == "-inf" and naive["reference"] == "-804.60846", naive
        assert naive["reference_digits"] == "-804.60844201375378817"
        assert naive["ulps"] == 2**32 and naive["verdict"] != "ok"
    good = {"tf": "log_cdf", "torch": "log_ndtr", "jax": "logcdf"}
    for framework, impl in good.items():
        assert rows[(framework, impl, "value")]["got"] == "-804.60846"
        assert rows[(framework, impl, "value")]["verdict"] == "ok"
    # JAX: the shadow replays the library's own jaxpr, so the cause is traced to the op inside norm.cdf
    jax_naive = rows[("jax", "naive", "value")]
    assert jax_naive["verdict"] == "underflow" and jax_naive["inherent"] is False
    assert jax_naive["cause"]["op"] == "erfc" and jax_naive["cause"]["traced"] is True
    assert jax_naive["cause"]["where"] == "jax.scipy.stats.norm.cdf(x)"
    assert case["reference"]["float32"]["impl_shadow"]["naive"].startswith("replayed")
    # tf and torch: recorded as they ran, so their cause is traced too, to the op inside their cdf
    for framework, op, source in (("tf", "Erfc", "tensorflow_probability/python/distributions/normal.py:"),
                                  ("torch", "aten.add.Tensor", "torch/distributions/normal.py:")):
        row = rows[(framework, "naive", "value")]
        assert row["verdict"] == "underflow" and row["inherent"] is False, row
        assert row["cause"]["op"] == op and row["cause"]["traced"] is True
        assert row["cause"]["source"].startswith(source) and "7.31" in row["explanation"]
        assert case["reference"]["float32"]["traces"][framework]["naive"].startswith("replayed")
    # d/dx log Phi(x) = phi(x)/Phi(x) = 40.024968847...: torch's log_ndtr gradient (40.02567 on x86-64 CPU) and
    # JAX's logcdf gradient (40.0254) are 184 and 113 ulps off; JAX's loss is traced to a log inside logcdf
    grad = rows[("torch", "log_ndtr", "grad.x")]
    assert grad["reference"] == "40.024967" and 32 < grad["ulps"] < 1000 and abs(float(grad["got"]) - 40.025) < 0.01
    jax_grad = rows[("jax", "logcdf", "grad.x")]
    assert 32 < jax_grad["ulps"] < 1000 and jax_grad["cause"]["traced"] is True and jax_grad["cause"]["op"] == "log"


def test_torch_clamps_a_tiny_bernoulli_probability(report):
    rows = report["bernoulli-tiny-probability-impls"]
    rows.pop("_")
    assert {(fw, impl) for fw, impl, _ in rows} == {("torch", "formula"), ("torch", "distributions"),
                                                   ("torch", "functional"), ("jax", "formula"),
                                                   ("jax", "numpyro.distributions.Bernoulli.log_prob")}
    # -log(1e-10) = 23.02585093: torch.distributions clamps probs to [eps, 1 - eps] (eps = 2**-23 in float32),
    # so it returns -log(2**-23) = 15.942385 and a zero gradient; the float64 run does not clamp at 1e-10
    value = rows[("torch", "distributions", "value")]
    assert value["got"] == "15.942385" and value["reference"] == "23.02585" and value["verdict"] != "ok"
    assert value["verdict"] == "mismatch" and value["cause"]["op"] == "aten.clamp.default"  # traced: the clamp
    assert value["cause"]["source"].startswith("torch/distributions/utils.py:") and "1.1920929e-7" in value["explanation"]
    assert rows[("torch", "distributions", "grad.p")]["got"] == "0.0"
    assert rows[("torch", "distributions", "grad.p")]["reference"] == "-1e+10"
    for key in (("torch", "functional", "value"), ("torch", "formula", "value"),
                ("jax", "numpyro.distributions.Bernoulli.log_prob", "value")):
        assert rows[key]["got"] == "23.02585" and rows[key]["verdict"] == "ok", rows[key]


def test_impl_results_of_the_wrong_kind_are_error_rows(tmp_path):
    text = """\
    id: wrong-kinds
    title: impls that return a tuple or the wrong shape
    kind: loss
    inputs:
      A: [[2.0, 0.0], [0.0, 3.0]]
    impl:
      torch:
        tuple: torch.linalg.slogdet(A)
        logdet: torch.linalg.slogdet(A)[1]
        shape: torch.log(A)
    reference: logdet(A)
    dtypes: [float32, float64]
    """
    result = CliRunner().invoke(app, ["run", str(write(tmp_path, "case.yaml", text)), "--json"])
    assert result.exit_code == 2, result.output  # error rows the case does not expect: nothing measured there
    rows = {(r["impl"], r["dtype"], r["output"]): r for r in json.loads(result.stdout)["cases"][0]["results"]}
    for dtype in ("float32", "float64"):
        assert rows[("tuple", dtype, "value")]["explanation"] == \
            "TypeError: returned a tuple of 2 (linalg_slogdet), not a torch tensor: index it, e.g. [1]"
        assert rows[("shape", dtype, "value")]["verdict"] == "error"
        assert rows[("shape", dtype, "value")]["explanation"] == f"returned {dtype}[2, 2], expected {dtype}[]"
        assert rows[("logdet", dtype, "value")]["verdict"] == "ok"
        assert rows[("logdet", dtype, "grad.A")]["verdict"] == "ok"
    assert rows[("logdet", "float64", "value")]["got"] == "1.791759469228055"  # log 6


def test_no_tensor_beyond_the_element_cap(tmp_path):
    """A formula or reference that broadcasts its inputs into a huge tensor is refused before anything runs (an
    abstract JAX trace); an impl is traced without running (jaxpr, TF graph, torch meta tensors) and refused as an
    error row."""
    text = """\
    id: outer
    title: an outer product in every impl, a scalar reference
    kind: loss
    inputs:
      x: {fill: {value: 1, shape: [2000, 1]}}
      y: {fill: {value: 2, shape: [1, 2000]}}
    impl:
      tf: tf.reduce_sum(tfp.distributions.Normal(x, 1.0).log_prob(y))
      torch: torch.sum(torch.distributions.Normal(x, 1.0).log_prob(y))
      jax: jax.numpy.sum(jax.numpy.matmul(x, y))
    reference: sum(x) * sum(y)
    """
    path = write(tmp_path, "outer.yaml", text)
    for reference, message in [("sum(x * y)", "4000000 elements (shape [2000, 2000]"),
                               ("sum(diag(x[:, 0]) * 2)", "4000000 elements (shape [2000, 2000]")]:
        case = load(write(tmp_path, "formula.yaml", text.replace("reference: sum(x) * sum(y)", f"reference: {reference}")))
        with pytest.raises(ValueError, match=re.escape(f"reference: it computes a tensor of {message}")):
            check_shapes(case)
    check_shapes(load(write(tmp_path, "small.yaml", text.replace("reference: sum(x) * sum(y)",
                                                                  "reference: sum(matmul(transpose(x), x))"))))
    result = CliRunner().invoke(app, ["run", str(path), "--json"])
    assert result.exit_code == 2, result.output  # refused impls are error rows the case does not expect
    rows = json.loads(result.stdout)["cases"][0]["results"]
    assert {r["framework"] for r in rows} == {"tf", "torch", "jax"}
    for row in rows:
        assert row["verdict"] == "error" and row["explanation"] == (
            "not run: it would compute a tensor of 4000000 elements (shape [2000, 2000]), more than the cap of "
            "1000000 (--max-elements)"), row
    result = CliRunner().invoke(app, ["run", str(path), "--json", "--max-elements", "5000000", "-f", "jax"])
    assert {r["verdict"] for r in json.loads(result.stdout)["cases"][0]["results"]} == {"ok"}
