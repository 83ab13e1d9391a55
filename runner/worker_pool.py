"""The local backend's pool process: it reads tasks' functions and inputs straight from the
run directory (``tasks.pkl``, outcomes), keeps decoded functions and small outputs cached, runs
each task (``worker_task``) with its output captured (``worker_capture``), and answers the
runner on its connection; after every task it restores what the task changed of the process.

Runs in a fork of the runner, or in another interpreter (``serve_spawned``: a run dispatched
from another virtualenv), so it imports only the stdlib, cloudpickle and the worker's modules.
"""
from __future__ import annotations

import os
import pickle
import select
import signal
import sys
import time
import traceback
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Tuple

from runner import layout
from runner.outcome import (OutcomeHeader, make_temporary, read_outcome_payload,
                            write_outcome_when_space)
from runner.worker_capture import Capture
from runner.worker_common import CURRENT_TASK, HOST, TaskFailed, flush_std, write_fd
from runner.worker_pack import RunPacks
from runner.worker_replies import Replies, hold_end
from runner.worker_task import load_inputs, run_task


class _RunFiles:
    """Cached read access to one run: tasks.pkl, decoded functions, and recent outputs.

    Outputs are immutable once their outcome file exists, so the pickled outputs this worker
    wrote or read are kept (small ones, up to ``OUTPUT_CACHE_BYTES``): a fan-in whose parents
    ran here, or many children of one parent, then read no file at all.
    """

    OUTPUT_CACHE_BYTES = 32 * 1024 * 1024
    OUTPUT_CACHE_ITEM = 1024 * 1024

    def __init__(self, run: str) -> None:
        self.run = run
        self.fd = os.open(layout.pack_path(run), os.O_RDONLY)
        self.functions: Dict[Tuple[int, int], Dict[str, Any]] = {}
        self.outputs: "OrderedDict[int, bytes]" = OrderedDict()
        self.output_bytes = 0
        self.packs = RunPacks(run)  # format 2.0: this worker's pack files in the run

    def output(self, node: int, at: Any = None) -> Optional[bytes]:
        """``at``: where the runner says the output is packed (None: its own file)."""
        payload = self.outputs.get(node)
        if payload is None:
            payload = self.packs.read_payload(node, at) if at else \
                read_outcome_payload(layout.outcome_path(self.run, node))
            if payload is not None:
                self.remember(node, payload)
        return payload

    def remember(self, node: int, payload: bytes) -> None:
        if len(payload) > self.OUTPUT_CACHE_ITEM or node in self.outputs:
            return
        self.outputs[node] = payload
        self.output_bytes += len(payload)
        while self.output_bytes > self.OUTPUT_CACHE_BYTES:
            _, dropped = self.outputs.popitem(last=False)
            self.output_bytes -= len(dropped)

    def blob(self, blob: Tuple[int, int]) -> bytes:
        return os.pread(self.fd, blob[1], blob[0])

    def electron(self, blob: Tuple[int, int]) -> Dict[str, Any]:
        key = (blob[0], blob[1])
        found = self.functions.get(key)
        if found is None:
            if len(self.functions) > 256:
                self.functions.clear()
            found = self.functions[key] = pickle.loads(self.blob(key))
        return found

    def close(self) -> None:
        os.close(self.fd)
        self.packs.close()



class _SpareOutcome:
    """An empty temporary file in one run's ``results/``, made while the worker waits for its
    next task, so that writing that task's outcome is a write and a rename: creating a file
    was the largest part of a short task's cost in the worker (a directory insert, 0.05-1 ms
    on a busy file system). Made only when idle, so it costs no task anything; removed when
    the run is released or the worker stops (a killed worker leaves one empty ``.tmp-`` file,
    which no reader takes for an outcome)."""

    def __init__(self) -> None:
        self.run: Optional[str] = None
        self.file: Optional[Tuple[int, str]] = None

    def make(self, run: str) -> None:
        if self.file is not None and self.run == run:
            return
        self.drop()
        try:
            self.file = make_temporary(layout.spare_outcome_base(run))
            self.run = run
        except OSError:  # e.g. the run was removed: its next outcome says why, if any
            pass

    def take(self, run: str) -> Optional[Tuple[int, str]]:
        """The spare file if it is in ``run``'s results (the caller then owns it), else None."""
        if self.file is None or self.run != run:
            return None
        spare, self.file, self.run = self.file, None, None
        return spare

    def drop(self, run: Optional[str] = None) -> None:
        """Remove the spare file (only if it is ``run``'s, when given)."""
        if self.file is None or (run is not None and run != self.run):
            return
        fd, tmp = self.file
        self.file = self.run = None
        os.close(fd)
        try:
            os.unlink(tmp)
        except OSError:
            pass


def execute_local(task: Dict[str, Any], runs: Dict[str, _RunFiles],
                  capture: Capture, spare: Optional[_SpareOutcome] = None) -> OutcomeHeader:
    """Run one task of the local pool; returns the outcome header (also written to disk).
    ``spare``: the worker's file made ahead for the outcome, used if it is in this run."""
    run = task["run"]
    files = runs.get(run)
    if files is None:
        if len(runs) > 16:
            for old in runs.values():
                old.close()
            runs.clear()
        files = runs[run] = _RunFiles(run)
    node = task["node"]
    out_path = layout.outcome_path(run, node)
    logs = layout.logs_dir(run)
    for entry in task.get("sys_path", ()):
        if entry not in sys.path:
            sys.path.insert(0, entry)

    def load(source: Any) -> Any:
        if source[0] == "blob":
            return pickle.loads(files.blob((source[1], source[2])))
        payload = files.output(int(source[1]), source[2] if len(source) > 2 else None)
        if payload is None:
            raise TaskFailed(f"the result of node {source[1]} is missing or incomplete",
                             "missing_input")
        return pickle.loads(payload)

    CURRENT_TASK.clear()
    CURRENT_TASK.update(run=run, dispatch_id=os.path.basename(run), node=node,
                        attempt=task.get("attempt", 1))
    capture.point_at(logs)
    capture.begin(node)
    cwd = task.get("cwd") or run
    try:
        os.chdir(cwd)  # every task starts in its own run's directory
    except OSError as exc:
        header = _failure(f"the run's working directory {cwd} cannot be entered "
                          f"({exc.strerror}): it was removed or changed after the dispatch; "
                          "dispatch again from a directory that stays", "cwd")
        payload = b""
    else:
        try:
            electron = files.electron(tuple(task["fn"]))
            args, kwargs = load_inputs(task["inputs"], load)
        except BaseException as exc:  # noqa: BLE001
            text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            header = _failure(f"cannot load the task's function or inputs:\n{text}", "load")
            payload = b""
        else:
            header, payload = run_task(electron, args, kwargs, 1, 2)
            WORKER.after_task()  # a forked copy that returned ends here
    if fenced(task):  # another runner took the claim over while this ran: its result stands
        capture.discard()
        return FENCED.copy()
    log_at = capture.finish(node, files.packs.logs if task.get("pack") else None)
    header["attempt"] = task.get("attempt", 1)
    if log_at:
        header["log_at"] = log_at
    if task.get("pack"):  # format 2.0: small outcomes go to this worker's pack
        files.packs.write_outcome(node, header, payload, spare.take(run) if spare else None)
    else:
        write_outcome_when_space(out_path, header, payload, spare.take(run) if spare else None)
    if header.get("ok") and payload:
        files.remember(node, payload)
    return header


def _failure(message: str, reason: str) -> OutcomeHeader:
    """The header of a task that could not start (written to its stderr too)."""
    write_fd(2, message)
    now = time.time()
    return {"ok": False, "error": message, "reason": reason, "start": now, "end": now,
            "host": HOST, "pid": os.getpid()}


class _WorkerState:
    """What a pool worker restores after every task, so that a task that changed it (closed
    ``sys.stdout``, set ``os.environ``, forked and returned in both processes) fails or
    succeeds alone and the next task, of any run, starts clean. Checks cost a few identity and
    dict comparisons; restoring happens only when something changed."""

    def __init__(self) -> None:
        self.pid = 0

    def start(self) -> None:
        self.pid = os.getpid()
        self.streams = (sys.stdout, sys.stderr)
        self.environ = dict(os.environ)
        # os.environ's own mapping, compared without building a dict per task
        self.environ_data = dict(os.environ._data)  # type: ignore[attr-defined]
        os.register_at_fork(after_in_child=_die_with_parent)

    def after_task(self) -> None:
        if os.getpid() != self.pid:  # the copy a task forked returned here: it must not go on
            flush_std()
            os._exit(0)

    def restore(self) -> None:
        out, err = self.streams
        if sys.stdout is not out or sys.stderr is not err or out.closed or err.closed:
            if out.closed:
                out = open(1, "w", closefd=False, errors="backslashreplace")
            if err.closed:
                err = open(2, "w", closefd=False, errors="backslashreplace")
            sys.stdout, sys.stderr = self.streams = (out, err)
        if os.environ._data != self.environ_data:  # type: ignore[attr-defined]
            os.environ.clear()
            os.environ.update(self.environ)


WORKER = _WorkerState()


def _die_with_parent() -> None:
    """In a process a task forks: die with the worker (which dies with the runner)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL
    except Exception:  # noqa: BLE001 - not Linux
        pass


# The reply for a follow-on whose parent did not succeed in this worker (it did not run).
AFTER_FAILED: OutcomeHeader = {"ok": False, "reason": "after_failed",
                               "error": "the task it follows did not succeed in this worker"}
# The reply for a task whose claim another runner took over (nothing was written for it).
FENCED: OutcomeHeader = {"ok": False, "reason": "fenced", "error": "another runner took the claim over"}


def fenced(task: Dict[str, Any]) -> bool:
    """True once the claim's fencing token exists (one ``stat`` per check)."""
    return bool(task.get("fence")) and os.path.exists(task["fence"])


def _batch_policy() -> None:
    """Run as SCHED_BATCH (Linux): the same CPU share as before, but a worker woken by the
    runner's message no longer preempts the runner on its CPU. On two cores the runner's send
    of a layer's tasks to the first worker let that worker run in its place, and the second
    worker's message left only when it got the CPU back: its sends to the 2 workers took
    0.2 ms at the median but 1.7-2.1 ms at the 90th percentile (0.27 ms as SCHED_BATCH), and
    W3's steady figure fell ~10 %. A task's own processes inherit it (it suits computations;
    an interactive task does not run in the pool)."""
    try:
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    except (AttributeError, OSError):  # not Linux, or not allowed: the default policy
        pass


def enter_pool(runner_pid: int, environ: Optional[Dict[str, str]] = None) -> None:
    """Make this process a pool worker of the runner ``runner_pid``: its own process group
    (cancel kills the task's children too), death with the runner, and the environment of the
    dispatch whose runs it serves."""
    os.setpgrp()
    _batch_policy()
    _die_with_parent()  # not Linux: the EOF on the pipe ends the worker instead
    if os.getppid() != runner_pid:
        # The runner died before the prctl: no signal will come, and a forked worker gets no
        # EOF on its pipe either (it holds both ends). Go now, not in a year.
        os._exit(0)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for sig in (signal.SIGTERM, signal.SIGHUP):  # not the runner's handlers: a task's own
        signal.signal(sig, signal.SIG_DFL)       # processes (a Pool's) must die of SIGTERM
    if environ is not None:
        os.environ.clear()
        os.environ.update(environ)
        for entry in reversed(environ.get("PYTHONPATH", "").split(os.pathsep)):
            if entry and entry not in sys.path:  # a forked interpreter read it long ago
                sys.path.insert(0, entry)


def serve_spawned() -> None:
    """``python -c "from runner.worker_pool import serve_spawned; serve_spawned()" FD
    RUNNER_PID OUT_R OUT_W ERR_R ERR_W``: a pool worker of another interpreter than the
    runner's, talking over socket ``FD``, its output through the two pipes given."""
    from multiprocessing.connection import Connection

    enter_pool(int(sys.argv[2]))
    fds = [int(a) for a in sys.argv[3:7]]
    serve(Connection(int(sys.argv[1])), [(fds[0], fds[1]), (fds[2], fds[3])])


def serve(conn: Any, pipes: Optional[List[Tuple[int, int]]] = None) -> None:
    """A pool process: receive task dicts on ``conn``, run them in order, and answer each with
    its end, (run, node, attempt, header), and, for a task still running ``START_DELAY``
    after it started, (run, node, attempt, start time) before that: the task is RUNNING from
    then on (until it starts it waits in this worker's queue, QUEUED). Some ends go together
    in one message (``runner.worker_replies``).

    Messages already in the pipe are read before each task, so a ``skip`` (the task was
    cancelled while queued here) is seen before the task would start.
    """
    runs: Dict[str, _RunFiles] = {}
    capture = Capture(pipes)
    WORKER.start()
    replies = Replies(conn)
    incoming = select.poll()  # is a message waiting? (one system call, no selector built)
    incoming.register(conn.fileno(), select.POLLIN)
    pending: List[Dict[str, Any]] = []
    skipped: set = set()
    spare = _SpareOutcome()
    last_run: Optional[str] = None
    last_packed = False  # the last run packs its outcomes: it needs no spare file
    # (run, node) -> attempt of the tasks that succeeded here: a follow-on's ``after``
    succeeded: Dict[Tuple[str, int], int] = {}
    while True:
        try:
            while not pending or incoming.poll(0):
                if not pending:
                    replies.flush()  # nothing held while this worker waits
                    if last_run is not None and not last_packed:
                        spare.make(last_run)  # idle until the next task: its outcome's file now
                message = conn.recv()
                if message is None:
                    spare.drop()
                    capture.close()
                    return
                for item in message if isinstance(message, list) else [message]:
                    if item.get("skip"):
                        skipped.add((item["run"], item["node"]))
                    elif item.get("release"):  # the run ended: leave nothing in it
                        spare.drop(item["release"])
                        if last_run == item["release"]:
                            last_run = None
                        capture.release(layout.logs_dir(item["release"]))
                        succeeded = {k: v for k, v in succeeded.items()
                                     if k[0] != item["release"]}
                        files = runs.pop(item["release"], None)
                        if files is not None:
                            files.close()
                    else:
                        pending.append(item)
        except (EOFError, OSError):
            spare.drop()
            return
        task = pending.pop(0)
        if (task["run"], task["node"]) in skipped:
            skipped.discard((task["run"], task["node"]))
            continue
        if fenced(task):
            replies.end((task["run"], task["node"], task.get("attempt", 1), FENCED.copy()))
            continue
        after = task.get("after")
        if after and any(succeeded.get((task["run"], node)) != attempt for node, attempt in after):
            replies.end((task["run"], task["node"], task.get("attempt", 1), AFTER_FAILED.copy()))
            continue
        replies.begin(task)
        try:
            header = execute_local(task, runs, capture, spare)
            last_run, last_packed = task["run"], bool(task.get("pack"))
        except BaseException as exc:  # noqa: BLE001 - e.g. results/ unwritable
            header = {"ok": False, "reason": "worker",
                      "error": f"worker could not record the outcome: {type(exc).__name__}: {exc}"}
        if header.get("ok") and not header.get("child"):
            if len(succeeded) > 100_000:
                succeeded.clear()  # a follow-on whose parent is forgotten is run the usual way
            succeeded[(task["run"], task["node"])] = task.get("attempt", 1)
        WORKER.restore()
        replies.end((task["run"], task["node"], task.get("attempt", 1), header),
                    hold=hold_end(header, task, pending))
