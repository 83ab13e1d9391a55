"""The Slurm backend: tasks as sbatch jobs, ready tasks of a run together as one job array.

Policy:

* ``submit`` only queues. The next ``poll`` after ``batch_window`` (0.1 s) writes one bundle
  per task and submits each run's queued tasks as one ``--array=0-N%K`` job (split under the
  cluster's ``MaxArraySize``; one task is a plain job). The job ids (``{"job_id": "123_4"}``)
  go into the event log as handles, so a restarted runner re-attaches (``reattach``) and never
  submits a task again.
* Completion comes from outcome files: each ``poll`` lists ``results/`` of the runs with jobs
  out (only when the directory changed, or a second passed). The scheduler is asked only every
  ``poll_freq`` seconds (30 s unless set), growing 1.5x per unchanged answer up to 4x: one
  ``squeue`` for every job of this backend, ``sacct`` or the jobcomp file for jobs the
  controller already forgot.
* A job that ended without an outcome is FAILED with the scheduler's final state (TIMEOUT,
  OUT_OF_MEMORY, NODE_FAIL ...) and the tail of its output, once ``missing_grace`` (60 s) has
  passed (a shared filesystem may show the outcome late; for jobs the scheduler killed, 5 s at
  most). A job CANCELLED from outside cancels its task. ``cancel`` (``cov cancel``) scancels
  the job or array element; all cancels of one loop iteration go in one ``scancel``.
* ``max_jobs`` (1000) caps the tasks out in Slurm at once; freed room is used in batches of at
  least a tenth of it, so a long fan-out goes out as arrays, not as one job per completion.

State, per backend (one per executor configuration): ``queue`` (run -> tasks not yet
submitted), ``jobs`` ((run, node) -> ``_Job``: job id, last known scheduler state, when it was
first seen finished without an outcome), ``cancels`` (keys to scancel at the next poll).
"""
from __future__ import annotations

import dataclasses
import os
import sys
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Set, Tuple

from runner import worker
from runner.backends.base import Backend, Completion, Services, Task, make_bundle
from runner.config import get_value
from runner.rundir import RunDir
from runner.slurm.client import (FINAL_STATES, KILLED_STATES, JobInfo, SlurmClient, SlurmError,
                                 base_id, lookup)
from runner.slurm.script import job_name, python_command, render_script
from runner.slurm.settings import SettingsError, SlurmSettings, parse_settings
from runner.slurm.site import Identity, SharedSite

Key = Tuple[str, int]  # (run path, node)
VANISHED = "VANISHED"  # not in squeue, sacct or the jobcomp file
KILLED_GRACE = 5.0
SUBMIT_RETRIES = 3


@dataclass
class _Job:
    task: Task
    job_id: str = ""
    submitted: float = 0.0
    stale: Optional[Identity] = None  # an earlier attempt's outcome file, to be ignored
    state: str = ""  # last state the scheduler reported
    reason: str = ""
    ended_since: float = 0.0  # first seen finished (or gone) without an outcome
    tries: int = 0  # failed sbatch attempts (transient errors)


class SlurmBackend(Backend):
    """Runs tasks as Slurm jobs, from the login node or through SSH."""

    def __init__(self, config: Dict[str, Any], services: Services) -> None:
        super().__init__(config, services)
        self.error: Optional[str] = None
        try:
            defaults = get_value("executors.slurm", {}) if config.get("type") == "slurm" else {}
            self.settings = parse_settings(config, defaults if isinstance(defaults, dict) else {})
        except SettingsError as exc:
            self.settings, self.error = SlurmSettings(), str(exc)
        self.site = self._make_site()
        self.client = SlurmClient(self.site.shell, self.settings.command)
        self.queue: Dict[str, List[_Job]] = {}
        self.queued_at = 0.0
        self.jobs: Dict[Key, _Job] = {}
        self.cancels: Set[Key] = set()
        self.done: List[Completion] = []
        self.interval = self.settings.poll_freq
        self.next_query = float("inf")
        self.retry_at = 0.0
        self.scripts: Dict[Tuple[str, str], int] = {}  # (run, array id) -> tasks still out
        self._rundirs: Dict[str, RunDir] = {}
        self.host = self.settings.address or worker.HOST

    def _make_site(self) -> Any:
        if not self.settings.over_ssh:
            return SharedSite()
        from runner.slurm.remote import make_remote_site  # fabric loads only for SSH

        return make_remote_site(self.settings)

    # -- the backend contract ---------------------------------------------------------------
    def capacity(self) -> int:
        out = len(self.jobs) + sum(len(q) for q in self.queue.values())
        free = self.settings.max_jobs - out
        if out and free < max(1, self.settings.max_jobs // 10):
            return 0
        return max(0, free)

    def busy(self) -> bool:
        return bool(self.queue or self.jobs or self.done)

    def submit(self, task: Task) -> None:
        if self.error:
            raise SettingsError(self.error)
        if not self.queue:
            self.queued_at = time.monotonic()
        job = _Job(task, stale=self.site.identity(task.run, task.node)
                   if task.attempt > 1 else None)
        self.queue.setdefault(task.run, []).append(job)

    def flush(self) -> None:
        """The end of a round of ``submit`` calls: with no batching window, submit now."""
        if self.queue and self.settings.batch_window <= 0:
            self._flush()

    def reattach(self, task: Task, handle: Dict[str, Any]) -> bool:
        job_id = str(handle.get("job_id") or "")
        if not job_id or self.error:
            return False
        self.jobs[(task.run, task.node)] = _Job(task, job_id=job_id,
                                                submitted=float(handle.get("submitted") or 0))
        self.services.record_handle(task, dict(handle))  # the re-claim cleared it in the log
        self.next_query = 0.0  # ask the scheduler about re-attached jobs at the next poll
        return True

    def cancel(self, run: str, node: int) -> None:
        for job in self.queue.get(run, []):
            if job.task.node == node:
                self.queue[run].remove(job)
                if not self.queue[run]:
                    del self.queue[run]
                self.done.append(self._cancelled(job, "cancelled before submission"))
                return
        if (run, node) in self.jobs:
            self.cancels.add((run, node))

    def next_poll_in(self) -> Optional[float]:
        now = time.monotonic()
        waits: List[float] = []
        if self.done or self.cancels:
            waits.append(0.0)
        if self.queue:
            waits.append(max(self.queued_at + self.settings.batch_window, self.retry_at) - now)
        if self.jobs:
            waits.append(self.next_query - now)
            for job in self.jobs.values():
                if job.ended_since:
                    waits.append(job.ended_since + self._grace(job) - now)
        return max(0.0, min(waits)) if waits else None

    def poll(self) -> List[Completion]:
        now = time.monotonic()
        if self.cancels:
            self._scancel()
        if self.queue and now >= max(self.queued_at + self.settings.batch_window, self.retry_at):
            self._flush()
        if self.jobs:
            self._check_outcomes()
        if self.jobs and now >= self.next_query:
            self._query()
        if self.jobs:
            self._check_overdue()
        done, self.done = self.done, []
        return done

    def close(self) -> None:
        """Jobs keep running without the runner; the next runner re-attaches to them."""
        for rundir in self._rundirs.values():
            rundir.close()
        self._rundirs.clear()
        close = getattr(self.site, "close", None)
        if close is not None:
            close()

    # -- submitting ------------------------------------------------------------------------
    def _flush(self) -> None:
        queue, self.queue = self.queue, {}
        retry: Dict[str, List[_Job]] = {}
        for run, jobs in queue.items():
            left = self._submit_run(run, jobs)
            if left:
                retry[run] = left
        if retry:
            for run, jobs in retry.items():
                self.queue.setdefault(run, []).extend(jobs)
            self.queued_at = time.monotonic()
            self.retry_at = time.monotonic() + 2.0 * max(j.tries for v in retry.values() for j in v)

    def _submit_run(self, run: str, jobs: List[_Job]) -> List[_Job]:
        """Write the bundles and sbatch the run's queued tasks; returns those to retry."""
        try:
            self.site.prepare(run)
        except Exception as exc:  # noqa: BLE001 - the run directory is unwritable: fail them
            for job in jobs:
                self.done.append(self._failed(job, f"cannot prepare the Slurm job files: {exc}",
                                              "submit"))
            return []
        ready: List[_Job] = []
        bundles = []
        for job in jobs:
            if job.tries:
                ready.append(job)  # its bundle was written by the first try
                continue
            try:
                bundles.append((job.task.node, job.task.attempt, self._bundle(job.task)))
                ready.append(job)
            except Exception as exc:  # noqa: BLE001 - e.g. an input's result is unreadable
                self.done.append(self._failed(job, f"cannot prepare the task for Slurm: "
                                                   f"{type(exc).__name__}: {exc}", "submit"))
        try:
            self.site.write_bundles(run, bundles)
        except Exception as exc:  # noqa: BLE001
            for job in ready:
                self.done.append(self._failed(job, f"cannot write the task's bundle: {exc}",
                                              "submit"))
            return []
        size = min(self.client.max_array_size(), self.settings.max_jobs) \
            if self.settings.array else 1
        retry: List[_Job] = []
        for start in range(0, len(ready), size):
            retry.extend(self._sbatch(run, ready[start:start + size]))
        return retry

    def _bundle(self, task: Task) -> bytes:
        rundir = self._rundirs.get(task.run)
        if rundir is None:
            rundir = self._rundirs[task.run] = RunDir(task.run)

        def read_result(node: int) -> bytes:
            payload = worker.read_outcome_payload(str(rundir.result_path(node)))
            if payload is None:
                raise RuntimeError(f"the result of node {node} is missing or incomplete")
            return payload

        if self.settings.workdir:  # the script changes to remote_workdir; the worker stays
            task = dataclasses.replace(task, cwd="")
        return make_bundle(task, rundir.read_blob, read_result)

    def _sbatch(self, run: str, chunk: List[_Job]) -> List[_Job]:
        array = len(chunk) > 1
        first = chunk[0].task
        root = self.site.root(run)
        try:
            text = render_script(
                self.settings, root=root, dispatch_id=first.dispatch_id,
                tasks=[(j.task.node, j.task.attempt) for j in chunk],
                name=job_name(first.dispatch_id, None if array else first.name),
                python=python_command(self.settings, self._default_python()), array=array)
            path = self.site.write_script(run, text)
        except Exception as exc:  # noqa: BLE001 - a bad option value, an unwritable directory
            for job in chunk:
                self.done.append(self._failed(job, f"cannot write the sbatch script: {exc}",
                                              "submit"))
            return []
        try:
            array_id = self.client.sbatch(path, cwd=self.site.jobs_dir(run))
        except SlurmError as exc:
            self.site.discard_script(run, path)
            if exc.transient and chunk[0].tries + 1 < SUBMIT_RETRIES:
                for job in chunk:
                    job.tries += 1
                return chunk
            for job in chunk:
                self.done.append(self._failed(job, str(exc), "submit"))
            return []
        self.site.submitted(run, path, array_id)
        self.scripts[(run, array_id)] = len(chunk)
        now = time.time()
        for index, job in enumerate(chunk):
            job.job_id = f"{array_id}_{index}" if array else array_id
            job.submitted = now
            self.jobs[(run, job.task.node)] = job
            self.services.record_handle(job.task, {"job_id": job.job_id, "host": self.host,
                                                   "submitted": round(now, 3)})
        self.interval = self.settings.poll_freq
        self.next_query = min(self.next_query, time.monotonic() + self.settings.poll_freq)
        return []

    def _default_python(self) -> str:
        return "python3" if self.settings.over_ssh else sys.executable

    # -- learning what happened --------------------------------------------------------------
    def _check_outcomes(self, force: bool = False) -> None:
        by_run: Dict[str, List[_Job]] = {}
        for job in self.jobs.values():
            by_run.setdefault(job.task.run, []).append(job)
        for run, jobs in by_run.items():
            found = self.site.outcomes(run, [j.task.node for j in jobs], force=force)
            if not found:
                continue
            for job in jobs:
                identity = found.get(job.task.node)
                if identity is None or identity == job.stale:
                    continue
                self.site.fetch(run, job.task.node, job.job_id)
                header = worker.read_outcome_header(job.task.outcome_path)
                if header is None:
                    continue  # not whole yet (a copy in progress, an NFS client's cache)
                header.setdefault("attempt", job.task.attempt)
                self._finish(job, header)

    def _query(self) -> None:
        ids = [job.job_id for job in self.jobs.values()]
        infos = self.client.squeue(ids)
        now = time.monotonic()
        if infos is None:  # the controller did not answer: ask again later, more slowly
            self.interval = min(self.interval * 2, self.settings.poll_freq * 4)
            self.next_query = now + self.interval
            return
        missing = [j for j in ids if lookup(infos, j) is None]
        if missing:
            infos.update(self.client.history(missing))
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
        self.interval = self.settings.poll_freq if changed else \
            min(self.interval * 1.5, self.settings.poll_freq * 4)
        self.next_query = now + self.interval

    def _grace(self, job: _Job) -> float:
        if job.state in KILLED_STATES:
            return min(self.settings.missing_grace, KILLED_GRACE)
        return self.settings.missing_grace

    def _check_overdue(self) -> None:
        now = time.monotonic()
        overdue = [job for job in self.jobs.values()
                   if job.ended_since and now - job.ended_since >= self._grace(job)]
        if not overdue:
            return
        self._check_outcomes(force=True)  # a last look, re-reading the directory
        for job in overdue:
            if (job.task.run, job.task.node) not in self.jobs:
                continue
            if job.state == "CANCELLED":
                self._finish(job, self._cancelled(job, f"Slurm job {job.job_id} was cancelled "
                                                       "(scancel)").header)
            else:
                self._finish(job, self._failed(job, self._lost_message(job), "slurm").header)

    def _lost_message(self, job: _Job) -> str:
        if job.state == VANISHED:
            what = (f"Slurm job {job.job_id} is gone from the scheduler (no accounting or job "
                    f"completion record tells its final state)")
        else:
            what = f"Slurm job {job.job_id} ended {job.state}"
            if job.reason and job.reason not in ("None", "(null)"):
                what += f" ({job.reason})"
        message = f"{what} without writing an outcome"
        if self.settings.missing_grace and job.state not in KILLED_STATES:
            message += f" within {self.settings.missing_grace:g} s"
        path, tail = self.site.log_tail(job.task.run, job.job_id)
        if tail.strip():
            message += f"; end of the job's output ({path}):\n{tail.rstrip()}"
        else:
            message += f"; the job's output would be in {path}"
        return message

    def _scancel(self) -> None:
        keys, self.cancels = self.cancels, set()
        jobs = [self.jobs[k] for k in keys if k in self.jobs]
        if not jobs:
            return
        result = self.client.scancel([job.job_id for job in jobs])
        note = "" if result.ok else f" (scancel: {(result.stderr or result.stdout).strip()})"
        self._check_outcomes(force=True)  # a task that finished first keeps its outcome
        for job in jobs:
            if (job.task.run, job.task.node) in self.jobs:
                self._finish(job, self._cancelled(job, f"cancelled: scancel {job.job_id}"
                                                       f"{note}").header)

    # -- ending a task ----------------------------------------------------------------------
    def _finish(self, job: _Job, header: Dict[str, Any]) -> None:
        key = (job.task.run, job.task.node)
        if self.jobs.pop(key, None) is None:
            return
        self.cancels.discard(key)
        self.done.append(Completion(job.task.run, job.task.node, job.task.attempt, header))
        script = (job.task.run, base_id(job.job_id))
        remaining = self.scripts.get(script)
        if remaining is not None:
            if not header.get("ok"):
                del self.scripts[script]  # a failed task's script stays, for debugging
            elif remaining > 1:
                self.scripts[script] = remaining - 1
            else:
                del self.scripts[script]
                if self.settings.cleanup:
                    self.site.remove_script(job.task.run, script[1])
        if header.get("ok") and self.settings.cleanup:
            self.site.remove_task_files(job.task.run, job.task.node, job.task.attempt,
                                        job.job_id)
        if not any(j.task.run == job.task.run for j in self.jobs.values()) and \
                job.task.run not in self.queue:
            rundir = self._rundirs.pop(job.task.run, None)
            if rundir is not None:
                rundir.close()

    def _failed(self, job: _Job, message: str, reason: str) -> Completion:
        return Completion(job.task.run, job.task.node, job.task.attempt, {
            "ok": False, "reason": reason, "error": message, "host": self.host,
            "job_id": job.job_id or None, "start": None, "end": time.time()})

    def _cancelled(self, job: _Job, message: str) -> Completion:
        return Completion(job.task.run, job.task.node, job.task.attempt, {
            "ok": False, "reason": "cancelled", "error": message, "host": self.host,
            "job_id": job.job_id or None, "end": time.time()})
