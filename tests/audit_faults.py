"""Fault injection for tests/test_audit.py, through the audit's runner parameter (never through a case file):
`audit.run(..., runner="audit_faults:run_case")` runs the real pipeline except for the case ids in FAULTS, which
crash, hang or raise as a misbehaving framework would. Spawned workers import this module by name (pytest puts
tests/ on sys.path, which spawn passes on). With AUDIT_FAULTS_LOG set, each case id run is appended to that file."""

from __future__ import annotations

import os
import signal
import time

from oracle.runner import run_case as real_run_case


def _raise():
    raise RuntimeError("injected fault")


FAULTS = {
    "segfault": lambda: os.kill(os.getpid(), signal.SIGSEGV),
    "abort": os.abort,
    "hang": lambda: time.sleep(3600),
    "raise": _raise,
}


def run_case(case, *args):
    log = os.environ.get("AUDIT_FAULTS_LOG")
    if log:
        with open(log, "a") as f:
            f.write(case.id + "\n")
    FAULTS.get(case.id, lambda: None)()
    return real_run_case(case, *args)
