"""The command line: exit codes, the --json contract, validate, schema, lazy framework imports."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from typer.testing import CliRunner

from oracle.cli import app

runner = CliRunner()

CASE = """\
id: exp-overflow
title: exp(z) at z = 100
kind: loss
inputs:
  z: 100.0
formula: exp(z)
frameworks: [jax, torch]
"""


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_run_json_contract(tmp_path):
    path = write(tmp_path, "case.yaml", CASE)
    result = runner.invoke(app, ["run", str(path), "--json", "--dtype", "float32", "--dtype", "float64"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert set(doc) >= {"oracle_version", "environment", "cases"}
    assert set(doc["environment"]) >= {"python", "platform", "versions"}
    assert set(doc["environment"]["versions"]) >= {"jax", "torch", "mpmath"}
    (case,) = doc["cases"]
    assert case["id"] == "exp-overflow" and case["file"] == str(path)
    rows = {(r["framework"], r["dtype"], r["output"]): r for r in case["results"]}
    assert len(rows) == 8  # 2 frameworks x 2 dtypes x (value, grad.z)
    keys = {"framework", "impl", "dtype", "output", "shape", "worst_index", "got", "reference", "ulps",
            "error_bits", "within_tolerance", "verdict", "explanation"}
    for row in rows.values():
        assert keys <= set(row)
        assert row["impl"] == "formula"
    overflow = rows[("jax", "float32", "value")]
    # exp(100) = 2.688e43 is beyond float32: the correctly rounded reference is inf, so inf is exact
    assert overflow["got"] == "inf" and overflow["reference"] == "inf" and overflow["ulps"] == 0
    assert overflow["reference_digits"] == "2.6881171418161354484e+43"  # e**100
    exact64 = rows[("torch", "float64", "grad.z")]
    assert exact64["verdict"] == "ok" and float(exact64["got"]) == 2.6881171418161356e43


def test_run_reports_invalid_files_and_runs_the_rest(tmp_path):
    write(tmp_path, "good.yaml", CASE)
    write(tmp_path, "bad.yaml", CASE.replace("exp-overflow", "bad").replace("exp(z)", "exp(q)"))
    result = runner.invoke(app, ["run", str(tmp_path), "--json", "--framework", "jax"])
    assert result.exit_code == 2
    doc = json.loads(result.stdout)
    assert [c["id"] for c in doc["cases"]] == ["exp-overflow"]
    assert {r["framework"] for r in doc["cases"][0]["results"]} == {"jax"}
    (invalid,) = doc["invalid"]
    assert invalid["field"] == "formula" and invalid["line"] == 6 and "unknown name 'q'" in invalid["message"]
    assert f"invalid: {tmp_path / 'bad.yaml'}:6: formula: unknown name 'q'" in result.stderr


def test_validate_and_unknown_options(tmp_path):
    good = write(tmp_path, "good.yaml", CASE)
    assert runner.invoke(app, ["validate", str(good)]).exit_code == 0
    write(tmp_path, "shape.yaml", CASE.replace("z: 100.0", "z: [1.0, 2.0]\n  w: [1.0, 2.0, 3.0]")
                .replace("exp(z)", "z + w").replace("exp-overflow", "shape"))
    result = runner.invoke(app, ["validate", str(tmp_path)])
    assert result.exit_code == 2 and "shape.yaml:7: formula: add got incompatible shapes" in result.stderr
    assert runner.invoke(app, ["run", str(good), "--framework", "mxnet"]).exit_code == 2
    assert runner.invoke(app, ["run", str(tmp_path / "missing.yaml")]).exit_code == 2


def test_schema_is_json_schema_of_the_case_format():
    result = runner.invoke(app, ["schema"])
    schema = json.loads(result.stdout)
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert set(schema["required"]) == {"id", "title", "kind", "inputs"}
    # a case has formula, impl, or both; impl without formula needs a reference
    assert schema["anyOf"] == [{"required": ["formula"]}, {"required": ["impl", "reference"]}]
    assert set(schema["properties"]["impl"]["anyOf"][0]["propertyNames"]["enum"]) == {"tf", "torch", "jax"}
    assert schema["additionalProperties"] is False
    assert schema["properties"]["kind"]["enum"] == ["logprob", "loss", "kl"]


def test_only_requested_frameworks_are_imported(tmp_path):
    path = write(tmp_path, "case.yaml", CASE)
    code = textwrap.dedent(f"""
        import sys
        from typer.testing import CliRunner
        from oracle.cli import app
        result = CliRunner().invoke(app, ["run", {str(path)!r}, "--framework", "jax", "--json"])
        assert result.exit_code == 0, result.output
        print(sorted(m for m in ("tensorflow", "torch", "jax") if m in sys.modules))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "['jax']"


def test_frameworks_run_torch_first_but_are_reported_in_the_case_order(tmp_path):
    from oracle.case import load
    from oracle.runner import LOAD_ORDER, run_case

    case = load(write(tmp_path, "case.yaml", CASE.replace("[jax, torch]", "[jax, tf, torch]")))
    result = run_case(case)
    assert LOAD_ORDER[0] == "torch"
    assert [r["framework"] for r in result["results"]] == ["jax"] * 2 + ["tf"] * 2 + ["torch"] * 2
    assert list(result["reference"]["float32"]["subnormals"]) == ["jax", "tf", "torch"]


def test_the_console_entry_point_flushes_and_exits_with_the_commands_status(tmp_path):
    """`oracle` (oracle.cli:main) ends the process without the interpreter's teardown: output piped to another
    process must still arrive whole, and the exit status must be the command's."""
    from importlib.metadata import entry_points

    (script,) = entry_points(group="console_scripts", name="oracle")
    assert script.value == "oracle.cli:main"
    out = subprocess.run([sys.executable, "-m", "oracle", "schema"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and json.loads(out.stdout)["required"] == ["id", "title", "kind", "inputs"]
    out = subprocess.run([sys.executable, "-m", "oracle", "validate", str(tmp_path / "missing.yaml")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "missing.yaml: no such file or folder" in out.stderr


@pytest.mark.parametrize("raised, status, said", [(SystemExit(None), 0, ""), (SystemExit(3), 3, ""),
                                                  (SystemExit("boom"), 1, "boom\n")])
def test_main_follows_sys_exit_rules(monkeypatch, capsys, raised, status, said):
    import oracle.cli as cli

    class Exited(Exception):
        pass

    def app():
        raise raised

    def exit_now(code):
        raise Exited(code)

    monkeypatch.setattr(cli, "app", app)
    monkeypatch.setattr(cli.atexit, "_run_exitfuncs", lambda: None)  # pytest's own handlers must not run here
    monkeypatch.setattr(cli.os, "_exit", exit_now)
    with pytest.raises(Exited) as exited:
        cli.main()
    assert exited.value.args == (status,) and capsys.readouterr().err == said


def test_a_wrong_dtype_from_a_framework_is_an_error_not_a_silent_cast():
    import numpy as np

    from oracle import formula
    from oracle.classify import Evidence
    from oracle.compare import rows
    from oracle.floats import fmt
    from oracle.frameworks import Evaluation
    from oracle.reference import compute
    from oracle.reference.program import trace

    f = fmt("float32")
    ref = compute(trace(formula.parse("exp(z)", {"z"}), {"z": ()}, ["z"]), {"z": np.float32(1)}, f)
    evidence = Evidence("jax", f, 5, {"flush_to_zero": True, "denormals_are_zero": True})
    value, grad = rows(Evaluation("jax", "float32", np.float64(np.e), {"z": np.float32(np.e)}), ref, evidence)
    assert value["verdict"] == "error" and value["explanation"] == "returned float64[], expected float32[]"
    assert grad["verdict"] == "ok" and grad["ulps"] == 0


def test_a_case_that_crashes_the_tool_is_recorded_and_the_batch_goes_on(tmp_path, monkeypatch):
    import oracle.runner

    real = oracle.runner.run_case

    def flaky(case, **options):
        if case.id == "boom":
            raise RuntimeError("simulated bug")
        return real(case, **options)

    monkeypatch.setattr(oracle.runner, "run_case", flaky)
    write(tmp_path, "a.yaml", CASE.replace("exp-overflow", "boom"))
    write(tmp_path, "b.yaml", CASE)
    result = runner.invoke(app, ["run", str(tmp_path), "--json", "-f", "jax"])
    assert result.exit_code == 2
    doc = json.loads(result.stdout)
    by_id = {c["id"]: c for c in doc["cases"]}
    assert by_id["boom"]["error"] == "RuntimeError: simulated bug" and by_id["boom"]["results"] == []
    assert by_id["exp-overflow"]["results"] and "error" not in by_id["exp-overflow"]
