"""The backend contract: how the runner hands a task to a place that runs it.

A backend carries out the tasks of one executor configuration (the local pool, one SSH host, one
Slurm cluster). The runner's loop is single-threaded: it calls ``submit`` for claimed tasks,
waits on ``waitables()`` (or at most ``next_poll_in()`` seconds), then collects ``poll()``.
Every submitted task must come back exactly once from ``poll`` as a ``Completion`` whose header
is the task's outcome header (see ``runner.worker``), after its outcome file
``results/<node>.pkl`` is in the run directory. ``handle`` dicts (pid, host, job id) passed to
``services.record_handle`` go into the event log, so a restarted runner can ``reattach``.

To write a backend for a platform cov lacks: subclass ``Backend``, implement ``submit`` and
``poll`` (and ``cancel``/``reattach`` if the platform can), and register it (see
``runner.backends``). ``make_bundle`` gives a task as one self-contained pickle and
``worker.py`` runs it anywhere with ``python worker.py BUNDLE OUTCOME STDOUT STDERR``.
"""
from __future__ import annotations

import abc
import os
import pickle
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Protocol, Tuple

from runner import worker

WORKER_SCRIPT = os.path.abspath(worker.__file__)


@dataclass
class Task:
    """One attempt of one node, as the runner hands it to a backend."""

    run: str  # the run directory's absolute path
    dispatch_id: str
    node: int
    name: str
    attempt: int
    fn: Tuple[int, int]  # the electron blob in tasks.pkl
    inputs: List[Tuple[str, Any, Tuple[Any, ...]]]  # (arg|kwarg, index|name, source)
    executor: Dict[str, Any] = field(default_factory=dict)
    cwd: str = ""
    sys_path: List[str] = field(default_factory=list)
    # The claim's fencing token: a path that exists once another runner took this runner's
    # claims over; a pool worker then neither starts the task nor writes its outcome.
    fence: str = ""

    @property
    def outcome_path(self) -> str:
        return os.path.join(self.run, "results", f"{self.node}.pkl")

    @property
    def stdout_path(self) -> str:
        return os.path.join(self.run, "logs", f"{self.node}.out")

    @property
    def stderr_path(self) -> str:
        return os.path.join(self.run, "logs", f"{self.node}.err")

    def message(self) -> Dict[str, Any]:
        """The local pool's form (paths and offsets; the worker reads the run directory)."""
        return {"run": self.run, "node": self.node, "attempt": self.attempt, "fn": self.fn,
                "inputs": self.inputs, "cwd": self.cwd, "sys_path": self.sys_path,
                "fence": self.fence}


@dataclass
class Completion:
    """A finished attempt: its outcome header (``ok``, ``error``, ``start``, ``end`` ...)."""

    run: str
    node: int
    attempt: int
    header: Dict[str, Any]


class Services(Protocol):
    """What the runner offers its backends."""

    def record_handle(self, task: Task, handle: Dict[str, Any]) -> None: ...

    def wake(self) -> None: ...


class Backend(abc.ABC):
    """Carries out tasks for one executor configuration."""

    def __init__(self, config: Dict[str, Any], services: Services) -> None:
        self.config = config
        self.services = services

    @abc.abstractmethod
    def submit(self, task: Task) -> None:
        """Start the task without blocking the loop for long."""

    @abc.abstractmethod
    def poll(self) -> List[Completion]:
        """Attempts that finished since the last call (never blocks)."""

    def flush(self) -> None:
        """Called after a round of ``submit`` calls: send what was batched (arrays, lists)."""

    def capacity(self) -> int:
        """How many more tasks ``submit`` takes now."""
        return 1_000_000

    def waitables(self) -> List[Any]:
        """Connections, sockets or fds whose readiness means ``poll`` has news."""
        return []

    def next_poll_in(self) -> Optional[float]:
        """Seconds until ``poll`` should be called even without news (None: no need)."""
        return None

    def cancel(self, run: str, node: int) -> None:
        """Stop a running attempt; its Completion then reports ``reason: cancelled``."""

    def drop(self, task: Task) -> None:
        """Forget an attempt whose claim another runner took over (that runner may watch the
        same job: a remote one is left alone). Its Completion, if one comes, is ignored."""

    def release(self, run: str) -> None:
        """The run ended: let go of whatever is kept open or left in its directory for it."""

    def reattach(self, task: Task, handle: Dict[str, Any]) -> bool:
        """Resume watching an attempt a previous runner started; False if it cannot."""
        return False

    def busy(self) -> bool:
        """True while any submitted task has not come back."""
        return False

    def close(self) -> None:
        """Release processes and connections (the runner is exiting)."""


def make_bundle(task: Task, read_blob: Any, read_result: Any) -> bytes:
    """The task as one self-contained pickle for ``worker.py`` on another host."""
    inputs = []
    for kind, key, source in task.inputs:
        if source[0] == "blob":
            data = read_blob((source[1], source[2]))
        else:
            data = read_result(source[1])
        inputs.append((kind, key, data))
    bundle = {"fn": read_blob(task.fn), "inputs": inputs, "cwd": task.cwd,
              "sys_path": task.sys_path,
              "context": {"dispatch_id": task.dispatch_id, "node": task.node,
                          "attempt": task.attempt}}
    return pickle.dumps(bundle, protocol=pickle.HIGHEST_PROTOCOL)
