"""Task and run states, folded from the append-only event log (``events.jsonl``).

Each line of the log is one JSON object with a time ``t`` and a kind ``ev``:

=============  ===========================================================================
``claim``      a runner took ``node`` (attempt, runner id, backend, host) -> QUEUED
``handle``     where the attempt runs (pid, job id, remote host): lets a restart re-attach
``pending``    the scheduler's reason a QUEUED attempt waits (Slurm's ``Resources``, ``Priority``)
``start``      the attempt started on its worker or host at ``start`` (``pid``) -> RUNNING
``dispatching``a sublattice node started its child run ``child`` -> DISPATCHING
``end``        ``node`` finished: ``status`` COMPLETED/FAILED/CANCELLED, start/end, error, pid,
               ``at``/``log_at``: where a packed outcome and logs are (format 2.0; not
               folded: ``runner.packed_reads.PackedIndex`` keeps them)
``run``        the run's own status: RUNNING, COMPLETED, FAILED, CANCELLED (+ ``error``)
=============  ===========================================================================

The fold is pure: ``fold(events)`` gives the same states whoever reads the log. A torn last line
(a writer killed mid-append) is ignored by the reader. A whole line that is not an event of this
shape (``[1,2,3]``, a node id that is a string, a status that is a number) is damage, not a tear:
``check_event`` names it and readers report the run as unreadable. Kinds this version does not
know are ignored, so newer writers may add them.

QUEUED is cov's own status (Covalent has none): claimed and handed to a backend, not yet started
(a pool worker busy with an earlier task, a Slurm job pending). The SDK shows it as Covalent
would, RUNNING (``covalent_cli.result``); people and ``cov status --json`` see QUEUED. A log
written before ``start`` events existed has none: its claimed tasks read QUEUED until they end,
and their ``end`` events carry the real start.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any, Dict, FrozenSet, Iterable, List, Optional, TypedDict, Union, cast


class Status(str, Enum):
    """A run or task status. The values are Covalent's status names
    (covalent/_shared_files/util_classes.py:RESULT_STATUS), but for QUEUED, cov's own name for
    a task claimed but not started (never in an event, never a run's status). A member *is*
    that string:
    ``Status.COMPLETED == "COMPLETED"``, it hashes like it, ``json.dumps`` writes it, and
    ``str()``/f-strings print it (``__str__``/``__format__`` below, since Python 3.11 made
    ``format()`` of a mixed-in enum print ``Status.COMPLETED``)."""

    NEW_OBJECT = "NEW_OBJECT"
    STARTING = "STARTING"
    QUEUED = "QUEUED"  # cov's own: claimed, not started (see the module docstring)
    RUNNING = "RUNNING"
    DISPATCHING = "DISPATCHING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    def __str__(self) -> str:
        return str.__str__(self)

    def __format__(self, spec: str) -> str:
        return str.__format__(str.__str__(self), spec)


NEW_OBJECT = Status.NEW_OBJECT
STARTING = Status.STARTING
QUEUED = Status.QUEUED
RUNNING = Status.RUNNING
DISPATCHING = Status.DISPATCHING
COMPLETED = Status.COMPLETED
FAILED = Status.FAILED
CANCELLED = Status.CANCELLED
TERMINAL: FrozenSet[str] = frozenset({COMPLETED, FAILED, CANCELLED})
STATUSES: FrozenSet[str] = frozenset(Status) - {QUEUED}  # the statuses events may carry
_STATUS_OF: Dict[str, Status] = {s.value: s for s in Status}  # the fold's fast str -> Status


class Handle(TypedDict, total=False):
    """Where an attempt runs, as a backend reports it (the ``handle`` event's ``handle``): enough
    for a restarted runner to re-attach. Backends may add their own fields."""

    pid: Optional[int]
    host: Optional[str]
    job_id: Union[str, int, None]


class Event(TypedDict, total=False):
    """One line of ``events.jsonl``: ``t`` and ``ev`` always, the rest per kind (the table in
    the module docstring; ``_FIELDS`` is the checked form)."""

    t: Optional[float]
    ev: str
    node: int
    attempt: int
    status: str
    error: Optional[str]
    exception: Optional[str]
    child: Optional[str]
    runner: Optional[str]
    backend: Optional[str]
    host: Optional[str]
    handle: Optional[Handle]
    start: Optional[float]
    end: Optional[float]
    reused: bool
    pid: Optional[int]
    reason: Optional[str]
    reused_from: Optional[str]
    cached_from: Optional[str]
    at: Optional[List[Any]]  # [pack file, offset, length] of a packed outcome (format 2.0)
    log_at: Optional[Dict[str, List[Any]]]  # {"out"|"err": location} of packed logs


class EventError(ValueError):
    """An event-log line that is valid JSON but not a well-formed event."""


_TEXT = frozenset({str, type(None)})
_TIME = frozenset({int, float, type(None)})
_INT = frozenset({int})
_COMMON = {"t": _TIME, "ev": frozenset({str})}
# Per known kind: field -> the exact types it may have (absent is always allowed; a bool is
# not a number here, ``type()`` is compared, not ``isinstance``, which is also the fast way).
_FIELDS: Dict[str, Dict[str, frozenset]] = {
    "run": {**_COMMON, "status": frozenset({str}), "error": _TEXT},
    "claim": {**_COMMON, "node": _INT, "attempt": _INT, "runner": _TEXT, "backend": _TEXT,
              "host": _TEXT},
    "handle": {**_COMMON, "node": _INT, "attempt": _INT, "handle": frozenset({dict, type(None)})},
    "pending": {**_COMMON, "node": _INT, "attempt": _INT, "reason": _TEXT},
    "start": {**_COMMON, "node": _INT, "attempt": _INT, "start": _TIME, "host": _TEXT,
              "pid": frozenset({int, type(None)})},
    "dispatching": {**_COMMON, "node": _INT, "child": _TEXT},
    "end": {**_COMMON, "node": _INT, "attempt": _INT, "status": frozenset({str}),
            "error": _TEXT, "exception": _TEXT, "child": _TEXT, "start": _TIME, "end": _TIME,
            "pid": frozenset({int, type(None)}), "reused_from": _TEXT,
            "cached_from": _TEXT, "at": frozenset({list, type(None)}),
            "log_at": frozenset({dict, type(None)})},
}
_HANDLE_FIELDS = {"pid": frozenset({int, type(None)}), "host": _TEXT,
                  "job_id": frozenset({str, int, type(None)})}


def check_event(event: Any) -> Event:
    """``event`` if it is a well-formed event, else ``EventError`` saying what is wrong.
    Runs for every event a reader reads: kept to one pass over the event's fields."""
    if type(event) is not dict:
        raise EventError(f"a line is {type(event).__name__}, not an event object")
    kind = event.get("ev")
    fields = _FIELDS.get(kind) if type(kind) is str else None
    if fields is None:
        if type(kind) is not str:
            raise EventError(f"an event has no valid 'ev' (found {kind!r})")
        fields = _COMMON  # a kind from a newer writer: ignored by the fold
    for name, value in event.items():
        types = fields.get(name)
        if types is not None and type(value) not in types:
            what = "a non-numeric time" if name == "t" else f"{name}={value!r} (wrong type)"
            raise EventError(f"a {kind!r} event has {what}")
    if fields is _COMMON:
        return cast(Event, event)
    node = event.get("node")
    if kind != "run" and (node is None or node < 0):
        raise EventError(f"a {kind!r} event names no valid node (found {node!r})")
    status = event.get("status")
    if status is not None and status not in STATUSES:
        raise EventError(f"a {kind!r} event has an unknown status {status!r}")
    handle = event.get("handle")
    if handle:
        for name, types in _HANDLE_FIELDS.items():
            if name in handle and type(handle[name]) not in types:
                raise EventError(f"a 'handle' event has {name}={handle[name]!r} (wrong type)")
    return cast(Event, event)


# Slots where the dataclass has them (3.10+): a run's 100,000 TaskStates took 31 MB with a
# __dict__ each (tracemalloc, with the tasks dict), 25 MB with slots, in a runner and in
# every reader.
_SLOTS: Dict[str, Any] = {"slots": True} if sys.version_info >= (3, 10) else {}


@dataclass(**_SLOTS)
class TaskState:
    """What is known of one node's latest attempt."""

    status: Status = NEW_OBJECT
    attempt: int = 0
    runner: Optional[str] = None
    backend: Optional[str] = None
    host: Optional[str] = None
    pid: Optional[int] = None
    job_id: Union[str, int, None] = None
    handle: Optional[Handle] = None
    claimed: Optional[float] = None
    started: Optional[float] = None  # when the attempt started on its worker (None while QUEUED)
    reason: Optional[str] = None  # why a QUEUED attempt waits, as its scheduler says
    ended: Optional[float] = None
    error: Optional[str] = None  # why cov ended it (worker died, cancelled, dep failed ...)
    exception: Optional[str] = None  # the last line of the task's own exception
    child: Optional[str] = None  # sublattice child dispatch id
    reused: bool = False
    reused_from: Optional[str] = None  # the run a reused result was taken from
    cached_from: Optional[str] = None  # RUN/NODE whose result the cache gave (runner/cache.py)

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL

    def to_dict(self) -> Dict[str, Any]:
        return {k: v for k in _TASK_FIELDS if (v := getattr(self, k)) not in (None, False)}


_TASK_FIELDS = tuple(f.name for f in fields(TaskState))


@dataclass
class RunState:
    """The run's status and every node's state."""

    status: Status = STARTING
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


def apply(state: RunState, event: Event) -> None:
    """Fold one event into ``state`` (mutates). Its statuses must be ``STATUSES``
    (``check_event`` sees to that for the events a reader reads)."""
    kind = event.get("ev")
    t = event.get("t")
    if kind == "run":
        status = _STATUS_OF[event.get("status", RUNNING)]
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
        task.status = QUEUED
        task.attempt = int(event.get("attempt", task.attempt + 1))
        task.runner = event.get("runner")
        task.backend = event.get("backend")
        task.host = event.get("host")
        task.pid = task.job_id = task.handle = task.started = task.reason = None
        task.claimed = t
        task.ended = task.error = task.exception = None
    elif kind == "start":
        if task.finished or int(event.get("attempt", task.attempt)) != task.attempt:
            return  # an attempt's late report; the end event has its start anyway
        if task.status == QUEUED:
            task.status = RUNNING
        start = event.get("start")
        task.started = start if start is not None else t
        task.reason = None
        task.host = event.get("host") or task.host
        task.pid = event.get("pid", task.pid)
    elif kind == "pending":
        if task.status == QUEUED and int(event.get("attempt", task.attempt)) == task.attempt:
            task.reason = event.get("reason")
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
        task.status = _STATUS_OF[event.get("status", FAILED)]
        task.started = event.get("start", task.started)
        task.reason = None
        task.ended = event.get("end", t)
        task.error = event.get("error")
        task.exception = event.get("exception")
        task.reused = bool(event.get("reused"))
        task.pid = event.get("pid", task.pid)
        task.reused_from = event.get("reused_from")
        task.cached_from = event.get("cached_from")
        if "attempt" in event:
            task.attempt = int(event["attempt"])
        if event.get("child"):
            task.child = event["child"]


def fold(events: Iterable[Event], state: Optional[RunState] = None) -> RunState:
    """The state after ``events``, starting from ``state`` (or from nothing)."""
    state = state or RunState()
    for event in events:
        apply(state, event)
    return state


def failure_message(failed: List[tuple]) -> str:
    """Covalent's run error: ``The following tasks failed:\\n<id>: <name>`` per failed node."""
    return "The following tasks failed:\n" + "\n".join(f"{i}: {name}" for i, name in failed)
