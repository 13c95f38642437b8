"""Work budgets: a case may take so much time and memory, and each expensive part of it a share of that time.

A case file is untrusted and a small one can ask for unbounded work: mpmath's polygamma at -7.975e10 never
returns, a power tower z**z**z**z**z**z spins in mpmath.diff, condition numbers of a 200x200 Cholesky take
hours. Element caps cannot see that, so time is bounded where the work happens.

`limit(part, seconds)` runs a block under a deadline (never later than an enclosing one); `share` gives a part
a fraction of what the enclosing deadlines leave. Overrunning raises `OutOfBudget(part)` inside the block, at
`check()` (which the pipeline calls between steps: the only enforcement in other threads) and, in the main
thread, from a SIGALRM timer: mpmath and numpy's object loops are Python, so the signal is handled between
bytecodes, even deep inside an mpmath call. The timer interrupts only `interruptible` blocks (the mpmath parts
that `attempt` runs) and never an import: an exception thrown into a framework's one-time initialization
leaves it half done for every later case (JAX: "Dialect namespace 'mhlo' is already registered"). Elsewhere the
overrun waits for the next `check()`, or GRACE_S past the deadline for code that never reaches one.
`attempt` runs one part and turns its own overrun into a reason, so the case goes on without that part (the
reference's uncertified rows, no kappa, no gradient check, no shadow) while an enclosing deadline's overrun
keeps propagating. `OutOfBudget` is a BaseException: code that catches Exception to fall back on other evidence
must not swallow a deadline.

`limit_memory` caps the address space of a worker process, so an oversized case raises MemoryError (an
`error` row) instead of being chosen by the out-of-memory killer.
"""

from __future__ import annotations

import math
import resource
import signal
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")
CASE_PART = "case"  # the whole case: `oracle run/check --timeout`, the audit's --timeout
DEFAULT_TIMEOUT_S = 300.0
REPEAT_S = 0.05  # the timer fires again until the block is left (a raise deferred, or swallowed by a bare except)
GRACE_S = 5.0  # past its deadline, a block that is not interruptible is interrupted anyway: a hang is worse


class OutOfBudget(BaseException):  # noqa: N818 - named for what happened, like KeyboardInterrupt
    """`part` ran past its deadline (`seconds` were allowed)."""

    def __init__(self, part: str, seconds: float):
        super().__init__(f"{part} ran out of its work budget ({seconds:.3g} s)")
        self.part, self.seconds = part, seconds


_frames: list[tuple[str, float, float, bool]] = []  # (part, deadline, seconds allowed, interruptible), outermost first
_previous_handler = None


def remaining() -> float:
    """Seconds left before the nearest deadline (inf without one)."""
    deadline = min((f[1] for f in _frames), default=math.inf)
    return deadline - time.monotonic()


def check() -> None:
    """Raise OutOfBudget for the outermost part whose deadline has passed (called from long loops)."""
    expired = _expired()
    if expired is not None:
        raise OutOfBudget(expired[0], expired[2])


def _expired() -> tuple | None:
    now = time.monotonic()
    return next((f for f in _frames if now >= f[1]), None)


def _importing(frame) -> bool:
    """Is `frame`, or any frame below it, running an import?"""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _on_alarm(signum, frame) -> None:
    expired = _expired()
    if expired is None or _importing(frame):
        return
    if any(f[3] for f in _frames) or time.monotonic() >= expired[1] + GRACE_S:
        raise OutOfBudget(expired[0], expired[2])


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _arm() -> None:
    """Set the timer for the nearest deadline (or clear it when no block is running)."""
    global _previous_handler
    if not _main_thread():
        return
    if not _frames:
        signal.setitimer(signal.ITIMER_REAL, 0)
        if _previous_handler is not None:
            signal.signal(signal.SIGALRM, _previous_handler)
            _previous_handler = None
        return
    if _previous_handler is None:
        _previous_handler = signal.signal(signal.SIGALRM, _on_alarm) or signal.SIG_DFL
    delay = max(min(f[1] for f in _frames) - time.monotonic(), 1e-4)
    signal.setitimer(signal.ITIMER_REAL, delay, REPEAT_S)


@contextmanager
def limit(part: str, seconds: float | None = None, share: float | None = None, interruptible: bool = False):
    """Run the block with a deadline `seconds` from now, or `share` of the time the enclosing deadlines leave (no
    deadline when neither applies); never later than an enclosing deadline. Only an `interruptible` block (pure
    mpmath and numpy work) is interrupted by the timer at its deadline; see the module docstring."""
    now = time.monotonic()
    if seconds is None and share is not None and math.isfinite(remaining()):
        seconds = max(share * remaining(), 0.0)
    if seconds is None:
        yield
        return
    _frames.append((part, min(now + seconds, min((f[1] for f in _frames), default=math.inf)), seconds, interruptible))
    _arm()
    try:
        yield
    finally:
        _frames.pop()
        _arm()


def attempt(part: str, work: Callable[[], T], share: float) -> tuple[T | None, str | None]:
    """(work(), None), or (None, why) when `part` ran out of its share of the time left; an enclosing deadline's
    overrun propagates."""
    try:
        with limit(part, share=share, interruptible=True):
            return work(), None
    except OutOfBudget as e:
        if e.part != part:
            raise
        return None, str(e)


def limit_memory(max_bytes: int | None) -> None:
    """Cap this process's address space (Linux RLIMIT_AS): an allocation beyond it fails with MemoryError."""
    if not max_bytes:
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = max_bytes if hard == resource.RLIM_INFINITY else min(max_bytes, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))


def timed_out(seconds: float | None) -> str:
    """A case's error when its whole budget ran out."""
    return f"timed out after {seconds:g} s"
