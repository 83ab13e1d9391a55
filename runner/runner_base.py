"""The state a runner keeps and the services every part of its loop uses.

``Runner`` (``runner.service``) is one class in four modules, one job each: this base (the
runs served, the hints and the wake pipe, the events backends report, the backends by executor
config, the heartbeat, the log), ``runner.sublattices`` (sublattice nodes and their child
runs), ``runner.claims`` (claiming and submitting, fencing, other runners' claims, cancel
requests) and ``runner.service`` (the loop: discovery, collecting outcomes, writing, finishing).
What each step decides is a pure function of ``runner.engine``; the writes go through
``runner.journal``.
"""
from __future__ import annotations

import importlib
import json
import os
import sys
import threading
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Set, Tuple, Type, cast

from runner import engine
from runner.backends import Backend, Completion, Task, backend_class
from runner.cache import DEFAULT_MAX_SIZE, ResultCache
from runner.fencing import Fences
from runner.journal import ActiveRun, Journal
from runner.liveness import HOST, RunnerRegistry, fence_path, heartbeat_path, write_heartbeat
from runner.outcome import OutcomeHeader
from runner.rundir import RESULTS, RunDirError, files_stamp, mark_unreadable
from runner.state import Event, Handle


@dataclass
class RunnerSettings:
    """How a runner paces its loop (``runner.*`` in the config file, read by ``runner.daemon``)."""

    idle_timeout: float = 30.0  # exit after this long with nothing to do
    rescan_interval: float = 2.0  # the full rescan of the home under the hints
    heartbeat_interval: float = 5.0  # heartbeat touch, batched fsync, fence check
    poll_interval: float = 1.0  # the polling observer's period (network filesystems)
    poll: bool = False  # use the polling observer even where inotify works
    workers: Optional[int] = None  # local pool size (None: the executor's, else one per core)
    cache_max_size: int = DEFAULT_MAX_SIZE  # cache.max_size: the result cache's bound in bytes


class RunnerBase:
    """The state and common steps of a ``Runner``, which serves the runs of one home (or only
    the runs given)."""

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
        self.cache = ResultCache(self.home, settings.cache_max_size)

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
            if task.speculative:  # a follow-on's start follows its claim (runner.follow_on)
                task.early_start = event
                return
            run.pending.append(event)

    def record_pending(self, task: Task, reason: str) -> None:
        """Why a QUEUED attempt waits, as its scheduler says (Slurm's PENDING reason)."""
        run = self.active.get(task.run)
        if run is not None:
            run.pending.append({"ev": "pending", "node": task.node, "attempt": task.attempt,
                                "reason": reason})

    # -- one run's fault stays that run's; the parts' common steps --------------------------- -----------------------------------------------------------
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

    def _end(self, run: ActiveRun, node: int, attempt: int, header: OutcomeHeader) -> None:
        """Record the end of an attempt from its outcome header, and finish the node."""
        claim = run.state.tasks.get(node)
        event = engine.end_event(header, node, attempt,
                                 (claim.started or claim.claimed) if claim else None, time.time())
        run.schedule.finish(node, event["status"])
        run.pending.append(event)
        self._cache_result(run, node, event["status"], event.get("at"))

    def _cache_result(self, run: ActiveRun, node: int, status: str,
                      at: Optional[List[Any]] = None) -> None:
        """Implemented by ``runner.cache_hook.CacheHook`` (a completed result enters the cache;
        ``at``: where it is packed, from its end event, which is not appended yet)."""

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

    def _warm_pool(self) -> None:
        """A runner forked by a dispatch starts the local pool for that dispatch's environment
        at once: the workers' fork and start (~20 ms) then overlap with the run being written,
        not with its first task. (A run with another environment gets its own pool; this one,
        idle, is closed then.)"""
        from runner import fork_start
        from runner.journal import pool_env

        if fork_start.dispatch_env is None:
            return
        for name in fork_start.worker_modules:  # the workers, forked below, inherit them
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001 - a worker imports it itself (and says why)
                pass
        backend = self._backend({"type": "local"}, pool_env(*fork_start.dispatch_env))
        start = getattr(backend, "start_workers", None)
        if start is not None:
            start()

    def _close_idle_pools(self) -> None:
        """Before a pool for a new environment starts: the pools of other environments with
        nothing to do go (they start again if their environment dispatches again)."""
        for key, backend in list(self.backends.items()):
            if key.startswith("local:") and not backend.busy():
                del self.backends[key]
                backend.close()

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

    def _log(self, message: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        try:
            print(f"{stamp} {message}", file=sys.stderr, flush=True)
        except OSError:
            pass  # runner.log is on the full disk too: the runner goes on without it

    def _activate(self, path: str) -> None:
        """Serve the run at ``path`` (``Runner``: a sublattice's child run is served at once)."""
        raise NotImplementedError

    def _on_completion(self, done: Completion) -> None:
        """Record a finished attempt (``Runner``)."""
        raise NotImplementedError
