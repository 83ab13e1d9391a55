"""Where a Slurm job's files live, as the job sees them.

``SharedSite`` (the login-node mode, and the SSH mode with ``shared_filesystem``): the job reads
its bundle from, and writes its outcome into, the run directory itself, on the filesystem the
cluster shares. Everything under ``<run>/slurm/`` belongs to the Slurm backend::

    <run>/slurm/worker.py                     runner/worker.py, and beside it the stdlib-only
                                              modules it imports (worker.shipped_files)
    <run>/slurm/bundles/<node>.<attempt>.pkl  one task each (make_bundle)
    <run>/slurm/jobs/<job id>.sh              the submitted script (array: the array's id)
    <run>/slurm/jobs/<job id>.out             the job's own output (array: <id>_<index>.out)
    <run>/secrets/slurm-<executor>.env        0600: the secret variables, sourced by the job

A remote site (``runner.backends.slurm.remote``) keeps the same layout under a directory on the
cluster and copies bundles up and outcomes and logs back.
"""
from __future__ import annotations

import os
import secrets
import time
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from runner import layout, worker
from runner.backends.base import Task
from runner.backends.slurm.client import LocalShell, Shell, read_tail
from runner.backends.slurm.jobs import Identity
from runner.fs import atomic_write, fsync_dir, write_private

outcome_name = layout.outcome_file  # its old name here


def local_identity(run: str, node: int) -> Optional[Identity]:
    """The identity of node's outcome file in the run directory (None if absent)."""
    try:
        st = os.stat(layout.outcome_path(run, node))
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns)


class SharedSite:
    """Job files in the run directory itself (the cluster mounts it at the same path)."""

    live = False  # the jobs write their logs in place: nothing to fetch while they run

    def __init__(self, shell: Optional[Shell] = None) -> None:
        self.shell: Shell = shell or LocalShell()
        self._prepared: set = set()
        self._results_seen: Dict[str, Tuple[int, float]] = {}

    # -- layout --------------------------------------------------------------------------
    def root(self, run: str) -> str:
        """The run directory as the job sees it."""
        return run

    def bundle_path(self, run: str, node: int, attempt: int) -> str:
        return os.path.join(run, layout.slurm_bundle_rel(layout.attempt_name(node, attempt)))

    def jobs_dir(self, run: str) -> str:
        return os.path.join(run, layout.SLURM_JOBS)

    def job_log(self, run: str, job_id: str) -> str:
        return os.path.join(self.jobs_dir(run), layout.job_log_file(job_id))

    def fetch_live(self, tasks: Sequence[Task]) -> None:
        """Running tasks' output into the run directory: here the jobs write it there."""

    # -- writing -------------------------------------------------------------------------
    def prepare(self, run: str) -> None:
        """Create ``slurm/`` and copy the worker's files there (once per run and runner)."""
        if run in self._prepared:
            return
        for sub in (layout.SLURM_BUNDLES, layout.SLURM_JOBS):
            os.makedirs(os.path.join(run, sub), exist_ok=True)
        for name, code in worker.shipped_files().items():
            target = os.path.join(run, layout.slurm_shipped_rel(name))
            try:
                with open(target, "rb") as f:
                    same = f.read() == code
            except OSError:
                same = False
            if not same:
                atomic_write(target, code)
        self._prepared.add(run)

    def write_bundles(self, run: str, bundles: Iterable[Tuple[int, int, bytes]]) -> None:
        for node, attempt, data in bundles:
            atomic_write(self.bundle_path(run, node, attempt), data)

    def write_script(self, run: str, text: str) -> str:
        """Write a script about to be submitted; made durable first, so that a compute node
        that starts the job at once finds the bundles and the script (NFS close-to-open)."""
        path = os.path.join(self.jobs_dir(run), layout.submit_script_file(secrets.token_hex(4)))
        atomic_write(path, text.encode())
        fsync_dir(os.path.join(run, layout.SLURM_BUNDLES))
        fsync_dir(self.jobs_dir(run))
        return path

    def write_secrets(self, run: str, name: str, text: str) -> str:
        """A file only the user can read (0600 in a 0700 ``secrets/``); its path for the job."""
        path = os.path.join(run, layout.SECRETS, name)
        write_private(Path(path), text.encode())
        return path

    def submitted(self, run: str, path: str, job_id: str) -> None:
        """Name the script after its job."""
        try:
            os.replace(path, os.path.join(self.jobs_dir(run), layout.job_script_file(job_id)))
        except OSError:
            pass

    def discard_script(self, run: str, path: str) -> None:
        _remove(path)

    # -- reading -------------------------------------------------------------------------
    def outcomes(self, run: str, nodes: Iterable[int], force: bool = False
                 ) -> Optional[Dict[int, Identity]]:
        """Outcome files present for ``nodes``; None when ``results/`` did not change since
        the last look (checked at least every second anyway: NFS mtimes lag)."""
        results = os.path.join(run, layout.RESULTS)
        try:
            stamp = os.stat(results).st_mtime_ns
        except OSError:
            return {}
        now = time.monotonic()
        seen = self._results_seen.get(run)
        if not force and seen is not None and seen[0] == stamp and now - seen[1] < 1.0:
            return None
        self._results_seen[run] = (stamp, now)
        try:
            names = set(os.listdir(results))  # a listing also refreshes NFS's directory cache
        except OSError:
            return {}
        found: Dict[int, Identity] = {}
        for node in nodes:
            name = outcome_name(node)
            if name in names:
                identity = self.identity(run, node)
                if identity is not None:
                    found[node] = identity
        return found

    def identity(self, run: str, node: int) -> Optional[Identity]:
        return local_identity(run, node)

    def next_check_in(self) -> Optional[float]:
        """When ``outcomes`` will look again (None: whenever asked; the run directory is
        watched)."""
        return None

    def log_tail(self, run: str, job_id: str) -> Tuple[str, str]:
        """(path, last lines) of a job's own output."""
        path = self.job_log(run, job_id)
        return path, read_tail(path)

    # -- cleanup -------------------------------------------------------------------------
    def remove_task_files(self, run: str, node: int, attempt: int, job_id: str) -> None:
        """A task succeeded: drop its bundle (an empty job log is removed by the job)."""
        _remove(self.bundle_path(run, node, attempt))

    def remove_script(self, run: str, job_id: str) -> None:
        _remove(os.path.join(self.jobs_dir(run), layout.job_script_file(job_id)))

    def sweep(self) -> None:
        """Deferred removals (none here: local removals are immediate)."""

    def close(self) -> None:
        pass


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


__all__: List[str] = ["SharedSite", "Identity", "outcome_name"]
