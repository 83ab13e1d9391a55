"""The Slurm backend: tasks as sbatch jobs, ready tasks of a run together as one job array.

Policy:

* ``submit`` only queues. After ``batch_window`` (0.1 s; 0 = at the ``flush`` that ends the
  runner's round of submits) one bundle per task is written and each run's queued tasks go out
  as one ``--array=0-N%K`` job (split under the cluster's ``MaxArraySize``; a lone task is a
  plain job). Job ids (``{"job_id": "123_4"}``) go into the event log as handles, so a restarted
  runner re-attaches (``reattach``) and never submits a task twice.
* Completion comes from outcome files: each poll lists ``results/`` of the runs with jobs out
  (when the directory changed, or a second passed). The scheduler is asked only every
  ``poll_freq`` seconds (30 s unless set), 1.5x longer after each unchanged answer, up to 4x:
  one ``squeue`` for every job of this backend; ``sacct`` or the jobcomp file for jobs the
  controller already forgot.
* A job that ended without an outcome is FAILED with the scheduler's final state (TIMEOUT,
  OUT_OF_MEMORY, NODE_FAIL ...) and the tail of its output, once ``missing_grace`` (60 s) has
  passed: a shared filesystem may show the outcome late (for jobs the scheduler killed, 5 s at
  most), and once an answer ``requeue_window`` (10 s) after the end still shows it: a job being
  requeued looks ended for a moment (``jobs``). A job CANCELLED from outside cancels its
  task. ``cancel`` (``cov cancel``) scancels the job or array element; the cancels of one
  poll go in one ``scancel``.
* ``max_jobs`` (1000) caps the tasks out in Slurm at once; freed room is used in batches of at
  least a tenth of it, so a long fan-out goes out as arrays, not one job per completion.
* Through SSH (``address`` set) the same steps run in a background thread, so a slow or broken
  connection never stalls the runner's loop; it wakes the loop when it has news. Without a
  shared filesystem, while jobs run (or are not yet known to be pending), what their remote
  logs gained is fetched every ``LIVE_TICK`` in one command for all of them
  (``RemoteSite.fetch_live``), so ``cov logs -f`` shows it live.

State (the "engine", touched by one thread: the runner's, or over SSH the backend's own):
``queue`` (run -> ``SlurmJob`` s to submit), ``jobs`` (a ``jobs.JobTable``: the submitted
ones, their last scheduler state and grace periods), ``cancels`` (keys to scancel). Other
threads talk to it through ``_inbox``/``_cancel_requests`` and hear back as a
``ThreadedBackend`` does (handles and completions), all under ``_lock``. Submitting (bundles,
scripts, ``sbatch``) is ``runner.backends.slurm.submit``'s half of the engine; this module has
the backend contract and learns what became of the jobs.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Dict, List, Optional, Set, Tuple, Type

from runner import worker
from runner.backends.base import Completion, Services, Task
from runner.backends.slurm.client import REQUEUE_STATES, SlurmClient, base_id
from runner.backends.slurm.jobs import (STARTED_STATES, JobTable, Key, SlurmJob, exit_message,
                                        lost_message)
from runner.backends.slurm.script import EXIT_REASON
from runner.backends.slurm.settings import SettingsError, SlurmSettings, parse_settings
from runner.backends.slurm.site import SharedSite, local_identity
from runner.backends.slurm.submit import SubmittingBackend
from runner.config import get_value
from runner.outcome import OutcomeHeader, read_outcome_header
from runner.redact import has_mask, task_secrets
from runner.rundir import RunDir

log = logging.getLogger("cov.slurm")

LIVE_TICK = 0.5  # seconds between two looks at running jobs' remote logs (through SSH)


class SlurmBackend(SubmittingBackend):
    """Runs tasks as Slurm jobs, from the login node or through SSH."""

    # The pilot mode's backend (``slurm.pilot.PilotBackend``, set by the package, which
    # imports both): an executor with ``pilot`` gets one.
    pilot_class: Optional[Type["SlurmBackend"]] = None

    def __new__(cls, config: Dict[str, Any], services: Services) -> "SlurmBackend":
        if cls is SlurmBackend and cls.pilot_class is not None and \
                config.get("pilot") not in (None, False):
            return super().__new__(cls.pilot_class)
        return super().__new__(cls)

    def __init__(self, config: Dict[str, Any], services: Services) -> None:
        super().__init__(config, services)
        self.error: Optional[str] = None
        try:
            defaults = get_value("executors.slurm", {}) if config.get("type") == "slurm" else {}
            self.settings = parse_settings(config, defaults if isinstance(defaults, dict) else {})
        except SettingsError as exc:
            self.settings, self.error = SlurmSettings(), str(exc)
        self.threaded = self.settings.over_ssh
        self.host = self.settings.address or worker.HOST
        self.site: Optional[SharedSite] = None
        self.client: Optional[SlurmClient] = None
        self.pythonpath = ""
        if not self.settings.over_ssh:
            self._use_site(SharedSite())
        # shared with other threads, under _lock (with the handles and completions)
        self._inbox: List[SlurmJob] = []
        self._cancel_requests: List[Key] = []
        self._thread: Optional[threading.Thread] = None
        # the engine's
        self.queue: Dict[str, List[SlurmJob]] = {}
        self.queued_at = 0.0
        self.jobs = JobTable(self.settings.missing_grace, self.settings.requeue_window)
        self.cancels: Set[Key] = set()
        self.interval = self.settings.poll_freq
        self.next_query = float("inf")
        self.retry_at = 0.0
        self.live_at = 0.0  # the next look at running jobs' remote logs (RemoteSite)
        self.scripts: Dict[Tuple[str, str], int] = {}  # (run, array id) -> its tasks still out
        self._rundirs: Dict[str, RunDir] = {}
        self._login_secrets: Optional[Dict[str, Any]] = None  # over SSH: password, passphrase

    def _use_site(self, site: SharedSite) -> None:
        self.site = site
        self.client = SlurmClient(site.shell, self.settings.command)

    # -- the backend contract (the runner's thread) ----------------------------------------------
    def submit(self, task: Task) -> None:
        if self.error:
            raise SettingsError(self.error)
        stale = local_identity(task.run, task.node) if task.attempt > 1 else None
        job = SlurmJob(task, stale=stale)
        if self.settings.over_ssh and self._login_secrets is None:
            self._login_secrets = task_secrets(task.run, task.node) if has_mask(self.config) \
                else {}
        with self._lock:
            if not self._inbox and not self.queue:
                self.queued_at = time.monotonic()
            self._inbox.append(job)

    def flush(self) -> None:
        """The end of a round of ``submit`` calls: with no batching window, submit now."""
        if not self.threaded and self.settings.batch_window <= 0:
            self._step()
            self._deliver_handles()

    def reattach(self, task: Task, handle: Dict[str, Any]) -> bool:
        job_id = str(handle.get("job_id") or "")
        if not job_id or self.error:
            return False
        self.services.record_handle(task, dict(handle))  # the re-claim cleared it in the log
        job = SlurmJob(task, job_id=job_id, requeues=int(handle.get("requeues") or 0),
                       history=[str(h) for h in handle.get("requeued_from") or ()])
        with self._lock:
            self._inbox.append(job)
        return True

    def cancel(self, run: str, node: int) -> None:
        with self._lock:
            self._cancel_requests.append((run, node))

    def capacity(self) -> int:
        with self._lock:
            queued = sum(len(q) for q in list(self.queue.values()))  # the thread may add runs
            out = len(self.jobs) + queued + len(self._inbox)
        free = self.settings.max_jobs - out
        if out and free < max(1, self.settings.max_jobs // 10):
            return 0
        return max(0, free)

    def busy(self) -> bool:
        return bool(self._inbox or self.queue or self.jobs or self._done or self._running())

    def next_poll_in(self) -> Optional[float]:
        if self._running():
            return None  # the thread wakes the loop when it is done
        with self._lock:
            if self._done or self._handles or self._cancel_requests:
                return 0.0
            inbox = bool(self._inbox)
        return self._next_step_in(inbox)

    def poll(self) -> List[Completion]:
        self._deliver_handles()
        if not self.threaded:
            self._step()
            self._deliver_handles()
        elif not self._running() and self._next_step_in(bool(self._inbox)) == 0.0:
            self._thread = threading.Thread(target=self._step, name="cov-slurm", daemon=True)
            self._thread.start()
        return self._take_done()

    def close(self) -> None:
        """Jobs keep running without the runner; the next runner re-attaches to them."""
        if self._thread is not None:
            self._thread.join(timeout=10)
        super().close()  # the job ids the thread got since the last poll
        for rundir in self._rundirs.values():
            rundir.close()
        self._rundirs.clear()
        if self.site is not None:
            self.site.close()

    def _running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _next_step_in(self, inbox: bool) -> Optional[float]:
        """Seconds until the engine has something to do (read only while it is idle)."""
        now = time.monotonic()
        if self.site is None and self.retry_at > now:
            return self.retry_at - now  # over SSH, after a failed connection: wait to retry
        waits: List[float] = []
        if self.cancels:
            waits.append(0.0)
        if inbox or self.queue:
            waits.append(max(self.queued_at + self.settings.batch_window, self.retry_at) - now)
        if inbox and not self.threaded:
            waits.append(0.0)  # re-attached jobs: take them in at once
        if self.jobs:
            waits += [self.next_query - now, self.jobs.overdue_at - now]
            check = self.site.next_check_in() if self.site is not None else None
            if check is not None:
                waits.append(check)
            if self._live_jobs():
                waits.append(self.live_at - now)
        return max(0.0, min(waits)) if waits else None

    # -- the engine -----------------------------------------------------------------------------
    def _step(self) -> None:
        """One round: take requests in, cancel, submit, learn what finished."""
        with self._lock:
            inbox, self._inbox = self._inbox, []
            requests, self._cancel_requests = self._cancel_requests, []
        for job in inbox:
            if job.job_id:  # re-attached: ask the scheduler about it at once
                self.jobs.add(job)
                self.next_query = 0.0
            else:
                self.queue.setdefault(job.task.run, []).append(job)
        for key in requests:
            self._take_cancel(key)
        try:
            if not self._connected():
                return
            now = time.monotonic()
            if self.cancels:
                self._scancel()
            if self.queue and now >= max(self.queued_at + self.settings.batch_window,
                                         self.retry_at):
                self._flush_queue()
            if self.jobs:
                self._check_outcomes()
            if self.jobs and now >= self.live_at:
                self._fetch_live(now)
            if self.jobs and now >= self.next_query:
                self._query()
            if self.jobs and now >= self.jobs.overdue_at:
                self._check_overdue()
            assert self.site is not None
            self.site.sweep()
            self._close_idle_runs()
        except Exception as exc:  # noqa: BLE001 - never kill the loop (or the thread) over it
            log.warning("slurm backend: %s: %s", type(exc).__name__, exc, exc_info=True)
            self.next_query = time.monotonic() + self.interval
        finally:
            if self.threaded:
                self.services.wake()

    def _connected(self) -> bool:
        """Over SSH: connect and check the cluster's Python on first use (in the thread)."""
        if self.site is not None:
            return True
        if time.monotonic() < self.retry_at:
            return False
        try:
            from runner.backends.slurm.remote import connect

            site, self.pythonpath = connect(self.settings, self._login_secrets)
            self._use_site(site)
            return True
        except Exception as exc:  # noqa: BLE001 - SSHError, VersionMismatch, bad parameters
            message = f"cannot use Slurm on {self.settings.address}: {exc}"
            log.warning("slurm backend: %s", message)
            for jobs in self.queue.values():
                for job in jobs:
                    self._emit(self._failed(job, message, "submit"))
            self.queue.clear()
            self.interval = min(self.interval * 2, self.settings.poll_freq * 4)
            self.retry_at = time.monotonic() + self.interval
            return False

    def _live_jobs(self) -> List[SlurmJob]:
        """Jobs whose output is fetched while they run (through SSH without a shared
        filesystem): those not known to be pending or ended (so: before the first answer)."""
        if self.site is None or not self.site.live:
            return []
        return [job for job in self.jobs if job.state in STARTED_STATES or not job.state]

    def _fetch_live(self, now: float) -> None:
        """One command for all running jobs' new output (none while none runs)."""
        assert self.site is not None
        jobs = self._live_jobs()
        if jobs:
            self.site.fetch_live([job.task for job in jobs])
        self.live_at = now + LIVE_TICK

    def _take_cancel(self, key: Key) -> None:
        run, node = key
        for job in self.queue.get(run, []):
            if job.task.node == node:
                self.queue[run].remove(job)
                if not self.queue[run]:
                    del self.queue[run]
                self._emit(self._cancelled(job, "cancelled before submission"))
                return
        if key in self.jobs:
            self.cancels.add(key)

    def _close_idle_runs(self) -> None:
        if not self._rundirs:
            return
        busy = set(self.queue) | set(self.jobs.by_run)
        for run in [r for r in self._rundirs if r not in busy]:
            self._rundirs.pop(run).close()

    # -- learning what happened -------------------------------------------------------------
    def _check_outcomes(self, force: bool = False) -> None:
        assert self.site is not None
        for run, jobs in list(self.jobs.by_run.items()):
            found = self.site.outcomes(run, list(jobs), force=force)
            if not found:
                continue
            for job in list(jobs.values()):
                identity = found.get(job.task.node)
                if identity is None or identity == job.stale:
                    continue
                header = read_outcome_header(job.task.outcome_path)
                if header is None:
                    continue  # not whole yet (an NFS client's cache)
                header.setdefault("attempt", job.task.attempt)
                if header.get("reason") == EXIT_REASON:  # the job script's: the worker died
                    path, tail = self.site.log_tail(run, job.job_id)
                    header.update(reason="slurm", job_id=job.job_id, error=exit_message(
                        job, int(header.get("exit_code", -1)), path, tail))  # type: ignore
                self._finish(job, header)

    def _query(self) -> None:
        assert self.client is not None
        infos = self.client.squeue(self.jobs.ids())
        now = time.monotonic()
        if infos is None:  # the controller did not answer: ask again later, more slowly
            self.interval = min(self.interval * 2, self.settings.poll_freq * 4)
            self.next_query = now + self.interval
            return
        unknown = self.jobs.unknown(infos)
        if unknown:
            infos.update(self.client.history(unknown))
        changed = self.jobs.apply(infos, now)
        for job, kind, value in self.jobs.take_news():
            if kind == "start":
                start = value if isinstance(value, float) else time.time()
                self._emit_news(job.task, "start", start=start, host=self.host)
            else:
                self._emit_news(job.task, "pending", reason=str(value))
        self.interval = self.settings.poll_freq if changed else \
            min(self.interval * 1.5, self.settings.poll_freq * 4)
        # a job that looks ended is asked about again when its requeue window closes
        self.next_query = min(now + self.interval, self.jobs.confirm_at)

    def _check_overdue(self) -> None:
        assert self.site is not None
        overdue = self.jobs.overdue(time.monotonic())
        if overdue:
            self._check_outcomes(force=True)  # a last look, re-reading the directory
        for job in overdue:
            if job.key not in self.jobs:
                continue
            if job.state == "CANCELLED":
                self._finish(job, self._cancelled(job, f"Slurm job {job.job_id} was cancelled "
                                                       "(scancel)").header)
            elif job.state in REQUEUE_STATES and job.requeues < self.settings.max_requeues:
                self._requeue(job)
            else:
                path, tail = self.site.log_tail(job.task.run, job.job_id)
                message = lost_message(job, self.settings.missing_grace, path, tail)
                self._finish(job, self._failed(job, message, "slurm").header)
        self.jobs.settle()

    def _requeue(self, job: SlurmJob) -> None:
        """The job ended TIMEOUT, PREEMPTED, NODE_FAIL or BOOT_FAIL: its task's attempt goes
        out again as a new job (the task stays RUNNING; its checkpoint directory is kept)."""
        self.jobs.pop(job.key)
        self.scripts.pop((job.task.run, base_id(job.job_id)), None)  # kept, for debugging
        log.info("slurm backend: job %s ended %s; requeue %d of %d", job.job_id, job.state,
                 job.requeues + 1, self.settings.max_requeues)
        job.requeue()
        if not self.queue and not self._inbox:
            self.queued_at = time.monotonic()
        self.queue.setdefault(job.task.run, []).append(job)

    def _scancel(self) -> None:
        assert self.client is not None
        keys, self.cancels = self.cancels, set()
        jobs = [job for job in map(self.jobs.get, keys) if job is not None]
        if not jobs:
            return
        result = self.client.scancel([job.job_id for job in jobs])
        note = "" if result.ok else f" ({(result.stderr or result.stdout).strip()})"
        self._check_outcomes(force=True)  # a task that finished first keeps its outcome
        for job in jobs:
            if job.key in self.jobs:
                self._finish(job, self._cancelled(job, f"cancelled: scancel {job.job_id}"
                                                       f"{note}").header)

    # -- ending a task ----------------------------------------------------------------------
    def _finish(self, job: SlurmJob, header: OutcomeHeader) -> None:
        assert self.site is not None
        if self.jobs.pop(job.key) is None:
            return
        if header.get("ok") and job.task.files and self.settings.over_ssh:
            header = self._transfer(job, "after", header.get("start")) or header
        self.cancels.discard(job.key)
        self._emit(Completion.of(job.task, header))
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
