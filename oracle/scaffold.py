"""`oracle new`: a first case file in one minute, from a template that already validates and runs.

Without `--impl` the template is a formula case (the naive log-sigmoid, which overflows). With
`--impl tfp.distributions.Normal` (or `torch.distributions.Normal`, `numpyro.distributions.Normal`) it audits
that distribution's log_prob against its density written as a formula, for the distributions below whose
parameters are named alike in all three libraries. The text starts with the `yaml-language-server` comment,
so editors with the YAML extension complete and check fields against `oracle schema`'s output. What is
written is loaded back as a case before it is written: a template never produces an invalid file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from oracle import case as case_io


@dataclass(frozen=True)
class Density:
    """A distribution whose constructor takes `params` (name -> example value) in every library, and its log
    density in the formula language (the reference)."""

    params: dict[str, str]
    x: str
    log_density: str
    title: str


DENSITIES = {
    "Normal": Density({"loc": "0.0", "scale": "1.0"}, "0.5",
                      "-0.5 * ((x - loc) / scale) ** 2 - log(scale) - 0.5 * log(2 * pi)", "Normal log-density"),
    "Laplace": Density({"loc": "0.0", "scale": "1.0"}, "0.5", "-abs(x - loc) / scale - log(2 * scale)",
                       "Laplace log-density"),
    "Cauchy": Density({"loc": "0.0", "scale": "1.0"}, "0.5", "-log(pi * scale * (1 + ((x - loc) / scale) ** 2))",
                      "Cauchy log-density"),
    "Exponential": Density({"rate": "2.0"}, "0.5", "log(rate) - rate * x", "Exponential log-density"),
    "Gamma": Density({"concentration": "3.0", "rate": "2.0"}, "0.5",
                     "concentration * log(rate) + (concentration - 1) * log(x) - rate * x - lgamma(concentration)",
                     "Gamma log-density"),
}
ROOTS = {"torch": "torch", "tfp": "tf", "numpyro": "jax"}  # where a distribution path starts -> framework
SCHEMA_COMMENT = ("# yaml-language-server: $schema=case.schema.json\n"
                  "# (editor completion: `oracle schema > case.schema.json` beside this file; the format: README)\n")


class ScaffoldError(ValueError):
    """No template for what was asked (the message lists what there is)."""


def case_id(stem: str) -> str:
    """A valid case id from a file name: lower case, other characters as '-'."""
    text = re.sub(r"[^a-z0-9._-]+", "-", stem.lower()).strip("-._")
    return text or "new-case"


def text(stem: str, impl: str | None = None) -> str:
    """The case file's text for `stem` (the file name without suffix) and an optional distribution path."""
    head = f"{SCHEMA_COMMENT}id: {case_id(stem)}\n"
    if impl is None:
        return head + (
            "title: -log(sigmoid(z)) written with exp and a division, z = -100   # one line: what and where\n"
            "kind: loss                       # logprob | loss | kl\n"
            "inputs:                          # name -> a number, a list, or a generator (README: Case format)\n"
            "  z: -100.0\n"
            "formula: -log(1 / (1 + exp(-z)))  # evaluated by tf, torch and jax with their own ops\n"
            "reference: log1p(exp(-z))        # the mathematical definition (default: the formula)\n"
            "frameworks: [tf, torch, jax]\n"
            "dtypes: [float32]\n")
    root, _, rest = impl.partition(".")
    name = impl.rsplit(".", 1)[-1]
    if root not in ROOTS or not rest.startswith("distributions.") or name not in DENSITIES:
        known = ", ".join(f"{r}.distributions.{d}" for r in ROOTS for d in DENSITIES)
        raise ScaffoldError(f"no template for --impl {impl!r}; templates: {known}. Any allowlisted call can be "
                            "written by hand: start from `oracle new FILE` (a formula case) and add impl "
                            "(README: Auditing library calls)")
    d, framework = DENSITIES[name], ROOTS[root]
    inputs = "".join(f"  {k}: {v}\n" for k, v in {"x": d.x, **d.params}.items())
    return head + (
        f"title: {d.title} from {impl} at x = {d.x}   # one line: what and where\n"
        "kind: logprob                    # logprob | loss | kl\n"
        f"inputs:                          # change the values to the regime you suspect\n{inputs}"
        "impl:                            # framework -> call, or label -> call (README: Auditing library calls)\n"
        f"  {framework}: {impl}({', '.join(d.params)}).log_prob(x)\n"
        f"reference: {d.log_density}\n"
        f"frameworks: [{framework}]\n"
        "dtypes: [float32]\n")


def check(content: str, file: str) -> None:
    """Raise CaseError unless `content` loads as a case (schema, inputs, formulas, the impl's allowlist)."""
    case_io.loads(content, file)
