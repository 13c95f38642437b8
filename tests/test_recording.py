"""TensorFlow and PyTorch recorded as they run, replayed exactly (issue 12).

Where a library computes the function itself, its recorded ops evaluated exactly
round to the reference (within one ulp: libraries carry constants such as
log(sqrt(2 pi)) rounded to float32), and the shadow's float side reproduces the
framework's own outputs bit for bit. Where a library loses the answer, the shadow
names the op and the library line: the expectations below are worked out by hand
(StudentT's lgamma difference at df = 1e8 cancels 836376680 - 836376679; exp(-100)
is a float32 subnormal that TF flushes to 0; 1.9e-22 ** 2 is subnormal; torch clamps
probabilities to [eps, 1 - eps]).
"""

from __future__ import annotations

from functools import cache

import mpmath
import numpy as np
import pytest

from oracle import formula, shadow
from oracle.floats import fmt, round_array, ulps
from oracle.frameworks import backend, evaluate, record
from oracle.reference import compute
from oracle.reference.program import trace

F32 = fmt("float32")
L2 = [[1.5, 0.0], [0.4, 0.8]]


@cache
def _replay(framework: str, impl: str, reference: str, inputs: tuple, wrt: tuple):
    arrays = {name: np.asarray(value, dtype=np.float32) for name, value in inputs}
    tree = formula.parse(impl, set(arrays), impl=framework)
    recording = record(tree, framework, arrays, list(wrt), F32)
    replayed = shadow.replay(recording, backend(framework).exact_rules(), arrays, list(wrt), F32, 256)
    ran = evaluate(tree, framework, arrays, list(wrt), F32)
    program = trace(formula.parse(reference, set(arrays)), {n: a.shape for n, a in arrays.items()}, list(wrt))
    return replayed, ran, compute(program, arrays, F32)


def replay(framework: str, impl: str, reference: str, wrt: tuple | None = None, **inputs):
    inputs = {n: tuple(map(tuple, v)) if isinstance(v, list) and isinstance(v[0], list) else
              (tuple(v) if isinstance(v, list) else v) for n, v in inputs.items()}
    return _replay(framework, impl, reference, tuple(inputs.items()), tuple(inputs) if wrt is None else wrt)


NORMAL = "-((x - loc) / scale) ** 2 / 2 - log(scale) - log(2 * pi) / 2"
KL = "log(s2 / s1) + (s1 ** 2 + (m1 - m2) ** 2) / (2 * s2 ** 2) - 0.5"
MVN = "-sum(solve_triangular(L, x - mu) ** 2) / 2 - sum(log(diag(L))) - log(2 * pi)"
EXACT = [  # (framework, impl, reference, wrt, inputs): libraries that compute the function itself
    ("torch", "torch.distributions.Normal(loc, scale).log_prob(x)", NORMAL, None,
     {"loc": 0.3, "scale": 1.7, "x": -0.4}),
    ("torch", "torch.distributions.kl.kl_divergence(torch.distributions.Normal(m1, s1), "
              "torch.distributions.Normal(m2, s2))", KL, None, {"m1": 0.5, "s1": 0.8, "m2": -0.2, "s2": 1.3}),
    ("torch", "torch.nn.functional.binary_cross_entropy_with_logits(z, t)", "(1 - t) * z + softplus(-z)", ("z",),
     {"z": 0.7, "t": 1.0}),
    ("torch", "torch.nn.functional.softplus(x)", "log1p(exp(x))", None, {"x": 1.3}),
    ("torch", "torch.distributions.MultivariateNormal(mu, scale_tril=L).log_prob(x)", MVN, None,
     {"mu": [0.1, -0.2], "L": L2, "x": [0.5, 0.3]}),
    ("torch", "torch.distributions.Bernoulli(logits=z).log_prob(t)", "t * log_sigmoid(z) + (1 - t) * log_sigmoid(-z)",
     ("z",), {"z": -1.2, "t": 1.0}),
    ("torch", "torch.distributions.Poisson(rate).log_prob(k)", "k * log(rate) - rate - lgamma(k + 1)", ("rate",),
     {"rate": 2.5, "k": 3.0}),
    ("torch", "torch.distributions.Exponential(rate).log_prob(x)", "log(rate) - rate * x", None,
     {"rate": 1.5, "x": 0.7}),
    ("tf", "tfp.distributions.Normal(loc, scale).log_prob(x)", NORMAL, None, {"loc": 0.3, "scale": 1.7, "x": -0.4}),
    ("tf", "tfp.distributions.kl_divergence(tfp.distributions.Normal(m1, s1), tfp.distributions.Normal(m2, s2))",
     KL, None, {"m1": 0.5, "s1": 0.8, "m2": -0.2, "s2": 1.3}),
    ("tf", "tf.nn.sigmoid_cross_entropy_with_logits(labels=t, logits=z)", "(1 - t) * z + softplus(-z)", ("z",),
     {"z": 0.7, "t": 1.0}),
    ("tf", "tf.math.softplus(x)", "log1p(exp(x))", None, {"x": 1.3}),
    ("tf", "tfp.distributions.MultivariateNormalTriL(mu, L).log_prob(x)", MVN, None,
     {"mu": [0.1, -0.2], "L": L2, "x": [0.5, 0.3]}),
    ("tf", "tfp.distributions.Bernoulli(logits=z).log_prob(t)", "t * log_sigmoid(z) + (1 - t) * log_sigmoid(-z)",
     ("z",), {"z": -1.2, "t": 1.0}),
    ("tf", "tfp.distributions.Poisson(rate).log_prob(k)", "k * log(rate) - rate - lgamma(k + 1)", ("rate",),
     {"rate": 2.5, "k": 3.0}),
    ("tf", "tfp.distributions.Exponential(rate).log_prob(x)", "log(rate) - rate * x", None, {"rate": 1.5, "x": 0.7}),
]


@pytest.mark.parametrize("framework, impl, reference, wrt, inputs", EXACT, ids=[f"{e[0]}-{e[1][:48]}" for e in EXACT])
def test_recorded_ops_replayed_exactly_give_the_reference(framework, impl, reference, wrt, inputs):
    replayed, ran, ref = replay(framework, impl, reference, wrt, **inputs)
    assert ran.error is None
    for got, want in zip(replayed.outputs, [ran.value] + [ran.grads[n] for n in (wrt or inputs)], strict=True):
        np.testing.assert_array_equal(got, want)  # the recording is the run
    for exact, out in zip(replayed.exact_outputs, ref.outputs, strict=True):
        assert out.certified.all()
        assert (ulps(round_array(exact, F32), out.rounded, F32) <= 1).all(), (out.name, exact, out.exact)
    assert len(replayed.ops) > 3


def _blamed(replayed: shadow.Shadow, output: str) -> shadow.Blame:
    blame = replayed.root_cause(replayed.output_names.index(output))
    assert blame is not None
    return blame


def test_torch_student_t_names_the_cancelling_lgamma_difference():
    replayed, ran, ref = replay("torch", "torch.distributions.StudentT(df).log_prob(x)",
                                "lgamma((df + 1) / 2) - lgamma(df / 2) - log(df * pi) / 2 "
                                "- (df + 1) / 2 * log1p(x ** 2 / df)", df=1e8, x=0.5)
    assert float(ran.value) == -0.125 and float(ref.outputs[0].rounded) == np.float32(-1.0439385)
    blame = _blamed(replayed, "value")
    assert blame.kind == "cancellation" and blame.op.name == "aten.sub.Tensor"
    assert blame.op.source.startswith("torch/distributions/studentT.py:")
    assert "sub(836376680.0, 836376679.0)" in blame.explanation
    assert round_array(replayed.exact_outputs[0], F32) == ref.outputs[0].rounded  # the code is the function


def test_tf_student_t_gradient_names_tfp_lgamma_difference():
    replayed, ran, ref = replay("tf", "tfp.distributions.StudentT(df, 0.0, 1.0).log_prob(x)",
                                "lgamma((df + 1) / 2) - lgamma(df / 2) - log(df * pi) / 2 "
                                "- (df + 1) / 2 * log1p(x ** 2 / df)", df=1e8, x=0.5)
    blame = _blamed(replayed, "grad.df")  # TFP's lgamma difference for big y, whose result the gradient reuses
    assert blame.kind == "cancellation" and blame.op.name == "Sub"
    assert blame.op.source.startswith("tensorflow_probability/python/math/special.py:")
    assert "1.66666669e-9, 1.66666669e-9" in blame.explanation


def test_torch_normal_kl_names_the_subnormal_variance_ratio():
    replayed, ran, ref = replay("torch", "torch.distributions.kl.kl_divergence(torch.distributions.Normal(m, s), "
                                         "torch.distributions.Normal(0.0, 1.0))",
                                "log(1 / s) + (s ** 2 + m ** 2) / 2 - 0.5", m=0.5, s=1.9e-22)
    assert np.isneginf(ran.grads["s"])
    for output in ("value", "grad.s"):
        blame = _blamed(replayed, output)
        assert blame.kind == "underflow" and blame.op.name == "aten.pow.Tensor_Scalar"
        assert blame.op.source.startswith("torch/distributions/kl.py:")


def test_poisson_with_an_underflowing_rate_is_underflow_in_both_frameworks():
    args = ("k * lr - exp(lr) - lgamma(k + 1)", ("lr",))
    tf_replay, tf_ran, _ = replay("tf", "tfp.distributions.Poisson(rate=exp(lr)).log_prob(k)", *args, lr=-100.0, k=3.0)
    assert np.isneginf(tf_ran.value)
    blame = _blamed(tf_replay, "value")
    assert (blame.kind, blame.op.name, blame.flushed) == ("underflow", "Exp", True)  # TF flushed exp(-100) to 0
    torch_replay, torch_ran, ref = replay("torch", "torch.distributions.Poisson(exp(lr)).log_prob(k)", *args,
                                          lr=-100.0, k=3.0)
    assert np.isfinite(torch_ran.value) and torch_ran.value != ref.outputs[0].rounded  # the subnormal lost digits
    blame = _blamed(torch_replay, "value")
    assert (blame.kind, blame.op.name, blame.flushed) == ("underflow", "aten.exp.default", False)


def test_continuous_bernoulli_clamp_is_where_the_computation_departs():
    replayed, ran, ref = replay("torch", "torch.distributions.ContinuousBernoulli(probs=p).log_prob(x)",
                                "x * log(p) + (1 - x) * log1p(-p) + log(log(p / (1 - p)) / (2 * p - 1))", ("p",),
                                p=0.99999997, x=0.3)
    exact = replayed.exact_outputs[0][()]
    assert abs(float(exact) - float(ref.outputs[0].exact)) > 0.1  # what ran is another function
    departure = replayed.departure(0)
    assert departure.op.name == "aten.clamp.default"
    assert departure.op.source.startswith("torch/distributions/utils.py:")
    assert "0.999999881" in departure.explanation  # 1 - float32 eps


def test_an_op_without_a_rule_makes_the_trace_unavailable_naming_it():
    arrays = {"x": np.asarray(0.5, np.float32)}
    tree = formula.parse("torch.special.bessel_j0(x)", {"x"}, impl="torch")
    recording = record(tree, "torch", arrays, ["x"], F32)
    with pytest.raises(shadow.ShadowUnavailable, match="aten.special_bessel_j0"):
        shadow.replay(recording, backend("torch").exact_rules(), arrays, ["x"], F32, 128)


# ------------------------------------------------------------ classification rules, traced in all three frameworks

def _run(tmp_path, text: str) -> dict:
    from oracle import case, runner

    path = tmp_path / "case.yaml"
    path.write_text(text)
    return runner.run_case(case.load(path))


def test_cancellation_spread_over_two_subtractions_is_cancellation_everywhere(tmp_path):
    # exact: x = 1.10000002384; (x + 30) + 930 = 961.1000000238 rounds to 961.09998 (spacing 6.1e-5); the two
    # subtractions each cancel about 30-fold (4.9 and 4.8 bits, below the 5-bit event threshold), together 9.8 bits
    result = _run(tmp_path, "id: spread\ntitle: t\nkind: loss\ninputs: {x: 1.1}\n"
                            "formula: ((x + 30) + 930) - 930 - 30\n")
    rows = [r for r in result["results"] if r["output"] == "value"]
    assert {r["framework"] for r in rows} == {"tf", "torch", "jax"}
    for row in rows:
        assert row["got"] == "1.0999756" and row["reference"] == "1.1" and row["verdict"] == "cancellation", row
        assert row["cause"]["traced"] is True and "spread over 2 additions" in row["explanation"]


def test_an_op_amplifying_the_error_its_operands_carry_is_blamed_everywhere(tmp_path):
    # z = 16.63553: exp(-z) = 2^-24 (1 + 2.5e-6), so 1 + exp(-z) rounds up to 1 + 2^-23 and 1/(...) is 1 - 2^-23, one
    # ulp from the exactly rounded 1 - 2^-24. No op errs by more than an ulp on its exactly rounded operands, but
    # log there turns that ulp into a 100% error: -log(1 - 2^-23) = 1.1920929e-7 where the value is 5.960475e-8.
    z = np.float32(16.63553)
    truth = -mpmath.log(1 / (1 + mpmath.exp(-mpmath.mpf(float(z)))))
    result = _run(tmp_path, f"id: amp\ntitle: t\nkind: loss\ninputs: {{z: {float(z)!r}}}\n"
                            "formula: -log(1 / (1 + exp(-z)))\n")
    rows = [r for r in result["results"] if r["output"] == "value"]
    assert {r["framework"] for r in rows} == {"tf", "torch", "jax"}
    for row in rows:
        assert np.float32(row["reference"]) == np.float32(float(truth)), row
        assert ulps(np.float32(row["got"]), np.float32(2.0**-23), fmt("float32")) <= 1, row  # torch's log: 1 ulp
        assert row["verdict"] == "cancellation", row
        assert row["cause"]["traced"] is True and "amplifies the error its operands carry" in row["explanation"]
        assert "1.0 bits of error in, 23.0 out" in row["explanation"]


def test_backward_nan_from_a_forward_overflow_is_blamed_on_the_forward_op(tmp_path):
    # d/dz log(1/(1 + exp(-z))) = -1 at z = -100; exp(100) overflows, and the backward pass makes inf * 0 = NaN
    result = _run(tmp_path, "id: nan\ntitle: t\nkind: loss\ninputs: {z: -100.0}\n"
                            "formula: log(1 / (1 + exp(-z)))\n")
    rows = [r for r in result["results"] if r["output"] == "grad.z"]
    assert len(rows) == 3
    for row in rows:
        assert row["got"] == "nan" and row["reference"] == "1.0" and row["verdict"] == "overflow", row
        assert row["cause"]["pass"] == "forward" and row["cause"]["traced"] is True
        assert row["cause"]["op"] in ("exp", "Exp", "aten.exp.default") and row["cause"]["where"] == "exp(-z)"


def test_the_where_gradient_trap_is_a_mismatch_that_names_it(tmp_path):
    # where(x > 0, sqrt(x), 0) is 0 near x = -1: its gradient is 0. torch and JAX differentiate the discarded
    # branch too, 0 * (d sqrt at -1 = NaN) = NaN; TF's where gradient returns 0 here.
    result = _run(tmp_path, "id: trap\ntitle: t\nkind: loss\ninputs: {x: -1.0}\nformula: where(x > 0, sqrt(x), 0.0)\n")
    rows = {r["framework"]: r for r in result["results"] if r["output"] == "grad.x"}
    assert all(r["reference"] == "0.0" for r in rows.values())
    assert rows["tf"]["got"] == "0.0" and rows["tf"]["verdict"] == "ok"
    for framework in ("torch", "jax"):
        row = rows[framework]
        assert row["got"] == "nan" and row["verdict"] == "mismatch", row
        assert "the where gradient trap" in row["explanation"] and row["cause"]["pass"] == "backward"


def test_ill_conditioning_says_when_another_run_reaches_the_reference(tmp_path):
    # x*x - y*y at x = 10001.5, y = 10000: kappa ~ 6700, so float32's error in the squares is within what the
    # condition number allows; (x - y) * (x + y) computes the same function without losing it
    result = _run(tmp_path, "id: squares\ntitle: t\nkind: loss\ninputs: {x: 10001.5, y: 10000.0}\nwrt: []\n"
                            "formula: x * x - y * y\nimpl:\n  torch:\n    factored: (x - y) * (x + y)\n"
                            "frameworks: [torch]\n")
    rows = {r["impl"]: r for r in result["results"] if r["output"] == "value"}
    assert rows["factored"]["verdict"] == "ok" and rows["factored"]["got"] == rows["factored"]["reference"]
    assert rows["formula"]["verdict"] == "ill-conditioning", rows["formula"]
    assert "but torch factored reaches the reference in float32" in rows["formula"]["explanation"]


def test_a_sweeps_failing_points_are_each_recorded_on_their_own(tmp_path):
    # -log(1/(1 + exp(-z))) over z in {-100, -50, 0}: exp(100) overflows float32 (3.4e38 < 2.7e43) at z = -100; at
    # z = -50 the backward pass's (1 + e^50)**-2 = 3.7e-44 is a float32 subnormal (grad.z loses 17 bits); z = 0 is
    # within tolerance and needs no recording
    result = _run(tmp_path, "id: sweep\ntitle: t\nkind: loss\nframeworks: [torch, tf]\n"
                            "inputs:\n  z: {sweep: {linspace: [-100, 0, 3]}}\nformula: -log(1 / (1 + exp(-z)))\n")
    traces = result["reference"]["float32"]["traces"]
    for framework in ("torch", "tf"):
        assert traces[framework]["formula"].endswith("at 2 points (each point recorded on its own)"), traces
        row = next(r for r in result["results"] if r["framework"] == framework and r["output"] == "value")
        assert row["worst_index"] == [0] and row["verdict"] == "overflow" and row["cause"]["traced"] is True
        assert row["cause"]["op"] in ("Exp", "aten.exp.default") and "exp(100.0)".lower() in row["explanation"].lower()
