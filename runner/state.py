"""Task and run states, folded from the append-only event log (``events.jsonl``).

Each line of the log is one JSON object with a time ``t`` and a kind ``ev``:

=============  ===========================================================================
``claim``      a runner took ``node`` (attempt, runner id, backend, host) -> RUNNING
``handle``     where the attempt runs (pid, job id, remote host): lets a restart re-attach
``dispatching``a sublattice node started its child run ``child`` -> DISPATCHING
``end``        ``node`` finished: ``status`` COMPLETED/FAILED/CANCELLED, start/end, error
``run``        the run's own status: RUNNING, COMPLETED, FAILED, CANCELLED (+ ``error``)
=============  ===========================================================================

The fold is pure: ``fold(events)`` gives the same states whoever reads the log. A torn last line
(a writer killed mid-append) is ignored by the reader.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional

# Covalent's status names (covalent/_shared_files/util_classes.py:RESULT_STATUS).
NEW_OBJECT = "NEW_OBJECT"
STARTING = "STARTING"
RUNNING = "RUNNING"
DISPATCHING = "DISPATCHING"
COMPLETED = "COMPLETED"
FAILED = "FAILED"
CANCELLED = "CANCELLED"
TERMINAL = frozenset({COMPLETED, FAILED, CANCELLED})


@dataclass
class TaskState:
    """What is known of one node's latest attempt."""

    status: str = NEW_OBJECT
    attempt: int = 0
    runner: Optional[str] = None
    backend: Optional[str] = None
    host: Optional[str] = None
    pid: Optional[int] = None
    job_id: Optional[str] = None
    handle: Optional[Dict[str, Any]] = None
    claimed: Optional[float] = None
    started: Optional[float] = None
    ended: Optional[float] = None
    error: Optional[str] = None  # why cov ended it (worker died, cancelled, dep failed ...)
    exception: Optional[str] = None  # the last line of the task's own exception
    child: Optional[str] = None  # sublattice child dispatch id
    reused: bool = False

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL

    def to_dict(self) -> Dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v not in (None, False)}


@dataclass
class RunState:
    """The run's status and every node's state."""

    status: str = STARTING
    error: Optional[str] = None
    started: Optional[float] = None
    ended: Optional[float] = None
    tasks: Dict[int, TaskState] = field(default_factory=dict)

    def task(self, node_id: int) -> TaskState:
        state = self.tasks.get(node_id)
        if state is None:
            state = self.tasks[node_id] = TaskState()
        return state

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL


def apply(state: RunState, event: Dict[str, Any]) -> None:
    """Fold one event into ``state`` (mutates)."""
    kind = event.get("ev")
    t = event.get("t")
    if kind == "run":
        status = event.get("status", RUNNING)
        if state.finished and status not in TERMINAL:
            return  # a late runner never revives a finished run
        state.status = status
        if status == RUNNING and state.started is None:
            state.started = t
        if status in TERMINAL:
            state.ended = t
            state.error = event.get("error")
        return
    node = event.get("node")
    if node is None:
        return
    task = state.task(int(node))
    if kind == "claim":
        if task.finished:
            return
        task.status = RUNNING
        task.attempt = int(event.get("attempt", task.attempt + 1))
        task.runner = event.get("runner")
        task.backend = event.get("backend")
        task.host = event.get("host")
        task.pid = task.job_id = task.handle = None
        task.claimed = task.started = t
        task.ended = task.error = task.exception = None
    elif kind == "handle":
        if int(event.get("attempt", task.attempt)) != task.attempt:
            return
        handle = event.get("handle") or {}
        task.handle = handle
        task.host = handle.get("host", task.host)
        task.pid = handle.get("pid", task.pid)
        task.job_id = handle.get("job_id", task.job_id)
    elif kind == "dispatching":
        if not task.finished:
            task.status = DISPATCHING
            task.child = event.get("child")
    elif kind == "end":
        if task.finished and event.get("status") != COMPLETED:
            return  # a finished result is never overwritten by a later failure report
        task.status = event.get("status", FAILED)
        task.started = event.get("start", task.started)
        task.ended = event.get("end", t)
        task.error = event.get("error")
        task.exception = event.get("exception")
        task.reused = bool(event.get("reused"))
        if "attempt" in event:
            task.attempt = int(event["attempt"])
        if event.get("child"):
            task.child = event["child"]


def fold(events: Iterable[Dict[str, Any]], state: Optional[RunState] = None) -> RunState:
    """The state after ``events``, starting from ``state`` (or from nothing)."""
    state = state or RunState()
    for event in events:
        apply(state, event)
    return state


def failure_message(failed: List[tuple]) -> str:
    """Covalent's run error: ``The following tasks failed:\\n<id>: <name>`` per failed node."""
    return "The following tasks failed:\n" + "\n".join(f"{i}: {name}" for i, name in failed)
