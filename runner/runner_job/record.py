"""The record of a runner running as a Slurm job, and whether that job still serves the home.

``<home>/.runners/runner-job`` (JSON) says which Slurm job runs the home's runner: written by
the command that submitted it (``cov runner start --as-job``, ``cov dispatch --as-job``), then
by the job itself (where it runs: ``host``, ``pid``) and at a handover (its successor's id,
appended to ``chain``). It is removed when the job runner exits with no work left, or by
``cov runner stop``; a record whose job is gone while work remains is what a login-node
command resubmits from (``runner.runner_job.submit.heal``).

Liveness on the login node: the job's pid is not visible there, and between ``sbatch`` and the
job's start (or at a handover, while the successor waits for its predecessor to end) there is
no heartbeat at all. So the job serves the home while ``squeue`` lists it as not yet ended. To
keep that a ``stat`` for most callers (``Keeper.check`` looks every second), the record's
mtime is the time ``squeue`` last confirmed the job: a look within ``CONFIRMED_FOR_S`` of it
asks nothing.

Fields: ``job_id`` (the current job), ``chain`` (every job id since the first submission),
``submitted`` (time), ``submit_host``, ``request`` (``JobRequest.to_dict``: time, partition,
cpus, the runner's options), and once running ``host``, ``pid``, ``started``.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Dict, Optional

from runner.fs import DIR_MODE, atomic_write
from runner.layout import runner_job_path

CONFIRMED_FOR_S = 10.0  # a squeue answer "still there" holds this long
UNSURE_FOR_S = 120.0  # squeue not answering: a record younger than this is trusted
# Job states after which a runner job never serves the home again (COMPLETING: its runner
# has exited; a handover names the successor in the record before that).
ENDED = frozenset({"COMPLETED", "COMPLETING", "FAILED", "TIMEOUT", "OUT_OF_MEMORY",
                   "CANCELLED", "NODE_FAIL", "BOOT_FAIL", "DEADLINE", "PREEMPTED", "SPECIAL_EXIT"})


def read_record(home: Path) -> Optional[Dict[str, Any]]:
    """The home's runner-job record with ``age`` (seconds since last confirmed), if any."""
    path = runner_job_path(home)
    try:
        record = json.loads(path.read_text())
        age = time.time() - path.stat().st_mtime
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not str(record.get("job_id", "")).isdigit():
        return None
    record["age"] = age
    return record


def write_record(home: Path, record: Dict[str, Any]) -> None:
    path = runner_job_path(home)
    path.parent.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    data = {k: v for k, v in record.items() if k != "age"}
    atomic_write(path, json.dumps(data, sort_keys=True).encode())


def remove_record(home: Path, job_id: Optional[str] = None) -> bool:
    """Remove the record (only if it names ``job_id``, when given); True if it went."""
    record = read_record(home)
    if record is None or (job_id is not None and str(record["job_id"]) != str(job_id)):
        return False
    try:
        os.unlink(runner_job_path(home))
    except FileNotFoundError:
        return False
    return True


def job_state(job_id: str) -> Optional[str]:
    """The job's state as squeue says (``""``: not listed, so ended long ago; None: squeue did
    not answer, or Slurm's commands are not here)."""
    from runner.backends.slurm.client import LocalShell, SlurmClient

    infos = SlurmClient(LocalShell()).squeue([job_id])
    if infos is None:
        return None
    info = infos.get(job_id)
    return info.state if info is not None else ""


def serving_job(home: Path) -> Optional[Dict[str, Any]]:
    """The record of the runner job serving ``home`` if that job has not ended, else None.

    A ``stat`` when the job was confirmed in the last ``CONFIRMED_FOR_S``; otherwise one
    ``squeue`` for the one job, whose "still there" answer is kept by touching the record."""
    record = read_record(home)
    if record is None:
        return None
    if record["age"] < CONFIRMED_FOR_S:
        return record
    state = job_state(str(record["job_id"]))
    if state is None:
        return record if record["age"] < UNSURE_FOR_S else None
    if not state or state in ENDED:
        return None
    record["state"] = state
    try:
        os.utime(runner_job_path(home))
    except OSError:
        pass  # a read-only home: the next look asks squeue again
    return record


def as_runner_info(record: Dict[str, Any]) -> Dict[str, Any]:
    """The record in the shape of a heartbeat's info (``runner.liveness.read_runners``)."""
    job_id = str(record["job_id"])
    return {"id": f"slurm-job:{job_id}", "job_id": job_id, "host": record.get("host", ""),
            "pid": record.get("pid", 0), "runs": [], "alive": True,
            "age": record.get("age", 0.0), "state": record.get("state", "")}
