"""Work budgets: a case may take so much time and memory, and each expensive part of it a share of that time.

A case file is untrusted and a small one can ask for unbounded work: mpmath's polygamma at -7.975e10 never
returns, a power tower z**z**z**z**z**z spins in mpmath.diff, condition numbers of a 200x200 Cholesky take
hours. Element caps cannot see that, so time is bounded where the work happens.

`limit(part, seconds)` runs a block under a deadline (never later than an enclosing one); `share` gives a part
a fraction of what the enclosing deadlines leave. Overrunning raises `OutOfBudget(part)` inside the block: in
the main thread from a SIGALRM timer (mpmath and numpy's object loops are Python, so the signal is handled
between bytecodes, even deep inside an mpmath call), and from `check()`, which long loops call (the only
enforcement in other threads). `attempt` runs one part and turns its own overrun into a reason, so the case
goes on without that part (the reference's uncertified rows, no kappa, no gradient check, no shadow) while an
enclosing deadline's overrun keeps propagating. `OutOfBudget` is a BaseException: code that catches Exception
to fall back on other evidence must not swallow a deadline.

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
REPEAT_S = 0.05  # the timer fires again until the block is left, in case something swallowed the first raise


class OutOfBudget(BaseException):  # noqa: N818 - named for what happened, like KeyboardInterrupt
    """`part` ran past its deadline (`seconds` were allowed)."""

    def __init__(self, part: str, seconds: float):
        super().__init__(f"{part} ran out of its work budget ({seconds:.3g} s)")
        self.part, self.seconds = part, seconds


_frames: list[tuple[str, float, float]] = []  # (part, deadline, seconds allowed), outermost first
_previous_handler = None


def remaining() -> float:
    """Seconds left before the nearest deadline (inf without one)."""
    deadline = min((d for _, d, _ in _frames), default=math.inf)
    return deadline - time.monotonic()


def check() -> None:
    """Raise OutOfBudget for the outermost part whose deadline has passed (called from long loops)."""
    if _frames:
        now = time.monotonic()
        for part, deadline, seconds in _frames:
            if now >= deadline:
                raise OutOfBudget(part, seconds)


def _on_alarm(signum, frame) -> None:
    check()


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
    delay = max(min(d for _, d, _ in _frames) - time.monotonic(), 1e-4)
    signal.setitimer(signal.ITIMER_REAL, delay, REPEAT_S)


@contextmanager
def limit(part: str, seconds: float | None = None, share: float | None = None):
    """Run the block with a deadline `seconds` from now, or `share` of the time the enclosing deadlines leave (no
    deadline when neither applies); never later than an enclosing deadline."""
    now = time.monotonic()
    if seconds is None and share is not None and math.isfinite(remaining()):
        seconds = max(share * remaining(), 0.0)
    if seconds is None:
        yield
        return
    _frames.append((part, min(now + seconds, min((d for _, d, _ in _frames), default=math.inf)), seconds))
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
        with limit(part, share=share):
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
