"""``--as-job`` of ``cov dispatch`` and ``cov runner start``: the runner as a Slurm job.

The options, the request they make (``runner.runner_job.submit.JobRequest``), and submitting it
with each failure as one ``Error:`` line. The job itself is ``runner.runner_job``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import click

from covalent_cli.errors import UserError

F = Callable[..., Any]


def job_options(command: F) -> F:
    """``--as-job`` and the options of the job it submits."""
    for option in reversed([
        click.option("--as-job", is_flag=True,
                     help="Run the runner as a Slurm job (for login nodes that kill long "
                          "processes); it resubmits itself before its walltime ends."),
        click.option("--job-time", metavar="TIME", default=None,
                     help="The runner job's walltime (sbatch --time: MM, HH:MM:SS, "
                          "D-HH:MM:SS); default: the partition's."),
        click.option("--job-partition", metavar="NAME", default=None,
                     help="The runner job's partition (sbatch --partition)."),
        click.option("--job-cpus", type=click.IntRange(min=1), default=None,
                     help="CPUs of the runner job (its local pool's workers)."),
    ]):
        command = option(command)
    return command


def job_request(as_job: bool, job_time: Optional[str], job_partition: Optional[str],
                job_cpus: Optional[int], runner_args: Optional[List[str]] = None) -> Any:
    """The ``JobRequest`` of the options (None without ``--as-job``); checked before anything
    is written: a malformed time, or no sbatch here, is one error line."""
    used = [name for name, value in (("--job-time", job_time), ("--job-partition",
                                                                 job_partition),
                                     ("--job-cpus", job_cpus)) if value is not None]
    if not as_job:
        if used:
            raise UserError(f"{used[0]} applies to the runner job only", "add --as-job")
        return None
    from runner.runner_job.submit import JobRequest, RunnerJobError, check_sbatch

    try:
        request = JobRequest(time=job_time, partition=job_partition, cpus=job_cpus,
                             runner_args=list(runner_args or []))
    except ValueError as exc:
        raise UserError(f"--job-time {exc}", "e.g. --job-time 02:00:00") from None
    try:
        check_sbatch()
    except RunnerJobError as exc:
        raise UserError(str(exc), exc.hint) from None
    return request


def submit_job(home: Path, request: Any) -> Dict[str, Any]:
    """The home's runner job: the live one, or one submitted now (``new``)."""
    from runner.runner_job.submit import RunnerJobError, ensure_job

    try:
        return ensure_job(home, request)
    except RunnerJobError as exc:
        raise UserError(str(exc), exc.hint) from None


def describe(job: Dict[str, Any]) -> str:
    """``Slurm job 123 (submitted now)`` / ``Slurm job 123 (already serving, RUNNING)``."""
    state = f", {job['state']}" if job.get("state") else ""
    return f"Slurm job {job['job_id']} " + ("(submitted now)" if job.get("new") else
                                             f"(already serving the home{state})")
