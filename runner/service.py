"""The runner: one mostly idle loop that runs the ready tasks of the runs under a home.

Loop (single thread; watchdog's observer thread only writes hints to a pipe):

1. wait for a hint (a watched directory changed), a backend's news (a worker's pipe), or a timer;
2. collect finished attempts from the backends and record them (``end`` events, in one locked
   append per run), which makes their dependents ready;
3. refresh the runs the hints name: new runs, cancel requests, other runners' progress;
4. claim ready nodes (``claim`` events, one locked append per run) and submit them;
5. every ``rescan_interval``: rescan the home (the safety net under the hints), take over the
   claims of dead runners, resolve finished sublattice runs; every ``heartbeat_interval``:
   touch the heartbeat file and fsync the event logs written since the last time.

A runner with nothing to do for ``idle_timeout`` seconds exits. Several runners may serve one
home: a claim is made under the run's lock after re-reading the log, so a node is claimed once.

One run's fault costs only that run. Each run's processing (activation, refresh, claims,
completions, writes) runs inside ``_run_boundary``: a run directory found damaged (any
``RunDirError``) or any other error in its processing sets the run aside as unreadable (logged
once, tried again when its files change) and the loop goes on with the others. The loop never
waits long for a run's lock: a lock held elsewhere (a stopped process) makes that run wait for a
later step while the others are served.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import sys
import threading
import time
import traceback
from contextlib import contextmanager
from multiprocessing.connection import wait as wait_for
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Set, Tuple, cast

from runner import worker
from runner.backends import Backend, Completion, Task, backend_class
from runner.config import check_config, get_value
from runner.fs import FILE_MODE, atomic_write
from runner.liveness import (HOST, RunnerRegistry, fence_path, heartbeat_path,
                             pid_alive, runners_dir, write_heartbeat)
from runner.locks import holder, try_acquire
from runner.manifest import PARAMETER, NodeSpec
from runner.rundir import (RESULTS, RunDir, RunDirError, clear_unreadable, files_stamp,
                           is_run_name, mark_unreadable)
from runner.scheduler import Schedule
from runner.state import (CANCELLED, COMPLETED, DISPATCHING, FAILED, RUNNING, STARTING,
                          Event, Handle, apply, failure_message)


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


class Runner:
    """Serves the runs of one home (or only the runs given)."""

    def __init__(self, home: Path, runs: Optional[List[str]] = None, poll: bool = False,
                 idle_timeout: Optional[float] = None, workers: Optional[int] = None) -> None:
        check_config()  # a wrong-typed value would fail the loop later, for every run
        self.home = home.absolute()
        self.only = set(runs or [])
        self.id = f"{HOST}:{os.getpid()}:{int(time.time() * 1000)}"
        self.idle_timeout = float(idle_timeout if idle_timeout is not None
                                  else get_value("runner.idle_timeout", 30.0))
        self.rescan_interval = float(get_value("runner.rescan_interval", 2.0))
        self.heartbeat_interval = float(get_value("runner.heartbeat_interval", 5.0))
        self.poll_interval = float(get_value("runner.poll_interval", 1.0))
        self.force_poll = poll
        self.workers = workers or get_value("runner.workers")
        self.active: Dict[str, ActiveRun] = {}
        self.finished_runs: Set[str] = set()
        # Runs set aside: name -> (why, the stamp of their files when that was found).
        self.unreadable: Dict[str, Tuple[str, Any]] = {}
        self.backends: Dict[str, Backend] = {}
        self.registry = RunnerRegistry(self.home, self.id)
        self.fence = str(fence_path(self.home, self.id))  # our claims' fencing token
        self._fenced: Set[str] = set()  # runners whose claims we fenced off
        self._hints: Set[str] = set()
        self._hint_lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._stop = False
        self.watcher: Any = None
        # After an event log could not be written (a full disk), writes wait until then.
        self._stalled_until = 0.0
        self._write_error: Optional[str] = None
        self._retry_at = 0.0  # when the first run whose lock was held elsewhere is tried again

    # -- hints ---------------------------------------------------------------------------
    def hint(self, path: str) -> None:
        """Called from the watcher thread (and by backends): something changed at ``path``."""
        with self._hint_lock:
            first = not self._hints
            self._hints.add(path)
        if first:
            self.wake()

    def wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except BlockingIOError:
            pass

    def _take_hints(self) -> Set[str]:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass
        with self._hint_lock:
            hints, self._hints = self._hints, set()
        return hints

    # -- services for backends ------------------------------------------------------------
    def record_handle(self, task: Task, handle: Dict[str, Any]) -> None:
        run = self.active.get(task.run)
        if run is not None:
            # Backends build their handles as plain dicts (with fields of their own).
            run.pending.append({"ev": "handle", "node": task.node, "attempt": task.attempt,
                                "handle": cast(Handle, handle)})

    # -- main loop -----------------------------------------------------------------------
    def run_forever(self) -> int:
        self.home.mkdir(parents=True, exist_ok=True)
        self._write_heartbeat()
        from runner.watch import Watcher

        self.watcher = Watcher(self.hint, str(self.home), force_poll=self.force_poll,
                               poll_interval=self.poll_interval)
        self.watcher.watch(str(self.home))
        self._log(f"runner {self.id} serving {self.home} ({self.watcher.mode})")
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        self._remove_dead_fences()
        last_scan = last_beat = 0.0
        idle_since: Optional[float] = None
        try:
            while not self._stop:
                now = time.time()
                hints = self._take_hints()
                if now - last_scan >= self.rescan_interval:
                    self._rescan()
                    last_scan = now
                elif hints:
                    self._apply_hints(hints)
                self._collect()
                self._schedule_all()
                self._flush()
                if now - last_beat >= self.heartbeat_interval:
                    self._check_fenced()
                    self._write_heartbeat()
                    self._fsync_logs()
                    last_beat = now
                busy = bool(self.active) or any(b.busy() for b in self.backends.values())
                if busy:
                    idle_since = None
                elif idle_since is None:
                    idle_since = now
                elif now - idle_since >= self.idle_timeout:
                    break
                self._wait(min(self.rescan_interval - (time.time() - last_scan),
                               self.heartbeat_interval - (time.time() - last_beat)))
        finally:
            self._shutdown()
        return 0

    def _on_signal(self, signum: int, frame: Any) -> None:
        self._stop = True
        self.wake()

    def _wait(self, timeout: float) -> None:
        waitables: List[Any] = [self._wake_r]
        for backend in self.backends.values():
            waitables.extend(backend.waitables())
            hint = backend.next_poll_in()
            if hint is not None:
                timeout = min(timeout, hint)
        if self._stalled():
            timeout = min(timeout, self._stalled_until - time.time())
        elif self._has_ready_work():
            timeout = 0
        if self._retry_at:  # a run left alone for its held lock is due to be tried again
            timeout = min(timeout, max(0.0, self._retry_at - time.time()))
            if self._retry_at <= time.time():
                self._retry_at = 0.0
        wait_for(waitables, timeout=max(0.0, timeout))

    def _has_ready_work(self) -> bool:
        return any(r.pending and not self._busy(r) for r in self.active.values())


    def _stalled(self) -> bool:
        return time.time() < self._stalled_until

    # -- discovering runs ----------------------------------------------------------------
    def _rescan(self) -> None:
        try:
            names = os.listdir(self.home)
        except FileNotFoundError:
            names = []
        for name in names:
            if not is_run_name(name):
                continue
            path = str(self.home / name)
            if path in self.active or name in self.finished_runs:
                continue
            if self.only and name not in self.only:
                continue
            if name in self.unreadable:
                if self.unreadable[name][1] == files_stamp(path):
                    continue
                del self.unreadable[name]  # changed (repaired?): read it again
            self._activate(path)
        for run in list(self.active.values()):
            with self._run_boundary(run.path):
                self._refresh(run, full=True)

    def _apply_hints(self, hints: Set[str]) -> None:
        home = str(self.home)
        for path in hints:
            parent = os.path.dirname(path)
            if parent == home:
                name = os.path.basename(path)
                if path in self.active:
                    with self._run_boundary(path):
                        self._refresh(self.active[path])
                elif is_run_name(name) and name not in self.finished_runs and \
                        name not in self.unreadable and (not self.only or name in self.only):
                    self._activate(path)
                continue
            run = self.active.get(parent) or self.active.get(os.path.dirname(parent))
            if run is not None:
                with self._run_boundary(run.path):
                    self._refresh(run)

    def _activate(self, path: str) -> None:
        with self._run_boundary(path):
            self._start_serving(path)

    def _start_serving(self, path: str) -> None:
        rundir = RunDir(path)
        if not rundir.exists():
            return
        try:
            run = ActiveRun(rundir)
        except BaseException:
            rundir.close()
            raise
        clear_unreadable(self.home, rundir.dispatch_id)  # readable now (repaired, if it was not)
        if run.state.finished:
            self.finished_runs.add(rundir.dispatch_id)
            rundir.close()
            return
        self.active[path] = run
        self.watcher.watch(path)
        if any(e.get("type", "local") != "local" for e in run.manifest.executors.values()):
            # outcomes written by other hosts; local ones arrive through the pool's pipes
            self.watcher.optional_path(str(rundir.results_dir))
        self._refresh(run, full=True)

    # -- one run's fault stays that run's ----------------------------------------------------
    @contextmanager
    def _run_boundary(self, path: str) -> Iterator[None]:
        """Run one run's processing; an error in it sets that run aside, not the runner."""
        try:
            yield
        except Exception as exc:  # noqa: BLE001 - any fault of one run must not stop the others
            self._set_aside(path, exc)

    def _set_aside(self, path: str, exc: Exception) -> None:
        """Stop serving a run that cannot be processed: forget it (its attempts here are
        cancelled), log why once, and try it again only when its files change."""
        name = os.path.basename(path)
        reason = str(exc) if isinstance(exc, RunDirError) else \
            f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        run = self.active.pop(path, None)
        if run is not None:
            for node, task in list(run.ours.items()):
                try:
                    self._backend(task.executor).cancel(run.path, node)
                except Exception:  # noqa: BLE001 - best effort: the run is set aside anyway
                    pass
            run.ours.clear()
            run.dir.close()
        if self.watcher is not None:
            self.watcher.unwatch(path)
            self.watcher.unwatch(os.path.join(path, RESULTS))
        if name not in self.unreadable:
            detail = "" if isinstance(exc, (RunDirError, OSError)) else \
                "\n" + traceback.format_exc().rstrip()
            self._log(f"run {name} is unreadable, not serving it: {reason}{detail}")
        self.unreadable[name] = (reason, files_stamp(path))
        mark_unreadable(self.home, name, reason)

    @contextmanager
    def _locked(self, run: ActiveRun) -> Iterator[bool]:
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
        self._retry_at = min(self._retry_at or run.busy_until, run.busy_until)

    @staticmethod
    def _busy(run: ActiveRun) -> bool:
        return run.busy_until > time.time()

    # -- reading a run's progress ----------------------------------------------------------
    def _refresh(self, run: ActiveRun, full: bool = False) -> None:
        """Fold new events; apply cancel requests; on a full pass, adopt dead runners' work."""
        self._absorb(run, run.dir.read_new_events())
        self._check_cancel(run)
        if full:
            self._adopt_orphans(run)
            self._check_children(run)
        self._maybe_finish(run)

    def _absorb(self, run: ActiveRun, events: List[Event], folded: bool = False) -> None:
        """Bring the schedule up to date with events (folding them into the state first,
        unless ``append_events`` already did)."""
        for event in events:
            if not folded:
                apply(run.state, event)
            node = event.get("node")
            if node is None:
                continue
            if not 0 <= node < len(run.manifest.nodes):
                continue  # no such node: ignored, as the fold at activation ignores it
            task = run.state.tasks[int(node)]
            if task.finished:
                run.schedule.finish(int(node), task.status)
            elif event.get("ev") in ("claim", "dispatching") and int(node) not in run.ours:
                run.schedule.mark_active(int(node))
                if task.child:
                    run.children[int(node)] = task.child

    def _adopt_orphans(self, run: ActiveRun) -> None:
        """Nodes claimed by runners that died: finish them from their outcome, or rerun."""
        self._drop_lost_claims(run)
        for node in list(run.schedule.active):
            if node in run.ours:
                continue
            task = run.state.tasks.get(node)
            if task is None or task.finished or self.registry.alive(task.runner):
                continue
            if task.status == DISPATCHING and task.child:
                run.children[node] = task.child
                continue
            header = run.dir.outcome_header(node)
            if header is not None and header.get("attempt", task.attempt) == task.attempt:
                if header.get("ok") and header.get("child"):
                    # "child started" (or the child's result, not yet recorded): the node ends
                    # with its child run, never with this file's header.
                    self._follow_child(run, node, header["child"])
                else:
                    run.pending.append(self._end_event(run, node, task.attempt, header))
                continue
            if task.handle and task.backend not in (None, "local"):
                handle = dict(task.handle)  # the re-claim below clears task.handle
                spec = self._task(run, run.manifest.node(node), task.attempt)
                backend = self._backend(spec.executor, run.env)
                claimed = self._claim(run, [node], attempt=task.attempt, adopt=True)
                if self._busy(run):
                    continue  # its lock is held elsewhere: a later pass adopts it
                if claimed and backend.reattach(spec, handle):
                    run.ours[node] = spec
                    continue
            run.schedule.put_back([node])  # it never finished: run it again

    def _check_cancel(self, run: ActiveRun) -> None:
        try:
            stamp = run.dir.cancel_path.stat().st_mtime
        except FileNotFoundError:
            return
        if stamp == run.cancel_stamp:
            return
        run.cancel_stamp = stamp
        request = run.dir.cancel_request() or {}
        targets = set(run.schedule.unfinished()) if request.get("all") else \
            {int(n) for n in request.get("nodes", ())}
        for node in sorted(targets):
            if node in run.schedule.finished:
                continue
            if node in run.ours:
                self._backend(run.ours[node].executor, run.env).cancel(run.path, node)
            elif node in run.children:
                self._cancel_child(run.children[node])
                run.pending.append({"ev": "end", "node": node, "status": CANCELLED,
                                    "error": "cancelled"})
                run.schedule.finish(node, CANCELLED)
            elif node not in run.schedule.active or not self.registry.alive(
                    getattr(run.state.tasks.get(node), "runner", None)):
                run.pending.append({"ev": "end", "node": node, "status": CANCELLED})
                run.schedule.finish(node, CANCELLED)

    def _cancel_child(self, child_id: str) -> None:
        child = RunDir(self.home / child_id)
        if child.exists():
            child.request_cancel()

    def _follow_child(self, run: ActiveRun, node: int, child_id: str) -> None:
        """Sublattice ``node`` started its child run: record it, and serve the child."""
        run.children[node] = child_id
        run.pending.append({"ev": "dispatching", "node": node, "child": child_id})
        child = str(self.home / child_id)
        if child not in self.active:
            self._activate(child)

    def _check_children(self, run: ActiveRun) -> None:
        for node, child_id in list(run.children.items()):
            child = self.active.get(str(self.home / child_id))
            if child is not None and not child.state.finished:
                continue
            self._resolve_child(run, node, child_id)

    def _resolve_child(self, run: ActiveRun, node: int, child_id: str) -> None:
        """A sublattice node ends with its child run: its output is the child's result."""
        child = RunDir(self.home / child_id)
        try:
            state = child.state()
        except (RunDirError, OSError):
            return
        if not state.finished:
            return
        run.children.pop(node, None)
        run.ours.pop(node, None)
        attempt = run.state.tasks[node].attempt if node in run.state.tasks else 1
        header: Dict[str, Any] = {"ok": False, "child": child_id, "start": state.started,
                                  "end": state.ended, "attempt": attempt}
        if state.status == COMPLETED:
            payload = worker.read_outcome_payload(str(child.final_result_path)) or \
                worker.read_outcome_payload(str(child.result_path(child.manifest.output_node)))
            if payload is not None:
                preview = (child.outcome_header(child.manifest.output_node) or {}).get("preview")
                header["ok"] = True
                if preview:
                    header["preview"] = preview
                worker.write_outcome(str(run.dir.result_path(node)), header, payload)
                run.pending.append(self._end_event(run, node, attempt, header))
                return
        status = CANCELLED if state.status == CANCELLED else FAILED
        error = f"sublattice run {child_id} ended {state.status}"
        if state.error:
            error += f": {state.error}"
        run.pending.append({"ev": "end", "node": node, "status": status, "attempt": attempt,
                            "error": error, "child": child_id})
        run.schedule.finish(node, status)

    # -- collecting outcomes ---------------------------------------------------------------
    def _collect(self) -> None:
        for backend in list(self.backends.values()):
            for done in backend.poll():
                with self._run_boundary(done.run):
                    self._on_completion(done)

    def _on_completion(self, done: Completion) -> None:
        run = self.active.get(done.run)
        if run is None:
            return
        task = run.ours.get(done.node)
        if task is None or task.attempt != done.attempt:
            return
        header = done.header
        claim = run.state.tasks.get(done.node)
        if header.get("reason") == "fenced" or claim is None or claim.runner != self.id or \
                claim.attempt != done.attempt:
            # another runner took the claim over (we were stopped past the stale limit)
            del run.ours[done.node]
            self._check_fenced()
            return
        if header.get("ok") and header.get("child"):
            self._follow_child(run, done.node, header["child"])
            return
        del run.ours[done.node]
        retries = int(task.executor.get("retries") or 0)
        if not header.get("ok") and header.get("reason") not in ("cancelled",) and \
                done.attempt <= retries:
            run.schedule.put_back([done.node])  # Covalent's executor ``retries``
            return
        run.pending.append(self._end_event(run, done.node, done.attempt, header))

    def _end_event(self, run: ActiveRun, node: int, attempt: int, header: Dict[str, Any]
                   ) -> Event:
        if header.get("ok"):
            status = COMPLETED
        elif header.get("reason") == "cancelled":
            status = CANCELLED
        else:
            status = FAILED
        claimed = run.state.tasks[node].claimed if node in run.state.tasks else None
        event: Event = {"ev": "end", "node": node, "status": status, "attempt": attempt,
                                 "start": header.get("start") or claimed,
                                 "end": header.get("end", time.time())}
        if header.get("child"):
            event["child"] = header["child"]
        if status == FAILED:
            if header.get("reason") == "exception":
                # Covalent keeps a task's own exception out of ``error`` (it is in stderr).
                lines = (header.get("error") or "").strip().splitlines()
                event["exception"] = lines[-1] if lines else ""
            else:
                event["error"] = header.get("error") or header.get("reason")
        run.schedule.finish(node, status)
        return event

    # -- claiming and submitting -----------------------------------------------------------
    def _schedule_all(self) -> None:
        if self._stalled():
            return  # a claim is an event: none can be written now
        for run in list(self.active.values()):
            if run.state.finished or not run.schedule.ready or self._busy(run):
                continue
            with self._run_boundary(run.path):
                self._schedule(run)

    def _schedule(self, run: ActiveRun) -> None:
        """Claim as many ready nodes as the backends take now, lowest id first."""
        chosen: List[Tuple[int, Backend]] = []
        skipped: List[int] = []
        room: Dict[int, int] = {}
        full: Set[int] = set()
        while True:
            taken = run.schedule.take_ready(1)
            if not taken:
                break
            node_id = taken[0]
            config = run.manifest.executors.get(run.manifest.node(node_id).executor or "local",
                                                {"type": "local"})
            backend = self._backend(config, run.env)
            key = id(backend)
            left = room[key] if key in room else backend.capacity()
            if left <= 0:
                skipped.append(node_id)
                full.add(key)
                if len(full) >= len(self.backends) or len(skipped) > 64:
                    break
                continue
            room[key] = left - 1
            chosen.append((node_id, backend))
        run.schedule.put_back(skipped)
        if not chosen:
            return
        claimed = self._claim(run, [n for n, _ in chosen])
        self._not_claimed(run, [n for n, _ in chosen if n not in claimed])
        for node_id, backend in chosen:
            if node_id not in claimed:
                continue
            spec = self._task(run, run.manifest.node(node_id), claimed[node_id])
            run.ours[node_id] = spec
            try:
                backend.submit(spec)
            except Exception as exc:  # noqa: BLE001 - a backend failing to submit fails the task
                del run.ours[node_id]
                run.pending.append(self._end_event(run, node_id, spec.attempt, {
                    "ok": False, "reason": "submit", "start": time.time(),
                    "error": f"could not submit task '{spec.name}': {type(exc).__name__}: {exc}"}))
        for backend in {id(b): b for _, b in chosen}.values():
            backend.flush()

    def _not_claimed(self, run: ActiveRun, nodes: List[int]) -> None:
        """Nodes we took but did not claim: another runner's claim stays active here (if that
        runner dies, ``_adopt_orphans`` looks for its outcome first); the rest are ready again."""
        for node in nodes:
            task = run.state.tasks.get(node)
            if task is not None and not task.finished and task.attempt > 0 and \
                    task.runner != self.id:
                run.schedule.mark_active(node)
            else:
                run.schedule.put_back([node])

    def _claim(self, run: ActiveRun, nodes: List[int], attempt: Optional[int] = None,
               adopt: bool = False) -> Dict[int, int]:
        """Claim nodes under the run lock after re-reading the log; returns node -> attempt."""
        claimed: Dict[int, int] = {}
        with self._locked(run) as held:
            if not held:
                return {}  # nothing is claimed; the nodes are taken again on a later step
            self._absorb(run, run.dir.read_new_events())
            events: List[Event] = []
            for node in nodes:
                task = run.state.tasks.get(node)
                if task is not None and (task.finished or (
                        task.attempt > 0 and task.runner != self.id and not adopt and
                        (self.registry.alive(task.runner) or
                         self._finished_on_disk(run, node, task.attempt)))):
                    continue
                if task is not None and task.runner == self.id and node in run.ours:
                    continue
                if task is not None and task.runner is not None and task.runner != self.id and \
                        not self._fence_off(task.runner):
                    continue  # a dead runner's claim, taken over only once it is fenced off
                number = attempt if attempt is not None else (task.attempt + 1 if task else 1)
                config = run.manifest.executors.get(run.manifest.node(node).executor or "local", {})
                events.append({"ev": "claim", "node": node, "attempt": number,
                               "runner": self.id, "host": HOST,
                               "backend": str(config.get("type", "local"))})
                claimed[node] = number
            if run.state.status == STARTING and events:
                events.insert(0, {"ev": "run", "status": RUNNING, "runner": self.id})
            if not self._append(run, run.pending + events):
                return {}  # nothing was written: nothing is claimed
            run.pending = []
        return claimed

    # -- fencing: a runner stopped past the stale limit must not run what others took over ----
    def _fence_off(self, runner_id: str) -> bool:
        """Before a claim of ``runner_id`` is superseded: create its fence, so that its pool
        workers (alive if it was only stopped) start none of its tasks. False if the fence
        cannot be written (then the claim must not be taken)."""
        if runner_id in self._fenced:
            return True
        host, _, rest = runner_id.partition(":")
        pid = rest.partition(":")[0]
        if host == HOST and pid.isdigit() and not pid_alive(int(pid)):
            self._fenced.add(runner_id)  # dead: its workers died with it (PR_SET_PDEATHSIG)
            return True
        try:
            os.close(os.open(fence_path(self.home, runner_id), os.O_WRONLY | os.O_CREAT, FILE_MODE))
        except OSError as exc:
            self._log(f"cannot fence off runner {runner_id}: {exc}; its claims stay its own")
            return False
        self._fenced.add(runner_id)
        return True

    def _check_fenced(self) -> None:
        """If another runner fenced us off, drop every attempt we hold and go on under a new
        id: the claims of the old one are a dead runner's, adopted from their outcomes (by
        whichever runner gets there first, us included) or run again."""
        if not os.path.exists(self.fence):
            return
        old = self.id
        self._log(f"runner {old} was taken for dead (stopped or stalled past the stale limit) "
                  "and its claims taken over; dropping the attempts it held")
        for run in self.active.values():
            self._absorb(run, run.dir.read_new_events())
            for node, task in list(run.ours.items()):
                self._backend(task.executor, run.env).drop(task)
                del run.ours[node]
            run.pending = [e for e in run.pending if _still_applies(run, e)]
        self.id = f"{HOST}:{os.getpid()}:{int(time.time() * 1000)}"
        self.registry = RunnerRegistry(self.home, self.id)
        self.fence = str(fence_path(self.home, self.id))
        self._beat_written = False
        self._write_heartbeat()

    def _drop_lost_claims(self, run: ActiveRun) -> None:
        """Attempts we hold whose claim is now another runner's (read from the log)."""
        for node, task in list(run.ours.items()):
            claim = run.state.tasks.get(node)
            if claim is not None and not claim.finished and (
                    claim.runner != self.id or claim.attempt != task.attempt):
                self._backend(task.executor, run.env).drop(task)
                del run.ours[node]

    def _remove_dead_fences(self) -> None:
        """Fences of this host's runners that are gone: nothing is left to fence off."""
        try:
            names = os.listdir(runners_dir(self.home))
        except FileNotFoundError:
            return
        for name in names:
            host, _, rest = name.partition(":")
            pid = rest.partition(":")[0]
            if name.endswith(".fenced") and host == HOST and pid.isdigit() and \
                    not pid_alive(int(pid)):
                try:
                    os.unlink(runners_dir(self.home) / name)
                except OSError:
                    pass

    def _finished_on_disk(self, run: ActiveRun, node: int, attempt: int) -> bool:
        """A dead runner's attempt whose outcome is complete: ``_adopt_orphans`` records it;
        it is never run again."""
        header = run.dir.outcome_header(node)
        return header is not None and header.get("attempt", attempt) == attempt

    def _task(self, run: ActiveRun, node: NodeSpec, attempt: int) -> Task:
        inputs = []
        for edge in node.parents:
            parent = run.manifest.node(edge.node)
            if parent.kind == PARAMETER:
                assert parent.blob is not None
                source: Tuple[Any, ...] = ("blob", parent.blob[0], parent.blob[1])
            else:
                source = ("result", edge.node)
            key = edge.index if edge.type == "arg" else edge.param
            inputs.append((edge.type, key, source))
        assert node.blob is not None
        return Task(run=run.path, dispatch_id=run.manifest.dispatch_id, node=node.id,
                    name=node.name, attempt=attempt, fn=node.blob, inputs=inputs,
                    executor=run.manifest.executors.get(node.executor or "local", {}),
                    cwd=run.manifest.cwd, sys_path=run.manifest.sys_path, fence=self.fence)

    def _backend(self, config: Dict[str, Any], env: Optional[Dict[str, Any]] = None) -> Backend:
        """The backend for an executor config; local tasks get the pool of their run's
        environment (one pool per environment: dispatches from one shell share one)."""
        type_name = str(config.get("type", "local"))
        if type_name == "local":
            key = "local" if env is None else f"local:{env['key']}"
        else:
            key = json.dumps(config, sort_keys=True, default=str)
        backend = self.backends.get(key)
        if backend is None:
            cls = backend_class(type_name)
            if type_name == "local":
                self._close_idle_pools()
                # LocalBackend: the pool's size and the environment it serves
                backend = cls(config, self, size=self.workers, env=env)  # type: ignore[call-arg]
            else:
                backend = cls(config, self)
            self.backends[key] = backend
        return backend

    def _close_idle_pools(self) -> None:
        """Before a pool for a new environment starts: the pools of other environments with
        nothing to do go (they start again if their environment dispatches again)."""
        for key, backend in list(self.backends.items()):
            if key.startswith("local:") and not backend.busy():
                del self.backends[key]
                backend.close()

    # -- writing -------------------------------------------------------------------------
    def _flush(self) -> None:
        if self._stalled():
            return
        for run in list(self.active.values()):
            if self._busy(run):
                continue
            with self._run_boundary(run.path):
                self._flush_run(run)

    def _flush_run(self, run: ActiveRun) -> None:
        if run.pending:
            with self._locked(run) as held:
                if not held:
                    return
                self._absorb(run, run.dir.read_new_events())
                if self._append(run, run.pending):
                    run.pending = []
        self._maybe_finish(run)

    def _append(self, run: ActiveRun, events: List[Event]) -> bool:
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
            self._stalled_until = time.time() + 1.0
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
            self._absorb(run, run.dir.read_new_events())
        else:
            self._absorb(run, appended, folded=True)
        return True

    def _maybe_finish(self, run: ActiveRun) -> None:
        if run.state.finished:
            self._retire(run)
            return
        if run.ours or run.children or run.pending or not run.schedule.over:
            return
        status, failed = run.schedule.outcome()
        event: Event = {"ev": "run", "status": status, "runner": self.id}
        if status == FAILED:
            event["error"] = failure_message(failed)
        with self._locked(run) as held:
            if not held:
                return  # tried again on a later step
            self._absorb(run, run.dir.read_new_events())
            if run.state.finished:
                self._retire(run)
                return
            if status == COMPLETED:
                _link_final_result(run.dir)
            if not self._append(run, [event]):
                return  # tried again on a later step
        self._fsync_run(run)
        self._retire(run)

    def _retire(self, run: ActiveRun) -> None:
        self.active.pop(run.path, None)
        self.finished_runs.add(run.dir.dispatch_id)
        self.watcher.unwatch(run.path)
        self.watcher.unwatch(str(run.dir.results_dir))
        if run.dirty:
            self._fsync_run(run)
        run.dir.close()
        for backend in self.backends.values():
            backend.release(run.path)
        parent = run.manifest.parent
        if parent:
            parent_run = self.active.get(str(self.home / parent["dispatch_id"]))
            if parent_run is not None and int(parent["node"]) in parent_run.children:
                self._resolve_child(parent_run, int(parent["node"]), run.dir.dispatch_id)

    def _fsync_run(self, run: ActiveRun) -> None:
        try:
            fd = os.open(run.dir.events_path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError:
            pass
        run.dirty = False

    def _fsync_logs(self) -> None:
        """Batched durability: one fsync per written event log per heartbeat."""
        for run in self.active.values():
            if run.dirty:
                self._fsync_run(run)

    def _write_heartbeat(self) -> None:
        info = {"id": self.id, "host": HOST, "pid": os.getpid(), "started": self.id.split(":")[-1],
                "home": str(self.home), "runs": sorted(self.only)}
        path = heartbeat_path(self.home, HOST, os.getpid())
        try:
            os.utime(path)
            if not getattr(self, "_beat_written", False):
                raise FileNotFoundError
        except FileNotFoundError:
            write_heartbeat(self.home, info)
            self._beat_written = True

    def _shutdown(self) -> None:
        for backend in self.backends.values():
            try:
                backend.close()
            except Exception as exc:  # noqa: BLE001
                self._log(f"closing a backend failed: {exc}")
        for run in list(self.active.values()):
            with self._run_boundary(run.path):
                if run.pending:
                    # Bounded: a lock held by a stopped process must not keep us from exiting;
                    # the outcomes are on disk and whoever serves the run next records them.
                    lock = run.dir.lock(timeout=5.0)
                    if try_acquire(lock, 5.0):
                        try:
                            self._append(run, run.pending)
                        finally:
                            lock.release()
                self._fsync_run(run)
        if self.watcher is not None:
            self.watcher.stop()
        try:
            os.unlink(heartbeat_path(self.home, HOST, os.getpid()))
        except OSError:
            pass
        self._log(f"runner {self.id} exiting")

    def _log(self, message: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        try:
            print(f"{stamp} {message}", file=sys.stderr, flush=True)
        except OSError:
            pass  # runner.log is on the full disk too: the runner goes on without it


# Variables that differ between shells of one session without changing what a task sees.
_VOLATILE_ENV = frozenset({"PWD", "OLDPWD", "SHLVL", "_"})


def _recorded_env(rundir: RunDir) -> Optional[Dict[str, Any]]:
    """The interpreter and environment the run's dispatch recorded, with a key naming them
    (the local pool serving them); None for runs without ``env.json`` (the runner's own)."""
    data = rundir.recorded_env()
    if data is None:
        return None
    python = str(data.get("python") or sys.executable)
    environ = {str(k): str(v) for k, v in data["environ"].items()}
    stable = sorted((k, v) for k, v in environ.items() if k not in _VOLATILE_ENV)
    key = hashlib.sha256(json.dumps([python, stable]).encode()).hexdigest()[:16]
    return {"python": python, "environ": environ, "key": key}


def _still_applies(run: ActiveRun, event: Event) -> bool:
    """A pending event about a node is kept only while that node's attempt is still open."""
    if event.get("node") is None:
        return True
    claim = run.state.tasks.get(int(event["node"]))
    if claim is None:
        return True
    if claim.finished:
        return False
    return "attempt" not in event or int(event["attempt"]) == claim.attempt


def _link_final_result(rundir: RunDir) -> None:
    """``result.pkl``: the output node's outcome, under a name people look for."""
    source = rundir.result_path(rundir.manifest.output_node)
    try:
        if rundir.final_result_path.exists():
            return
        os.link(source, rundir.final_result_path)
    except OSError:
        try:
            atomic_write(rundir.final_result_path, source.read_bytes())
        except OSError:
            pass
