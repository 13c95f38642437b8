"""oracle audit: crash and timeout isolation, results streamed to results.jsonl, resume after a real kill, exit codes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from oracle import audit
from oracle import case as case_io
from oracle.cli import app

CASE = """\
id: {id}
title: {title}
kind: loss
inputs:
  x: {x}
formula: {formula}
frameworks: [jax]
"""
SLOW_X = "{linspace: [0.5, 2.0, 300]}"  # a reference of 300 elements: a fraction of a second per case


def write_case(folder: Path, case_id: str, formula: str = "exp(x)", x: str = "0.0", title: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{case_id}.yaml"
    path.write_text(CASE.format(id=case_id, title=title or case_id, x=x, formula=formula))
    return path


def load(folder: Path) -> list[case_io.Case]:
    cases, errors = case_io.load_all([folder])
    assert not errors
    return cases


def records(path: Path) -> list[dict]:
    """The complete lines of a results.jsonl (a line cut short by a kill does not parse)."""
    out = []
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return out


def run_faulty(corpus: Path, out: Path, **kwargs) -> dict:
    return audit.run(load(corpus), out, [corpus], [], audit.Options(), runner="audit_faults:run_case",
                     show_progress=False, **kwargs)


def test_crashes_and_timeouts_are_errors_and_the_audit_goes_on(tmp_path):
    corpus, out = tmp_path / "corpus", tmp_path / "out"
    for case_id in ("hang", "segfault", "ok-before", "abort", "raise", "ok-after"):
        write_case(corpus, case_id)
    doc = run_faulty(corpus, out, jobs=3, timeout=5)
    errors = {r["id"]: r.get("error") for r in doc["cases"]}
    assert errors == {"hang": "timed out after 5 s", "segfault": "worker killed by SIGSEGV", "ok-before": None,
                      "abort": "worker killed by SIGABRT", "raise": "RuntimeError: injected fault", "ok-after": None}
    for result in doc["cases"]:
        if result["id"].startswith("ok-"):  # real results: exp(0) = 1 and its gradient 1, exactly
            assert {(r["output"], r["got"], r["verdict"]) for r in result["results"]} == {
                ("value", "1.0", "ok"), ("grad.x", "1.0", "ok")}
            assert result["family"] == "corpus" and result["elapsed_s"] > 0
        else:
            assert result["results"] == [] and result["digest"] == case_io.load(result["file"]).digest
    assert next(r["elapsed_s"] for r in doc["cases"] if r["id"] == "hang") >= 5
    assert sorted(r["id"] for r in records(out / "results.jsonl")) == sorted(errors)  # each streamed once
    assert json.loads((out / "report.json").read_text())["cases"] == doc["cases"]
    assert 'errors="4"' in (out / "junit.xml").read_text()
    assert "Fatal Python error: Segmentation fault" in (out / "workers.log").read_text()  # faulthandler's traceback


def test_a_worker_that_cannot_start_stops_the_audit(tmp_path):
    write_case(tmp_path / "corpus", "ok")
    with pytest.raises(audit.AuditError, match="a worker failed to start .worker exited with status 1"):
        audit.run(load(tmp_path / "corpus"), tmp_path / "out", [tmp_path / "corpus"], [], runner="no_such_module:f",
                  show_progress=False)


def test_resume_after_a_kill_loses_and_repeats_nothing(tmp_path, monkeypatch):
    corpus, out = tmp_path / "corpus", tmp_path / "out"
    ids = [f"slow-{k}" for k in range(8)]
    for k, case_id in enumerate(ids):
        write_case(corpus, case_id, formula=f"sum(log(x + {k}))", x=SLOW_X)
    results = out / "results.jsonl"
    audit_process = subprocess.Popen([sys.executable, "-m", "oracle", "audit", str(corpus), "--out", str(out),
                                      "--jobs", "2"], start_new_session=True, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
    try:
        give_up = time.monotonic() + 120
        while not records(results):
            assert audit_process.poll() is None and time.monotonic() < give_up
            time.sleep(0.02)
    finally:  # the audit and its workers at once, as a crash or a closed terminal would
        os.killpg(audit_process.pid, signal.SIGKILL)
        audit_process.wait()
    before = records(results)
    assert 1 <= len(before) < len(ids)
    with results.open("a") as f:
        f.write('{"id": "slow-5", "digest": "')  # a line cut short mid-write

    ran = tmp_path / "ran.txt"
    monkeypatch.setenv("AUDIT_FAULTS_LOG", str(ran))
    doc = run_faulty(corpus, out, jobs=2, resume=True)
    assert sorted(ran.read_text().split()) == sorted(set(ids) - {r["id"] for r in before})  # the rest, only
    after = records(results)
    assert after[:len(before)] == before and sorted(r["id"] for r in after) == ids  # kept as recorded, none twice
    assert [r["id"] for r in json.loads((out / "report.json").read_text())["cases"]] == ids == [
        r["id"] for r in doc["cases"]]
    assert all(r["results"] and "error" not in r for r in doc["cases"])

    ran.unlink()
    write_case(corpus, "slow-2", formula="sum(log(x + 2))", x=SLOW_X, title="slow-2, edited")  # a new digest
    doc = run_faulty(corpus, out, jobs=2, resume=True)
    assert ran.read_text().split() == ["slow-2"]
    again = records(results)
    assert sorted(r["id"] for r in again) == ids
    assert [r["title"] for r in again if r["id"] == "slow-2"] == ["slow-2, edited"]
    assert [r["title"] for r in doc["cases"] if r["id"] == "slow-2"] == ["slow-2, edited"]


def test_recorded_keeps_only_valid_records_of_current_cases(tmp_path):
    corpus = tmp_path / "corpus"
    a = write_case(corpus, "a")
    write_case(corpus, "b")
    cases = load(corpus)
    digest = {case.id: case.digest for case in cases}
    lines = [{"id": "a", "digest": digest["a"], audit.KEY: "k", "n": 1},
             {"id": "a", "digest": digest["a"], audit.KEY: "k", "n": 2},  # a duplicate: the first wins
             {"id": "b", "digest": digest["b"], audit.KEY: "other", "n": 3},  # another environment
             {"id": "b", "digest": "0" * 16, audit.KEY: "k", "n": 4},  # another content
             {"id": "gone", "digest": "1" * 16, audit.KEY: "k", "n": 5}]  # no longer audited
    path = tmp_path / "results.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines) + '{"id": "b", "dig')
    found = audit.recorded(path, "k", cases)
    assert {case_id: r["n"] for case_id, r in found.items()} == {"a": 1}
    assert found["a"]["file"] == str(a)


def test_the_resume_key_follows_versions_and_options():
    env = audit.environment(audit.Options())
    assert set(env["versions"]) >= {"numpy", "mpmath", "tensorflow", "torch", "jax"}
    key = audit.environment_key(env)
    assert audit.environment_key(audit.environment(audit.Options())) == key
    assert audit.environment_key(audit.environment(audit.Options(dtypes=("float64",)))) != key
    assert audit.environment_key({**env, "versions": {**env["versions"], "jax": "0.0.1"}}) != key
    assert audit.environment_key({**env, "platform": "elsewhere"}) == key


def test_the_parent_reads_versions_without_importing_frameworks():
    code = ("import sys; from oracle import audit; audit.environment(audit.Options()); "
            "print(sorted(m for m in ('tensorflow', 'torch', 'jax') if m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"


def test_cli_writes_every_report_and_exits_2_on_invalid_files(tmp_path):
    corpus, out = tmp_path / "corpus", tmp_path / "out"
    write_case(corpus / "good", "good")
    write_case(corpus / "bad", "bad", formula="exp(q)")
    result = CliRunner().invoke(app, ["audit", str(corpus), "--out", str(out), "--jobs", "1", "-f", "jax"])
    assert result.exit_code == 2, result.output
    assert "invalid:" in result.output and "audited 1 cases" in result.output
    doc = json.loads((out / "report.json").read_text())
    assert doc["schema_version"] >= 1 and doc["environment"]["options"]["frameworks"] == ["jax"]
    assert [(r["id"], r["family"]) for r in doc["cases"]] == [("good", "good")]
    assert [e["file"] for e in doc["invalid"]] == [str(corpus / "bad" / "bad.yaml")]
    assert "## Verdicts by framework" in (out / "report.md").read_text()
    assert (out / "report.html").read_text().lstrip().lower().startswith("<!doctype html")
    assert 'classname="invalid"' in (out / "junit.xml").read_text()
    assert [r["id"] for r in records(out / "results.jsonl")] == ["good"]


def test_cli_rejects_unknown_frameworks(tmp_path):
    result = CliRunner().invoke(app, ["audit", str(tmp_path), "--out", str(tmp_path / "out"), "-f", "mxnet"])
    assert result.exit_code == 2 and "--framework mxnet unknown" in result.output
    assert not (tmp_path / "out").exists()



def test_the_audit_asks_for_exact_sweep_thresholds(tmp_path):
    """The audit's report plots a sweep's exact regions: its runner is asked to refine (oracle.boundaries)."""
    path = tmp_path / "sweep.yaml"
    path.write_text("id: s\ntitle: t\nkind: loss\ninputs:\n  x: {sweep: {linspace: [0, 100, 3]}}\nformula: exp(x)\n")
    asked = []

    def runner(case, *args):
        asked.append(args)
        return {"id": case.id, "results": []}

    audit._attempt(runner, case_io.load(path), audit.Options(("jax",)))
    assert asked == [(["jax"], None, 4096, True)]
