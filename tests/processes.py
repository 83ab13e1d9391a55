"""Waiting on processes and on a run's task states, for tests that watch real tasks run, get
cancelled or die: one copy of each loop, used by the backend, fault and compatibility tests."""
from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from runner.state import RunState


def wait_until(predicate: Callable[[], object], timeout: float, step: float = 0.01) -> bool:
    """Polls ``predicate`` until it is true or ``timeout`` seconds passed; its last answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())


def pid_gone(pid: int) -> bool:
    """The process has exited (a zombie waiting for its parent counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b") ", 1)[1][:1] == b"Z"
    except (OSError, IndexError):
        return True


def wait_pid_gone(pid: int, timeout: float = 10) -> bool:
    """Whether the process exited within ``timeout`` seconds."""
    return wait_until(lambda: pid_gone(pid), timeout, step=0.05)


def run_state(home: Path, dispatch_id: str) -> "RunState":
    """The run's state as readers see it, folded from its files now."""
    from runner.rundir import RunDir  # on first use, as the fault harness imports the project

    return RunDir(home / dispatch_id).state()


def wait_for_pid(home: Path, dispatch_id: str, node: int, timeout: float = 60) -> int:
    """The pid the node's attempt reported (its ``start`` or ``end`` event)."""
    found: list = []

    def reported() -> bool:
        task = run_state(home, dispatch_id).tasks.get(node)
        if task is not None and task.pid:
            found.append(int(task.pid))
        return bool(found)

    if wait_until(reported, timeout, step=0.05):
        return found[0]
    raise AssertionError(f"node {node} of {dispatch_id} never reported a pid")
