"""Batch audits (`oracle audit`): a corpus run in parallel worker processes, streamed to results.jsonl as each case
finishes (resumable), then written as report.json, report.md, report.html and junit.xml.

Workers are spawned, never forked (TensorFlow, PyTorch and JAX are not fork-safe), live for the whole audit (each
pays its framework imports once) and take one case at a time. The pool is our own: a worker that dies (segfault,
abort, the out-of-memory killer) or overruns its case's timeout costs only that case, recorded as an error, and is
replaced; concurrent.futures' pool would break as a whole instead. The parent never imports a framework.
"""

from __future__ import annotations

import faulthandler
import hashlib
import importlib
import json
import math
import multiprocessing
import os
import platform
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from importlib import metadata
from multiprocessing.connection import Connection, wait
from pathlib import Path

import mpmath
import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from oracle import __version__, budget, report
from oracle.case import DEFAULT_MAX_ELEMENTS, Case
from oracle.frameworks import BACKENDS, LIBRARIES, PACKAGES

RUNNER = "oracle.runner:run_case"  # "module:function", imported by each worker; tests inject faults through it
RESULTS, LOG = "results.jsonl", "workers.log"
KEY = "environment_key"  # each results.jsonl line carries it: --resume reuses only results of the same key
_READY = "ready"
MAX_MEMORY = 8 << 30  # bytes of address space per worker (about 3.5 GiB of it is the three frameworks' own)
GRACE_S = budget.GRACE_S + 5.0  # a worker whose case overran --timeout gets this long to report it, then is killed


@dataclass(frozen=True)
class Options:
    """The options that change a case's results (they are part of the resume key)."""

    frameworks: tuple[str, ...] | None = None  # None: each case's own
    dtypes: tuple[str, ...] | None = None
    max_precision: int = 4096
    max_elements: int = DEFAULT_MAX_ELEMENTS


def run(cases: list[Case], out: Path, roots: list[Path], invalid: list[dict], options: Options = Options(),
        jobs: int | None = None, timeout: float = 300.0, resume: bool = False, runner: str = RUNNER,
        show_progress: bool = True, max_memory: int | None = MAX_MEMORY) -> dict:
    """Audit `cases` (found under `roots`) into the folder `out`; return the report document.

    `invalid` lists the files that could not be loaded ({file, field, line, message}); they are reported, not run.
    With `resume`, cases already in out/results.jsonl with the same content digest and environment key are not
    run again; without it, results.jsonl starts empty."""
    out.mkdir(parents=True, exist_ok=True)
    env = environment(options)
    key = environment_key(env)
    done = recorded(out / RESULTS, key, cases) if resume else {}
    if not resume:
        (out / LOG).unlink(missing_ok=True)
    todo = [case for case in cases if case.id not in done]
    with Journal(out / RESULTS, key, done.values()) as journal, \
            _Bar(len(cases), done.values(), show_progress) as bar:
        for case, result in _pool(todo, jobs or os.cpu_count() or 1, timeout, runner, options, out / LOG,
                                  max_memory):
            done[case.id] = journal.append(result)
            bar.advance(result)
    results = [_reported(done[case.id], roots) for case in cases if case.id in done]
    doc = report.document(env, results, invalid)
    write_reports(out, doc)
    return doc


def write_reports(out: Path, doc: dict) -> None:
    """report.json, report.md, junit.xml and report.html, all from the one document."""
    from oracle.report import html, junit, markdown

    (out / "report.json").write_text(report.dumps(doc) + "\n", encoding="utf-8")
    (out / "report.md").write_text(markdown.render(doc), encoding="utf-8")
    (out / "junit.xml").write_text(junit.render(doc), encoding="utf-8")
    (out / "report.html").write_text(html.render(doc), encoding="utf-8")


def family(file: str, roots: list[Path]) -> str:
    """A case's family: its folder relative to the audited folder holding it ("normal", "seeds"); the folder's own
    name for a case directly in it or named as a file."""
    path = Path(file).resolve()
    for root in (r.resolve() for r in roots):
        if root.is_dir() and path.is_relative_to(root):
            relative = path.parent.relative_to(root).as_posix()
            return root.name if relative == "." else relative
    return path.parent.name


# --- the environment and the resume key ----------------------------------------------------------------------------

def environment(options: Options) -> dict:
    """The environment as `oracle run --json` reports it, plus the options. Versions come from package metadata: the
    parent never imports a framework (seconds and gigabytes each), and what a worker would run is what is installed."""
    frameworks = options.frameworks or BACKENDS
    modules = [PACKAGES[f] for f in frameworks] + [library for f in frameworks for library in LIBRARIES[f]]
    installed = {module: version for module in modules if (version := _installed(module))}
    return {"python": sys.version.split()[0], "platform": platform.platform(),
            "versions": {"oracle": __version__, "numpy": np.__version__, "mpmath": mpmath.__version__,
                         "mpmath_backend": mpmath.libmp.BACKEND, **installed},
            "options": asdict(options)}


def environment_key(env: dict) -> str:
    """What a result depends on besides its case: Python, the versions and the options (not the platform string)."""
    basis = {"python": env["python"], "versions": env["versions"], "options": env["options"]}
    return hashlib.sha256(json.dumps(basis, sort_keys=True).encode()).hexdigest()[:16]


def _installed(module: str) -> str | None:
    try:
        return metadata.version(module)
    except metadata.PackageNotFoundError:
        return None


# --- results.jsonl ---------------------------------------------------------------------------------------------------

def recorded(path: Path, key: str, cases: list[Case]) -> dict[str, dict]:
    """The results in `path` still valid for `cases` (same id, content digest and environment key), by case id.

    A line that does not parse (cut short by a kill) is ignored; the first valid record of a case wins. A reused
    record takes the case's current file path (the same content may be audited under another path)."""
    if not path.exists():
        return {}
    by_id = {case.id: case for case in cases}
    found: dict[str, dict] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        case = by_id.get(record.get("id")) if isinstance(record, dict) else None
        if case is not None and record.get("digest") == case.digest and record.get(KEY) == key:
            found.setdefault(case.id, {**record, "file": case.file})
    return found


class Journal:
    """results.jsonl: rewritten with the records kept (atomically: a kill leaves the old file or the new one), then
    one line appended and flushed per finished case, so an interrupted audit loses nothing and repeats nothing."""

    def __init__(self, path: Path, key: str, kept: Iterable[dict]):
        staging = path.with_name(path.name + ".tmp")
        staging.write_text("".join(json.dumps(record) + "\n" for record in kept), encoding="utf-8")
        os.replace(staging, path)
        self._key = key
        self._file = path.open("a", encoding="utf-8")

    def append(self, result: dict) -> dict:
        record = {**result, KEY: self._key}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        return record

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc) -> None:
        self._file.close()


def _reported(record: dict, roots: list[Path]) -> dict:
    """A record as report.json shows it: without the resume key, with its family."""
    return {**{k: v for k, v in record.items() if k != KEY}, "family": family(record["file"], roots)}


# --- progress ---------------------------------------------------------------------------------------------------------

class _Bar:
    """Cases done of all, how many errored and how many have findings, and an ETA (on stderr: stdout stays clean)."""

    def __init__(self, total: int, done: Iterable[dict], enabled: bool):
        self._progress = Progress(TextColumn("auditing"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("{task.fields[errored]} errored, {task.fields[findings]} with findings"),
                                  TextColumn("ETA"), TimeRemainingColumn(), console=Console(stderr=True),
                                  disable=not enabled)
        done = list(done)
        self._errored = sum("error" in r for r in done)
        self._findings = sum(map(report.has_findings, done))
        self._task = self._progress.add_task("audit", total=total, completed=len(done), errored=self._errored,
                                             findings=self._findings)

    def advance(self, result: dict) -> None:
        self._errored += "error" in result
        self._findings += report.has_findings(result)
        self._progress.update(self._task, advance=1, errored=self._errored, findings=self._findings)

    def __enter__(self) -> _Bar:
        self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self._progress.stop()


# --- the worker pool ---------------------------------------------------------------------------------------------------

def _pool(cases: list[Case], jobs: int, timeout: float, runner: str, options: Options,
          log: Path, max_memory: int | None = None) -> Iterator[tuple[Case, dict]]:
    """Run `cases` on `jobs` workers; yield (case, result) as each ends, an error result if it cost its worker.

    A worker that dies or times out is killed and, while cases remain, replaced. Workers die with the audit:
    SIGTERM and SIGHUP end the parent through its `finally` (which kills them), and a parent killed outright takes
    them with it (PR_SET_PDEATHSIG); their temporary files (TensorFlow's autograph modules) live in one folder
    removed at the end, or by the next audit when this one was killed."""
    context = multiprocessing.get_context("spawn")
    pending = deque(cases)
    _remove_stale_scratch()
    scratch = tempfile.mkdtemp(prefix=f"{SCRATCH}{os.getpid()}-")
    limits = (timeout, max_memory, scratch)

    def start() -> _Worker:
        return _Worker(context, runner, options, log, limits)

    workers: list[_Worker] = []
    restore = _terminate_on_signals()
    try:
        workers = [start() for _ in range(min(jobs, len(cases)))]
        while pending or any(w.case is not None for w in workers):
            for worker in workers:
                if worker.ready and worker.case is None and pending:
                    worker.assign(pending.popleft(), timeout)
            wait([w.conn for w in workers] + [w.process.sentinel for w in workers], _until_deadline(workers))
            for k, worker in enumerate(workers):
                outcome = worker.collect(timeout)
                if worker.dead and pending:
                    workers[k] = start()
                if outcome is not None:
                    yield outcome
            workers = [w for w in workers if not w.dead]
    finally:
        for worker in workers:
            worker.stop()
        restore()
        shutil.rmtree(scratch, ignore_errors=True)


SCRATCH = "oracle-audit-"  # + the parent's pid: the workers' temporary folder


def _remove_stale_scratch() -> None:
    """Remove the temporary folders of audits whose process is gone (killed before it could clean up)."""
    for path in Path(tempfile.gettempdir()).glob(f"{SCRATCH}*-*"):
        pid = path.name[len(SCRATCH):].split("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Terminated(SystemExit):
    """SIGTERM or SIGHUP reached the audit: unwind (killing the workers), then exit 128 + the signal."""


def _terminate_on_signals() -> Callable[[], None]:
    """Turn SIGTERM and SIGHUP into Terminated while the pool runs (main thread only); return the undo."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum, frame):
        raise Terminated(128 + signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}

    def restore() -> None:
        for signum, old in previous.items():
            signal.signal(signum, old)

    return restore


def _until_deadline(workers: list[_Worker]) -> float | None:
    deadline = min((w.deadline for w in workers), default=math.inf)
    return None if deadline == math.inf else max(0.0, deadline - time.monotonic())


class AuditError(RuntimeError):
    """The audit itself cannot go on (a worker cannot even start)."""


class _Worker:
    """One spawned worker process, seen from the parent, and the case it is running."""

    def __init__(self, context, runner: str, options: Options, log: Path, limits: tuple = (None, None, None)):
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, runner, options, str(log), limits), daemon=True)
        self.process.start()
        child.close()
        self.log = log
        self.ready = self.dead = False
        self.case: Case | None = None
        self.started, self.deadline = 0.0, math.inf

    def assign(self, case: Case, timeout: float) -> None:
        self.case, self.started = case, time.monotonic()
        self.deadline = self.started + timeout + GRACE_S  # its own budget ends the case at `timeout`, unless stuck in C
        try:
            self.conn.send(case)
        except OSError:  # it died just now: collect() reports it
            pass

    def collect(self, timeout: float) -> tuple[Case, dict] | None:
        """What this worker has to report now: its finished case, its death, or its case's timeout."""
        if self.conn.poll():
            try:
                message = self.conn.recv()
            except (EOFError, OSError):
                return self._end(_death(self.process))
            if message == _READY:
                self.ready = True
                return None
            case, self.case, self.deadline = self.case, None, math.inf
            return case, message
        if not self.process.is_alive():
            return self._end(_death(self.process))
        if time.monotonic() >= self.deadline:
            return self._end(budget.timed_out(timeout))
        return None

    def _end(self, reason: str) -> tuple[Case, dict] | None:
        """Kill the worker; its case, if any, ended with `reason`. A worker that dies before it is ready would die
        again in a replacement (an import fails): that stops the audit."""
        self.stop()
        self.dead = True
        if not self.ready:
            raise AuditError(f"a worker failed to start ({reason}); its output is in {self.log}")
        if self.case is None:
            return None
        
        return self.case, {**report.error_result(self.case, reason), "elapsed_s": _seconds(self.started, time.monotonic())}

    def stop(self) -> None:
        self.process.kill()
        self.process.join()
        self.conn.close()


def _death(process) -> str:
    """Why a worker ended, from its exit code: a signal (by name) or an exit status."""
    process.join(timeout=5)  # the pipe closes a moment before the process is reaped
    code = process.exitcode
    if code is None:
        return "worker closed its pipe and stopped answering"
    if code < 0:
        name = signal.Signals(-code).name
        return f"worker killed by {name}" + (" (as the out-of-memory killer does)" if -code == signal.SIGKILL else "")
    return f"worker exited with status {code}"


def _serve(conn: Connection, runner: str, options: Options, log: str, limits: tuple = (None, None, None)) -> None:
    """A worker's life: import once, then run each case it is sent, until the parent closes the pipe."""
    timeout, max_memory, scratch = limits
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it stops the workers
    if scratch:  # temporary files (TensorFlow's autograph modules) go where the parent removes them
        os.environ["TMPDIR"] = tempfile.tempdir = scratch
    budget.limit_memory(max_memory)  # an oversized case raises MemoryError: an error row, not the OOM killer
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)  # framework chatter stays off the progress bar,
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    faulthandler.enable()  # and a crash's Python traceback is kept
    run_case = _resolve(runner)
    conn.send(_READY)
    while True:
        try:
            case = conn.recv()
        except EOFError:
            return
        conn.send(_attempt(run_case, case, options, timeout))


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this worker when the audit process dies, however it dies (prctl PR_SET_PDEATHSIG);
    elsewhere a thread watches for the parent's exit. A parent already gone ends the worker at once."""
    parent = os.getppid()
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(1, signal.SIGKILL, 0, 0, 0) != 0:  # 1 = PR_SET_PDEATHSIG
            raise OSError(ctypes.get_errno(), "prctl")
    except (OSError, AttributeError):
        def watch() -> None:
            while os.getppid() == parent:
                time.sleep(0.5)
            os._exit(1)

        threading.Thread(target=watch, daemon=True).start()
    if os.getppid() != parent:
        os._exit(1)


def _resolve(runner: str) -> Callable:
    module, _, name = runner.partition(":")
    return getattr(importlib.import_module(module), name)


def _attempt(run_case: Callable, case: Case, options: Options, timeout: float | None = None) -> dict:
    """One case's result, with its wall time; an exception is the case's error, never the worker's end."""
    start = time.monotonic()
    try:
        with budget.limit(budget.CASE_PART, timeout):
            result = run_case(case, _listed(options.frameworks), _listed(options.dtypes), options.max_precision,
                              True)  # refine: sweeps get exact thresholds (oracle.boundaries)
    except budget.OutOfBudget:
        result = report.error_result(case, budget.timed_out(timeout))
    except Exception as e:  # a bug or an unsupported construct in one case must not lose the others
        result = report.error_result(case, f"{type(e).__name__}: {e}")
    return {**result, "elapsed_s": _seconds(start, time.monotonic())}


def _seconds(start: float, end: float) -> float:
    return round(end - start, 3)


def _listed(names: tuple[str, ...] | None) -> list[str] | None:
    return None if names is None else list(names)
