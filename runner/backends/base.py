"""The backend contract: how the runner hands a task to a place that runs it.

A backend carries out the tasks of one executor configuration (the local pool, one SSH host, one
Slurm cluster). The runner's loop is single-threaded: it calls ``submit`` for claimed tasks,
waits on ``waitables()`` (or at most ``next_poll_in()`` seconds), then collects ``poll()``.
Every submitted task must come back exactly once from ``poll`` as a ``Completion`` whose header
is the task's outcome header (see ``runner.outcome``), after its outcome file
``results/<node>.pkl`` is in the run directory. ``handle`` dicts (pid, host, job id) passed to
``services.record_handle`` go into the event log, so a restarted runner can ``reattach``. A
submitted task is QUEUED until its backend reports it started (``services.record_start``: the
pool worker took it, the SSH host printed its pid, Slurm shows its job RUNNING); a backend that
knows why a task waits says so with ``services.record_pending`` (Slurm's PENDING reason).

To write a backend for a platform cov lacks: subclass ``Backend``, implement ``submit`` and
``poll`` (and ``cancel``/``reattach`` if the platform can), and register it (see
``runner.backends``). What the built-in backends share is here, so that each keeps only its
platform verbs (submitit's ``PicklingExecutor`` model):

* ``make_bundle(task, rundir)``: the task as one self-contained pickle, which ``worker.py`` runs
  anywhere with ``python worker.py BUNDLE OUTCOME STDOUT STDERR``;
* ``Completion.failed`` / ``Completion.cancelled``: the header of an attempt that ended without
  an outcome of its own;
* ``ThreadedBackend``: for a backend whose platform work runs in threads of its own (SSH, Slurm
  over SSH): the hand-over of completions and handles to the runner's thread.
"""
from __future__ import annotations

import abc
import pickle
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Protocol, Tuple

from runner import layout
from runner.outcome import OutcomeHeader, write_outcome

if TYPE_CHECKING:
    from runner.rundir import RunDir


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
    # File transfers the backend does around the task over its own connection (the manifest
    # node's "files"; covalent_cli.fs ExecutorConnection). Empty for most tasks.
    files: List[Dict[str, Any]] = field(default_factory=list)
    # A follow-on (``runner.follow_on``): run only once these (node, attempt) succeeded in
    # the same pool worker; ``speculative`` until its claim is written, which holds back its
    # start event and an early completion until then.
    after: List[Tuple[int, int]] = field(default_factory=list)
    speculative: bool = False
    followed: bool = False  # a follow-on is queued behind it
    queued_at: Optional[float] = None  # when a follow-on went to its worker: its claim's time
    early_start: Optional[Any] = None  # an Event (runner.state)
    early_done: List[Any] = field(default_factory=list)
    # Format 2.0: a pool worker may pack the outcome and logs (runner/outcome_pack.py).
    pack: bool = False

    @property
    def outcome_path(self) -> str:
        return layout.outcome_path(self.run, self.node)

    @property
    def stdout_path(self) -> str:
        return layout.log_path(self.run, self.node, "out")

    @property
    def stderr_path(self) -> str:
        return layout.log_path(self.run, self.node, "err")

    def message(self) -> Dict[str, Any]:
        """The local pool's form (paths and offsets; the worker reads the run directory)."""
        message = {"run": self.run, "node": self.node, "attempt": self.attempt, "fn": self.fn,
                   "inputs": self.inputs, "cwd": self.cwd, "sys_path": self.sys_path,
                   "fence": self.fence, "pack": self.pack}
        if self.after:
            message["after"] = self.after
        return message


@dataclass
class Completion:
    """A finished attempt: its outcome header (``ok``, ``error``, ``start``, ``end`` ...)."""

    run: str
    node: int
    attempt: int
    header: OutcomeHeader

    @classmethod
    def of(cls, task: Task, header: OutcomeHeader) -> "Completion":
        """The task's attempt, ended with ``header`` (typically its outcome file's)."""
        return cls(task.run, task.node, task.attempt, header)

    @classmethod
    def failed(cls, task: Task, reason: str, error: str, **fields: Any) -> "Completion":
        """The attempt ended without an outcome of its own: ``reason`` is the kind of failure
        (``worker_died``, ``connection``, ``submit`` ...), ``error`` the message the user sees,
        ``fields`` where it happened (``host``, ``pid``, ``job_id``)."""
        header: OutcomeHeader = {"ok": False, "reason": reason, "error": error}
        header.update(fields)  # type: ignore[typeddict-item]  # host, pid, job_id
        header.setdefault("end", time.time())
        return cls.of(task, header)

    @classmethod
    def cancelled(cls, task: Task, error: str = "cancelled", **fields: Any) -> "Completion":
        """The attempt was stopped by a cancel (``reason: cancelled``: the node is CANCELLED)."""
        return cls.failed(task, "cancelled", error, **fields)


class Services(Protocol):
    """What the runner offers its backends."""

    def record_handle(self, task: Task, handle: Dict[str, Any]) -> None: ...

    def record_start(self, task: Task, start: float, pid: Optional[int] = None,
                     host: Optional[str] = None) -> None: ...

    def record_pending(self, task: Task, reason: str) -> None: ...

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


class ThreadedBackend(Backend):
    """A backend whose platform work runs in threads of its own (SSH channels, Slurm over SSH).

    The runner's loop is single-threaded and its services are not thread-safe, so the threads
    never call them directly: they hand finished attempts (``_emit``), handles
    (``_emit_handle``) and starts or pending reasons (``_emit_news``) over under ``_lock`` and
    call ``services.wake()``; the loop's thread passes them on in ``poll`` and, so that a next
    runner can re-attach, in ``close``.
    """

    def __init__(self, config: Dict[str, Any], services: Services) -> None:
        super().__init__(config, services)
        self._lock = threading.Lock()
        self._done: List[Completion] = []
        self._handles: List[Tuple[Task, Dict[str, Any]]] = []
        self._news: List[Tuple[Task, str, Dict[str, Any]]] = []  # (task, start|pending, fields)

    # -- any thread ----------------------------------------------------------------------------
    def _emit(self, completion: Completion) -> None:
        with self._lock:
            self._done.append(completion)

    def _emit_handle(self, task: Task, handle: Dict[str, Any]) -> None:
        with self._lock:
            self._handles.append((task, handle))

    def _emit_news(self, task: Task, kind: str, **fields: Any) -> None:
        """``start`` (``start``, ``pid``, ``host``) or ``pending`` (``reason``) of an attempt."""
        with self._lock:
            self._news.append((task, kind, fields))

    # -- the runner's thread -------------------------------------------------------------------
    def _deliver_handles(self) -> None:
        with self._lock:
            handles, self._handles = self._handles, []
            news, self._news = self._news, []
        for task, handle in handles:
            self.services.record_handle(task, handle)
        for task, kind, fields in news:
            if kind == "start":
                self.services.record_start(task, **fields)
            else:
                self.services.record_pending(task, **fields)

    def _take_done(self) -> List[Completion]:
        with self._lock:
            done, self._done = self._done, []
        return done

    def poll(self) -> List[Completion]:
        self._deliver_handles()
        return self._take_done()

    def close(self) -> None:
        """Record the handles not yet passed on (the attempts go on without the runner)."""
        self._deliver_handles()


def make_bundle(task: Task, rundir: "RunDir", backend_transfers: bool = False) -> bytes:
    """The task as one self-contained pickle for ``worker.py`` on another host: its function
    and inputs read from ``rundir``. An input whose result file is missing or incomplete raises
    ``RuntimeError`` (the task cannot start). ``backend_transfers``: the backend copies the
    task's ``files`` (ExecutorConnection) itself, the worker leaves them alone."""
    def result(node: int) -> bytes:
        payload = rundir.read_outcome(node, payload=True)[1]  # packed or its own file
        if payload is None:
            raise RuntimeError(f"the result of node {node} is missing or incomplete")
        return payload

    inputs = []
    for kind, key, source in task.inputs:
        data = rundir.read_blob((source[1], source[2])) if source[0] == "blob" \
            else result(source[1])
        inputs.append((kind, key, data))
    bundle: Dict[str, Any] = {"fn": rundir.read_blob(task.fn), "inputs": inputs, "cwd": task.cwd,
              "sys_path": task.sys_path,
              "context": {"dispatch_id": task.dispatch_id, "node": task.node,
                          "attempt": task.attempt}}
    if backend_transfers:
        bundle["backend_transfers"] = True
    return pickle.dumps(bundle, protocol=pickle.HIGHEST_PROTOCOL)


def transfer_failed(task: Task, message: str, **fields: Any) -> Completion:
    """A file transfer the backend did for ``task`` failed: the attempt fails with ``message``,
    which also goes into its outcome file and the end of its stderr (``cov logs``)."""
    header: OutcomeHeader = {"ok": False, "reason": "file_transfer", "error": message,
                             "end": time.time(), "attempt": task.attempt}
    header.update({k: v for k, v in fields.items() if v is not None})  # type: ignore[typeddict-item]
    try:
        with open(task.stderr_path, "a", encoding="utf-8") as f:
            f.write(message + "\n")
        write_outcome(task.outcome_path, header)
    except OSError:
        pass  # the Completion still carries it
    return Completion.of(task, header)
