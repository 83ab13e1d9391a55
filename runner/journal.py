"""The runner's side of the event logs: the runs it serves, and how it writes to them.

State:

* ``ActiveRun``: one run being served: its ``RunDir``, the state folded from its log, the
  ``Schedule`` kept in step with that state (``absorb``), the attempts this runner submitted
  (``ours``), its sublattice children, the events waiting to be written (``pending``), whether
  its log was written since its last fsync (``dirty``), and its lock back-off.
* ``Journal``: the writes of one runner to all its runs.

Writes:

* ``locked(run)``: the run's lock if it can be had within a few milliseconds; a lock held
  elsewhere (a stopped process) leaves that run alone for a back-off that doubles up to 2 s,
  while the other runs are served. ``retry_at`` is when the first such run is due again.
* ``append(run, events)``: under the lock, append and fold into our own view. A full disk
  (ENOSPC, EDQUOT) appends nothing and stalls every write for a second (said once in the log,
  and once again when the logs are writable), instead of failing the runner: the caller keeps
  its events, and the tasks' outcomes are already on disk.
* Durability is batched: no fsync per append; ``fsync_dirty`` once per heartbeat for every log
  written since, and ``fsync_run`` when a run finishes or the runner exits.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import sys
import time
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional

from runner.backends.base import Task
from runner.fs import atomic_write
from runner.locks import holder, try_acquire
from runner.rundir import RunDir
from runner.scheduler import Schedule
from runner.state import Event, apply


class ActiveRun:
    """A run this runner is working on."""

    def __init__(self, rundir: RunDir) -> None:
        self.dir = rundir
        self.manifest = rundir.manifest
        self.state = rundir.state()
        self.schedule = Schedule(self.manifest, self.state)
        self.ours: Dict[int, Task] = {}  # attempts we submitted and wait for
        self.children: Dict[int, str] = {}  # sublattice node -> child dispatch id
        self.pending: List[Event] = []  # events to append at the end of the step
        self.cancel_stamp: Optional[float] = None
        self.dirty = False  # events appended since the last fsync
        self.busy_until = 0.0  # its lock was held elsewhere: left alone until then
        self.busy_wait = 0.0  # the current back-off (doubles while the lock stays held)
        self.env = _recorded_env(rundir)

    @property
    def path(self) -> str:
        return str(self.dir.path)

    def busy(self) -> bool:
        """Its lock was found held elsewhere and its back-off has not run out."""
        return self.busy_until > time.time()

    def absorb(self, events: List[Event], folded: bool = False) -> None:
        """Bring the schedule up to date with events (folding them into the state first,
        unless ``append_events`` already did)."""
        for event in events:
            if not folded:
                apply(self.state, event)
            node = event.get("node")
            if node is None:
                continue
            if not 0 <= node < len(self.manifest.nodes):
                continue  # no such node: ignored, as the fold at activation ignores it
            task = self.state.tasks[int(node)]
            if task.finished:
                self.schedule.finish(int(node), task.status)
            elif event.get("ev") in ("claim", "dispatching") and int(node) not in self.ours:
                self.schedule.mark_active(int(node))
                if task.child:
                    self.children[int(node)] = task.child

    def catch_up(self) -> None:
        """Absorb what other processes appended to the log since we last read it."""
        self.absorb(self.dir.read_new_events())


class Journal:
    """One runner's writes to the event logs of its runs."""

    def __init__(self, log: Callable[[str], None]) -> None:
        self._log = log
        # After an event log could not be written (a full disk), writes wait until then.
        self.stalled_until = 0.0
        self._write_error: Optional[str] = None
        self.retry_at = 0.0  # when the first run whose lock was held elsewhere is tried again

    def stalled(self) -> bool:
        return time.time() < self.stalled_until

    @contextmanager
    def locked(self, run: ActiveRun) -> Iterator[bool]:
        """Hold the run's lock if it can be had within a few milliseconds (yields True); if
        another process holds it, yields False and leaves the run alone for a growing back-off
        while the others are served."""
        lock = run.dir.lock()
        if try_acquire(lock):
            run.busy_wait = 0.0
            try:
                yield True
            finally:
                lock.release()
            return
        self._back_off(run)
        yield False

    def _back_off(self, run: ActiveRun) -> None:
        if not run.busy_wait:
            self._log(f"run {run.dir.dispatch_id} is locked by {holder(str(run.dir.lock_path))};"
                      " serving the other runs and retrying")
        run.busy_wait = min(max(run.busy_wait * 2, 0.1), 2.0)
        run.busy_until = time.time() + run.busy_wait
        self.retry_at = min(self.retry_at or run.busy_until, run.busy_until)

    def append(self, run: ActiveRun, events: List[Event]) -> bool:
        """Append under the lock (held by the caller) and fold into our own view. False if
        the log cannot be written now (a full disk): nothing was appended, the caller keeps
        the events, and writes pause for a second instead of failing the runner."""
        if not events:
            return True
        try:
            run.dir.append_events(events)
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            self.stalled_until = time.time() + 1.0
            if self._write_error is None:
                self._log(f"cannot write {run.dir.events_path}: {exc.strerror or exc}; "
                          "retrying every second (tasks keep their results meanwhile)")
            self._write_error = str(exc)
            return False
        if self._write_error is not None:
            self._log("event logs are writable again")
            self._write_error = None
        run.dirty = True
        appended = run.dir.take_appended()
        if appended is None:
            run.catch_up()
        else:
            run.absorb(appended, folded=True)
        return True

    def append_bounded(self, run: ActiveRun, events: List[Event],
                       timeout: float) -> None:
        """At exit: append if the lock comes within ``timeout`` (a lock held by a stopped
        process must not keep the runner from exiting; the outcomes are on disk and whoever
        serves the run next records them)."""
        lock = run.dir.lock(timeout=timeout)
        if try_acquire(lock, timeout):
            try:
                self.append(run, events)
            finally:
                lock.release()

    @staticmethod
    def fsync_run(run: ActiveRun) -> None:
        try:
            fd = os.open(run.dir.events_path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError:
            pass
        run.dirty = False

    def fsync_dirty(self, runs: Iterable[ActiveRun]) -> None:
        """Batched durability: one fsync per written event log per heartbeat."""
        for run in runs:
            if run.dirty:
                self.fsync_run(run)


def link_final_result(rundir: RunDir) -> None:
    """``result.pkl``: the output node's outcome, under a name people look for."""
    node = rundir.manifest.output_node
    source = rundir.result_path(node)
    try:
        if rundir.final_result_path.exists():
            return
        if rundir.outcome_is_packed(node):  # format 2.0: a file of its own, copied out
            data = rundir.outcome_bytes(node)
            if data is not None:
                atomic_write(rundir.final_result_path, data)
            return
        os.link(source, rundir.final_result_path)
    except OSError:
        try:
            atomic_write(rundir.final_result_path, source.read_bytes())
        except OSError:
            pass


# Variables that differ between shells of one session without changing what a task sees.
_VOLATILE_ENV = frozenset({"PWD", "OLDPWD", "SHLVL", "_"})


def _recorded_env(rundir: RunDir) -> Optional[Dict[str, Any]]:
    """The interpreter and environment the run's dispatch recorded, with a key naming them
    (the local pool serving them); None for runs without ``env.json`` (the runner's own)."""
    data = rundir.recorded_env()
    if data is None:
        return None
    return pool_env(str(data.get("python") or sys.executable), data["environ"])


def pool_env(python: str, environ: Dict[str, Any]) -> Dict[str, Any]:
    """An interpreter and environment as the local backend takes them (``python``,
    ``environ``), with the key naming the pool that serves them."""
    environ = {str(k): str(v) for k, v in environ.items()}
    stable = sorted((k, v) for k, v in environ.items() if k not in _VOLATILE_ENV)
    key = hashlib.sha256(json.dumps([python, stable]).encode()).hexdigest()[:16]
    return {"python": python, "environ": environ, "key": key}
