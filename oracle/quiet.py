"""Quiet by default: the frameworks' own chatter is not oracle's output (`oracle -v` shows it).

TensorFlow and XLA log from C++ before any Python setting applies (`WARNING: All log messages before
absl::InitializeLog() ...`, `E0000 ... failed call to cuInit`; TF_CPP_MIN_LOG_LEVEL does not reach those), so
the process's file descriptor 2 goes to /dev/null while Python's sys.stderr keeps writing to the terminal
through a duplicate of it: oracle's own messages, Python tracebacks and rich's progress bars still show.
Python-level noise (numpyro's UserWarnings, TensorFlow's and JAX's loggers) is filtered in Python.
`oracle audit`'s workers send all of it to workers.log instead (`oracle.audit`).
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

LOGGERS = ("tensorflow", "absl", "jax", "torch", "numpyro", "h5py")


def silence() -> None:
    """Hide framework logging and warnings for the rest of this process (the `oracle` command, without -v)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's C++ logging once it is initialised
    warnings.simplefilter("ignore")
    for name in LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    _native_stderr_to_null()


def _native_stderr_to_null() -> None:
    """Point fd 2 at /dev/null and sys.stderr at a duplicate of the old fd 2. Only when sys.stderr is fd 2:
    under a test runner's capture (or CliRunner) the process's descriptors are not ours to move."""
    try:
        if sys.stderr.fileno() != 2:
            return
    except (AttributeError, OSError, ValueError):
        return
    sys.stderr.flush()
    kept = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    os.close(null)
    sys.stderr = os.fdopen(kept, "w", buffering=1, encoding=sys.stderr.encoding, errors=sys.stderr.errors)
