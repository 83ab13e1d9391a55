"""The runner inside its Slurm job: serve the home, hand over before the walltime ends.

Policy:

- At start the job writes where it runs (host, pid) into the home's runner-job record.
- It asks ``squeue`` how long it has left (``%L``) and, ``margin`` seconds before the end
  (default: a third of the walltime, at most 5 min, at least 10 s), asks again (an admin may
  have extended the limit). Then, if work remains, it submits its successor (same request;
  ``--dependency=singleton`` holds it until this job has ended) and writes it into the record,
  claims nothing more, lets the local tasks it runs finish until ``min(10 s, margin / 2)``
  before the end, and exits. Tasks on Slurm or SSH executors go on; the successor re-attaches
  to them by job id or pid. A local task still running then is killed with its worker and run
  again by the successor, so a local task must fit in one job's walltime.
- With no work left it exits on its idle timeout and removes the record; a run that arrived
  while it was deciding (created since its last rescan) makes it serve again instead.
- Killed (scancel, preemption, a node failure), it leaves the record: the next login-node
  command that finds a run unserved resubmits it. ``cov runner stop`` removes the record first.
- On an error it exits as any runner does (the reason in ``.runners/last-failure``) and removes
  the record, so that no broken job is resubmitted in a loop.

The local pool has one worker per CPU of the allocation (``SLURM_CPUS_ON_NODE``) unless
``--workers`` or ``runner.workers`` says otherwise.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from runner.layout import is_run_name
from runner.liveness import HOST
from runner.runner_job.record import read_record, remove_record, write_record
from runner.runner_job.submit import JobRequest, RunnerJobError, parse_time, submit

if TYPE_CHECKING:
    from runner.service import Runner

MAX_MARGIN_S = 300.0
MIN_MARGIN_S = 10.0


def _say(message: str) -> None:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    print(f"{stamp} {message}", file=sys.stderr, flush=True)


def default_margin(limit: float) -> float:
    """How long before the walltime ends the job hands over, for a walltime of ``limit`` s."""
    return max(MIN_MARGIN_S, min(MAX_MARGIN_S, limit / 3))


def time_left(job_id: str) -> Optional[float]:
    """Seconds until Slurm ends the job (squeue's ``%L``); None: no limit, or no answer."""
    from runner.backends.slurm.client import LocalShell

    result = LocalShell().run(["squeue", "--noheader", f"--jobs={job_id}", "--format=%L"])
    text = result.stdout.strip() if result.ok else ""
    if not text or not text[0].isdigit():
        return None  # UNLIMITED, NOT_SET, INVALID, or nothing
    try:
        return float(parse_time(text) if ":" in text or "-" in text else int(text))
    except ValueError:
        return None


def _has_work(runner: "Runner") -> bool:
    return bool(runner.active) or any(b.busy() for b in list(runner.backends.values()))


def _local_busy(runner: "Runner") -> bool:
    from runner.backends.local import LocalBackend

    return any(isinstance(b, LocalBackend) and b.busy() for b in list(runner.backends.values()))


class Handover(threading.Thread):
    """Watches the walltime of job ``job_id`` and hands over to a successor before it ends."""

    def __init__(self, runner: "Runner", home: Path, job_id: str,
                 margin: Optional[float]) -> None:
        super().__init__(name="cov-handover", daemon=True)
        self.runner = runner
        self.home = home
        self.job_id = job_id
        self.margin = margin
        self.successor: Optional[str] = None
        self._cancelled = threading.Event()

    def cancel(self) -> None:
        self._cancelled.set()

    def run(self) -> None:
        left = time_left(self.job_id)
        if left is None:
            return  # no walltime (or no answer): the idle exit is the only end
        deadline = time.time() + left
        margin = self.margin if self.margin is not None else default_margin(left)
        _say(f"runner job {self.job_id}: {left:.0f}s of walltime left; handing over "
             f"{margin:.0f}s before its end")
        while True:
            if self._cancelled.wait(max(0.0, deadline - margin - time.time())):
                return
            again = time_left(self.job_id)
            if again is None or again <= margin + 5:
                break
            deadline = time.time() + again  # the limit was extended
        if not _has_work(self.runner):
            _say(f"runner job {self.job_id}: walltime ending, no work left")
            self.runner.stop()
            return
        record = read_record(self.home) or {}
        if str(record.get("job_id", self.job_id)) != self.job_id:
            _say(f"runner job {self.job_id}: the record names job {record.get('job_id')}; "
                 "not submitting a successor")
            return
        request = JobRequest.from_dict(record.get("request") or {"margin": self.margin})
        try:
            self.successor = submit(self.home, request, list(record.get("chain", [self.job_id])))
        except RunnerJobError as exc:
            _say(f"runner job {self.job_id}: {exc}; serving until Slurm ends the job (the next "
                 "cov command resubmits it)")
            return
        _say(f"runner job {self.job_id}: walltime ending, handing over to job "
             f"{self.successor}")
        self.runner.pause_claims()
        hard_end = deadline - min(MIN_MARGIN_S, margin / 2)
        while time.time() < hard_end and _local_busy(self.runner):
            if self._cancelled.wait(0.5):
                return
        self.runner.stop()


def _claim_record(home: Path, job_id: str) -> None:
    """Say in the record where this job runs (unless it names another job)."""
    record = read_record(home)
    if record is not None and str(record["job_id"]) != job_id:
        _say(f"runner job {job_id}: the home's record names job {record['job_id']}; "
             "serving without taking it over")
        return
    base = record or {"job_id": job_id, "chain": [job_id], "request": {}}
    base.update(host=HOST, pid=os.getpid(), started=time.time())
    write_record(home, base)


def _arrived_since(home: Path, since: float) -> bool:
    """Whether an unfinished run was created at or after ``since``."""
    from runner.rundir import RunDir, RunDirError

    try:
        entries = list(os.scandir(home))
    except OSError:
        return False
    for entry in entries:
        if not is_run_name(entry.name):
            continue
        try:
            stat = entry.stat()
            if max(stat.st_mtime, stat.st_ctime) < since:
                continue
            if not RunDir(entry.path).state().finished:
                return True
        except (OSError, RunDirError):
            continue
    return False


def _pool_size() -> Optional[int]:
    """The allocation's CPUs on this node (None: not known)."""
    text = os.environ.get("SLURM_CPUS_ON_NODE", "")
    return int(text) if text.isdigit() and int(text) > 0 else None


def serve_as_job(home: Path, margin: Optional[float] = None, poll: bool = False,
                 idle_timeout: Optional[float] = None, workers: Optional[int] = None) -> int:
    """Serve ``home`` inside the Slurm job ``$SLURM_JOB_ID`` (see the module's policy)."""
    from runner.config import get_value
    from runner.daemon import serve

    job_id = os.environ.get("SLURM_JOB_ID", "")
    if not job_id.isdigit():
        _say("runner.runner_job runs inside a Slurm job: use cov runner start --as-job")
        return 1
    if workers is None and get_value("runner.workers") is None:
        workers = _pool_size()
    while True:
        _claim_record(home, job_id)
        handovers = []
        runners = []

        def watch(runner: "Runner") -> None:
            runners.append(runner)
            handover = Handover(runner, home, job_id, margin)
            handovers.append(handover)
            handover.start()

        began = time.time()
        code = serve(home, poll=poll, idle_timeout=idle_timeout, workers=workers,
                     on_start=watch)
        for handover in handovers:
            handover.cancel()
        if handovers and handovers[0].successor:
            return code  # the record names the successor now
        if code != 0:
            remove_record(home, job_id)  # a failing runner is not resubmitted in a loop
            return code
        if runners and runners[0].stop_signal is not None:
            _say(f"runner job {job_id}: stopped by signal {runners[0].stop_signal}")
            return code  # the record stays: a later cov command resubmits the job
        # Idle: nothing to do. A run created since the runner's last rescan may have seen the
        # record and counted on this job, so look once more after removing it.
        since = max(began, time.time() - float(get_value("runner.rescan_interval", 2.0)) - 1.0)
        kept = read_record(home)
        remove_record(home, job_id)
        if not _arrived_since(home, since):
            _say(f"runner job {job_id}: no work left")
            return code
        _say(f"runner job {job_id}: a run arrived as it was leaving; serving it")
        if kept is not None and str(kept["job_id"]) == job_id and read_record(home) is None:
            write_record(home, kept)  # with its request, for a successor or a resubmission
