"""One Dask attempt on the runner's side, and how its files reach the run directory.

``write_live`` puts a chunk of what the attempt printed (a Dask log event, on the client's
loop thread) into ``logs/<node>.out|err`` at its offset; ``write_files`` writes the files the
finished attempt returned (logs first, the outcome last, each whole through a temporary name)
and tells how it ended. The two take turns on the attempt's lock: once the final files are
written, a late live chunk leaves them alone.
"""
from __future__ import annotations

import os
import threading
from typing import Any, Dict

from runner.backends.base import Completion, Task
from runner.fs import FILE_MODE, atomic_write
from runner.outcome import read_outcome_header


def attempt_key(task: Task) -> str:
    """The Dask key (and published name) of one attempt."""
    return f"cov-{task.dispatch_id}-{task.node}-{task.attempt}"


class DaskAttempt:
    """One attempt on the cluster: its key, its future once submitted, what became of it."""

    def __init__(self, task: Task) -> None:
        self.task = task
        self.key = attempt_key(task)
        self.future: Any = None
        self.cancelled = False
        self.dropped = False
        self.losses = 0  # times the connection to the scheduler dropped under it
        self.live: set = set()  # streams whose live copy this attempt has started
        self.files_lock = threading.Lock()  # write_live and write_files take turns
        self.written = False  # the final files are in the run directory


def write_files(attempt: DaskAttempt, files: Dict[str, Any]) -> Completion:
    """The attempt's files into the run directory (logs, then the outcome), each whole."""
    task = attempt.task
    with attempt.files_lock:
        attempt.written = True
        for stream, path in (("stdout", task.stdout_path), ("stderr", task.stderr_path)):
            if files[stream] or os.path.exists(path):
                atomic_write(path, files[stream])
    header = None
    if files["outcome"]:
        atomic_write(task.outcome_path, files["outcome"])
        header = read_outcome_header(task.outcome_path)
    if header is not None:
        return Completion.of(task, header)
    rc, pid, host = int(files["rc"]), files["pid"], files["host"]
    how = f"was killed (signal {-rc})" if rc < 0 else f"exited with code {rc}"
    detail = files["launch"].decode("utf-8", "replace").strip()[-2000:]
    return Completion.failed(
        task, "worker_died", f"the task's process on {host} (pid {pid}) {how} without "
                             f"writing an outcome" + (f":\n{detail}" if detail else ""),
        host=host, pid=pid)


def write_live(attempt: DaskAttempt, stream: str, offset: int, data: bytes) -> None:
    """A live-output chunk into the run's log at its offset; the attempt's first chunk of a
    stream cuts the file to itself (an earlier attempt's output); the whole file replaces it
    at the end."""
    task = attempt.task
    path = task.stdout_path if stream == "stdout" else task.stderr_path
    with attempt.files_lock:
        if attempt.written:
            return
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        try:
            os.pwrite(fd, data, offset)
            if stream not in attempt.live:
                os.ftruncate(fd, offset + len(data))
                attempt.live.add(stream)
        finally:
            os.close(fd)
