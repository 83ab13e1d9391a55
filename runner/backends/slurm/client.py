"""Slurm's commands, run through a ``Shell``, and parsers for what they print.

Scheduler etiquette: one ``squeue`` call answers for every job of the backend (``-j`` with
all their ids, ``-t all`` so finished and failed jobs show too, ``-r`` so array elements
show one per line). Finished jobs stay in the controller for ``MinJobAge`` (300 s by
default); for jobs already purged, ``sacct`` is asked when accounting is configured, else
the ``jobcomp/filetxt`` file is read (from where the last read stopped). ``sacct`` is never
required: many small clusters, and the test cluster, have no slurmdbd.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import time
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, Optional, Protocol, Sequence, Tuple

# Job states after which a job never runs again, unless it is requeued: then it goes through
# REQUEUED / REQUEUE_HOLD / COMPLETING to PENDING with its restart count one higher. Slurm can
# show one of these for a moment while it requeues a job (``jobs``: the requeue window).
FINAL_STATES = frozenset({"COMPLETED", "FAILED", "TIMEOUT", "OUT_OF_MEMORY", "CANCELLED",
                          "NODE_FAIL", "BOOT_FAIL", "DEADLINE", "PREEMPTED"})
# Final states in which the scheduler stopped the job (so no outcome is expected).
KILLED_STATES = frozenset({"TIMEOUT", "OUT_OF_MEMORY", "CANCELLED", "NODE_FAIL", "BOOT_FAIL",
                           "DEADLINE", "PREEMPTED"})
# Final states that are not the task's fault: its job is submitted again (``max_requeues``).
REQUEUE_STATES = frozenset({"TIMEOUT", "PREEMPTED", "NODE_FAIL", "BOOT_FAIL"})
# id|state|reason|restart count| (a width of 0: unpadded; the "|" is each field's suffix)
SQUEUE_FIELDS = "JobArrayID:|,State:|,Reason:|,RestartCnt:|,StartTime:|"
NO_TASK_ID = "4294967294"  # ArrayTaskId of an array's record for elements never started
_TRANSIENT = re.compile(r"(timed out|try again|temporarily unavailable|unable to contact|"
                        r"connection refused|slurm_persist_conn|socket)", re.I)


@dataclass
class Result:
    """What a command did."""

    rc: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.rc == 0


class Shell(Protocol):
    """Runs commands where Slurm is: this host, or an SSH connection."""

    def run(self, argv: Sequence[str], cwd: Optional[str] = None,
            timeout: float = 60.0) -> Result: ...


class LocalShell:
    """Commands on this host (the login node)."""

    def run(self, argv: Sequence[str], cwd: Optional[str] = None,
            timeout: float = 60.0) -> Result:
        try:
            proc = subprocess.run(list(argv), cwd=cwd, capture_output=True, text=True,
                                  timeout=timeout, stdin=subprocess.DEVNULL)
        except FileNotFoundError:
            return Result(127, "", f"{argv[0]}: command not found (is Slurm installed here? "
                                   "set slurm_path)")
        except subprocess.TimeoutExpired:
            return Result(124, "", f"{shlex.join(argv)} timed out after {timeout:.0f} s")
        return Result(proc.returncode, proc.stdout, proc.stderr)


class SlurmError(Exception):
    """A Slurm command failed; ``transient`` when retrying later may help."""

    def __init__(self, message: str, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass
class JobInfo:
    """One job (or array element) as the scheduler reports it."""

    state: str
    reason: str = ""
    exit_code: str = ""
    restarts: Optional[int] = None  # times requeued (squeue's RestartCnt; None: not known)
    start: Optional[float] = None  # when a RUNNING job started (squeue's StartTime)


class SlurmClient:
    """sbatch, squeue, scancel, scontrol and the job history, through one shell."""

    def __init__(self, shell: Shell, command: Callable[[str], str] = str) -> None:
        self.shell = shell
        self.command = command
        self._config: Optional[Dict[str, str]] = None
        self._jobcomp_offset = 0
        self._jobcomp: Dict[str, JobInfo] = {}

    # -- configuration ------------------------------------------------------------------
    def config(self) -> Dict[str, str]:
        """``scontrol show config`` as a dict (asked once; {} if it fails)."""
        if self._config is None:
            result = self.shell.run([self.command("scontrol"), "show", "config"])
            self._config = parse_config(result.stdout) if result.ok else {}
        return self._config

    def max_array_size(self) -> int:
        """Array indices must stay below MaxArraySize (1001 by default)."""
        try:
            return max(1, int(self.config().get("MaxArraySize", "1001")))
        except ValueError:
            return 1001

    # -- commands -------------------------------------------------------------------------
    def sbatch(self, script_path: str, cwd: str) -> str:
        """Submit; returns the job id (for an array: the array's id)."""
        result = self.shell.run([self.command("sbatch"), "--parsable", script_path], cwd=cwd)
        if not result.ok:
            message = (result.stderr or result.stdout).strip() or f"exit code {result.rc}"
            raise SlurmError(f"sbatch failed: {message}", bool(_TRANSIENT.search(message)))
        job_id = result.stdout.strip().splitlines()[-1].split(";")[0].strip() if \
            result.stdout.strip() else ""
        if not job_id.isdigit():
            raise SlurmError(f"sbatch printed no job id: {result.stdout.strip()!r}")
        return job_id

    def squeue(self, job_ids: Iterable[str]) -> Optional[Dict[str, JobInfo]]:
        """Every listed job's state ({job id or "A_i": info}); None if squeue did not answer."""
        ids = sorted({base_id(j) for j in job_ids}, key=_numeric)
        if not ids:
            return {}
        result = self.shell.run([self.command("squeue"), "--noheader", "--states=all",
                                 "--array", "--jobs=" + ",".join(ids),
                                 "--Format=" + SQUEUE_FIELDS])
        if not result.ok:
            if "Invalid job id" in result.stderr:
                return {}  # every listed job is gone (one valid id would have made rc 0)
            return None
        return parse_squeue(result.stdout)

    def scancel(self, job_ids: Iterable[str]) -> Result:
        ids = sorted(set(job_ids), key=_numeric)
        if not ids:
            return Result(0, "", "")
        return self.shell.run([self.command("scancel"), *ids])

    # -- jobs the controller already forgot ---------------------------------------------------
    def history(self, job_ids: Sequence[str]) -> Dict[str, JobInfo]:
        """Final states of purged jobs: sacct with accounting, else the jobcomp file."""
        config = self.config()
        found: Dict[str, JobInfo] = {}
        if config.get("AccountingStorageType", "accounting_storage/none") not in (
                "", "accounting_storage/none"):
            bases = sorted({base_id(j) for j in job_ids}, key=_numeric)
            result = self.shell.run([self.command("sacct"), "--noheader", "--parsable2",
                                     "--allocations", "--jobs=" + ",".join(bases),
                                     "--format=JobID,State,ExitCode"])
            if result.ok:
                found.update(parse_sacct(result.stdout))
        if config.get("JobCompType") == "jobcomp/filetxt" and config.get("JobCompLoc"):
            self._read_jobcomp(config["JobCompLoc"])
            for job in job_ids:
                if job not in found and job in self._jobcomp:
                    found[job] = self._jobcomp[job]
        return found

    def _read_jobcomp(self, path: str) -> None:
        result = self.shell.run(["tail", "-c", f"+{self._jobcomp_offset + 1}", path])
        if not result.ok:
            return
        text = result.stdout
        end = text.rfind("\n") + 1
        self._jobcomp_offset += len(text[:end].encode())
        self._jobcomp.update(parse_jobcomp(text[:end]))


# -- parsers ----------------------------------------------------------------------------------
def base_id(job_id: str) -> str:
    """``123_4`` -> ``123`` (the id squeue and sacct take for the whole array)."""
    return job_id.split("_", 1)[0]


def lookup(infos: Dict[str, JobInfo], job_id: str) -> Optional[JobInfo]:
    """A job's info; an array element not listed on its own shares its array's record (the
    elements that never started, e.g. cancelled while pending, show as ``123`` only)."""
    found = infos.get(job_id)
    if found is None and "_" in job_id:
        found = infos.get(base_id(job_id))
    return found


def _numeric(job_id: str) -> Tuple[int, str]:
    head = base_id(job_id)
    return (int(head) if head.isdigit() else 0, job_id)


def parse_config(text: str) -> Dict[str, str]:
    """``Key = value`` lines of ``scontrol show config``."""
    config: Dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and " " not in key.strip():
            config[key.strip()] = value.strip()
    return config


def parse_squeue(text: str) -> Dict[str, JobInfo]:
    """``id|state|reason[|restarts[|start]]`` lines; array ranges still pending
    (``12_[3-9%2]``) are expanded. The start (``2026-01-31T12:00:00``, the controller's local
    time, taken as ours) is kept for running jobs only (a pending job's is an estimate)."""
    jobs: Dict[str, JobInfo] = {}
    for line in text.splitlines():
        parts = [part.strip() for part in line.strip().split("|")]
        if len(parts) < 2 or not parts[0]:
            continue
        restarts = parts[3] if len(parts) > 3 else ""
        state = parts[1].split()[0] if parts[1] else "UNKNOWN"
        info = JobInfo(state=state, reason=parts[2] if len(parts) > 2 else "",
                       restarts=int(restarts) if restarts.isdigit() else None,
                       start=_start_time(parts[4]) if len(parts) > 4 and state != "PENDING"
                       else None)
        for job_id in _expand(parts[0]):
            jobs[job_id] = info
    return jobs


def _start_time(text: str) -> Optional[float]:
    try:
        return time.mktime(time.strptime(text, "%Y-%m-%dT%H:%M:%S"))
    except (ValueError, OverflowError):
        return None  # N/A, Unknown


def _expand(job_id: str) -> List[str]:
    match = re.match(r"^(\d+)_\[([^\]]*)\]$", job_id)
    if not match:
        return [job_id]
    base, spec = match.groups()
    ids: List[str] = []
    for part in spec.split("%")[0].split(","):
        if "-" in part:
            lo, hi = part.split("-", 1)
            if lo.isdigit() and hi.isdigit():
                ids.extend(f"{base}_{i}" for i in range(int(lo), int(hi) + 1))
        elif part.isdigit():
            ids.append(f"{base}_{part}")
    return ids


def parse_sacct(text: str) -> Dict[str, JobInfo]:
    """``JobID|State|ExitCode`` lines (``--parsable2``); ``CANCELLED by 0`` -> CANCELLED."""
    jobs: Dict[str, JobInfo] = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) >= 2 and parts[0] and "." not in parts[0]:
            jobs[parts[0]] = JobInfo(state=parts[1].split()[0] if parts[1] else "UNKNOWN",
                                     exit_code=parts[2] if len(parts) > 2 else "")
    return jobs


def parse_jobcomp(text: str) -> Dict[str, JobInfo]:
    """jobcomp/filetxt lines (``JobId=5 ... JobState=TIMEOUT ... ArrayJobId=1 ArrayTaskId=3``);
    a requeued job's later line wins."""
    jobs: Dict[str, JobInfo] = {}
    for line in text.splitlines():
        fields = dict(item.split("=", 1) for item in line.split() if "=" in item)
        if "JobId" not in fields or "JobState" not in fields:
            continue
        array_job, task = fields.get("ArrayJobId"), fields.get("ArrayTaskId")
        if array_job and task and task.isdigit() and task != NO_TASK_ID:
            key = f"{array_job}_{task}"
        else:  # a plain job, or an array's never-started remainder (task id NO_VAL)
            key = array_job or fields["JobId"]
        jobs[key] = JobInfo(state=fields["JobState"], exit_code=fields.get("ExitCode", ""))
    return jobs


def read_tail(path: str, limit: int = 2000) -> str:
    """The end of a local text file ('' if it cannot be read)."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - limit))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""
