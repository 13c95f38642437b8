"""Fuzzing the case format: no case file crashes, hangs or exhausts the tool, and every file is named.

A seeded hypothesis generator (derandomized: the same files on every run) writes a few hundred case files:
the shipped cases mutated line by line (lines dropped, duplicated, truncated; values replaced by hostile
scalars, YAML tags, deep lists, control characters, hostile generators), and grammar-generated cases (random
formulas over the formula language, random generators with hostile parameters). Then, each in one fresh
process with its address space capped, from an empty working directory and with a private TMPDIR:

* `oracle validate` on all of them: exit 0 or 2, no traceback, every file named on an `ok:` or `invalid:` line;
* `oracle run --json -f jax --timeout 3` on a slice of them: exit 0 or 2, no traceback, a JSON document naming
  every file as a case or as invalid, each case's rows or its error;

and after both: nothing written in the working directory, the case folder or TMPDIR, and the peak memory of
the processes below the cap.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted((ROOT / "cases").rglob("*.yaml"))
FILES, RUN = 360, 30  # files fuzzed; how many of them `oracle run` also evaluates (each compiles JAX code)
MEMORY_CAP = 8 << 30  # address space per process (the frameworks' own is about 1 GiB of it here: JAX only)
PEAK_RSS = 3 << 30  # what a process may actually hold at its peak

HOSTILE_SCALARS = [
    "-1", "0", "1e-45", "nan", "inf", "-inf", '"nan"', "1e308", "-1e308", "1e400", "1e-400", '"0x1p-1074"',
    '"0x1p99999"', "9" * 4301, "!!int abc", "!!bool maybe", "!!float abc", "!!timestamp xyz", "!!binary AAAA",
    "!!set {a: 1}", "[]", "{}", "[" * 70 + "1" + "]" * 70, "[[1, 2], [3]]", "[1, [2]]", '"\\e]0;title\\a"',
    '"<script>alert(1)</script>"', "*anchor", "&anchor 1", "? [1]", "!!python/object:os.system x", "null", "true",
    "{normal: {shape: [3], seed: 0, scale: -1}}", "{normal: {shape: [3], seed: 0, loc: nan}}",
    "{normal: {shape: [1000], seed: 0, scale: 1e308}}", "{uniform: {shape: [3], seed: 0, low: 2, high: 1}}",
    "{uniform: {shape: [3], seed: 0, low: -1e308, high: 1e308}}", "{fill: {value: 1, shape: [600000]}}",
    "{fill: {value: 1, shape: [99999999999]}}", "{eye: 100000}", "{diag: []}", "{linspace: [0, 1, 0]}",
    "{logspace: [-400, 400, 5]}", "{sweep: {logspace: [-30, 30, 99999999]}}", "{sweep: {float32_edges: true}}",
]
FUNCTIONS = ["exp", "log", "sqrt", "log1p", "expm1", "tanh", "sigmoid", "softplus", "log_sigmoid", "lgamma",
             "digamma", "erf", "erfc", "abs", "sum", "mean", "square", "sin", "cos", "log_ndtr", "ndtr"]
NUMBERS = ["0", "1", "0.5", "2", "1e-8", "1e30", "1e308", "-100", "pi", "e", "0.1"]


def formulas(names: list[str]) -> st.SearchStrategy[str]:
    """Expressions of the formula language, up to a few levels deep, including comparisons and towers."""
    leaves = st.sampled_from(names + NUMBERS)

    def extend(inner):
        return st.one_of(
            st.builds(lambda f, a: f"{f}({a})", st.sampled_from(FUNCTIONS), inner),
            st.builds(lambda a, op, b: f"({a} {op} {b})", inner, st.sampled_from(["+", "-", "*", "/", "**", "!=", "<"]),
                      inner),
            st.builds(lambda c, a, b: f"where({c} > 0, {a}, {b})", inner, inner, inner),
            st.builds(lambda a: f"-{a}", inner),
        )

    return st.recursive(leaves, extend, max_leaves=12)


def values() -> st.SearchStrategy[str]:
    finite = st.floats(allow_nan=False, allow_infinity=False, width=64).map(repr)
    lists = st.lists(finite, min_size=1, max_size=4).map(lambda xs: "[" + ", ".join(xs) + "]")
    return st.one_of(finite, lists, st.sampled_from(HOSTILE_SCALARS))


@st.composite
def generated(draw) -> str:
    """A case written from the grammar: inputs from hostile values, a random formula over them."""
    names = draw(st.lists(st.sampled_from(["x", "y", "z", "w"]), min_size=1, max_size=3, unique=True))
    inputs = "".join(f"  {name}: {draw(values())}\n" for name in names)
    title = draw(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=30))
    dtypes = draw(st.sampled_from(["[float32]", "[float64]", "[float16]", "[float32, float64]"]))
    return (f"id: generated\ntitle: {json.dumps(title)}\nkind: loss\ninputs:\n{inputs}"
            f"formula: {draw(formulas(names))}\nframeworks: [jax]\ndtypes: {dtypes}\n")


@st.composite
def mutated(draw) -> str:
    """A shipped case with a few line-level mutations."""
    lines = SHIPPED[draw(st.integers(0, len(SHIPPED) - 1))].read_text().splitlines()
    for _ in range(draw(st.integers(1, 4))):
        k = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(["value", "value", "value", "drop", "duplicate", "truncate", "junk", "formula"]))
        if action == "value" and ":" in lines[k]:
            key = lines[k].split(":", 1)[0]
            lines[k] = f"{key}: {draw(values())}"
        elif action == "drop":
            del lines[k]
        elif action == "duplicate":
            lines.insert(k, lines[k])
        elif action == "truncate":
            lines[k] = lines[k][: draw(st.integers(0, len(lines[k])))]
        elif action == "junk":
            lines.insert(k, draw(st.sampled_from(["\t- ]", "%YAML 9.9", "---", "key: [unclosed", "\x00", "\x1b[2J",
                                                   "inputs: {}", "formula: z != e", "tolerance_bits: -1"])))
        elif action == "formula":
            lines = [ln for ln in lines if not ln.startswith("formula:")] + [
                f"formula: {draw(formulas(['x', 'y', 'z', 'loc', 'scale', 'L']))}"]
        if not lines:
            lines = ["{}"]
    return "\n".join(lines) + "\n"


def corpus(count: int) -> list[str]:
    """`count` case texts, the same on every run."""
    texts: list[str] = []

    @settings(max_examples=count, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(st.one_of(mutated(), generated()))
    def collect(text):
        if len(texts) < count:
            texts.append(text.replace("id: ", f"id: fuzz-{len(texts)}-", 1) if "id: " in text else text)

    collect()
    return texts


def _capped():
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


# The console entry point, reporting its own peak resident memory as it exits (oracle's main runs exit handlers).
PEAK = "oracle-peak-rss-kib"
ENTRY = (f"import atexit, resource, sys\n"
         f"atexit.register(lambda: print('{PEAK}', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr))\n"
         "from oracle.cli import main\nsys.argv[0] = 'oracle'\nmain()\n")


def oracle(args: list[str], cwd: Path, tmp: Path, timeout: float) -> tuple[subprocess.CompletedProcess, int]:
    """One `oracle` command in a fresh process: its outcome and its peak resident memory in bytes."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp), "COLUMNS": "200"}
    done = subprocess.run([sys.executable, "-c", ENTRY, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, preexec_fn=_capped)
    peaks = [int(line.split()[1]) for line in done.stderr.splitlines() if line.startswith(PEAK)]
    assert peaks, done.stderr[-3000:]
    return done, peaks[-1] << 10


def _listing(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_fuzzed_case_files_never_crash_hang_or_write(tmp_path):
    texts = corpus(FILES)
    folder, work, tmp = tmp_path / "cases", tmp_path / "cwd", tmp_path / "tmp"
    for d in (folder, work, tmp):
        d.mkdir()
    files = []
    for k, text in enumerate(texts):
        path = folder / f"f{k:03d}.yaml"
        path.write_bytes(text.encode("utf-8", "surrogateescape"))
        files.append(path)
    before = _listing(folder)

    checked, peak_validate = oracle(["validate", str(folder)], work, tmp, 240)
    assert checked.returncode in (0, 2), checked.stderr[-3000:]
    both = checked.stdout + checked.stderr
    assert "Traceback" not in both, both[-3000:]
    said = [line for line in both.splitlines() if line.startswith(("ok: ", "invalid: "))]
    for path in files:
        assert any(str(path) in line for line in said), f"{path.name} is not named:\n{path.read_text()[:500]}"

    sliced = tmp_path / "run"
    sliced.mkdir()
    step = len(files) // RUN
    for path in files[::step][:RUN]:
        (sliced / path.name).write_bytes(path.read_bytes())
    ran, peak_run = oracle(["run", str(sliced), "--json", "-f", "jax", "--timeout", "3"], work, tmp, 400)
    assert ran.returncode in (0, 2), ran.stderr[-3000:]
    assert "Traceback" not in ran.stderr, ran.stderr[-3000:]
    doc = json.loads(ran.stdout)
    named = {c["file"] for c in doc["cases"]} | {e["file"] for e in doc["invalid"]}
    assert named >= {str(p) for p in sliced.iterdir()}
    for result in doc["cases"]:
        assert result["results"] or result.get("error"), result["id"]

    assert _listing(folder) == before  # case files untouched
    assert list(work.iterdir()) == [] and list(tmp.iterdir()) == []  # nothing written anywhere else we can see
    peak = max(peak_validate, peak_run)
    assert peak < PEAK_RSS, f"a process peaked at {peak >> 20} MiB"
    print(f"fuzzed {len(files)} files ({len(said)} named by validate, {sum('ok: ' in s for s in said)} valid); "
          f"ran {len(named)}: {len(doc['cases'])} cases, {sum('error' in r for r in doc['cases'])} errored, "
          f"{len(doc['invalid'])} invalid; peak RSS {peak >> 20} MiB")
