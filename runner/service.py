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

What each step decides (the end event of an outcome, a retry, cancel targets, the verdict on a
dead runner's claim, what may be claimed, the task handed to a backend) is a pure function of
``runner.engine``; the writes go through ``runner.journal``. This module holds the loop and its
state: the runs served (``active``: ``ActiveRun`` by path), those finished or set aside, the
backends by executor config, the pending hints, and this runner's id and fence. How the loop is
paced comes in as ``RunnerSettings`` (built from the config file by ``runner.daemon``).

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

import json
import os
import signal
import sys
import threading
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import wait as wait_for
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Set, Tuple, Type, cast

from runner import engine, outcome
from runner.outcome import OutcomeHeader
from runner.backends import Backend, Completion, Task, backend_class
from runner.fencing import Fences
from runner.journal import ActiveRun, Journal, link_final_result
from runner.liveness import HOST, RunnerRegistry, fence_path, heartbeat_path, write_heartbeat
from runner.rundir import (RESULTS, RunDir, RunDirError, clear_unreadable, files_stamp,
                           is_run_name, mark_unreadable)
from runner.state import CANCELLED, COMPLETED, FAILED, Event, Handle, failure_message


@dataclass
class RunnerSettings:
    """How a runner paces its loop (``runner.*`` in the config file, read by ``runner.daemon``)."""

    idle_timeout: float = 30.0  # exit after this long with nothing to do
    rescan_interval: float = 2.0  # the full rescan of the home under the hints
    heartbeat_interval: float = 5.0  # heartbeat touch, batched fsync, fence check
    poll_interval: float = 1.0  # the polling observer's period (network filesystems)
    poll: bool = False  # use the polling observer even where inotify works
    workers: Optional[int] = None  # local pool size (None: the executor's, else one per core)


class Runner:
    """Serves the runs of one home (or only the runs given)."""

    def __init__(self, home: Path, settings: RunnerSettings, runs: Optional[List[str]] = None,
                 backends: Callable[[str], Type[Backend]] = backend_class) -> None:
        """``backends``: the backend class for an executor type (``runner.backends``)."""
        self.home = home.absolute()
        self.settings = settings
        self.only = set(runs or [])
        self.id = f"{HOST}:{os.getpid()}:{int(time.time() * 1000)}"
        self.backend_class = backends
        self.active: Dict[str, ActiveRun] = {}
        self.finished_runs: Set[str] = set()
        # Runs set aside: name -> (why, the stamp of their files when that was found).
        self.unreadable: Dict[str, Tuple[str, Any]] = {}
        self.backends: Dict[str, Backend] = {}
        self.registry = RunnerRegistry(self.home, self.id)
        self.fence = str(fence_path(self.home, self.id))  # our claims' fencing token
        self.fences = Fences(self.home, self._log)  # fences of the claims we take over
        self._hints: Set[str] = set()
        self._hint_lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._stop = False
        self.stop_signal: Optional[int] = None  # the signal that ended the loop, if one did
        self.claims_paused = False  # a runner job handing over claims nothing more
        self.watcher: Any = None
        self.journal = Journal(self._log)
        self._beat_written = False

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

    def record_start(self, task: Task, start: float, pid: Optional[int] = None,
                     host: Optional[str] = None) -> None:
        """The attempt started on its worker or host (QUEUED -> RUNNING); written with the
        step's other events, never on its own."""
        run = self.active.get(task.run)
        if run is not None:
            event: Event = {"ev": "start", "node": task.node, "attempt": task.attempt,
                            "start": round(start, 6)}
            if pid is not None:
                event["pid"] = pid
            if host is not None:
                event["host"] = host
            run.pending.append(event)

    def record_pending(self, task: Task, reason: str) -> None:
        """Why a QUEUED attempt waits, as its scheduler says (Slurm's PENDING reason)."""
        run = self.active.get(task.run)
        if run is not None:
            run.pending.append({"ev": "pending", "node": task.node, "attempt": task.attempt,
                                "reason": reason})

    # -- main loop -----------------------------------------------------------------------
    def run_forever(self) -> int:
        settings = self.settings
        self.home.mkdir(parents=True, exist_ok=True)
        self._write_heartbeat()
        from runner.watch import Watcher

        self.watcher = Watcher(self.hint, str(self.home), force_poll=settings.poll,
                               poll_interval=settings.poll_interval)
        self.watcher.watch(str(self.home))
        self._log(f"runner {self.id} serving {self.home} ({self.watcher.mode})")
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        self.fences.remove_dead()
        last_scan = last_beat = 0.0
        idle_since: Optional[float] = None
        try:
            while not self._stop:
                now = time.time()
                hints = self._take_hints()
                if now - last_scan >= settings.rescan_interval:
                    self._rescan()
                    last_scan = now
                elif hints:
                    self._apply_hints(hints)
                self._collect()
                self._schedule_all()
                self._flush()
                if now - last_beat >= settings.heartbeat_interval:
                    self._check_fenced()
                    self._write_heartbeat()
                    self.journal.fsync_dirty(self.active.values())
                    last_beat = now
                busy = bool(self.active) or any(b.busy() for b in self.backends.values())
                if busy:
                    idle_since = None
                elif idle_since is None:
                    idle_since = now
                elif now - idle_since >= settings.idle_timeout:
                    break
                self._wait(min(settings.rescan_interval - (time.time() - last_scan),
                               settings.heartbeat_interval - (time.time() - last_beat)))
        finally:
            self._shutdown()
        return 0

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.stop_signal = signum
        self.stop()

    def stop(self) -> None:
        """End the loop soon, as SIGTERM does (from any thread)."""
        self._stop = True
        self.wake()

    def pause_claims(self) -> None:
        """Claim no more tasks (from any thread); what runs goes on (``runner.runner_job``)."""
        self.claims_paused = True
        self.wake()

    def _wait(self, timeout: float) -> None:
        waitables: List[Any] = [self._wake_r]
        for backend in self.backends.values():
            waitables.extend(backend.waitables())
            hint = backend.next_poll_in()
            if hint is not None:
                timeout = min(timeout, hint)
        journal = self.journal
        if journal.stalled():
            timeout = min(timeout, journal.stalled_until - time.time())
        elif any(r.pending and not r.busy() for r in self.active.values()):
            timeout = 0
        if journal.retry_at:  # a run left alone for its held lock is due to be tried again
            timeout = min(timeout, max(0.0, journal.retry_at - time.time()))
            if journal.retry_at <= time.time():
                journal.retry_at = 0.0
        wait_for(waitables, timeout=max(0.0, timeout))

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

    # -- reading a run's progress ----------------------------------------------------------
    def _refresh(self, run: ActiveRun, full: bool = False) -> None:
        """Fold new events; apply cancel requests; on a full pass, adopt dead runners' work."""
        run.catch_up()
        self._check_cancel(run)
        if full:
            self._adopt_orphans(run)
            self._check_children(run)
        self._maybe_finish(run)

    def _adopt_orphans(self, run: ActiveRun) -> None:
        """Nodes claimed by runners that died: finish them from their outcome, or rerun."""
        self._drop_lost_claims(run)
        for node in list(run.schedule.active):
            if node in run.ours:
                continue
            task = run.state.tasks.get(node)
            verdict = engine.orphan_verdict(task, self.registry.alive,
                                            lambda: run.dir.outcome_header(node))
            if verdict.kind == "skip":
                continue
            assert task is not None
            if verdict.kind == "child":
                assert task.child is not None
                run.children[node] = task.child
            elif verdict.kind == "started":
                assert verdict.header is not None
                self._follow_child(run, node, verdict.header["child"])
            elif verdict.kind == "end":
                assert verdict.header is not None
                self._end(run, node, task.attempt, verdict.header)
            elif verdict.kind == "reattach":
                handle = dict(task.handle or {})  # the re-claim below clears task.handle
                spec = engine.task_for(run.manifest, node, task.attempt, run.path, self.fence)
                backend = self._backend(spec.executor, run.env)
                claimed = self._claim(run, [node], attempt=task.attempt, adopt=True)
                if run.busy():
                    continue  # its lock is held elsewhere: a later pass adopts it
                if claimed and backend.reattach(spec, handle):
                    run.ours[node] = spec
                    continue
                run.schedule.put_back([node])  # it never finished: run it again
            else:
                run.schedule.put_back([node])  # it never finished: run it again

    def _check_cancel(self, run: ActiveRun) -> None:
        try:
            stamp = run.dir.cancel_path.stat().st_mtime
        except FileNotFoundError:
            return
        if stamp == run.cancel_stamp:
            return
        run.cancel_stamp = stamp
        plan = engine.cancel_targets(
            run.dir.cancel_request() or {}, run.schedule.unfinished(), run.schedule.finished,
            run.ours, run.children, run.schedule.active,
            lambda n: getattr(run.state.tasks.get(n), "runner", None), self.registry.alive)
        for node, action in plan:
            if action == "backend":
                self._backend(run.ours[node].executor, run.env).cancel(run.path, node)
                continue
            if action == "child":
                self._cancel_child(run.children.pop(node))
                run.ours.pop(node, None)  # its build task is long done; the child is cancelled
            run.pending.append(engine.cancelled_event(node, child=action == "child"))
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
        header: OutcomeHeader = {"ok": False, "child": child_id, "start": state.started,
                                  "end": state.ended, "attempt": attempt}
        if state.status == COMPLETED:
            payload = outcome.read_outcome_payload(str(child.final_result_path)) or \
                outcome.read_outcome_payload(str(child.result_path(child.manifest.output_node)))
            if payload is not None:
                preview = (child.outcome_header(child.manifest.output_node) or {}).get("preview")
                header["ok"] = True
                if preview:
                    header["preview"] = preview
                # The runner writes it (runner.outcome says why that is safe).
                outcome.write_outcome(str(run.dir.result_path(node)), header, payload)
                self._end(run, node, attempt, header)
                return
        event = engine.child_failed_event(node, attempt, child_id, state.status, state.error)
        run.pending.append(event)
        run.schedule.finish(node, event["status"])

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
        if engine.should_retry(header, done.attempt, task.executor):
            run.schedule.put_back([done.node])  # Covalent's executor ``retries``
            return
        self._end(run, done.node, done.attempt, header)

    def _end(self, run: ActiveRun, node: int, attempt: int, header: OutcomeHeader) -> None:
        """Record the end of an attempt from its outcome header, and finish the node."""
        claim = run.state.tasks.get(node)
        event = engine.end_event(header, node, attempt,
                                 (claim.started or claim.claimed) if claim else None, time.time())
        run.schedule.finish(node, event["status"])
        run.pending.append(event)

    # -- claiming and submitting -----------------------------------------------------------
    def _schedule_all(self) -> None:
        if self.journal.stalled() or self.claims_paused:
            return  # a claim is an event: none can be written now
        for run in list(self.active.values()):
            if run.state.finished or not run.schedule.ready or run.busy():
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
        for node_id, _ in chosen:
            if node_id in claimed:
                continue
            if engine.claimed_elsewhere(run.state.tasks.get(node_id), self.id):
                run.schedule.mark_active(node_id)
            else:
                run.schedule.put_back([node_id])
        for node_id, backend in chosen:
            if node_id not in claimed:
                continue
            spec = engine.task_for(run.manifest, node_id, claimed[node_id], run.path, self.fence)
            run.ours[node_id] = spec
            try:
                backend.submit(spec)
            except Exception as exc:  # noqa: BLE001 - a backend failing to submit fails the task
                del run.ours[node_id]
                self._end(run, node_id, spec.attempt, {
                    "ok": False, "reason": "submit", "start": time.time(),
                    "error": f"could not submit task '{spec.name}': {type(exc).__name__}: {exc}"})
        for backend in {id(b): b for _, b in chosen}.values():
            backend.flush()

    def _claim(self, run: ActiveRun, nodes: List[int], attempt: Optional[int] = None,
               adopt: bool = False) -> Dict[int, int]:
        """Claim nodes under the run lock after re-reading the log; returns node -> attempt."""
        claimed: Dict[int, int] = {}
        with self.journal.locked(run) as held:
            if not held:
                return {}  # nothing is claimed; the nodes are taken again on a later step
            run.catch_up()
            for node in nodes:
                task = run.state.tasks.get(node)
                verdict = engine.claimable(
                    task, self.id, node in run.ours, adopt, self.registry.alive,
                    lambda number: self._finished_on_disk(run, node, number))
                if verdict == "no":
                    continue
                if verdict == "takeover":
                    assert task is not None and task.runner is not None
                    if not self.fences.fence_off(task.runner):
                        continue  # a dead runner's claim, taken over only once it is fenced off
                claimed[node] = attempt if attempt is not None else \
                    (task.attempt + 1 if task else 1)
            events = engine.claim_events(run.manifest, claimed, self.id, HOST, run.state.status)
            if not self.journal.append(run, run.pending + events):
                return {}  # nothing was written: nothing is claimed
            run.pending = []
        return claimed

    # -- fencing: a runner stopped past the stale limit must not run what others took over ----
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
            run.catch_up()
            for node, task in list(run.ours.items()):
                self._backend(task.executor, run.env).drop(task)
                del run.ours[node]
            run.pending = [e for e in run.pending if engine.still_applies(run.state.tasks, e)]
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

    @staticmethod
    def _finished_on_disk(run: ActiveRun, node: int, attempt: int) -> bool:
        """A dead runner's attempt whose outcome is complete: ``_adopt_orphans`` records it;
        it is never run again."""
        header = run.dir.outcome_header(node)
        return header is not None and header.get("attempt", attempt) == attempt

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
            cls = self.backend_class(type_name)
            if type_name == "local":
                self._close_idle_pools()
                # LocalBackend: the pool's size and the environment it serves
                backend = cls(config, self, size=self.settings.workers,  # type: ignore[call-arg]
                              env=env)
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
        if self.journal.stalled():
            return
        for run in list(self.active.values()):
            if run.busy():
                continue
            with self._run_boundary(run.path):
                self._flush_run(run)

    def _flush_run(self, run: ActiveRun) -> None:
        if run.pending:
            with self.journal.locked(run) as held:
                if not held:
                    return
                run.catch_up()
                if self.journal.append(run, run.pending):
                    run.pending = []
        self._maybe_finish(run)

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
        with self.journal.locked(run) as held:
            if not held:
                return  # tried again on a later step
            run.catch_up()
            if run.state.finished:
                self._retire(run)
                return
            if status == COMPLETED:
                link_final_result(run.dir)
            if not self.journal.append(run, [event]):
                return  # tried again on a later step
        self.journal.fsync_run(run)
        self._retire(run)

    def _retire(self, run: ActiveRun) -> None:
        self.active.pop(run.path, None)
        self.finished_runs.add(run.dir.dispatch_id)
        self.watcher.unwatch(run.path)
        self.watcher.unwatch(str(run.dir.results_dir))
        if run.dirty:
            self.journal.fsync_run(run)
        run.dir.close()
        for backend in self.backends.values():
            backend.release(run.path)
        parent = run.manifest.parent
        if parent:
            parent_run = self.active.get(str(self.home / parent["dispatch_id"]))
            if parent_run is not None and int(parent["node"]) in parent_run.children:
                self._resolve_child(parent_run, int(parent["node"]), run.dir.dispatch_id)

    def _write_heartbeat(self) -> None:
        info = {"id": self.id, "host": HOST, "pid": os.getpid(), "started": self.id.split(":")[-1],
                "home": str(self.home), "runs": sorted(self.only)}
        path = heartbeat_path(self.home, HOST, os.getpid())
        try:
            os.utime(path)
            if not self._beat_written:
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
                    self.journal.append_bounded(run, run.pending, timeout=5.0)
                self.journal.fsync_run(run)
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
