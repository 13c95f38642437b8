"""`data:` inputs (labels, counts, indices) are exact: the condition number is taken over the other inputs.

The case: the binomial log-pmf of k = 2^20 - 1 successes in n = 2^20 trials at the maximum-likelihood
p = k/n = 1 - 2^-20 (a float32). Its lgamma terms (about 1.35e7) cancel to about -1, so a relative
perturbation of n or k moves the value about 4e5-fold, while p, at the maximum, does not move it at all
(df/dp = k/p - (n - k)/(1 - p) = 0): kappa over (n, k, p) is huge only because of the counts, which are
exact integers and are never rounded. Truth: closed forms in mpmath at 320 bits.
"""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
from mpmath import mp

from oracle.case import CaseError, load
from oracle.formula import parse
from oracle.reference.condition import condition_numbers
from oracle.reference.program import trace
from oracle.runner import run_case

FORMULA = "lgamma(n + 1) - lgamma(k + 1) - lgamma(n - k + 1) + k * log(p) + (n - k) * log1p(-p)"
N, K, P = 2**20, 2**20 - 1, np.float32(1 - 2**-20)

CASE = f"""\
id: binomial-counts
title: binomial log-pmf with large counts (the counts are exact data)
kind: logprob
inputs:
  n: {N}
  k: {K}
  p: 0.99999904632568359375
wrt: [p]
formula: {FORMULA}
frameworks: [jax]
"""


def truth():
    with mp.workprec(320):
        n, k, p = mpmath.mpf(N), mpmath.mpf(K), mpmath.mpf(float(P))
        f = mp.loggamma(n + 1) - mp.loggamma(k + 1) - mp.loggamma(n - k + 1) + k * mp.log(p) + (n - k) * mp.log1p(-p)
        dn = mp.digamma(n + 1) - mp.digamma(n - k + 1) + mp.log1p(-p)
        dk = -mp.digamma(k + 1) + mp.digamma(n - k + 1) + mp.log(p) - mp.log1p(-p)
        dp = k / p - (n - k) / (1 - p)
        return {"p": abs(p * dp / f), "all": (abs(n * dn) + abs(k * dk) + abs(p * dp)) / abs(f)}


def kappa(over):
    inputs = {"n": np.float32(N), "k": np.float32(K), "p": P}
    program = trace(parse(FORMULA, set(inputs)), {n: () for n in inputs}, ["p"])
    return condition_numbers(program, inputs, 64, over=over)


def test_kappa_over_the_measured_input_only():
    want = truth()
    assert want["all"] > 1e5 and want["p"] == 0  # the counts alone make it huge
    every, measured = kappa(None), kappa(["p"])
    assert mpmath.almosteq(every.kappa[0][()], want["all"], rel_eps=1e-3)
    assert measured.kappa[0][()] == 0
    assert "not over the data inputs n, k" in measured.method and "1 input directions" in measured.method


def test_integer_inputs_outside_wrt_are_data_by_default(tmp_path):
    path = tmp_path / "case.yaml"
    path.write_text(CASE)
    case = load(path)
    assert case.data_inputs == ["n", "k"] and case.perturbed == ["p"]
    path.write_text(CASE + "data: [k]\n")
    assert load(path).perturbed == ["n", "p"]
    path.write_text(CASE.replace("wrt: [p]", "wrt: [p, n]"))
    assert load(path).data_inputs == ["k"]  # a differentiated input is measured unless `data` says otherwise
    path.write_text(CASE.replace("p: 0.99999904632568359375", "p: 0.5\n  h: 0.25"))
    assert load(path).data_inputs == ["n", "k"]  # 0.25 is no integer


def test_data_naming_no_input_is_refused_with_its_line(tmp_path):
    path = tmp_path / "case.yaml"
    path.write_text(CASE + "data: [k, m]\n")
    with pytest.raises(CaseError) as info:
        load(path)
    assert str(info.value) == f"{path}:11: data.1: 'm' names no input (inputs: n, k, p)"


def test_run_case_reports_kappa_without_the_counts(tmp_path):
    path = tmp_path / "case.yaml"
    path.write_text(CASE)
    result = run_case(load(path))
    block = result["reference"]["float32"]
    assert "not over the data inputs n, k" in block["condition"]
    (row,) = [r for r in result["results"] if r["output"] == "value"]
    assert mpmath.mpf(row["kappa"]) == truth()["p"] == 0
    assert row["verdict"] == "cancellation"  # lgamma(n + 1) - lgamma(k + 1) in float32: the formula's loss
    path.write_text(CASE + "data: []\n")  # everything measured: the counts' kappa is back, and excuses the loss
    row = [r for r in run_case(load(path))["results"] if r["output"] == "value"][0]
    assert mpmath.almosteq(mpmath.mpf(row["kappa"]), truth()["all"], rel_eps=1e-3)
    assert row["verdict"] == "ill-conditioning"
