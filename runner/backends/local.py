"""The local backend: a persistent pool of worker processes.

Workers are forked once and serve tasks until the runner exits, so a task costs a message and
a file, not a process start. Each worker has its own pipe and process group: cancelling a
running task kills that group (the task and anything it started) and a new worker takes its
place. Each worker holds up to ``PREFETCH`` tasks so it never waits for the runner between two.
A worker dies with the runner (PR_SET_PDEATHSIG), so no task outlives a killed runner and
writes a result behind a new runner's back.
"""
from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import time
from collections import deque
from typing import Any, Deque, Dict, List, Optional

from runner import worker
from runner.backends.base import Backend, Completion, Services, Task

# Tasks queued in each worker: enough that a worker never waits for the runner between two
# short tasks, and that the runner handles completions and claims in batches.
PREFETCH = 8
_CTX = multiprocessing.get_context("fork")


def _worker_main(conn: Any, runner_pid: int) -> None:
    os.setpgrp()  # its own group: cancel kills the task's children too
    try:  # die with the runner (Linux)
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - not Linux: the EOF on the pipe ends the worker instead
        pass
    if os.getppid() != runner_pid:
        # The runner died between our fork and the prctl: no signal will come, and the pipe
        # gives no EOF either (this process holds both its ends). Go now, not in a year.
        os._exit(0)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    worker.serve(conn)


class _Worker:
    def __init__(self) -> None:
        parent, child = _CTX.Pipe()
        self.process = _CTX.Process(target=_worker_main, args=(child, os.getpid()), daemon=True)
        self.process.start()
        child.close()
        self.conn = parent
        self.queue: Deque[Task] = deque()
        self.outbox: List[Dict[str, Any]] = []
        self.cancelled: set = set()

    @property
    def pid(self) -> int:
        return int(self.process.pid or 0)


class LocalBackend(Backend):
    """Runs tasks in a pool of forked worker processes on this host."""

    def __init__(self, config: Dict[str, Any], services: Services, size: Optional[int] = None) -> None:
        super().__init__(config, services)
        self.size = max(1, int(size or config.get("workers") or os.cpu_count() or 1))
        self.workers: List[_Worker] = []
        self._done: List[Completion] = []

    def _ensure_workers(self) -> None:
        while len(self.workers) < self.size:
            self.workers.append(_Worker())

    def capacity(self) -> int:
        return self.size * PREFETCH - sum(len(w.queue) for w in self.workers)

    def busy(self) -> bool:
        return any(w.queue for w in self.workers)

    def submit(self, task: Task) -> None:
        self._ensure_workers()
        target = min(self.workers, key=lambda w: len(w.queue))
        task.cwd = _workdir(task) or task.cwd
        target.queue.append(task)
        target.outbox.append(task.message())

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
        for w in list(self.workers):
            try:
                while w.conn.poll():
                    run, node, attempt, header = w.conn.recv()
                    if self._pop(w, run, node):  # else: cancelled while queued; recorded
                        done.append(Completion(run, node, attempt, header))
            except (EOFError, OSError):
                pass
            if not w.process.is_alive():
                done.extend(self._replace(w))
        return done

    def _pop(self, w: _Worker, run: str, node: int) -> bool:
        for i, task in enumerate(w.queue):
            if task.run == run and task.node == node:
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
        if w.queue:
            task = w.queue.popleft()
            _keep_captured_output(w.pid, task)
            if (task.run, task.node) in w.cancelled:
                header = {"ok": False, "reason": "cancelled", "error": "cancelled"}
            else:
                cause = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
                try:
                    cause += f" ({signal.Signals(-code).name})" if code is not None and code < 0 else ""
                except ValueError:
                    pass
                header = {"ok": False, "reason": "worker_died",
                          "error": f"worker died: {cause} while running task '{task.name}'"}
            header.update(end=time.time(), host=worker.HOST, pid=w.pid)
            lost.append(Completion(task.run, task.node, task.attempt, header))
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
                        self._done.append(Completion(run, node, task.attempt,
                                                     {"ok": False, "reason": "cancelled",
                                                      "error": "cancelled"}))
                    return

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
        self.workers.clear()


def _keep_captured_output(pid: int, task: Task) -> None:
    """A worker died mid-task: what the task printed so far becomes its logs."""
    for suffix in ("out", "err"):
        capture = os.path.join(task.run, "logs", f".capture-{pid}.{suffix}")
        try:
            if os.path.getsize(capture):
                os.replace(capture, os.path.join(task.run, "logs", f"{task.node}.{suffix}"))
            else:
                os.unlink(capture)
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
