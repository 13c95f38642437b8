"""An audit's worker processes die with it: killed (SIGKILL) or terminated (SIGTERM) mid-case, it leaves no
worker, no multiprocessing resource tracker and (terminated) no temporary folder behind; a folder left by a killed
audit is removed by the next. A worker's case that overruns --timeout ends in the worker itself."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from oracle import audit

TESTS = Path(__file__).resolve().parent
CASE = "id: {id}\ntitle: t\nkind: loss\ninputs:\n  x: 0.5\nformula: exp(x)\nframeworks: [jax]\n"
PARENT = """\
import sys
from pathlib import Path
from oracle import audit, case
corpus, out = Path(sys.argv[1]), Path(sys.argv[2])
cases, _ = case.load_all([corpus])
audit.run(cases, out, [corpus], [], jobs=2, timeout=600, runner="audit_faults:run_case", show_progress=False)
"""


def descendants(root: int) -> set[int]:
    """Every live process below `root`, from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM])
def test_killing_an_audit_mid_case_leaves_no_process_behind(tmp_path, signum):
    corpus, scratch = tmp_path / "corpus", tmp_path / "tmp"
    corpus.mkdir()
    scratch.mkdir()
    for case_id in ("hang", "hang2"):  # hang: audit_faults sleeps an hour in it (tests inject faults by id)
        (corpus / f"{case_id}.yaml").write_text(CASE.format(id=case_id))
    started = tmp_path / "started.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS.parent), str(TESTS)]), "TMPDIR": str(scratch),
           "AUDIT_FAULTS_LOG": str(started)}
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(corpus), str(tmp_path / "out")], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (started.exists() and started.read_text().count("\n") >= 2):  # both workers are inside a case
            assert time.monotonic() < deadline and parent.poll() is None, "the audit never started its cases"
            time.sleep(0.2)
        below = descendants(parent.pid)
        assert len(below) >= 3  # two workers and the resource tracker
        assert len(list(scratch.glob(f"{audit.SCRATCH}{parent.pid}-*"))) == 1
        parent.send_signal(signum)
        assert parent.wait(30) == (-signum if signum == signal.SIGKILL else 128 + signum)
        deadline = time.monotonic() + 15
        while any(map(alive, below)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert [pid for pid in below if alive(pid)] == []
    finally:
        if parent.poll() is None:
            parent.kill()
    left = list(scratch.glob(f"{audit.SCRATCH}*"))
    if signum == signal.SIGTERM:
        assert left == []
    else:  # nobody could clean up after SIGKILL: the next audit removes a dead audit's folder
        assert len(left) == 1
        tempfile.tempdir, saved = str(scratch), tempfile.tempdir
        try:
            audit._remove_stale_scratch()
        finally:
            tempfile.tempdir = saved
        assert list(scratch.iterdir()) == []
