"""A Slurm executor's parameters, normalised once per backend.

The parameters are Covalent's ``SlurmExecutor``'s (``covalent-slurm-plugin``), plus a few of
cov's own for the scheduler etiquette (``array``, ``array_parallelism``, ``max_jobs``,
``missing_grace``, ``requeue_window``, ``batch_window``), for the SSH mode (``port``,
``shared_filesystem``), the named resources (``RESOURCES``: ``cpus_per_task``, ``mem``,
``gpus`` ...; each becomes its ``#SBATCH`` option, its value checked here) and requeues
(``max_requeues``, ``signal_delay``).
Values missing from an executor fall back to the config file's ``executors.slurm`` table.
A parameter no Slurm executor has is refused (``SettingsError`` naming the valid ones): at
dispatch (``settings_problem``, called by ``runner.config.executor_problem``), before any job.
"""
from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

DEFAULT_POLL_FREQ = 30.0  # seconds between scheduler queries, before backoff
DEFAULT_MISSING_GRACE = 60.0  # how long a finished job's outcome may take to become visible
DEFAULT_REQUEUE_WINDOW = 10.0  # how long an ended state must last (a requeue passes through)
DEFAULT_BATCH_WINDOW = 0.1  # tasks queued within this window go out as one array
DEFAULT_ARRAY_PARALLELISM = 256  # the ``%K`` of ``--array`` (submitit's default)
DEFAULT_MAX_JOBS = 1000  # tasks of one executor queued or running in Slurm at once
DEFAULT_SIGNAL_DELAY = 90  # seconds before the time limit the job is warned (submitit's 90)
MIN_POLL_FREQ = 0.1

_OPTION_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Options cov sets itself unless the executor does; ``parsable`` is a command-line flag.
_IGNORED_OPTIONS = frozenset({"parsable"})


class SettingsError(ValueError):
    """A Slurm executor parameter cannot be used (the task fails with this message)."""


@dataclass(frozen=True)
class SlurmSettings:
    """What the backend needs from an executor's configuration."""

    options: Tuple[Tuple[str, Any], ...] = ()
    variables: Tuple[Tuple[str, str], ...] = ()
    conda_env: str = ""
    bashrc_path: str = ""
    prerun_commands: Tuple[str, ...] = ()
    postrun_commands: Tuple[str, ...] = ()
    use_srun: bool = True
    srun_options: Tuple[Tuple[str, Any], ...] = ()
    srun_append: str = ""
    python_path: str = ""
    slurm_path: str = ""
    workdir: str = ""  # the task's working directory (``remote_workdir``); "" = dispatch cwd
    create_unique_workdir: bool = False
    time_minutes: Optional[int] = None  # from ``time_limit`` unless options set ``time``
    poll_freq: float = DEFAULT_POLL_FREQ
    missing_grace: float = DEFAULT_MISSING_GRACE
    requeue_window: float = DEFAULT_REQUEUE_WINDOW
    batch_window: float = DEFAULT_BATCH_WINDOW
    array: bool = True
    array_parallelism: int = DEFAULT_ARRAY_PARALLELISM
    max_jobs: int = DEFAULT_MAX_JOBS
    cleanup: bool = True
    max_requeues: int = 0  # times a TIMEOUT / PREEMPTED / NODE_FAIL job is submitted again
    signal_delay: int = DEFAULT_SIGNAL_DELAY  # --signal=B:USR1@N when requeues are allowed
    # SSH mode
    address: str = ""
    username: str = ""
    ssh_key_file: str = ""
    port: Optional[int] = None
    remote_workdir: str = ""
    shared_filesystem: bool = False
    extra: Dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def over_ssh(self) -> bool:
        return bool(self.address)

    def command(self, name: str) -> str:
        """A Slurm command, under ``slurm_path`` if one is configured."""
        return f"{self.slurm_path.rstrip('/')}/{name}" if self.slurm_path else name

    def has_option(self, *names: str) -> bool:
        return any(key in names for key, _ in self.options)

    def option(self, *names: str) -> Any:
        """The value of the first of ``names`` set in ``options`` (None if none is)."""
        return next((value for key, value in self.options if key in names), None)

    @property
    def warns(self) -> bool:
        """The job is warned (SIGUSR1) before its time limit: when it may be requeued."""
        return self.max_requeues > 0 and self.signal_delay > 0


def parse_settings(config: Dict[str, Any], defaults: Optional[Dict[str, Any]] = None
                   ) -> SlurmSettings:
    """Normalise an executor's configuration; raises ``SettingsError`` with a hint."""
    merged = dict(defaults or {})
    merged.update({k: v for k, v in config.items() if v is not None})
    unknown = sorted(k for k in merged if k not in PARAMETERS)
    if unknown:
        close = difflib.get_close_matches(unknown[0], sorted(PARAMETERS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise SettingsError(f"unknown Slurm executor parameter {unknown[0]!r}{hint}; valid: "
                            f"{', '.join(sorted(PARAMETERS - _HIDDEN))}")
    resources = _resources(merged)
    named = {key for key, _ in resources} | {_SHORT[k] for k, _ in resources if k in _SHORT}
    cleaned: List[Tuple[str, Any]] = []
    for key, value in _pairs(merged.get("options"), "options"):
        key = str(key).strip().lstrip("-")
        if not _OPTION_KEY.match(key):
            raise SettingsError(f"Slurm option {key!r} is not an sbatch option name")
        if key in _IGNORED_OPTIONS or value is False or value is None:
            continue
        if len(key) > 1:
            key = key.replace("_", "-")  # cpus_per_task (YAML-friendly) -> cpus-per-task
        if key not in named:  # a named resource wins (e.g. over the config file's options)
            cleaned.append((key, value))
    cleaned = resources + cleaned
    variables = []
    for name, value in _pairs(merged.get("variables"), "variables"):
        if not _VARIABLE.match(str(name)):
            raise SettingsError(f"Slurm variable name {name!r} is not a shell variable name")
        variables.append((str(name), str(value)))
    time_limit = _number(merged.get("time_limit"), "time_limit", -1)
    poll_freq = _number(merged.get("poll_freq"), "poll_freq", DEFAULT_POLL_FREQ)
    return SlurmSettings(
        options=tuple(cleaned),
        variables=tuple(variables),
        conda_env=str(merged.get("conda_env") or ""),
        bashrc_path=str(merged.get("bashrc_path") or ""),
        prerun_commands=_commands(merged.get("prerun_commands"), "prerun_commands"),
        postrun_commands=_commands(merged.get("postrun_commands"), "postrun_commands"),
        use_srun=_flag(merged.get("use_srun"), True),
        srun_options=tuple(_pairs(merged.get("srun_options"), "srun_options")),
        srun_append=str(merged.get("srun_append") or ""),
        python_path=str(merged.get("python_path") or ""),
        slurm_path=str(merged.get("slurm_path") or ""),
        workdir=str(merged.get("remote_workdir") or "") if not merged.get("address") else
        str(merged.get("remote_workdir") or "covalent-workdir"),
        create_unique_workdir=_flag(merged.get("create_unique_workdir"), False),
        time_minutes=max(1, math.ceil(time_limit / 60)) if time_limit > 0 else None,
        poll_freq=max(MIN_POLL_FREQ, poll_freq),
        missing_grace=max(0.0, _number(merged.get("missing_grace"), "missing_grace",
                                       DEFAULT_MISSING_GRACE)),
        requeue_window=max(0.0, _number(merged.get("requeue_window"), "requeue_window",
                                        DEFAULT_REQUEUE_WINDOW)),
        batch_window=max(0.0, _number(merged.get("batch_window"), "batch_window",
                                      DEFAULT_BATCH_WINDOW)),
        array=_flag(merged.get("array"), True),
        array_parallelism=int(_number(merged.get("array_parallelism"), "array_parallelism",
                                      DEFAULT_ARRAY_PARALLELISM)),
        max_jobs=max(1, int(_number(merged.get("max_jobs"), "max_jobs", DEFAULT_MAX_JOBS))),
        cleanup=_flag(merged.get("cleanup"), True),
        max_requeues=_whole(merged.get("max_requeues"), "max_requeues", 0),
        signal_delay=_whole(merged.get("signal_delay"), "signal_delay", DEFAULT_SIGNAL_DELAY),
        address=str(merged.get("address") or ""),
        username=str(merged.get("username") or ""),
        ssh_key_file=str(merged.get("ssh_key_file") or ""),
        port=int(merged["port"]) if merged.get("port") else None,
        remote_workdir=str(merged.get("remote_workdir") or "covalent-workdir"),
        shared_filesystem=_flag(merged.get("shared_filesystem"), False),
        extra={k: v for k, v in merged.items() if k not in _KNOWN},
    )


def settings_problem(config: Dict[str, Any], defaults: Optional[Dict[str, Any]] = None) -> str:
    """What is wrong with a Slurm executor's parameters ("" if nothing): for dispatch."""
    try:
        parse_settings(config, defaults)
    except SettingsError as exc:
        return str(exc)
    return ""


# The named resources: parameter -> (sbatch option, what its value must be, the check).
_MEMORY = re.compile(r"^[0-9]+(\.[0-9]+)?[KMGT]?B?$", re.I)
_TIME = re.compile(r"^([0-9]+-)?[0-9]+(:[0-9]{1,2}){0,2}$|^UNLIMITED$|^INFINITE$", re.I)
_COUNT_OR_TYPED = re.compile(r"^([A-Za-z0-9_.-]+:)?[1-9][0-9]*$")  # 2, a100:2
_NODES = re.compile(r"^[1-9][0-9]*(-[1-9][0-9]*)?$")  # 2, 2-4
_WORD = re.compile(r"^[^\s]+$")


def _positive(value: Any) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool) and value > 0) or \
        (isinstance(value, str) and value.isdigit() and int(value) > 0)


def _text(pattern: "re.Pattern[str]") -> Any:
    return lambda value: not isinstance(value, bool) and isinstance(value, (str, int)) and \
        bool(pattern.match(str(value).strip()))


RESOURCES: Dict[str, Tuple[str, str, Any]] = {
    "cpus_per_task": ("cpus-per-task", "a whole number above 0", _positive),
    "mem": ("mem", "a size such as 8G or 500M (a number alone: megabytes)", _text(_MEMORY)),
    "mem_per_cpu": ("mem-per-cpu", "a size such as 2G", _text(_MEMORY)),
    "gpus": ("gpus", "a number of GPUs, or TYPE:N (a100:2)", _text(_COUNT_OR_TYPED)),
    "gpus_per_task": ("gpus-per-task", "a number of GPUs, or TYPE:N", _text(_COUNT_OR_TYPED)),
    "gres": ("gres", "a resource list such as gpu:1 or gpu:a100:2", _text(_WORD)),
    "time": ("time", "a time limit: minutes, MM:SS, HH:MM:SS or D-HH:MM:SS",
             _text(_TIME)),
    "partition": ("partition", "a partition name", _text(_WORD)),
    "account": ("account", "an account name", _text(_WORD)),
    "qos": ("qos", "a QOS name", _text(_WORD)),
    "constraint": ("constraint", "node features such as 'skylake&ib'",
                   lambda v: isinstance(v, str) and bool(v.strip())),
    "nodes": ("nodes", "a number of nodes, or MIN-MAX", _text(_NODES)),
    "ntasks": ("ntasks", "a whole number above 0 (ranks, run with srun)", _positive),
    "ntasks_per_node": ("ntasks-per-node", "a whole number above 0", _positive),
}


# sbatch's one-letter forms of the named resources' options
_SHORT = {"cpus-per-task": "c", "gpus": "G", "time": "t", "partition": "p", "account": "A",
          "qos": "q", "constraint": "C", "nodes": "N", "ntasks": "n"}


def _resources(merged: Dict[str, Any]) -> List[Tuple[str, Any]]:
    """The named resources set, as sbatch options, each value checked."""
    found: List[Tuple[str, Any]] = []
    for name, (option, what, check) in RESOURCES.items():
        value = merged.get(name)
        if value is None or value == "":
            continue
        if not check(value):
            raise SettingsError(f"Slurm executor parameter '{name}' must be {what}, "
                                f"not {value!r}")
        found.append((option, str(value).strip()))
    return found


_KNOWN = frozenset({
    "type", "options", "variables", "conda_env", "bashrc_path", "prerun_commands",
    "postrun_commands", "use_srun", "srun_options", "srun_append", "python_path", "slurm_path",
    "remote_workdir", "create_unique_workdir", "time_limit", "poll_freq", "missing_grace",
    "requeue_window", "batch_window", "array", "array_parallelism", "max_jobs", "cleanup",
    "address", "username", "ssh_key_file", "port", "shared_filesystem", "retries",
    "max_requeues", "signal_delay", "pilot", *RESOURCES,
})
# Read from ``extra`` by the SSH mode (runner.ssh's connection settings, the Python set-up).
_SSH = frozenset({
    "ssh_config", "known_hosts", "strict_host_key_checking", "connect_timeout", "keepalive",
    "max_sessions", "retry_connect", "max_connection_attempts", "retry_wait_time",
    "remote_cache", "ship_cloudpickle", "ignore_versions", "password", "passphrase",
    "ssh_key_passphrase",
})
# Covalent's parameters cov accepts and ignores (covalent-slurm-plugin, BaseExecutor).
_IGNORED = frozenset({"cert_file", "cache_dir", "log_stdout", "log_stderr"})
# Every parameter a Slurm executor may have; a module adding parameters adds them here.
PARAMETERS = _KNOWN | _SSH | _IGNORED
_HIDDEN = frozenset({"type", "ssh_key_passphrase"})  # not listed in the error


def _pairs(value: Any, name: str) -> List[Tuple[str, Any]]:
    if value is None or value == "":
        return []
    if isinstance(value, dict):
        return list(value.items())
    if isinstance(value, (list, tuple)) and all(isinstance(p, (list, tuple)) and len(p) == 2
                                                for p in value):
        return [(k, v) for k, v in value]
    raise SettingsError(f"Slurm executor parameter '{name}' must be a mapping, "
                        f"not {type(value).__name__}")


def _commands(value: Any, name: str) -> Tuple[str, ...]:
    if not value:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (list, tuple)):
        return tuple(str(v) for v in value)
    raise SettingsError(f"Slurm executor parameter '{name}' must be a list of shell commands")


def _number(value: Any, name: str, default: float) -> float:
    if value is None or value == "":
        return float(default)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise SettingsError(f"Slurm executor parameter '{name}' must be a number, "
                            f"not {value!r}") from None


def _whole(value: Any, name: str, default: int) -> int:
    number = _number(value, name, default)
    if number < 0 or number != int(number):
        raise SettingsError(f"Slurm executor parameter '{name}' must be a whole number, "
                            f"not {value!r}")
    return int(number)


def _flag(value: Any, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, str):
        return value.strip().lower() not in ("", "0", "false", "no", "off")
    return bool(value)
