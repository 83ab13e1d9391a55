"""The local backend: a persistent pool of worker processes.

Workers are forked once and serve tasks until the runner exits, so a task costs a message and
a file, not a process start. Each worker has its own pipe and process group: cancelling a
running task kills that group (the task and anything it started) and a new worker takes its
place. Each worker holds up to ``PREFETCH`` tasks so it never waits for the runner between two.
A worker dies with the runner (PR_SET_PDEATHSIG), so no task outlives a killed runner and
writes a result behind a new runner's back.
"""
from __future__ import annotations

import multiprocessing
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from multiprocessing.connection import Connection
from typing import AbstractSet, Any, Deque, Dict, List, Optional, Tuple, cast

from runner import layout, worker_common, worker_pool
from runner.backends.base import Backend, Completion, Services, Task
from runner.outcome import OutcomeHeader
from runner.liveness import pid_alive
from runner.worker_capture import keep_capture, rescue_pipes

# Tasks queued in each worker: enough that a worker never waits for the runner between two
# short tasks, and that the runner handles completions and claims in batches.
PREFETCH = 8

_CTX = multiprocessing.get_context("fork")
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _worker_main(conn: Any, runner_pid: int, environ: Optional[Dict[str, str]],
                 pipes: List[Tuple[int, int]]) -> None:
    worker_pool.enter_pool(runner_pid, environ)
    # Daemonic to the runner (reaped at its exit), but a task may start processes of its own
    # (multiprocessing.Pool, ProcessPoolExecutor), as under Covalent's LocalExecutor.
    multiprocessing.current_process().daemon = False
    worker_pool.serve(conn, pipes)


class _Spawned:
    """A pool worker of another interpreter (the run was dispatched from another virtualenv),
    started afresh; it offers what the runner uses of a ``multiprocessing.Process``."""

    def __init__(self, env: Dict[str, Any], pipes: List[Tuple[int, int]]) -> None:
        ours, theirs = socket.socketpair()
        fds = [fd for pair in pipes for fd in pair]
        environ = dict(env["environ"])
        environ["PYTHONPATH"] = PACKAGE_ROOT + (os.pathsep + environ["PYTHONPATH"]
                                                if environ.get("PYTHONPATH") else "")
        self.popen = subprocess.Popen(
            [env["python"], "-c", "from runner.worker_pool import serve_spawned; serve_spawned()",
             str(theirs.fileno()), str(os.getpid()), *map(str, fds)],
            pass_fds=(theirs.fileno(), *fds), env=environ, cwd="/", stdin=subprocess.DEVNULL)
        theirs.close()
        self.conn = Connection(ours.detach())
        self.pid = self.popen.pid
        self.sentinel = os.pidfd_open(self.pid)  # readable once it exits

    @property
    def exitcode(self) -> Optional[int]:
        return self.popen.poll()

    def is_alive(self) -> bool:
        return self.popen.poll() is None

    def join(self, timeout: Optional[float] = None) -> None:
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return
        if self.sentinel >= 0:
            os.close(self.sentinel)
            self.sentinel = -1


class _Worker:
    def __init__(self, env: Optional[Dict[str, Any]] = None) -> None:
        # The output pipes are made here: the runner keeps their read ends, so that what a
        # worker that died had not yet moved to its capture file is not lost with it.
        pipes = [os.pipe(), os.pipe()]
        if env is not None and env["python"] != sys.executable:
            self.process: Any = _Spawned(env, pipes)
            self.conn = self.process.conn
        else:
            parent, child = _CTX.Pipe()
            self.process = _CTX.Process(target=_worker_main, daemon=True, args=(
                child, os.getpid(), env["environ"] if env is not None else None, pipes))
            self.process.start()
            child.close()
            self.conn = parent
        for _, write_end in pipes:
            os.close(write_end)
        self.output = [read_end for read_end, _ in pipes]
        # Is a reply waiting? One system call (Connection.poll builds a selector each time).
        self.incoming = select.poll()
        self.incoming.register(self.conn.fileno(), select.POLLIN)
        self.queue: Deque[Task] = deque()
        self.outbox: List[Dict[str, Any]] = []
        self.cancelled: set = set()
        self.dropped: Optional[Task] = None  # the running task, killed for a lost claim
        self.started: Optional[float] = None  # the running task's start, once it reported one
        self.last_run = ""  # the run whose logs/ holds this worker's capture files

    @property
    def pid(self) -> int:
        return int(self.process.pid or 0)

    def close_output(self) -> None:
        for fd in self.output:
            os.close(fd)
        self.output = []


class LocalBackend(Backend):
    """Runs tasks in a pool of forked worker processes on this host."""

    def __init__(self, config: Dict[str, Any], services: Services, size: Optional[int] = None,
                 env: Optional[Dict[str, Any]] = None) -> None:
        """``env``: the interpreter and environment variables of the runs this pool serves
        (``{"python", "environ"}``; None: the runner's own)."""
        super().__init__(config, services)
        self.env = env
        self.size = max(1, int(size or config.get("workers") or os.cpu_count() or 1))
        self.workers: List[_Worker] = []
        self._done: List[Completion] = []

    def _ensure_workers(self) -> None:
        while len(self.workers) < self.size:
            self.workers.append(_Worker(self.env))

    def start_workers(self) -> None:
        """Start the workers now rather than at the first task."""
        self._ensure_workers()

    def capacity(self) -> int:
        # Follow-ons (queued ``after`` a task: runner.follow_on) take no room: they are bound
        # to their parent's worker and at most MAX_CHAIN per task; counted, they left W3's
        # last list nodes of a layer (10 lists, each with its consumer behind it, against 16
        # places) without their consumer, for a round trip through the runner more per layer.
        return self.size * PREFETCH - sum(1 for w in self.workers for t in w.queue if not t.after)

    def busy(self) -> bool:
        return any(w.queue for w in self.workers)

    def submit(self, task: Task) -> None:
        self._ensure_workers()
        target = min(self.workers, key=lambda w: len(w.queue))
        task.cwd = _workdir(task) or task.cwd
        target.queue.append(task)
        target.last_run = task.run
        target.outbox.append(task.message())

    def submit_after(self, task: Task, parent: Task) -> bool:
        """Queue ``task`` (a follow-on, ``task.after`` set) in the worker holding ``parent``;
        False if none holds it."""
        for w in self.workers:
            if any(queued is parent for queued in w.queue):
                task.cwd = _workdir(task) or task.cwd
                w.queue.append(task)
                w.outbox.append(task.message())
                return True
        return False

    def flush(self) -> None:
        for w in self.workers:
            if w.outbox:
                batch, w.outbox = w.outbox, []
                try:
                    w.conn.send(batch)
                except OSError:
                    pass  # the worker died; poll() sees it and requeues its tasks

    def waitables(self) -> List[Any]:
        return [w.conn for w in self.workers] + [w.process.sentinel for w in self.workers]

    def poll(self) -> List[Completion]:
        done, self._done = self._done, []
        starts: Dict[Tuple[str, int, int], Tuple[Task, float, int]] = {}
        for w in list(self.workers):
            try:
                while w.incoming.poll(0):
                    message = w.conn.recv()
                    # one reply, or a list of them (ends a worker held: runner.worker_replies)
                    for run, node, attempt, news in message if isinstance(message, list) \
                            else (message,):
                        if not isinstance(news, dict):  # a task running for a while: its start
                            if w.queue and w.queue[0].node == node and w.queue[0].run == run:
                                starts[(run, node, attempt)] = (w.queue[0], news, w.pid)
                                w.started = news
                        elif self._pop(w, run, node, attempt):  # else: cancelled or dropped
                            starts.pop((run, node, attempt), None)
                            w.started = None
                            done.append(Completion(run, node, attempt, cast(OutcomeHeader, news)))
            except (EOFError, OSError):
                pass
            if not w.process.is_alive():
                done.extend(self._replace(w))
        for task, start, pid in starts.values():  # not those that also ended in this poll
            self.services.record_start(task, start, pid=pid)
        return done

    def _pop(self, w: _Worker, run: str, node: int, attempt: int) -> bool:
        for i, task in enumerate(w.queue):
            if task.run == run and task.node == node and task.attempt == attempt:
                del w.queue[i]
                return True
        return False

    def _replace(self, w: _Worker) -> List[Completion]:
        """A worker died: its current task failed (or was cancelled); requeue the rest."""
        w.process.join(timeout=1)
        code = w.process.exitcode
        self.workers.remove(w)
        w.conn.close()
        lost: List[Completion] = []
        w.outbox.clear()
        if w.dropped is not None:  # the running task's claim was lost: nothing is its output
            keep_capture(w.dropped.run, w.pid, w.dropped.node, keep=False)
        elif not w.queue and w.last_run:  # it died between tasks
            _remove_captures(w.last_run, {w.pid})
        elif w.queue:
            task = w.queue.popleft()
            rescue_pipes(task.run, w.pid, w.output)
            keep_capture(task.run, w.pid, task.node)
            where: Dict[str, Any] = {"host": worker_common.HOST, "pid": w.pid}
            if w.started is not None:
                where["start"] = w.started  # the end event's start: when it really started
            if (task.run, task.node) in w.cancelled:
                lost.append(Completion.cancelled(task, **where))
            else:
                cause = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
                try:
                    cause += f" ({signal.Signals(-code).name})" if code is not None and code < 0 else ""
                except ValueError:
                    pass
                lost.append(Completion.failed(
                    task, "worker_died", f"worker died: {cause} while running task '{task.name}'",
                    **where))
        w.close_output()
        rest = list(w.queue)
        w.queue.clear()
        for task in rest:
            self.submit(task)
        self.flush()
        return lost

    def cancel(self, run: str, node: int) -> None:
        for w in self.workers:
            for i, task in enumerate(w.queue):
                if task.run == run and task.node == node:
                    if i == 0:  # running: kill its process group
                        w.cancelled.add((run, node))
                        try:
                            os.killpg(w.pid, signal.SIGKILL)
                        except ProcessLookupError:
                            pass
                    else:  # queued in the worker: it will skip it when it arrives
                        del w.queue[i]
                        w.outbox.append({"skip": True, "run": run, "node": node})
                        self.flush()
                        self._done.append(Completion.cancelled(task))
                    return

    def drop(self, task: Task) -> None:
        """Another runner took the claim over: kill the attempt if it runs, skip it if queued,
        and report nothing (its output is not the node's)."""
        for w in self.workers:
            for i, queued in enumerate(w.queue):
                if queued is not task:
                    continue
                del w.queue[i]
                if i == 0:  # running: kill its process group; the worker is replaced
                    w.dropped = task
                    try:
                        os.killpg(w.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                else:
                    w.outbox.append({"skip": True, "run": task.run, "node": task.node})
                    self.flush()
                return

    def release(self, run: str) -> None:
        """Workers drop their capture files in the run's ``logs/``; those of workers that died
        with an earlier runner (kill -9) are removed."""
        mine = set()
        for w in self.workers:
            mine.add(w.pid)
            if w.last_run == run:
                w.outbox.append({"release": run})
                w.last_run = ""
        self.flush()
        _remove_captures(run, None, keep=mine)

    def close(self) -> None:
        for w in self.workers:
            try:
                w.conn.send(None)
            except OSError:
                pass
        deadline = time.time() + 2
        for w in self.workers:
            w.process.join(timeout=max(0.0, deadline - time.time()))
            if w.process.is_alive():
                try:
                    os.killpg(w.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                w.process.join(timeout=1)
            w.close_output()
        self.workers.clear()


def _remove_captures(run: str, pids: Optional[set], keep: AbstractSet[Any] = frozenset()) -> None:
    """Remove ``logs/.capture-<pid>.*`` of the given pids, or (``pids`` None) of every pid
    that is neither in ``keep`` nor alive."""
    logs = layout.logs_dir(run)
    if pids is not None:
        names = [layout.capture_file(pid, s) for pid in pids for s in layout.STREAMS]
    else:
        try:
            names = [n for n in os.listdir(logs) if layout.capture_pid(n) is not None]
        except OSError:
            return
    for name in names:
        pid = layout.capture_pid(name)
        if pids is None and (pid is None or pid in keep or pid_alive(pid)):
            continue
        try:
            os.unlink(os.path.join(logs, name))
        except OSError:
            pass


def _workdir(task: Task) -> Optional[str]:
    """LocalExecutor(workdir=..., create_unique_workdir=...)."""
    workdir = task.executor.get("workdir")
    if not workdir:
        return None
    path = os.path.expanduser(workdir)
    if task.executor.get("create_unique_workdir"):
        path = os.path.join(path, task.dispatch_id, f"node_{task.node}")
    os.makedirs(path, exist_ok=True)
    return path
