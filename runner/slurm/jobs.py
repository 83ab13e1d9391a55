"""The jobs a Slurm backend has out, and what the scheduler's answers mean for them. No I/O.

A ``Job`` is one task's attempt with its job id (``123`` or ``123_4``). ``JobTable.apply``
folds one scheduler answer ({job id: ``JobInfo``}) into the table: a job in a final state, or
in no record at all (``VANISHED``), starts its grace period; a job seen pending or running
again (requeued) ends it. ``overdue`` lists the jobs whose grace period is over: they ended
without an outcome. Grace: ``missing_grace`` (a shared filesystem may show an outcome late),
at most ``KILLED_GRACE`` for jobs the scheduler killed (they wrote none).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Tuple

from runner.backends.base import Task
from runner.slurm.client import FINAL_STATES, KILLED_STATES, JobInfo, lookup

Key = Tuple[str, int]  # (run path, node)
Identity = Tuple[int, int]  # (inode, mtime_ns) of an outcome file
VANISHED = "VANISHED"  # in neither squeue, sacct nor the jobcomp file
KILLED_GRACE = 5.0


@dataclass
class Job:
    """One task attempt handed to Slurm (``job_id`` is empty until it is submitted)."""

    task: Task
    job_id: str = ""
    stale: Optional[Identity] = None  # an earlier attempt's outcome file, to be ignored
    state: str = ""  # the state the scheduler last reported
    reason: str = ""
    ended_since: float = 0.0  # first seen ended (or gone) without an outcome
    tries: int = 0  # failed sbatch attempts (transient errors)

    @property
    def key(self) -> Key:
        return (self.task.run, self.task.node)


class JobTable:
    """Submitted jobs by (run, node) and by run, with their grace periods."""

    def __init__(self, missing_grace: float) -> None:
        self.missing_grace = missing_grace
        self.jobs: Dict[Key, Job] = {}
        self.by_run: Dict[str, Dict[int, Job]] = {}
        self.overdue_at = float("inf")  # the earliest end of a grace period

    def __len__(self) -> int:
        return len(self.jobs)

    def __contains__(self, key: object) -> bool:
        return key in self.jobs

    def __iter__(self) -> Iterator[Job]:
        return iter(list(self.jobs.values()))

    def get(self, key: Key) -> Optional[Job]:
        return self.jobs.get(key)

    def add(self, job: Job) -> None:
        self.jobs[job.key] = job
        self.by_run.setdefault(job.task.run, {})[job.task.node] = job

    def pop(self, key: Key) -> Optional[Job]:
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
            if info.state != job.state:
                changed = True
                job.state, job.reason = info.state, info.reason
            if info.state in FINAL_STATES or info.state == VANISHED:
                job.ended_since = job.ended_since or now
            else:
                job.ended_since = 0.0  # running, or requeued and pending again
        self._update_overdue()
        return changed

    def grace(self, job: Job) -> float:
        if job.state in KILLED_STATES:
            return min(self.missing_grace, KILLED_GRACE)
        return self.missing_grace

    def overdue(self, now: float) -> List[Job]:
        """Jobs that ended without an outcome and whose grace period is over."""
        found = [job for job in self.jobs.values()
                 if job.ended_since and now - job.ended_since >= self.grace(job)]
        return found

    def _update_overdue(self) -> None:
        ends = [job.ended_since + self.grace(job) for job in self.jobs.values()
                if job.ended_since]
        self.overdue_at = min(ends) if ends else float("inf")

    def settle(self) -> None:
        """Recompute the next grace deadline (after overdue jobs were finished)."""
        self._update_overdue()


def lost_message(job: Job, missing_grace: float, log_path: str, log_tail: str) -> str:
    """Why a job's task failed without an outcome, with the end of the job's own output."""
    if job.state == VANISHED:
        what = (f"Slurm job {job.job_id} is gone from the scheduler (no accounting or job "
                f"completion record tells its final state)")
    else:
        what = f"Slurm job {job.job_id} ended {job.state}"
        if job.reason and job.reason not in ("None", "(null)"):
            what += f" ({job.reason})"
    message = f"{what} without writing an outcome"
    if job.state not in KILLED_STATES:
        message += f" within {missing_grace:g} s"
    if log_tail.strip():
        return f"{message}; end of the job's output ({log_path}):\n{log_tail.rstrip()}"
    return f"{message}; the job's output would be in {log_path}"
