"""The jobs a Slurm backend has out, and what the scheduler's answers mean for them. No I/O.

A ``SlurmJob`` is one task's attempt with its job id (``123`` or ``123_4``). ``JobTable.apply``
folds one scheduler answer ({job id: ``JobInfo``}) into the table: a job in a final state, or
in no record at all (``VANISHED``), starts its clock; a job seen pending or running again
(requeued) stops it. ``overdue`` lists the jobs that ended without an outcome: their task fails.
What the answers say about a job's start goes into ``news`` (``take_news``): ``start`` once it
is seen running (with squeue's StartTime), ``pending`` when its PENDING reason changes.

Two conditions make a job overdue:

* the **requeue window**: a requeued job can look final for a moment (its old run is killed:
  ``FAILED (NonZeroExitCode)``, ``CANCELLED``, ``PREEMPTED``) before Slurm makes it PENDING again,
  with its restart count one higher. So an ended state counts only once a scheduler answer at
  least ``requeue_window`` seconds after it was first seen still shows the same state and the
  same restart count; any other answer (pending, running, requeued, a higher restart count)
  restarts the clock. ``confirm_at`` tells the backend when to ask for that answer.
* the **grace period**: ``missing_grace`` (a shared filesystem may show an outcome late), at
  most ``KILLED_GRACE`` for jobs the scheduler killed (they wrote none).
"""
from __future__ import annotations

import signal
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Tuple

from runner.backends.base import Task
from runner.backends.slurm.client import FINAL_STATES, KILLED_STATES, JobInfo, lookup

Key = Tuple[str, int]  # (run path, node)
Identity = Tuple[int, int]  # (inode, mtime_ns) of an outcome file
VANISHED = "VANISHED"  # in neither squeue, sacct nor the jobcomp file
KILLED_GRACE = 5.0
REQUEUE_WINDOW = 10.0  # seconds an ended state must last before it is believed
STARTED_STATES = frozenset({"RUNNING", "COMPLETING", "SUSPENDED", "STOPPED"})


@dataclass
class SlurmJob:
    """One task attempt handed to Slurm (``job_id`` is empty until it is submitted)."""

    task: Task
    job_id: str = ""
    stale: Optional[Identity] = None  # an earlier attempt's outcome file, to be ignored
    state: str = ""  # the state the scheduler last reported
    reason: str = ""
    restarts: int = 0  # the highest restart count the scheduler reported
    ended_since: float = 0.0  # first seen ended (or gone) without an outcome
    ended_seen: float = 0.0  # the latest answer still showing that same end
    tries: int = 0  # failed sbatch attempts (transient errors)
    started: bool = False  # seen running: its start was reported
    told_reason: str = ""  # the PENDING reason last reported
    requeues: int = 0  # times cov submitted the task's attempt again (``max_requeues``)
    history: List[str] = field(default_factory=list)  # "<job id> <state>" of those jobs

    @property
    def key(self) -> Key:
        return (self.task.run, self.task.node)

    def requeue(self) -> None:
        """Forget the job that ended (TIMEOUT, PREEMPTED ...): the attempt goes out again,
        with the bundle it has (``requeues`` > 0: not written again)."""
        self.history.append(f"{self.job_id} {self.state}")
        self.requeues += 1
        self.job_id, self.state, self.reason, self.restarts = "", "", "", 0
        self.ended_since = self.ended_seen = 0.0
        self.started, self.told_reason = False, ""

    def handle_fields(self) -> Dict[str, object]:
        """What a re-attaching runner needs to know besides the job id."""
        return {"requeues": self.requeues, "requeued_from": list(self.history)} \
            if self.requeues else {}


class JobTable:
    """Submitted jobs by (run, node) and by run, with their grace periods."""

    def __init__(self, missing_grace: float, requeue_window: float = REQUEUE_WINDOW) -> None:
        self.missing_grace = missing_grace
        self.requeue_window = requeue_window
        self.jobs: Dict[Key, SlurmJob] = {}
        self.by_run: Dict[str, Dict[int, SlurmJob]] = {}
        self.overdue_at = float("inf")  # the earliest end of a grace period
        self.confirm_at = float("inf")  # when an answer would close a requeue window
        # (job, "start", start time or None) and (job, "pending", reason), oldest first
        self.news: List[Tuple[SlurmJob, str, object]] = []

    def __len__(self) -> int:
        return len(self.jobs)

    def __contains__(self, key: object) -> bool:
        return key in self.jobs

    def __iter__(self) -> Iterator[SlurmJob]:
        return iter(list(self.jobs.values()))

    def get(self, key: Key) -> Optional[SlurmJob]:
        return self.jobs.get(key)

    def add(self, job: SlurmJob) -> None:
        self.jobs[job.key] = job
        self.by_run.setdefault(job.task.run, {})[job.task.node] = job

    def pop(self, key: Key) -> Optional[SlurmJob]:
        job = self.jobs.pop(key, None)
        if job is not None:
            in_run = self.by_run.get(key[0], {})
            in_run.pop(key[1], None)
            if not in_run:
                self.by_run.pop(key[0], None)
        return job

    def ids(self) -> List[str]:
        return [job.job_id for job in self.jobs.values()]

    def unknown(self, infos: Dict[str, JobInfo]) -> List[str]:
        """Job ids the answer says nothing about (to look up in the job history)."""
        return [job_id for job_id in self.ids() if lookup(infos, job_id) is None]

    def apply(self, infos: Dict[str, JobInfo], now: float) -> bool:
        """Fold a scheduler answer in; True if any job's state changed."""
        changed = False
        for job in self.jobs.values():
            info = lookup(infos, job.job_id) or JobInfo(VANISHED)
            requeued = info.restarts is not None and info.restarts > job.restarts
            same_end = bool(job.ended_since) and info.state == job.state and not requeued
            if info.state != job.state or requeued:
                changed = True
                job.state, job.reason = info.state, info.reason
            if requeued:
                job.restarts = info.restarts or 0
                job.started, job.told_reason = False, ""
            self._note(job, info)
            if info.state not in FINAL_STATES and info.state != VANISHED:
                job.ended_since = job.ended_seen = 0.0  # running, or requeued and pending
            elif same_end:
                job.ended_seen = now
            else:  # newly ended, or ended again after a requeue: the window starts now
                job.ended_since = job.ended_seen = now
        self._update_overdue()
        return changed

    def _note(self, job: SlurmJob, info: JobInfo) -> None:
        if info.state == "PENDING":
            reason = info.reason if info.reason not in ("None", "(null)") else ""
            if reason and reason != job.told_reason and not job.started:
                job.told_reason = reason
                self.news.append((job, "pending", reason))
        elif info.state in STARTED_STATES and not job.started:
            job.started = True
            self.news.append((job, "start", info.start))

    def take_news(self) -> List[Tuple[SlurmJob, str, object]]:
        news, self.news = self.news, []
        return news

    def ended(self, job: SlurmJob) -> bool:
        """The job's end outlasted the requeue window (an answer after it still showed it)."""
        return bool(job.ended_since) and \
            job.ended_seen - job.ended_since >= self.requeue_window

    def grace(self, job: SlurmJob) -> float:
        if job.state in KILLED_STATES:
            return min(self.missing_grace, KILLED_GRACE)
        return self.missing_grace

    def overdue(self, now: float) -> List[SlurmJob]:
        """Jobs that ended without an outcome and whose grace period is over."""
        return [job for job in self.jobs.values()
                if self.ended(job) and now - job.ended_since >= self.grace(job)]

    def _update_overdue(self) -> None:
        ends, windows = [], []
        for job in self.jobs.values():
            if self.ended(job):
                ends.append(job.ended_since + self.grace(job))
            elif job.ended_since:
                windows.append(job.ended_since + self.requeue_window)
        self.overdue_at = min(ends) if ends else float("inf")
        self.confirm_at = min(windows) if windows else float("inf")

    def settle(self) -> None:
        """Recompute the next grace deadline (after overdue jobs were finished)."""
        self._update_overdue()


def lost_message(job: SlurmJob, missing_grace: float, log_path: str, log_tail: str) -> str:
    """Why a job's task failed without an outcome, with the end of the job's own output."""
    if job.state == VANISHED:
        what = (f"Slurm job {job.job_id} is gone from the scheduler (no accounting or job "
                f"completion record tells its final state)")
    elif job.state == "FAILED" and shows_oom(log_tail):
        # Slurm's memory kill without cgroups (JobAcctGatherParams=OverMemoryKill) ends the
        # job FAILED; its output says why: the user should read OUT_OF_MEMORY.
        why = f", {job.reason}" if job.reason not in ("", "None", "(null)") else ""
        what = f"Slurm job {job.job_id} ended OUT_OF_MEMORY (Slurm's state: FAILED{why})"
    else:
        what = f"Slurm job {job.job_id} ended {job.state}"
        if job.reason and job.reason not in ("None", "(null)"):
            what += f" ({job.reason})"
    message = f"{what} without writing an outcome"
    if job.state not in KILLED_STATES:
        message += f" within {missing_grace:g} s"
    message += requeue_note(job)
    if log_tail.strip():
        return f"{message}; end of the job's output ({log_path}):\n{log_tail.rstrip()}"
    return f"{message}; the job's output would be in {log_path}"


def requeue_note(job: SlurmJob) -> str:
    """``, after 1 requeue (job 12 TIMEOUT)`` ("" if the attempt was never requeued)."""
    if not job.requeues:
        return ""
    plural = "s" if job.requeues > 1 else ""
    return f", after {job.requeues} requeue{plural} (job {', job '.join(job.history)})"


# Exit statuses a dead worker leaves (the script's outcome, ``script.EXIT_REASON``).
_EXIT_HINTS = {126: "the Python is not executable: check python_path",
               127: "no such command: check python_path or conda_env"}
_OOM_WORDS = ("oom-kill", "oom_kill", "out of memory", "out-of-memory", "memoryerror",
              # slurmstepd's words when it kills a step over its memory (no cgroups):
              # "StepId=12.0 exceeded memory limit (...), being killed"
              "exceeded memory limit", "exceeded job memory limit")


def shows_oom(log_tail: str) -> bool:
    """The job's own output tells of an out-of-memory kill (the kernel's or Slurm's)."""
    return any(word in log_tail.lower() for word in _OOM_WORDS)


def exit_message(job: SlurmJob, exit_code: int, log_path: str, log_tail: str) -> str:
    """Why a task failed whose process died in its job (the job script noticed): the exit
    status explained, OUT_OF_MEMORY when the job's output says so, and that output's end."""
    if exit_code > 128:
        try:
            name = signal.Signals(exit_code - 128).name
        except ValueError:
            name = f"signal {exit_code - 128}"
        why = f"killed by {name}"
        if exit_code - 128 == signal.SIGKILL:
            why += " (out of memory, or kill -9)"
    else:
        why = _EXIT_HINTS.get(exit_code, "")
    head = f"Slurm job {job.job_id} ended OUT_OF_MEMORY: " if shows_oom(log_tail) else \
        f"Slurm job {job.job_id}: "
    message = (f"{head}the task's process exited with status {exit_code}"
               + (f" ({why})" if why else "") + " without writing an outcome"
               + requeue_note(job))
    if log_tail.strip():
        return f"{message}; end of the job's output ({log_path}):\n{log_tail.rstrip()}"
    return f"{message}; the job's output would be in {log_path}"
