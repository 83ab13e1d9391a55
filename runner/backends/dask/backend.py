"""The Dask backend: tasks run on a ``dask.distributed`` cluster (``DaskExecutor``).

Each attempt is one Dask task, ``dask_task.run_attempt``, submitted to the scheduler at the
executor's ``scheduler_address`` with the key ``cov-<dispatch id>-<node>-<attempt>``. On a Dask
worker it runs the shipped worker on the task's bundle in a child process of its own (forked
by cov's zygote there, ``dask_task.make_plugin``) and returns the outcome file and the logs as
bytes, which this side writes into the run directory (``attempt.write_files``: logs
first, outcome last, each atomically): the Dask workers need neither cov nor the run
directory. What the task prints reaches ``logs/<node>.out|err`` while it runs, through Dask
log events (``dask_task.TOPIC``), and its start (host, pid) makes it RUNNING.

Threads: ``distributed.Client`` is synchronous here and runs its own event loop thread; the
runner's loop never waits for it. One thread of ours (``_serve``) connects, submits, cancels
and collects, fed by a queue; the client's callbacks only put work on that queue (a callback
must not call the client back: it runs on the client's loop). Completions and news go to the
runner's thread as a ``ThreadedBackend``.

Restarts: each submitted future is also *published* on the scheduler under its key, which keeps
the attempt alive when its client goes (the runner exits or is killed). The handle
``{"scheduler", "key"}`` lets the next runner take the future back by that name
(``reattach``) and collect it; if the scheduler no longer has it (it restarted), the attempt
is submitted again from its bundle: a clean re-run, nothing of it had reached the run directory.

Cancel: the future is cancelled (also from the published name) and the attempt's process group
is killed on whichever worker runs it (``Client.run`` of ``dask_task.kill_attempt``).

``distributed`` is imported here only when a Dask executor is used (the ``cov[dask]`` extra).
"""
from __future__ import annotations

import logging
import os
import queue
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

from runner import layout, worker
from runner.backends.dask import task as dask_task
from runner.backends.base import Completion, Services, Task, ThreadedBackend, make_bundle
from runner.backends.dask.attempt import DaskAttempt, write_files, write_live
from runner.rundir import RunDir

log = logging.getLogger("cov.dask")

DEFAULT_CONNECT_TIMEOUT = 10.0
MAX_LOSSES = 3  # times an attempt is taken back after the connection to the scheduler dropped
RECONNECT_AFTER = 30.0  # seconds a failed connection stands before the next task tries again
# The file names the remote half uses in its scratch directory (it runs where cov is not).
NAMES = {"worker": layout.WORKER, "bundle": layout.SSH_BUNDLE, "outcome": layout.SSH_OUTCOME,
         "stdout": layout.SSH_STDOUT, "stderr": layout.SSH_STDERR,
         "launch": layout.SSH_LAUNCH_LOG, "pid": layout.SSH_PID}
INSTALL_HINT = "install the Dask extra: pip install 'cov[dask]'"


class DaskBackend(ThreadedBackend):
    """Runs tasks on the Dask cluster whose scheduler is at ``scheduler_address``."""

    def __init__(self, config: Dict[str, Any], services: Services) -> None:
        super().__init__(config, services)
        self.address = str(config.get("scheduler_address") or "")
        self.timeout = float(config.get("connect_timeout") or DEFAULT_CONNECT_TIMEOUT)
        self._client: Any = None
        self._plugin = ""  # the name of cov's worker plugin on the cluster
        self._refused: Optional[Tuple[float, str]] = None  # (when, why) the last connect failed
        self._inflight: Dict[str, DaskAttempt] = {}  # by key
        self._jobs: "queue.Queue[Optional[Tuple[str, DaskAttempt]]]" = queue.Queue()
        self._thread: Optional[threading.Thread] = None
        # (publish | forget, {key: future}) for the names thread
        self._names: "queue.Queue[Optional[Tuple[str, Dict[str, Any]]]]" = queue.Queue()
        self._names_thread: Optional[threading.Thread] = None
        self._closing = False

    # -- the runner's side (loop thread) ----------------------------------------------------------
    def busy(self) -> bool:
        return bool(self._inflight or self._done)

    def submit(self, task: Task) -> None:
        self._queue("submit", DaskAttempt(task))

    def reattach(self, task: Task, handle: Dict[str, Any]) -> bool:
        if not handle.get("key") or handle.get("scheduler") != self.address:
            return False
        attempt = DaskAttempt(task)
        attempt.key = str(handle["key"])
        self._queue("reattach", attempt)
        return True

    def cancel(self, run: str, node: int) -> None:
        attempt = self._find(run, node)
        if attempt is not None and not attempt.cancelled:
            attempt.cancelled = True
            self._jobs.put(("cancel", attempt))

    def drop(self, task: Task) -> None:
        """Another runner took the claim over and may collect the same future: forget it here,
        leaving it on the cluster."""
        attempt = self._find(task.run, task.node)
        if attempt is not None and attempt.task.attempt == task.attempt:
            attempt.dropped = True
            with self._lock:
                self._inflight.pop(attempt.key, None)

    def close(self) -> None:
        """The attempts go on, published on the scheduler; the next runner re-attaches."""
        self._closing = True
        super().close()
        self._jobs.put(None)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._names.put(None)
        if self._names_thread is not None:  # a name left behind would hold its result there
            self._names_thread.join(timeout=10)
        if self._client is not None:
            try:
                self._client.close(timeout=5)
            except Exception:  # noqa: BLE001 - exiting anyway
                pass

    def _find(self, run: str, node: int) -> Optional[DaskAttempt]:
        with self._lock:
            return next((a for a in self._inflight.values()
                         if a.task.run == run and a.task.node == node), None)

    def _queue(self, kind: str, attempt: DaskAttempt) -> None:
        with self._lock:
            self._inflight[attempt.key] = attempt
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, daemon=True, name="cov-dask")
            self._thread.start()
        self._jobs.put((kind, attempt))

    # -- our thread -------------------------------------------------------------------------------
    def _serve(self) -> None:
        while True:
            jobs = [self._jobs.get()]
            while True:  # what came meanwhile: the submits of a fan-out go out together
                try:
                    jobs.append(self._jobs.get_nowait())
                except queue.Empty:
                    break
            fresh: List[DaskAttempt] = []  # submitted, to publish in one call
            ended: List[DaskAttempt] = []  # to collect, their results in one round trip
            for job in jobs:
                if job is None:
                    return
                kind, attempt = job
                try:
                    if kind == "done":
                        ended.append(attempt)
                    elif kind == "cancel":
                        self._publish(fresh)  # first: the attempt may be one of them
                        fresh = []
                        self._cancel(attempt)
                    elif not attempt.dropped and not self._closing:
                        if self._start(attempt, reattach=kind == "reattach"):
                            fresh.append(attempt)
                except Exception as exc:  # noqa: BLE001 - a backend bug must not lose the task
                    self._crashed(attempt, exc)
            self._publish(fresh)
            self._collect_all(ended)

    def _crashed(self, attempt: DaskAttempt, exc: Exception) -> None:
        log.exception("dask backend error")
        self._finish(attempt, Completion.failed(
            attempt.task, "backend", f"Dask backend error: {type(exc).__name__}: {exc}"))

    def _publish(self, attempts: List[DaskAttempt]) -> None:
        """Publish newly submitted futures under their keys, so that they outlive this client
        (one call for all, made by the names thread: not on the path of the task); record
        their handles and watch them. A runner that dies before the name is on the scheduler
        leaves an attempt that the next one does not find: it runs it again."""
        if not attempts:
            return
        self._names.put(("publish", {a.key: a.future for a in attempts}))
        self._start_names_thread()
        for attempt in attempts:
            self._watch(attempt)

    def _watch(self, attempt: DaskAttempt) -> None:
        self._emit_handle(attempt.task, {"scheduler": self.address, "key": attempt.key})
        self.services.wake()
        # Runs on the client's loop: only hand the work over.
        attempt.future.add_done_callback(lambda _: self._jobs.put(("done", attempt)))

    def _connect(self) -> Any:
        deadline = time.time() + self.timeout + 5
        while self._client is not None and self._client.status == "connecting" and \
                time.time() < deadline:  # reconnecting after a drop: the outcome decides
            time.sleep(0.1)
        if self._client is not None and self._client.status in ("closing", "closed"):
            self._client = None  # it gave up reconnecting: a new one tries afresh
        if self._client is not None:
            return self._client
        if not self.address:
            raise ConnectionError("the Dask executor has no scheduler_address")
        if self._refused is not None and time.time() - self._refused[0] < RECONNECT_AFTER:
            raise ConnectionError(self._refused[1])  # the tasks of a fan-out fail at once
        try:
            import distributed
        except ImportError:
            raise ConnectionError(f"distributed is not installed: {INSTALL_HINT}") from None
        import cloudpickle

        # Sent as code: the Dask workers need no cov (only cloudpickle and distributed).
        cloudpickle.register_pickle_by_value(dask_task)
        try:
            client = distributed.Client(self.address, timeout=self.timeout,
                                        set_as_default=False)
        except (OSError, TimeoutError) as exc:
            message = f"cannot connect to the Dask scheduler at {self.address}: {exc}"
            self._refused = (time.time(), message)
            raise ConnectionError(message) from None
        client.subscribe_topic(dask_task.TOPIC, self._on_event)
        self._register(client)
        self._client = client
        return client

    def _register(self, client: Any) -> None:
        """The shipped worker and a zygote on every Dask worker (and those that join), once
        per scheduler and cov version (the plugin is idempotent)."""
        with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "zygote.py"),
                  "rb") as f:
            shipped = {**worker.shipped_files(), dask_task.ZYGOTE_FILE: f.read()}
        plugin = dask_task.make_plugin(shipped, layout.WORKER)
        client.register_plugin(plugin)
        self._plugin = plugin.name

    def _start(self, attempt: DaskAttempt, reattach: bool) -> bool:
        """Take a published attempt back, or submit it; True if submitted (to publish)."""
        task = attempt.task
        try:
            client = self._connect()
        except ConnectionError as exc:
            self._finish(attempt, Completion.failed(task, "connection", str(exc)))
            return False
        future = None
        if reattach:
            try:
                future = client.get_dataset(attempt.key, default=None)
            except Exception:  # noqa: BLE001 - gone with a restarted scheduler
                future = None
            if future is not None:
                attempt.future = future
                self._watch(attempt)
                if attempt.cancelled:  # asked while it was being taken back
                    self._jobs.put(("cancel", attempt))
                return False
            log.info("dask: %s is no longer on the scheduler; running it again", attempt.key)
            self._register(client)  # a restarted scheduler has no plugin either
        try:
            bundle = self._bundle(task)
        except RuntimeError as exc:  # an input's result is missing: it cannot start
            self._finish(attempt, Completion.failed(task, "submit", str(exc)))
            return False
        attempt.future = client.submit(dask_task.run_attempt, self._plugin, attempt.key, bundle,
                                       NAMES, self.config.get("python_path") or None,
                                       task.cwd if self.config.get("workdir") else None,
                                       key=attempt.key, pure=False)
        if attempt.cancelled:  # asked while it was being taken back
            self._jobs.put(("cancel", attempt))
        return True

    def _bundle(self, task: Task) -> bytes:
        workdir = self.config.get("workdir")
        if workdir:
            path = os.path.expanduser(str(workdir))
            if self.config.get("create_unique_workdir"):
                path = os.path.join(path, task.dispatch_id, f"node_{task.node}")
            task.cwd = path  # on the Dask worker (run_attempt makes it)
        rundir = RunDir(task.run)
        try:
            return make_bundle(task, rundir)
        finally:
            rundir.close()

    def _cancel(self, attempt: DaskAttempt) -> None:
        client = self._client
        if client is None or attempt.future is None:
            return  # not submitted yet: _start sees it cancelled... or it already ended
        try:
            client.unpublish_dataset(attempt.key)
        except Exception:  # noqa: BLE001 - already collected
            pass
        client.cancel([attempt.future], force=True)
        try:  # a running attempt's thread goes on until its process is gone
            killed = client.run(dask_task.kill_attempt, attempt.key, NAMES, wait=True)
            log.info("dask: cancelled %s (killed %s)", attempt.key,
                     {w: p for w, p in killed.items() if p})
        except Exception as exc:  # noqa: BLE001
            log.warning("dask: killing %s failed: %s", attempt.key, exc)

    def _collect_all(self, attempts: List[DaskAttempt]) -> None:
        """Ended attempts: the results of the finished ones gathered together."""
        attempts = [a for a in attempts if not a.dropped and a.future is not None]
        finished = [a for a in attempts if a.future.status == "finished"]
        results: Dict[str, Any] = {}
        if len(finished) > 1:
            try:
                values = self._client.gather([a.future for a in finished])
                results = {a.key: value for a, value in zip(finished, values)}
            except Exception:  # noqa: BLE001 - one lost its data: each on its own below
                results = {}
        for attempt in attempts:
            try:
                self._collect(attempt, results.get(attempt.key))
            except Exception as exc:  # noqa: BLE001 - a backend bug must not lose the task
                self._crashed(attempt, exc)

    def _collect(self, attempt: DaskAttempt, files: Optional[Dict[str, Any]] = None) -> None:
        task, future = attempt.task, attempt.future
        status = future.status
        if status == "finished":
            done = write_files(attempt, files if files is not None else future.result())
        elif attempt.cancelled:
            done = Completion.cancelled(task)
        elif status == "error":
            exc = future.exception()
            done = Completion.failed(task, "dask", f"Dask could not run task '{task.name}' on "
                                     f"{self.address}: {type(exc).__name__}: {exc}")
        elif attempt.losses < MAX_LOSSES and not self._closing:
            # Cancelled without our asking: the connection to the scheduler dropped. Take the
            # attempt back by its name once reconnected, or (the scheduler restarted and
            # lost it) run it again.
            attempt.losses += 1
            log.warning("dask: lost %s (%s); taking it back", attempt.key, status)
            attempt.future = None
            self._jobs.put(("reattach", attempt))
            return
        else:
            done = Completion.failed(task, "connection", f"the Dask scheduler at {self.address} "
                                                         f"lost task '{task.name}' {MAX_LOSSES} "
                                                         "times")
        if attempt.cancelled and not done.header.get("ok"):
            where: Dict[str, Any] = {k: v for k, v in done.header.items() if k in ("host", "pid")}
            done = Completion.cancelled(task, **where)
        attempt.future = None
        self._finish(attempt, done)
        self._forget(attempt.key, future)

    def _forget(self, key: str, future: Any) -> None:
        """Let the scheduler forget an attempt we collected (its result, its name), in the
        names thread: one round trip each, off the path of the next task."""
        self._names.put(("forget", {key: future}))
        self._start_names_thread()

    def _start_names_thread(self) -> None:
        if self._names_thread is None:
            self._names_thread = threading.Thread(target=self._keep_names, daemon=True,
                                                  name="cov-dask-names")
            self._names_thread.start()

    def _keep_names(self) -> None:
        """Publish and unpublish the attempts' names on the scheduler, in order."""
        while True:
            item = self._names.get()
            if item is None:
                return
            kind, futures = item
            try:
                if kind == "publish":
                    self._client.publish_dataset(**futures, override=True)
                    continue
                for key, future in futures.items():
                    self._client.unpublish_dataset(key)
                    future.release()
            except Exception as exc:  # noqa: BLE001 - the scheduler went: the futures say so
                log.debug("dask: %s of %s failed: %s", kind, sorted(futures), exc)

    def _finish(self, attempt: DaskAttempt, done: Completion) -> None:
        done.header.setdefault("end", time.time())
        with self._lock:
            if self._inflight.get(attempt.key) is not attempt:
                return  # dropped meanwhile
            del self._inflight[attempt.key]
            self._done.append(done)
        self.services.wake()

    # -- the client's loop thread -----------------------------------------------------------------
    def _on_event(self, event: Any) -> None:
        """A start or live output of an attempt (``dask_task._event``); others' are ignored."""
        try:
            _, message = event
            with self._lock:
                attempt = self._inflight.get(str(message.get("key")))
            if attempt is None:
                return
            if message.get("kind") == "start":
                self._emit_news(attempt.task, "start", start=float(message["start"]),
                                pid=int(message["pid"]), host=str(message["host"]))
                self.services.wake()
            elif message.get("kind") == "live":
                write_live(attempt, str(message["stream"]), int(message["offset"]),
                            bytes(message["data"]))
        except Exception as exc:  # noqa: BLE001 - news are a nicety: the files come whole
            log.debug("dask: event not handled: %s", exc)
