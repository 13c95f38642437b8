"""What a new user trips over (issue 16): messages, exit codes, --version, quiet output, tables, the Python API."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import pytest
from typer.testing import CliRunner

import oracle
from oracle import case as case_io
from oracle.cli import app

pytest_plugins = ["pytester"]


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_every_bad_field_of_a_file_is_reported_with_did_you_mean(tmp_path):
    path = write(tmp_path, "bad.yaml", """\
        id: bad
        title: four mistakes at once
        kind: loss
        inputs:
          x: 1.0
          y: [1, "zz"]
        wrt: [q]
        formula: logsigmoid(x)
        reference: log(xx) + scal
        """)
    with pytest.raises(case_io.CaseError) as info:
        case_io.load(path)
    errors = case_io.each_error(info.value)
    assert [(e.field, e.line) for e in errors] == [("inputs.y.1", 6), ("wrt.0", 7), ("formula", 8), ("reference", 9)]
    assert "unknown function 'logsigmoid'; did you mean log_sigmoid or sigmoid?" in errors[2].message
    assert str(info.value).count("\n") == 3  # one line per error
    _, listed = case_io.load_all([path])
    assert [e.field for e in listed] == ["inputs.y.1", "wrt.0", "formula", "reference"]


def test_schema_errors_are_all_reported_and_names_get_did_you_mean(tmp_path):
    path = write(tmp_path, "bad.yaml", "id: Bad\ntitle: t\nkind: los\ninputs:\n  scale: 1.0\nformula: log(scal)\n")
    with pytest.raises(case_io.CaseError) as info:
        case_io.load(path)
    assert [(e.field, e.line) for e in case_io.each_error(info.value)] == [("id", 1), ("kind", 3)]
    path.write_text("id: ok\ntitle: t\nkind: loss\ninputs:\n  scale: 1.0\nformula: log(scal)\n")
    with pytest.raises(case_io.CaseError, match=r"unknown name 'scal' \(did you mean scale\? inputs: scale;"):
        case_io.load(path)


# --- exit codes, --version, quiet output -------------------------------------------------------------------------

runner = CliRunner()
EXP = """\
id: exp-overflow
title: exp(z) at z = 100
kind: loss
inputs:
  z: 100.0
formula: exp(z)
frameworks: [jax]
"""
# torch's Normal validates its scale: at scale 0 it raises, an `error` row the first case expects, the second not
ERRORING = """\
id: zero-scale
title: torch Normal at scale 0
kind: logprob
inputs: {x: 0.5, scale: 0.0}
reference: -0.5 * (x / scale) ** 2 - log(scale) - 0.5 * log(2 * pi)
impl:
  torch: torch.distributions.Normal(0.0, scale).log_prob(x)
frameworks: [torch]
"""


def test_exit_codes_follow_the_documented_policy(tmp_path):
    case = write(tmp_path, "exp.yaml", EXP)
    # exp(100) overflows float32: inherent overflow (grad too); a finding, exit 0 unless asked to fail on it
    assert runner.invoke(app, ["run", str(case)]).exit_code == 0
    assert runner.invoke(app, ["run", str(case), "--fail-on", "overflow"]).exit_code == 1
    assert runner.invoke(app, ["run", str(case), "--fail-on", "any"]).exit_code == 1
    assert runner.invoke(app, ["run", str(case), "--fail-on", "cancellation,mismatch"]).exit_code == 0
    bad = runner.invoke(app, ["run", str(case), "--fail-on", "overflw"])
    assert bad.exit_code == 2 and "unknown verdict 'overflw'; did you mean 'overflow'?" in bad.stderr
    erroring = write(tmp_path, "zero.yaml", ERRORING)
    result = runner.invoke(app, ["run", str(erroring), "--json"])
    rows = json.loads(result.stdout)["cases"][0]["results"]
    assert {r["verdict"] for r in rows} == {"error"} and "scale" in rows[0]["explanation"]
    assert result.exit_code == 2  # nothing was measured there, and the case does not say that is expected
    erroring.write_text(ERRORING + "expect: {torch: error}\n")
    assert runner.invoke(app, ["run", str(erroring)]).exit_code == 0  # a known finding
    assert runner.invoke(app, ["run", str(erroring), "--fail-on", "error"]).exit_code == 1
    # the same words in --help and README
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    for said in ("0 every case ran and was measured", "1 a row got a --fail-on verdict",
                 "2 an invalid file or option, a case that could not run, or an error row its expect does not anticipate"):
        assert said in " ".join(runner.invoke(app, ["run", "--help"]).stdout.replace("│", " ").split())
        assert said in " ".join(readme.replace("*", "").replace("`", "").split())


def test_version_lists_what_is_installed_without_importing_frameworks():
    code = ("import sys; from typer.testing import CliRunner; from oracle.cli import app; "
            "r = CliRunner().invoke(app, ['--version']); print(r.stdout); "
            "print(sorted(m for m in ('tensorflow', 'torch', 'jax') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    lines = out.stdout.strip().splitlines()
    assert lines[-1] == "[]"
    said = dict(line.split(" ", 1) for line in lines[:-1] if line)
    assert said["oracle"] == oracle.__version__
    for name in ("torch", "jax", "tensorflow", "numpyro", "mpmath"):
        assert said[name] == metadata.version(name)


def test_framework_logging_is_hidden_unless_verbose(tmp_path):
    """The real thing once (TensorFlow's C++ logs `E0000 ... cuInit` and absl lines on a machine without CUDA),
    and the mechanism both ways: native writes to fd 2 vanish, Python's sys.stderr still reaches the terminal."""
    case = write(tmp_path, "exp.yaml", EXP.replace("[jax]", "[tf]"))
    out = subprocess.run([sys.executable, "-m", "oracle", "run", str(case)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and "exp-overflow" in out.stdout
    assert out.stderr == "", out.stderr
    missing = str(tmp_path / "missing.yaml")
    code = ("import os, sys; from oracle.cli import app\n"
            "try:\n    app(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "os.write(2, b'native noise\\n'); print('python message', file=sys.stderr)")
    for flags, shown in (([], False), (["-v"], True)):
        out = subprocess.run([sys.executable, "-c", code, *flags, "validate", missing], capture_output=True,
                             text=True, timeout=60)
        assert "missing.yaml: no such file or folder" in out.stderr and "python message" in out.stderr
        assert ("native noise" in out.stderr) == shown


# --- the Python API ------------------------------------------------------------------------------------------------


def test_python_api_returns_the_json_document_of_the_command_line(tmp_path):
    import numpy as np

    data = {"id": "exp-overflow", "title": "exp(z) at z = 100", "kind": "loss", "inputs": {"z": np.float64(100.0)},
            "formula": "exp(z)", "frameworks": ["jax"]}
    case = oracle.load(data)
    assert case.file == "<dict>" and case.inputs["z"] == 100
    doc = oracle.run(case)
    cli = json.loads(runner.invoke(app, ["run", str(write(tmp_path, "exp.yaml", EXP)), "--json"]).stdout)
    assert set(doc) == set(cli) and doc["invalid"] == [] and doc["environment"] == cli["environment"]
    strip = {"file", "digest"}  # the file's name and its text differ; nothing measured may
    assert [{k: v for k, v in c.items() if k not in strip} for c in doc["cases"]] == \
           [{k: v for k, v in c.items() if k not in strip} for c in cli["cases"]]
    value = doc["cases"][0]["results"][0]
    assert value["got"] == "inf" and value["verdict"] == "overflow" and value["inherent"] is True
    # a folder with a bad file: listed in invalid, the rest still runs; load raises naming every bad field
    write(tmp_path, "bad.yaml", EXP.replace("exp-overflow", "bad").replace("exp(z)", "expo(z)"))
    doc = oracle.run(tmp_path)
    assert [c["id"] for c in doc["cases"]] == ["exp-overflow"] and doc["invalid"][0]["field"] == "formula"
    assert oracle.api.exit_status(doc) == 2
    with pytest.raises(case_io.CaseError, match="did you mean exp"):
        oracle.load({**data, "formula": "expo(z)"})
    with pytest.raises(case_io.CaseError, match=r"<dict>:\d+: formula: add got incompatible shapes"):
        oracle.load({**data, "inputs": {"z": [1.0, 2.0], "w": [1.0, 2.0, 3.0]}, "formula": "z + w"})


def test_importing_oracle_stays_cheap():
    out = subprocess.run([sys.executable, "-c", "import sys, oracle; print(sorted(m for m in sys.modules "
                          "if m.startswith(('oracle.', 'pydantic', 'numpy', 'jax'))))"],
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stdout


# --- the pytest plugin ---------------------------------------------------------------------------------------------

def test_plugin_skips_yaml_that_is_not_a_case_and_names_the_failing_item(pytester):
    from case_texts import LOG_SIGMOID_JAX

    folder = pytester.mkdir("cases")
    (folder / "fails.yaml").write_text(LOG_SIGMOID_JAX.replace("id: log-sigmoid-jax", "id: fails")
                                       + "expect:\n  jax: {formula: ok, log_sigmoid: ok}\n")
    (folder / "ci.yaml").write_text("name: ci\non: [push]\njobs: {test: {runs-on: ubuntu-latest}}\n")
    (folder / "list.yml").write_text("- a\n- b\n")
    (folder / "broken.yaml").write_text("id: broken\nkind: loss\ninputs: [\n")  # a case with a YAML error
    result = pytester.runpytest_subprocess("--oracle-cases", "cases", "-rs", "--continue-on-collection-errors")
    result.assert_outcomes(passed=1, failed=1, skipped=2, errors=1)
    result.stdout.fnmatch_lines(["*_ fails[[]jax-formula[]] _*", "cases/fails.yaml (fails): jax formula float32 value*"])
    skipped = sorted(line for line in result.stdout.lines if line.startswith("SKIPPED"))
    assert [s.split(": ")[-1] for s in skipped] == ["ci.yaml", "list.yml"]
    assert any("not an oracle case (no id or kind)" in s for s in skipped)
    result.stdout.fnmatch_lines(["*cases/broken.yaml*invalid YAML*"])


# --- tables ---------------------------------------------------------------------------------------------------------


def _printed(result: dict, width: int) -> str:
    from rich.console import Console

    from oracle import report

    console = Console(width=width, record=True, file=open("/dev/null", "w"), color_system=None)
    report.print_case(console, result)
    return console.export_text()


def _big_result() -> dict:
    from report_samples import case, row

    long = "-9.9900538448015981432e+39"  # the reference's 20 digits; got and reference are float32's shortest
    rows = [row(fw, output, "overflow", impl=impl, got="-inf", reference="-9.990054e+39", reference_digits=long,
                kappa="1.2345678e+30", worst_index=[12, 3])
            for fw, impl in (("tf", "tfp.distributions.Gamma.log_prob"), ("torch", "torch.distributions.Gamma.log_prob"),
                             ("jax", "numpyro.distributions.Gamma.log_prob"), ("jax", "my.log_prob"))
            for output in ("value", "grad.concentration")]
    return case("gamma", "special", rows, summed=True)


def test_tables_fit_100_columns_never_break_a_number_and_shorten_impl_names():
    result = _big_result()
    text = _printed(result, 100)
    table = text[:text.index("not shown to fit")]
    assert max(map(len, table.splitlines())) <= 100
    assert table.count("-9.990054e+39") == 8  # whole, in every row
    assert re.search(r"^ tf +Gamma\.log_prob +value ", table, re.M)
    # two jax impls end in .log_prob: Gamma.log_prob and my.log_prob do not clash, both are short
    assert "my.log_prob" in table and "numpyro.distributions" not in table and "tfp.distributions" not in table
    assert "not shown to fit 100 columns: reference (20 digits), ulps, kappa, dtype (--wide shows them)" in text
    assert "gradients are of the sum of the output's elements" in text  # no formula: impls only
    assert "formula's elements" not in text
    wide = _printed(result, 10**4)
    long = "-9.9900538448015981432e+39"
    assert "not shown" not in wide and wide.count("1.2345678e+30") == 8 and "4294967296" in wide
    assert wide.count(long) == 8 and "[12, 3]" in wide
    # too wide even with the fewest columns: the table is wider than the console, never a number broken
    squeezed = _printed(result, 60)
    assert squeezed.count("-9.990054e+39") == 8 and squeezed.count("grad.concentration") >= 4
    assert sum("Gamma.log_prob" in line and "-9.990054e+39" in line for line in squeezed.splitlines()) == 6


def test_short_impl_names_keep_the_full_name_where_two_would_read_the_same():
    from oracle.report.table import short_impls

    rows = [{"framework": "tf", "impl": i} for i in ("tfp.distributions.Normal.log_prob", "keras.Normal.log_prob",
                                                     "formula", "tf.math.log1p", "manual")]
    assert short_impls(rows) == {("tf", "tfp.distributions.Normal.log_prob"): "tfp.distributions.Normal.log_prob",
                                 ("tf", "keras.Normal.log_prob"): "keras.Normal.log_prob",
                                 ("tf", "formula"): "formula", ("tf", "tf.math.log1p"): "math.log1p",
                                 ("tf", "manual"): "manual"}


def test_run_wide_shows_every_column(tmp_path):
    case = write(tmp_path, "exp.yaml", EXP)
    narrow = runner.invoke(app, ["run", str(case)]).stdout
    assert max(map(len, narrow.splitlines())) <= 100 and "2.6881171418161354484e+43" not in narrow
    wide = runner.invoke(app, ["run", str(case), "--wide"]).stdout
    assert "2.6881171418161354484e+43" in wide and "reference (20 digits)" in wide


# --- oracle new ----------------------------------------------------------------------------------------------------


def test_new_writes_templates_that_validate_and_whose_reference_is_the_density(tmp_path):
    import mpmath

    from oracle import scaffold

    for root in scaffold.ROOTS:
        for name in scaffold.DENSITIES:
            path = tmp_path / f"{root}-{name}.yaml"
            result = runner.invoke(app, ["new", str(path), "--impl", f"{root}.distributions.{name}"])
            assert result.exit_code == 0, result.output
            text = path.read_text()
            assert text.startswith("# yaml-language-server: $schema=case.schema.json\n")
            assert case_io.load(path).id == f"{root}-{name}".lower()
    assert runner.invoke(app, ["validate", str(tmp_path)]).exit_code == 0
    # the density, at the template's inputs, by mpmath directly; and the library agrees (ok) there
    truth = {"torch-Normal": -mpmath.mpf(1) / 8 - mpmath.log(2 * mpmath.pi) / 2,
             "numpyro-Gamma": 3 * mpmath.log(2) + 2 * mpmath.log(mpmath.mpf(1) / 2) - 1 - mpmath.loggamma(3)}
    doc = oracle.run([tmp_path / f"{stem}.yaml" for stem in truth])
    for stem, case in zip(truth, doc["cases"]):
        value = next(r for r in case["results"] if r["output"] == "value")
        assert mpmath.almosteq(mpmath.mpf(value["reference_digits"]), truth[stem], rel_eps=1e-19)
        assert {r["verdict"] for r in case["results"]} == {"ok"}, case["results"]
    formula_case = tmp_path / "my first case.yaml"
    assert runner.invoke(app, ["new", str(formula_case)]).exit_code == 0
    assert case_io.load(formula_case).id == "my-first-case"
    again = runner.invoke(app, ["new", str(formula_case)])
    assert again.exit_code == 2 and "exists (not overwritten)" in again.stderr
    unknown = runner.invoke(app, ["new", str(tmp_path / "w.yaml"), "--impl", "torch.distributions.Weibull"])
    assert unknown.exit_code == 2 and "no template for --impl 'torch.distributions.Weibull'" in unknown.stderr
    assert not (tmp_path / "w.yaml").exists()


def test_the_readme_python_example_runs_as_printed():
    """The README's Python API example, run as a user would paste it: softplus at 100 overflows exp in torch
    (log(1 + e^100) = 100 + 3.7e-44 rounds to 100.0; its derivative sigmoid(100) to 1.0)."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    block = readme.split("```python\n", 1)[1].split("```", 1)[0]
    out = subprocess.run([sys.executable, "-c", block], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["value inf 100.0 overflow", "grad.x nan 1.0 overflow"]
