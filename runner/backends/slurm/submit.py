"""The Slurm backend's submitting half: a run's queued tasks as bundles, scripts and one
``sbatch`` per job array (``engine`` is the other half: the backend contract, and learning
what became of the jobs).

The methods run in the engine's thread (``engine``'s docstring) and share its state: the
submitted jobs go into ``jobs`` with their handles emitted, those whose submission failed come
back to be retried (``SUBMIT_RETRIES`` times) or fail.
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import sys
import time
from typing import Dict, List, Optional, Tuple

from runner.backends.base import Completion, Task, ThreadedBackend, make_bundle, transfer_failed
from runner.backends.slurm.client import SlurmClient, SlurmError
from runner.backends.slurm.jobs import JobTable, SlurmJob
from runner.backends.slurm.script import job_name, python_command, render_script, secret_exports
from runner.backends.slurm.settings import SettingsError, SlurmSettings
from runner.backends.slurm.site import SharedSite
from runner.outcome import OutcomeHeader
from runner.redact import is_secret
from runner.rundir import RunDir

log = logging.getLogger("cov.slurm")

SUBMIT_RETRIES = 3


class SubmittingBackend(ThreadedBackend):
    """What ``SlurmBackend`` submits with (its state is set up there)."""

    settings: SlurmSettings
    site: Optional[SharedSite]
    client: Optional[SlurmClient]
    host: str
    pythonpath: str
    queue: Dict[str, List[SlurmJob]]
    jobs: JobTable
    interval: float
    next_query: float
    retry_at: float
    scripts: Dict[Tuple[str, str], int]  # (run, array id) -> its tasks still out
    _rundirs: Dict[str, RunDir]

    def _flush_queue(self) -> None:
        queue, self.queue = self.queue, {}
        retry: List[SlurmJob] = []
        for run, jobs in queue.items():
            retry.extend(self._submit_run(run, jobs))
        for job in retry:
            self.queue.setdefault(job.task.run, []).append(job)
        if retry:
            self.retry_at = time.monotonic() + 2.0 * max(job.tries for job in retry)

    def _submit_run(self, run: str, jobs: List[SlurmJob]) -> List[SlurmJob]:
        """Write the bundles and sbatch the run's queued tasks; returns those to retry."""
        assert self.site is not None and self.client is not None
        try:
            self.site.prepare(run)
        except Exception as exc:  # noqa: BLE001 - e.g. the run directory is not writable
            return self._submit_failed(jobs, f"cannot prepare the Slurm job files: {exc}")
        ready: List[SlurmJob] = []
        bundles = []
        for job in jobs:
            if job.tries or job.requeues:
                ready.append(job)  # the first try wrote its bundle
                continue
            if job.task.files and self.settings.over_ssh:
                failed = self._transfer(job, "before")
                if failed is not None:
                    self._emit(Completion.of(job.task, failed))
                    continue
            try:
                bundles.append((job.task.node, job.task.attempt, self._bundle(job.task)))
                ready.append(job)
            except Exception as exc:  # noqa: BLE001 - e.g. an input's result is unreadable
                self._emit(self._failed(job, f"cannot prepare the task for Slurm: "
                                             f"{type(exc).__name__}: {exc}", "submit"))
        try:
            self.site.write_bundles(run, bundles)
        except Exception as exc:  # noqa: BLE001
            return self._submit_failed(ready, f"cannot write the tasks' bundles: {exc}")
        size = min(self.client.max_array_size(), self.settings.max_jobs) \
            if self.settings.array else 1
        retry: List[SlurmJob] = []
        by_executor: Dict[str, List[SlurmJob]] = {}  # one script per executor: its own secrets
        for job in ready:
            by_executor.setdefault(self._executor_key(job.task), []).append(job)
        for key, group in by_executor.items():
            for start in range(0, len(group), size):
                retry.extend(self._sbatch(run, group[start:start + size], key))
        return retry

    def _submit_failed(self, jobs: List[SlurmJob], message: str, transient: bool = True
                       ) -> List[SlurmJob]:
        """Retry a few times (a connection or filesystem hiccup), then fail the tasks."""
        if transient and jobs and jobs[0].tries + 1 < SUBMIT_RETRIES:
            for job in jobs:
                job.tries += 1
            log.warning("slurm backend: %s (will retry)", message)
            return jobs
        for job in jobs:
            self._emit(self._failed(job, message, "submit"))
        return []

    def _executor_key(self, task: Task) -> str:
        """The task's executor in its run's manifest ("" when no variable is secret: then
        every task of the run can share a script, and the manifest need not be read)."""
        if not any(is_secret(name) for name, _ in self.settings.variables):
            return ""
        return self._rundir(task.run).manifest.node(task.node).executor or "local"

    def _bundle(self, task: Task) -> bytes:
        if self.settings.workdir:  # the script changes to remote_workdir; the worker stays
            task = dataclasses.replace(task, cwd="")
        return make_bundle(task, self._rundir(task.run),
                           backend_transfers=self.settings.over_ssh and bool(task.files))

    def _transfer(self, job: SlurmJob, order: str, start: Optional[float] = None
                  ) -> Optional[OutcomeHeader]:
        """Through SSH: copy the task's ExecutorConnection transfers of ``order`` over the
        login connection (on the login node itself, the worker copies them: same files).
        A failure fails the task: its header (``transfer_failed``) is returned."""
        from runner.ssh.transfer import TransferFailed, run_transfers

        assert self.site is not None
        try:
            run_transfers(getattr(self.site.shell, "host"), job.task.files, order,
                          base=self.settings.workdir)
            return None
        except TransferFailed as exc:
            return transfer_failed(job.task, str(exc), host=self.host, start=start or time.time(),
                                   job_id=job.job_id or None).header

    def _sbatch(self, run: str, chunk: List[SlurmJob], executor: str) -> List[SlurmJob]:
        assert self.site is not None and self.client is not None
        array = len(chunk) > 1
        first = chunk[0].task
        try:
            secrets_file = self._write_secrets(run, executor)
        except Exception as exc:  # noqa: BLE001
            return self._submit_failed(chunk, f"cannot write the job's secrets file: {exc}")
        try:
            text = render_script(
                self.settings, root=self.site.root(run), dispatch_id=first.dispatch_id,
                tasks=[(j.task.node, j.task.attempt) for j in chunk],
                name=job_name(first.dispatch_id, None if array else first.name),
                python=python_command(self.settings, self._default_python()), array=array,
                pythonpath=self.pythonpath, secrets_file=secrets_file)
        except SettingsError as exc:
            return self._submit_failed(chunk, f"cannot write the sbatch script: {exc}", False)
        try:
            path = self.site.write_script(run, text)
        except Exception as exc:  # noqa: BLE001
            return self._submit_failed(chunk, f"cannot write the sbatch script: {exc}")
        try:
            array_id = self.client.sbatch(path, cwd=self.site.jobs_dir(run))
        except SlurmError as exc:
            self.site.discard_script(run, path)
            return self._submit_failed(chunk, str(exc), exc.transient)
        self.site.submitted(run, path, array_id)
        self.scripts[(run, array_id)] = len(chunk)
        now = round(time.time(), 3)
        for index, job in enumerate(chunk):
            job.job_id = f"{array_id}_{index}" if array else array_id
            self.jobs.add(job)
            self._emit_handle(job.task, {"job_id": job.job_id, "host": self.host,
                                         "submitted": now, **job.handle_fields()})
        self.interval = self.settings.poll_freq
        self.next_query = min(self.next_query, time.monotonic() + self.settings.poll_freq)
        return []

    def _write_secrets(self, run: str, executor: str) -> str:
        """The secret variables, with the run's values, in a 0600 file the script sources
        ("" when there are none): never in the script, which others may read."""
        assert self.site is not None
        if not executor:
            return ""
        values = self._rundir(run).executor_secrets(executor).get("variables") or {}
        text = secret_exports(self.settings, values if isinstance(values, dict) else {})
        if not text:
            return ""
        name = "slurm-" + hashlib.sha256(executor.encode()).hexdigest()[:12] + ".env"
        return self.site.write_secrets(run, name, text)

    def _default_python(self) -> str:
        return "python3" if self.settings.over_ssh else sys.executable

    # -- the run directories and the headers of attempts without an outcome ----------------
    def _rundir(self, run: str) -> RunDir:
        rundir = self._rundirs.get(run)
        if rundir is None:
            rundir = self._rundirs[run] = RunDir(run)
        return rundir

    def _failed(self, job: SlurmJob, message: str, reason: str) -> Completion:
        return Completion.failed(job.task, reason, message, host=self.host,
                                 job_id=job.job_id or None)

    def _cancelled(self, job: SlurmJob, message: str) -> Completion:
        return Completion.cancelled(job.task, message, host=self.host,
                                    job_id=job.job_id or None)
