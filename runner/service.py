"""The runner: one mostly idle loop that runs the ready tasks of the runs under a home.

Loop (single thread; watchdog's observer thread only writes hints to a pipe):

1. wait for a hint (a watched directory changed), a backend's news (a worker's pipe), or a timer;
2. collect finished attempts from the backends and record them (``end`` events, in one locked
   append per run), which makes their dependents ready;
3. refresh the runs the hints name: new runs, cancel requests, other runners' progress;
4. claim ready nodes (``claim`` events, one locked append per run) and submit them;
5. every ``rescan_interval``: rescan the home (the safety net under the hints), take over the
   claims of dead runners, resolve finished sublattice runs; every ``heartbeat_interval``:
   touch the heartbeat file, fsync the event logs written since the last time, and snapshot
   the large live runs that are due for it (``runner.live_snapshot``).

What each step decides (the end event of an outcome, a retry, cancel targets, the verdict on a
dead runner's claim, what may be claimed, the task handed to a backend) is a pure function of
``runner.engine``; the writes go through ``runner.journal``. This module holds the loop; its
state (the runs served, ``active``: ``ActiveRun`` by path, those finished or set aside, the
backends by executor config, the pending hints, and this runner's id and fence) and the steps
every part shares are ``runner.runner_base``'s, sublattice children ``runner.sublattices``',
claims, fencing, orphans and cancels ``runner.claims``'. How the loop is paced comes in as
``RunnerSettings`` (built from the config file by ``runner.daemon``), the backends as a
look-up by executor type.

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

import os
import signal
import time
from multiprocessing.connection import wait as wait_for
from typing import Any, List, Optional, Set

from runner import derived, engine, runner_packs
from runner.backends import Completion
from runner.claims import Claims
from runner.fs import DIR_MODE
from runner.journal import ActiveRun, link_final_result
from runner.live_snapshot import LiveSnapshots
from runner.liveness import HOST, heartbeat_path
from runner.rundir import RunDir, clear_unreadable, files_stamp, is_run_name
from runner.runner_base import RunnerSettings
from runner.snapshot import pulled_from
from runner.state import CANCELLED, COMPLETED, FAILED, Event, failure_message

__all__ = ["Runner", "RunnerSettings"]

# Ends of a follow-on not yet claimed that are not an attempt's outcome: it never ran (its
# parent failed in the worker, or the claim was fenced), or its worker died under it. Such a
# node goes back to the schedule as if it had never left it.
_NOT_RUN_HERE = frozenset({"after_failed", "fenced", "worker_died", "cancelled"})


class Runner(Claims):
    """Serves the runs of one home (or only the runs given)."""

    # -- main loop -----------------------------------------------------------------------
    def run_forever(self) -> int:
        settings = self.settings
        self.home.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
        self._write_heartbeat()
        from runner.watch import Watcher

        self.watcher = Watcher(self.hint, str(self.home), force_poll=settings.poll,
                               poll_interval=settings.poll_interval)
        self.watcher.watch(str(self.home))
        self._log(f"runner {self.id} serving {self.home} ({self.watcher.mode})")
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        self.fences.remove_dead()
        self._warm_pool()
        live_snapshots = LiveSnapshots()
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
                    live_snapshots.tick(list(self.active.values()), self._write_snapshot)
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
        if pulled_from(path) is not None:  # a copy of another host's run: its runner's own
            self.finished_runs.add(os.path.basename(path))
            return
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
            self._write_snapshot(run)  # a run finished before snapshots were written
            rundir.close()
            return
        self.active[path] = run
        self.watcher.watch(path)
        if any(e.get("type", "local") != "local" for e in run.manifest.executors.values()):
            # outcomes written by other hosts; local ones arrive through the pool's pipes
            self.watcher.optional_path(str(rundir.results_dir))
        self._refresh(run, full=True)

    # -- reading a run's progress ----------------------------------------------------------
    def _refresh(self, run: ActiveRun, full: bool = False) -> None:
        """Fold new events; apply cancel requests; on a full pass, adopt dead runners' work."""
        run.catch_up()
        self._check_cancel(run)
        if full:
            self._adopt_orphans(run)
            self._check_children(run)
        self._maybe_finish(run)

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
        if task.speculative:  # a follow-on not yet claimed (runner.follow_on)
            if header.get("ok") or header.get("reason") not in _NOT_RUN_HERE:
                # It ran (and failed, perhaps: once, as a claimed task would have): recorded
                # once its claim is written. (A worker sends a follow-on's end with its
                # parent's, so this is the usual case, not a race: runner.worker_replies.)
                task.early_done.append(done)
                return
            del run.ours[done.node]  # never claimed: as if it had never left the schedule
            if header.get("reason") == "cancelled":  # what a cancel does to a waiting node
                run.pending.append(engine.cancelled_event(done.node))
                run.schedule.finish(done.node, CANCELLED)
            return
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

    def _write_snapshot(self, run: ActiveRun) -> None:
        """The run's snapshot for its readers (``runner.derived``): as it finishes, or while
        it runs (``runner.live_snapshot``); a run directory this runner may not write, or a
        full disk, goes without (it is only a cache)."""
        if run.dir.events_identity() is None or run.dir.snapshot_is_current():
            return
        try:
            derived.write(run.dir, run.manifest, run.state)
        except Exception as exc:  # noqa: BLE001 - never the run's fault nor the runner's
            self._log(f"run {run.dir.dispatch_id}: no snapshot written ({exc})")

    def _retire(self, run: ActiveRun) -> None:
        self.active.pop(run.path, None)
        self.finished_runs.add(run.dir.dispatch_id)
        self.watcher.unwatch(run.path)
        self.watcher.unwatch(str(run.dir.results_dir))
        if run.dirty:
            self.journal.fsync_run(run)
        self._write_snapshot(run)
        run.dir.close()
        for backend in self.backends.values():
            backend.release(run.path)
        runner_packs.release(run.path)  # this process's packs of the run (SSH, cache hits)
        parent = run.manifest.parent
        if parent:
            parent_run = self.active.get(str(self.home / parent["dispatch_id"]))
            if parent_run is not None and int(parent["node"]) in parent_run.children:
                self._resolve_child(parent_run, int(parent["node"]), run.dir.dispatch_id)

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
