"""What the worker's modules share: the host, the running task's context, the task failure.

Stdlib only, importing nothing of cov's: shipped beside ``runner/worker.py`` to hosts without
cov (``worker.shipped_files``), like every ``worker_*`` module but ``worker_pool``.
"""
from __future__ import annotations

import os
import socket
import sys
from typing import Any, Dict

HOST = socket.gethostname()

# The task this process is running: {"run", "dispatch_id", "node", "attempt"} (ct.get_context).
CURRENT_TASK: Dict[str, Any] = {}

FILE_MODE = 0o600  # outcomes and logs are the owner's only (runner/fs.py FILE_MODE)


class ChildRun:
    """Returned by a sublattice task: its value is the child run's, once that run ends."""

    def __init__(self, dispatch_id: str) -> None:
        self.dispatch_id = dispatch_id


class TaskFailed(Exception):
    """A failure that is not the task's own exception (a dep failed, a value cannot be pickled)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def write_fd(fd: int, text: str) -> None:
    """Write ``text`` to ``fd``, ignoring a closed or full one (it is a diagnostic)."""
    try:
        os.write(fd, text.encode("utf-8", "replace"))
    except OSError:
        pass


def flush_std() -> None:
    """Flush sys.stdout and sys.stderr, whatever a task made of them."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001
            pass
