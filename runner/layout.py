"""Every file and folder name of a runs home and of a run directory: the only module that spells
them (docs/run-directory.md is their description; ``tests/test_layers.py`` fails on a name
spelled anywhere else).

Two readers use the names: Python code, through the functions and ``RunPaths`` (submitit's
``JobPaths``), and the shell text cov sends to sbatch and over SSH. A name that holds a node,
an attempt or a job id is written once, as a function of those; the shell text calls the same
function with a shell expression in their place (``outcome_file("$COV_NODE")``), as submitit's
``%j``/``%t`` placeholders, so the two can never drift apart.

Stdlib only, importing nothing of cov's: ``runner/worker.py`` imports it, and it is shipped
beside the worker to hosts without cov (``worker.shipped_files``).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Tuple, Union

Part = Union[int, str]  # a node, attempt or job id, or a shell expression standing for one

# -- a runs home ------------------------------------------------------------------------------
RUNNERS = ".runners"  # heartbeats <host>-<pid>.json, <runner id>.fenced, the files below
SPAWN_LOCK = "spawn.lock"  # in .runners/: held while a runner is being started
RUNNER_LOG = "runner.log"  # in .runners/: the runners' own output
LAST_FAILURE = "last-failure"  # in .runners/: JSON; not *.json, the heartbeat files' pattern
RUNNER_JOB = "runner-job"  # in .runners/: JSON (not *.json): the Slurm job that runs the runner
RUNNER_JOB_SCRIPT = "runner-job.sh"  # in .runners/: that job's sbatch script (runner/runner_job)
RUNNER_JOB_LOG_PREFIX = "runner-job-"  # in .runners/: runner-job-<job id>.out, the job's output
UNREADABLE = ".unreadable"  # .unreadable/<run>: why a runner set that run aside
TMP_PREFIX = ".tmp-"  # .tmp-<dispatch id>.<random>/: a run being created (dispatch)
TRASH_PREFIX = ".rm-"  # .rm-<dispatch id>/: a run being removed (``cov rm``)
CACHE = ".result-cache"  # <key[:2]>/<key>.json + <key>.pkl: the result cache (runner/cache.py)
CACHE_INDEX_SUFFIX = ".json"  # an entry's index: the run and node it came from, its key's parts
CACHE_RESULT_SUFFIX = ".pkl"  # an entry's result: a hard link of the outcome file it came from
CACHE_LOCK = "lock"  # in .result-cache/: held over every add, eviction and clear
CACHE_SIZE = "size"  # in .result-cache/: the bytes of every entry, as text (runner/cache_size.py)


def is_run_name(name: str) -> bool:
    """Whether an entry of a runs home may be a run: dot names (``.runners``, ``.unreadable``,
    runs being created under ``TMP_PREFIX``, ``cov rm``'s ``TRASH_PREFIX``) never are. Every
    listing of runs asks this."""
    return not name.startswith(".")


def runners_dir(home: Path) -> Path:
    return home / RUNNERS


def heartbeat_path(home: Path, host: str, pid: int) -> Path:
    return runners_dir(home) / f"{host}-{pid}.json"


def is_heartbeat_name(name: str) -> bool:
    return name.endswith(".json")


def fence_path(home: Path, runner_id: str) -> Path:
    """Exists once another runner took ``runner_id``'s claims over (runner/fencing.py)."""
    return runners_dir(home) / f"{runner_id}.fenced"


def runner_job_path(home: Path) -> Path:
    """The record of the Slurm job that runs this home's runner (``cov runner start --as-job``)."""
    return runners_dir(home) / RUNNER_JOB


def runner_job_script_path(home: Path) -> Path:
    return runners_dir(home) / RUNNER_JOB_SCRIPT


def runner_job_log_path(home: Path, job: Part) -> Path:
    """The runner job's own output (``%j`` for sbatch's ``--output``): Slurm's messages."""
    return runners_dir(home) / f"{RUNNER_JOB_LOG_PREFIX}{job}.out"


def unreadable_dir(home: Path) -> Path:
    return home / UNREADABLE


def creating_path(home: Path, dispatch_id: str, token: str) -> Path:
    """Where a run is built before its rename into place (a name of its own per creator)."""
    return home / f"{TMP_PREFIX}{dispatch_id}.{token}"


def cache_dir(home: Path) -> Path:
    return home / CACHE


def cache_entry_paths(home: Path, key: str) -> "tuple[str, str]":
    """(index, result) of the cache entry ``key`` (a hex digest); plain strings, as the
    runner asks for them per ready task."""
    folder = os.path.join(home, CACHE, key[:2], key)
    return folder + CACHE_INDEX_SUFFIX, folder + CACHE_RESULT_SUFFIX


def trash_path(home: Path, dispatch_id: str) -> Path:
    """Where ``cov rm`` moves a run before deleting it (readers skip it at once)."""
    return home / f"{TRASH_PREFIX}{dispatch_id}"


# -- a run directory --------------------------------------------------------------------------
MANIFEST = "manifest.yaml"
PACK = "tasks.pkl"
EVENTS = "events.jsonl"
LOCK = "run.lock"
CANCEL = "cancel.json"
RESULTS = "results"
LOGS = "logs"
FINAL_RESULT = "result.pkl"
REPORT = "report.html"
ENV = "env.json"
SOURCES = "sources.json"  # the code as dispatched (optional: older runs have none)
SNAPSHOT = "snapshot.json"  # a finished run's node table and state, derived (runner/derived.py)
PULLED_FROM = "pulled-from.json"  # a copy of another host's run (cov pull): runner.snapshot
SECRETS = "secrets"  # a directory, 0700: its files are 0600 and never shown
EXECUTOR_SECRETS = "executors.json"  # in secrets/
SLURM = "slurm"  # the Slurm backend's files (below)
SSH = "ssh"  # ssh/<node>.<attempt>/: an SSH attempt's files with a shared filesystem
SPARE_OUTCOME = "next"  # results/next.tmp-<pid>-<random>: a pool worker's next outcome, empty
CAPTURE_PREFIX = ".capture-"  # logs/.capture-<pid>.out|err: a pool worker's output in progress
STREAMS = ("out", "err")  # the suffixes of a node's logs (and of capture files)
# Format 2.0's pack files (runner/outcome_pack.py): results/pack-<token>.bin holds outcome
# records, logs/pack-<token>.log logs; <token> is <writer pid>-<random>, one writer each.
PACKED_PREFIX = "pack-"
OUTCOME_PACK_SUFFIX = ".bin"
LOG_PACK_SUFFIX = ".log"


def outcome_file(node: Part) -> str:
    """``<node>.pkl``, in ``results/``."""
    return f"{node}.pkl"


def outcome_rel(node: Part) -> str:
    return f"{RESULTS}/{outcome_file(node)}"


def log_file(node: Part, stream: str) -> str:
    """``<node>.out`` or ``<node>.err`` (``stream`` one of ``STREAMS``), in ``logs/``."""
    return f"{node}.{stream}"


def log_rel(node: Part, stream: str) -> str:
    return f"{LOGS}/{log_file(node, stream)}"


def capture_file(pid: Part, stream: str) -> str:
    """A pool worker's capture file in ``logs/``: renamed to ``log_file`` when a task ends."""
    return f"{CAPTURE_PREFIX}{pid}.{stream}"


def capture_pid(name: str) -> Optional[int]:
    """The worker pid in a capture file's name (None: not a capture file's name)."""
    if not name.startswith(CAPTURE_PREFIX):
        return None
    pid = name[len(CAPTURE_PREFIX):].partition(".")[0]
    return int(pid) if pid.isdigit() else None


def pack_file(token: str, suffix: str) -> str:
    """A pack file's name (``suffix``: ``OUTCOME_PACK_SUFFIX`` in ``results/``,
    ``LOG_PACK_SUFFIX`` in ``logs/``)."""
    return f"{PACKED_PREFIX}{token}{suffix}"


def is_pack_name(name: str, suffix: str) -> bool:
    """Whether ``name`` is a pack file's (a plain name: no path, no dot name)."""
    stem = name[len(PACKED_PREFIX):-len(suffix)] if name.endswith(suffix) else ""
    return name.startswith(PACKED_PREFIX) and bool(stem) and "/" not in name and \
        all(c.isalnum() or c == "-" for c in stem)


def attempt_name(node: Part, attempt: Part) -> str:
    """``<node>.<attempt>``: an attempt's Slurm bundle and SSH directory are named so."""
    return f"{node}.{attempt}"


def attempt_node_shell(variable: str) -> str:
    """The shell expression of the node in the ``attempt_name`` held by ``variable``."""
    return f"${{{variable}%.*}}"


# Paths as strings, for the worker's hot path and the backends (``run``: the run directory).
def pack_path(run: str) -> str:
    return os.path.join(run, PACK)


def logs_dir(run: str) -> str:
    return os.path.join(run, LOGS)


def results_dir(run: str) -> str:
    return os.path.join(run, RESULTS)


def outcome_path(run: str, node: int) -> str:
    return os.path.join(run, RESULTS, outcome_file(node))


def spare_outcome_base(run: str) -> str:
    """``results/next``: never a file itself; ``next.tmp-<pid>-<random>`` is an empty file a
    pool worker made ahead, while idle, to write its next outcome into (then renamed)."""
    return os.path.join(run, RESULTS, SPARE_OUTCOME)


def log_path(run: str, node: int, stream: str) -> str:
    return os.path.join(run, LOGS, log_file(node, stream))


# -- the Slurm backend's files: <run>/slurm/ (or a copy of the run's layout on the cluster) ------
SLURM_BUNDLES = f"{SLURM}/bundles"  # <node>.<attempt>.pkl: one task each
SLURM_JOBS = f"{SLURM}/jobs"  # <job id>.sh: the submitted script; <job id>.out: the job's output
SUBMIT_PREFIX = ".submit-"  # slurm/jobs/.submit-<random>.sh: a script not yet submitted
WORKER = "worker.py"  # runner/worker.py where it is shipped (slurm/, an SSH host's cache)


def slurm_bundle_rel(task: Part) -> str:
    """``task``: an ``attempt_name`` (the sbatch script's ``$COV_TASK``)."""
    return f"{SLURM_BUNDLES}/{task}.pkl"


def slurm_shipped_rel(module_file: str) -> str:
    """Where ``worker.py`` and the modules shipped with it go (``worker.shipped_files``)."""
    return f"{SLURM}/{module_file}"


CHECKPOINTS = "checkpoints"  # <node>/: a task's own files, kept across requeues and retries


def checkpoint_rel(node: Part) -> str:
    """A task's checkpoint directory (``ct.get_context().checkpoint_dir``), in the run."""
    return f"{CHECKPOINTS}/{node}"


def job_script_file(job: Part) -> str:
    return f"{job}.sh"


def job_log_file(job: Part) -> str:
    """The job's own output (``%j`` or ``%A_%a`` for sbatch's ``--output``)."""
    return f"{job}.out"


def submit_script_file(token: str) -> str:
    return f"{SUBMIT_PREFIX}{token}.sh"


# -- the Slurm pilot mode's files: <run>/slurm/pilot/ (runner/backends/slurm/pilot.py) ----------
PILOT_QUEUE = f"{SLURM}/pilot/queue"  # <node>.<attempt>.pkl: tickets no block has taken yet
PILOT_BLOCKS = f"{SLURM}/pilot/blocks"  # <block id>/: one pilot block (one Slurm job) each
POOL = "pilot_pool.py"  # runner/pilot_pool.py where it is shipped (beside worker.py)
# in a block's directory:
BLOCK_INFO = "block.json"  # written by the runner at submission: the block's job id
BLOCK_STARTED = "started.json"  # written by the block's pool when it starts: host, pid, workers
BLOCK_HEARTBEAT = "heartbeat"  # touched by the pool every second
BLOCK_RUNNING = "running"  # <node>.<attempt>.pkl: tickets this block took (moved from the queue)
BLOCK_CANCEL = "cancel"  # <node>.<attempt>: the runner asks the block to kill that task
BLOCK_STOP = "stop"  # the runner asks the block to exit once its running tasks end
BLOCK_EXITED = "exited"  # written by the pool as it exits: it takes nothing more
BLOCK_LOG = "job.out"  # the block job's own output (sbatch --output)


def ticket_file(node: Part, attempt: Part) -> str:
    """A pilot ticket: the task's bundle, in the queue or in a block's ``running/``."""
    return f"{attempt_name(node, attempt)}.pkl"


def ticket_task(name: str) -> Optional[Tuple[int, int]]:
    """(node, attempt) of a ticket's file name (None: not a ticket, e.g. a temporary file)."""
    stem, dot, ext = name.rpartition(".")
    node, _, attempt = stem.partition(".")
    if ext != "pkl" or not node.isdigit() or not attempt.isdigit():
        return None
    return int(node), int(attempt)


def pool_file(name: str, rank: int) -> str:
    """A block's per-pool file (``started.json``, ``heartbeat``, ``exited``) for the pool of
    Slurm task ``rank`` of a block of several (``srun``): ``started-1.json`` ...; rank 0's is
    the block's own."""
    if rank <= 0:
        return name
    stem, ext = os.path.splitext(name)
    return f"{stem}-{int(rank)}{ext}"


def pilot_queue_dir(run: str) -> str:
    return os.path.join(run, PILOT_QUEUE)


def pilot_block_dir(run: str, block: str) -> str:
    return os.path.join(run, PILOT_BLOCKS, block)


# -- one SSH attempt's directory: <run>/ssh/<node>.<attempt>/ (shared filesystem), else
# <remote_cache>/<dispatch id>/<node>.<attempt>/ on the host --------------------------------
SSH_BUNDLE = "bundle.pkl"
SSH_OUTCOME = "outcome.pkl"
SSH_STDOUT = "stdout.log"
SSH_STDERR = "stderr.log"
SSH_LAUNCH_LOG = "launch.log"  # the launcher's (setsid, python) own output
SSH_PID = "pid"
SSH_LIB = "lib"  # <remote_cache>/lib/: worker-<hash>/ (shipped files), cloudpickle zips
SHIPPED_COV_PREFIX = "cov-"  # <remote_cache>/lib/cov-<version>-<hash>/: cov itself (self_ship)
SHIPPED_COV_COMPLETE = ".complete"  # the last member of its tar stream: the stream was whole
SLURM_REMOTE = ".cov"  # <remote_workdir>/.cov/<dispatch id>/: a run's copy on a cluster


def ssh_attempt_dir(run: str, node: int, attempt: int) -> str:
    return os.path.join(run, SSH, attempt_name(node, attempt))


class RunPaths:
    """The paths of one run directory (``RunDir`` adds reading and writing)."""

    def __init__(self, path: Union[str, "os.PathLike[str]"]) -> None:
        self.path = Path(path)

    @property
    def dispatch_id(self) -> str:
        return self.path.name

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    @property
    def pack_path(self) -> Path:
        return self.path / PACK

    @property
    def events_path(self) -> Path:
        return self.path / EVENTS

    @property
    def snapshot_path(self) -> Path:
        return self.path / SNAPSHOT

    @property
    def lock_path(self) -> Path:
        return self.path / LOCK

    @property
    def cancel_path(self) -> Path:
        return self.path / CANCEL

    @property
    def results_dir(self) -> Path:
        return self.path / RESULTS

    @property
    def logs_dir(self) -> Path:
        return self.path / LOGS

    @property
    def final_result_path(self) -> Path:
        return self.path / FINAL_RESULT

    @property
    def report_path(self) -> Path:
        return self.path / REPORT

    @property
    def secrets_dir(self) -> Path:
        return self.path / SECRETS

    @property
    def executor_secrets_path(self) -> Path:
        return self.path / SECRETS / EXECUTOR_SECRETS

    @property
    def env_path(self) -> Path:
        return self.path / ENV

    @property
    def sources_path(self) -> Path:
        return self.path / SOURCES

    def result_path(self, node: int) -> Path:
        return self.results_dir / outcome_file(node)

    def stdout_path(self, node: int) -> Path:
        return self.logs_dir / log_file(node, "out")

    def stderr_path(self, node: int) -> Path:
        return self.logs_dir / log_file(node, "err")

    def exists(self) -> bool:
        return self.manifest_path.is_file()
