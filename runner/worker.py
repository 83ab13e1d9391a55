"""Run one task where cov is not installed: ``python worker.py BUNDLE OUTCOME STDOUT STDERR``.

This module imports only the stdlib, cloudpickle and cov's modules in ``SHIPPED_WITH``
(stdlib-only, or stdlib and cloudpickle), because it runs on hosts that have only a Python with
cloudpickle (SSH hosts, Slurm nodes): it is copied there with them (``shipped_files``). It
loads a self-contained task bundle, runs it (``worker_task``: deps, hooks, transfers, the
function) with fds 1 and 2 sent to the task's log files, and writes the task's outcome file
(``runner.outcome``: a JSON header line, then the pickled value). It never raises across the
boundary: every failure becomes an outcome.

The local backend runs the same task code in persistent pool processes (``worker_pool``, with
``worker_capture`` for their output), which read functions and inputs straight from the run
directory and keep decoded functions cached, so a task costs microseconds, not a process.
"""
from __future__ import annotations

import os
import pickle
import signal
import sys
import threading
import time
import traceback
from typing import Any, Dict, Tuple

# The modules of cov's this one imports, and they import: shipped with it (``shipped_files``),
# in an order where each comes after the ones it imports. (The pool's modules are not shipped:
# the pool runs only where cov is.)
SHIPPED_WITH = ("outcome", "worker_common", "worker_transfers", "worker_task")

# Shipped too, though the worker does not import them: a Slurm pilot block's pool
# (runner/pilot_pool.py), which imports the worker, and the stdlib-only modules it uses (the
# layout; the pack files its workers append outcomes and logs to, format 2.0).
SHIPPED_BESIDE = ("layout", "outcome_pack", "worker_pack", "worker_capture", "pilot_packs",
                  "pilot_pool")

if __package__:  # runner.worker: imported by the runner
    from runner.outcome import OutcomeHeader, read_outcome_header, write_outcome
    from runner.worker_common import CURRENT_TASK, FILE_MODE, HOST, flush_std, write_fd
    from runner.worker_task import load_inputs, run_task
else:  # ``python worker.py ...`` on a host without cov: they were shipped beside it
    _HERE = os.path.dirname(os.path.realpath(__file__))
    sys.path.insert(0, _HERE)
    from outcome import (OutcomeHeader, read_outcome_header,  # type: ignore[no-redef,import-not-found]
                         write_outcome)
    from worker_common import (CURRENT_TASK, FILE_MODE, HOST,  # type: ignore[no-redef,import-not-found]
                               flush_std, write_fd)
    from worker_task import load_inputs, run_task  # type: ignore[no-redef,import-not-found]
    # The task's imports are its own: neither this directory nor these names are on its path
    # (a module of the user's may be called ``outcome`` too).
    sys.path[:] = [p for p in sys.path if not p or os.path.realpath(p) != _HERE]
    for _name in SHIPPED_WITH:
        sys.modules.pop(_name, None)


def shipped_files() -> Dict[str, bytes]:
    """What a host without cov needs to run ``python worker.py BUNDLE OUTCOME STDOUT STDERR``:
    ``{file name: bytes}`` of this file and the modules it imports, to be put side by side;
    ``worker.py`` comes last, so that a copier that writes them in order and checks for it
    finds the others there too."""
    here = os.path.dirname(os.path.abspath(__file__))
    files: Dict[str, bytes] = {}
    for name in (*SHIPPED_WITH, *SHIPPED_BESIDE, "worker"):
        with open(os.path.join(here, f"{name}.py"), "rb") as f:
            files[f"{name}.py"] = f.read()
    return files


# -- the batch side (SSH hosts, Slurm jobs) -------------------------------------------------------
class _Redirect:
    """Send fds 1 and 2 (and sys.stdout/err) to files while a task runs."""

    def __init__(self, stdout_path: str, stderr_path: str, shared: bool = False) -> None:
        self.paths = (stdout_path, stderr_path)
        self.shared = shared  # several ranks write them: append, never truncate or remove

    def __enter__(self) -> Tuple[int, int]:
        flush_std()
        self.saved = (os.dup(1), os.dup(2))
        mode = os.O_APPEND if self.shared else os.O_TRUNC
        self.fds = tuple(os.open(p, os.O_WRONLY | os.O_CREAT | mode, FILE_MODE)
                         for p in self.paths)
        os.dup2(self.fds[0], 1)
        os.dup2(self.fds[1], 2)
        return self.fds  # type: ignore[return-value]

    def __exit__(self, *exc: Any) -> None:
        flush_std()
        os.dup2(self.saved[0], 1)
        os.dup2(self.saved[1], 2)
        for fd in (*self.saved,):
            os.close(fd)
        for fd, path in zip(self.fds, self.paths):
            empty = os.fstat(fd).st_size == 0 and not self.shared
            os.close(fd)
            if empty:  # keep the run directory to the files that say something
                try:
                    os.unlink(path)
                except OSError:
                    pass


def execute_bundle(bundle_path: str, outcome_path: str, stdout_path: str, stderr_path: str) -> int:
    """Run a self-contained task bundle; write its outcome. Returns 0 unless the outcome
    itself could not be written."""
    rank, ranks = _slurm_rank()
    existing = read_outcome_header(outcome_path) if ranks == 1 else None  # ranks: the script
    if existing is not None and existing.get("ok"):
        return 0  # a requeued job whose attempt already succeeded: nothing to do
    watch_time_limit()
    with _Redirect(stdout_path, stderr_path, shared=ranks > 1) as fds:
        header, payload = run_bundle(bundle_path, fds[0], fds[1])
    if rank == 0:  # the task's result is rank 0's
        write_outcome(outcome_path, header, payload)
    return 0


def watch_time_limit() -> None:
    """The job's time limit is near (sbatch --signal sends SIGUSR1): noted, not fatal
    (``ct.get_context()``)."""
    if hasattr(signal, "SIGUSR1") and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGUSR1, lambda *_: CURRENT_TASK.update(warned=time.time()))


def run_bundle(bundle_path: str, out_fd: int, err_fd: int) -> Tuple[OutcomeHeader, bytes]:
    """Load a self-contained task bundle and run it, its output already on fds 1 and 2
    (``out_fd``/``err_fd``: where a failure to load it is written too); (header, payload) of
    its outcome. A Slurm pilot block's worker calls this itself, to pack the outcome
    (``runner.pilot_pool``)."""
    try:
        with open(bundle_path, "rb") as f:
            bundle = pickle.load(f)
        if bundle.get("cwd"):
            try:
                os.chdir(bundle["cwd"])
            except OSError:
                pass
        for entry in bundle.get("sys_path", ()):
            sys.path.insert(0, entry)
        CURRENT_TASK.update(bundle.get("context", {}))
        electron = pickle.loads(bundle["fn"])
        args, kwargs = load_inputs(bundle["inputs"], lambda src: pickle.loads(src))
    except BaseException as exc:  # noqa: BLE001
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        header: OutcomeHeader = {"ok": False, "reason": "load", "host": HOST, "pid": os.getpid(),
                  "error": f"cannot load the task on {HOST}:\n{text}",
                  "start": time.time(), "end": time.time()}
        write_fd(err_fd, header["error"])
        return header, b""
    return run_task(electron, args, kwargs, out_fd, err_fd,
                    bool(bundle.get("backend_transfers")))


def _slurm_rank() -> Tuple[int, int]:
    """(rank, ranks) of this process in a Slurm job step of several tasks (``srun`` with
    ``ntasks`` > 1: each rank runs the task); (0, 1) otherwise."""
    try:
        ranks = int(os.environ.get("SLURM_STEP_NUM_TASKS") or 1)
        return (int(os.environ.get("SLURM_PROCID") or 0), ranks) if ranks > 1 else (0, 1)
    except ValueError:
        return 0, 1


if __name__ == "__main__":
    sys.exit(execute_bundle(*sys.argv[1:5]))
