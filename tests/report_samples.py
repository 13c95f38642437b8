"""A hand-made audit document for the report tests: passing, failing, errored, expectation and sweep cases, and an
invalid file, with counts known by construction."""

from __future__ import annotations


def row(framework: str, output: str, verdict: str = "ok", impl: str = "formula", **extra) -> dict:
    bad = verdict != "ok"
    return {"framework": framework, "impl": impl, "dtype": "float32", "output": output, "shape": [], "worst_index": [],
            "got": "inf" if bad else "1.0", "reference": "100.0" if bad else "1.0",
            "reference_digits": "100.0" if bad else "1.0", "ulps": 4294967296 if bad else 0,
            "error_bits": "32.0" if bad else "0.0", "within_tolerance": not bad, "verdict": verdict,
            "inherent": False if verdict in ("overflow", "underflow") else None,
            "explanation": f"{framework} {output} went {verdict}" if bad else "", "cause": None, "kappa": "1.0",
            "precision_bits": 64, "verdict_counts": {verdict: 1}, "components": {}, "rewrite": None, **extra}


def case(case_id: str, family: str, rows: list[dict], **extra) -> dict:
    return {"id": case_id, "file": f"cases/{family}/{case_id}.yaml", "title": f"title of {case_id}", "kind": "loss",
            "tags": ["sample"], "digest": "0123456789abcdef", "summed": False, "reference": {}, "results": rows,
            "family": family, "elapsed_s": 1.5, **extra}


CAUSE = {"op": "exp", "where": "exp(-z)", "pass": "forward", "kind": "overflow", "operands": [["100.0", "100.0"]],
         "traced": False}
REWRITE = {"rule": "log(1/(1+exp(-x))) -> log_sigmoid(x)", "before": "log(1 / (1 + exp(-z)))",
           "after": "log_sigmoid(z)", "formula": "-log_sigmoid(z)", "error_bits": "0.0", "within_tolerance": True}
EXPECTATIONS = [
    {"framework": "jax", "impl": "formula", "dtype": "float32", "output": "value", "expected": "overflow",
     "got": "ok", "version": "0.10.2", "passed": False,
     "message": "jax formula float32 value: expected overflow, got ok: fixed upstream? 0.10.2"},
    {"framework": "jax", "impl": "formula", "dtype": "float32", "output": "value", "expected": "ok", "got": "ok",
     "version": "0.10.2", "passed": True, "message": "jax formula float32 value: ok as expected: 0.10.2"},
    {"framework": "tf", "impl": "formula", "dtype": "float32", "output": "value", "expected": None, "got": "ok",
     "version": "2.21.0", "passed": None, "message": "tf formula float32 value: not checked: no version range"},
]  # one unmet, one met, one not checked (no version range applies): only the first fails
SWEEP = {"axes": [{"input": "x", "spec": "logspace", "scale": "log", "values": [1e-8, 1e-4, 1.0]}], "points": 3,
         "series": [{"framework": "jax", "impl": "formula", "dtype": "float32", "output": "value",
                     "error_bits": [20.0, 5.5, 0.0], "verdicts": ["cancellation", "cancellation", "ok"]}],
         "thresholds": [{"framework": "jax", "impl": "formula", "dtype": "float32", "output": "value",
                         "verdict": "cancellation", "input": "x", "at": 1e-4,
                         "text": "jax formula value: cancellation for x <= 0.0001"}]}


def document() -> dict:
    """5 cases: passing (normal), failing and errored (seeds), an unmet expectation (kl), a sweep (sweeps)."""
    cases = [
        case("passing", "normal", [row("tf", "value"), row("tf", "grad.z"), row("jax", "value")]),
        case("failing", "seeds", [row("tf", "value", "overflow", cause=CAUSE, rewrite=REWRITE),
                                  row("tf", "grad.z", "overflow"), row("torch", "value"),
                                  row("jax", "value", impl="log_sigmoid")], title="-log(sigmoid(z)) | naive"),
        case("errored", "seeds", [], summed=None, error="worker killed by SIGSEGV"),
        case("expected", "kl", [row("jax", "value")], expectations=EXPECTATIONS),
        case("swept", "sweeps", [row("jax", "value", "cancellation")], sweep=SWEEP),
    ]
    environment = {"python": "3.11.7", "platform": "Linux",
                   "versions": {"oracle": "0.1.0", "numpy": "2.4.6", "mpmath": "1.3.0", "jax": "0.10.2"},
                   "options": {"frameworks": None, "dtypes": ["float32"], "max_precision": 4096,
                               "max_elements": 1000000}}
    invalid = [{"file": "cases/bad.yaml", "field": "formula", "line": 6,
                "message": "unknown function 'foo' \x01 | piped"}]
    return {"schema_version": 1, "oracle_version": "0.1.0", "environment": environment, "cases": cases,
            "invalid": invalid}
