"""Submitting the runner as a Slurm job: the request, its sbatch script, ``sbatch`` itself.

The job runs ``python -m runner.runner_job --home HOME`` with the Python and the cov of the
command that submitted it (the home must be on a filesystem the compute nodes see, as for the
Slurm executor's login-node mode), in the submitting environment (sbatch's default
``--export=ALL``). Every runner job of one home has the same name and
``--dependency=singleton``: two of them never run at once, so a successor submitted before its
predecessor's walltime ends starts only once the predecessor has exited (no window where two
runners claim). ``sbatch`` and ``squeue`` go through ``runner.backends.slurm.client``.
"""
from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import socket
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from runner.fs import atomic_write
from runner.layout import RUNNER_LOG, runner_job_log_path, runner_job_script_path, runners_dir
from runner.runner_job.record import read_record, remove_record, serving_job, write_record

_TIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")


class RunnerJobError(Exception):
    """The runner cannot be submitted as a Slurm job (one line, with what to do)."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


def parse_time(text: str) -> int:
    """A Slurm time limit (``MM``, ``MM:SS``, ``HH:MM:SS``, ``D-HH``, ``D-HH:MM``,
    ``D-HH:MM:SS``) in seconds; a malformed one raises ``ValueError`` naming the forms."""
    match = _TIME.match(text.strip())
    seconds = _seconds(*match.groups()) if match else 0
    if seconds <= 0:
        raise ValueError(f"{text!r} is not a Slurm time limit (give MM, HH:MM:SS or D-HH:MM:SS, "
                         "more than 0)")
    return seconds


def _seconds(days: Optional[str], *fields: Optional[str]) -> int:
    parts = [int(p) for p in fields if p is not None]
    if days is not None:  # D-HH[:MM[:SS]]
        hours, minutes, seconds = (parts + [0, 0])[:3]
        return ((int(days) * 24 + hours) * 60 + minutes) * 60 + seconds
    if len(parts) == 1:
        return parts[0] * 60  # minutes
    if len(parts) == 2:
        return parts[0] * 60 + parts[1]  # MM:SS
    return (parts[0] * 60 + parts[1]) * 60 + parts[2]


@dataclass
class JobRequest:
    """What the runner job asks of Slurm, and the options of the runner it runs."""

    time: Optional[str] = None  # --time (None: the partition's default)
    partition: Optional[str] = None
    cpus: Optional[int] = None  # --cpus-per-task; the local pool's size by default
    margin: Optional[float] = None  # hand over this long before the walltime ends
    runner_args: List[str] = field(default_factory=list)  # --poll, --workers N, ...

    def __post_init__(self) -> None:
        if self.time is not None:
            parse_time(self.time)  # refuse a malformed limit before sbatch does
        if self.cpus is not None and self.cpus < 1:
            raise ValueError(f"{self.cpus} CPUs: give at least 1")

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "JobRequest":
        known = {k: data[k] for k in ("time", "partition", "cpus", "margin", "runner_args")
                 if k in data}
        return cls(**known)


def job_name(home: Path) -> str:
    """One name per home, so that ``--dependency=singleton`` orders that home's runner jobs."""
    digest = hashlib.sha1(str(Path(home).absolute()).encode()).hexdigest()[:8]
    return f"cov-runner-{digest}"


def render_script(home: Path, request: JobRequest) -> str:
    """The sbatch script of a runner job (paths and values shlex-quoted for the shell,
    ``#SBATCH`` values quoted for sbatch)."""
    from runner.backends.slurm.script import directive, filename_pattern

    home = Path(home).absolute()
    output = runner_job_log_path(home, "%j")  # %j: sbatch puts the job id there
    lines = ["#!/bin/bash",
             directive("job-name", job_name(home)),
             directive("output", os.path.join(filename_pattern(str(output.parent)), output.name)),
             directive("dependency", "singleton")]
    if request.time:
        lines.append(directive("time", request.time))
    if request.partition:
        lines.append(directive("partition", request.partition))
    if request.cpus:
        lines.append(directive("cpus-per-task", request.cpus))
    package_root = str(Path(__file__).resolve().parent.parent.parent)
    command = [sys.executable, "-m", "runner.runner_job", "--home", str(home)]
    if request.margin is not None:
        command += ["--margin", f"{request.margin:g}"]
    command += request.runner_args
    log = runners_dir(home) / RUNNER_LOG
    lines += ["# cov: the runner of a runs home as a Slurm job (cov runner start --as-job)",
              f"export PYTHONPATH={shlex.quote(package_root)}${{PYTHONPATH:+:$PYTHONPATH}}",
              f"exec {' '.join(shlex.quote(part) for part in command)} "
              f">> {shlex.quote(str(log))} 2>&1"]
    return "\n".join(lines) + "\n"


def check_sbatch() -> None:
    """Raise ``RunnerJobError`` when Slurm's ``sbatch`` is not on PATH."""
    if shutil.which("sbatch") is None:
        raise RunnerJobError("--as-job needs Slurm, and sbatch is not on PATH here",
                             "run cov on a Slurm login node (after `module load slurm`, if "
                             "your site needs it), or leave out --as-job")


def submit(home: Path, request: JobRequest, chain: Optional[List[str]] = None) -> str:
    """Write the script and sbatch it; record the job as the home's runner job. Returns its id."""
    from runner.backends.slurm.client import LocalShell, SlurmClient, SlurmError

    check_sbatch()
    home = Path(home).absolute()
    script = runner_job_script_path(home)
    script.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(script, render_script(home, request).encode())
    try:
        job_id = SlurmClient(LocalShell()).sbatch(str(script), cwd=str(script.parent))
    except SlurmError as exc:
        said = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        raise RunnerJobError(f"cannot submit the runner as a Slurm job: {said}",
                             f"the script is {script}; check --job-partition and --job-time "
                             "against `sinfo`") from None
    write_record(home, {"job_id": job_id, "chain": [*(chain or []), job_id],
                        "submitted": time.time(), "submit_host": socket.gethostname(),
                        "request": request.to_dict()})
    return job_id


def ensure_job(home: Path, request: JobRequest) -> Dict[str, Any]:
    """The runner job serving ``home``: the one alive (its record, ``new`` False), or one
    submitted now (``new`` True)."""
    check_sbatch()
    alive = serving_job(home)
    if alive is not None:
        return {**alive, "new": False}
    previous = read_record(home)
    chain = list(previous.get("chain", [])) if previous else []
    job_id = submit(home, request, chain)
    return {"job_id": job_id, "new": True}


def heal(home: Path) -> Optional[str]:
    """A runner job whose record is left (it ended while work remained: killed, preempted, out
    of walltime) is submitted again with the same request; returns the new job id, or None
    when there is no such record. Raises ``RunnerJobError`` when it cannot be submitted."""
    record = read_record(home)
    if record is None:
        return None
    request = JobRequest.from_dict(record.get("request") or {})
    return submit(home, request, list(record.get("chain", [])))


def cancel_job(home: Path) -> Optional[str]:
    """Stop the home's runner job for good: forget it (so nothing resubmits it), then
    ``scancel`` it; its id, or None when the home has none."""
    from runner.backends.slurm.client import LocalShell, SlurmClient

    record = read_record(home)
    if record is None:
        return None
    job_id = str(record["job_id"])
    remove_record(home, job_id)
    SlurmClient(LocalShell()).scancel([job_id])  # gone already, or no Slurm here: nothing to do
    return job_id
