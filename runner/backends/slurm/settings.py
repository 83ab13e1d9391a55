"""A Slurm executor's parameters, normalised once per backend.

The parameters are Covalent's ``SlurmExecutor``'s (``covalent-slurm-plugin``), plus a few of
cov's own for the scheduler etiquette (``array``, ``array_parallelism``, ``max_jobs``,
``missing_grace``, ``requeue_window``, ``batch_window``) and for the SSH mode (``port``,
``shared_filesystem``).
Values missing from an executor fall back to the config file's ``executors.slurm`` table.
"""
from __future__ import annotations

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


def parse_settings(config: Dict[str, Any], defaults: Optional[Dict[str, Any]] = None
                   ) -> SlurmSettings:
    """Normalise an executor's configuration; raises ``SettingsError`` with a hint."""
    merged = dict(defaults or {})
    merged.update({k: v for k, v in config.items() if v is not None})
    options = _pairs(merged.get("options"), "options")
    cleaned: List[Tuple[str, Any]] = []
    for key, value in options:
        key = str(key).strip().lstrip("-")
        if not _OPTION_KEY.match(key):
            raise SettingsError(f"Slurm option {key!r} is not an sbatch option name")
        if key in _IGNORED_OPTIONS or value is False or value is None:
            continue
        if len(key) > 1:
            key = key.replace("_", "-")  # cpus_per_task (YAML-friendly) -> cpus-per-task
        cleaned.append((key, value))
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
        address=str(merged.get("address") or ""),
        username=str(merged.get("username") or ""),
        ssh_key_file=str(merged.get("ssh_key_file") or ""),
        port=int(merged["port"]) if merged.get("port") else None,
        remote_workdir=str(merged.get("remote_workdir") or "covalent-workdir"),
        shared_filesystem=_flag(merged.get("shared_filesystem"), False),
        extra={k: v for k, v in merged.items() if k not in _KNOWN},
    )


_KNOWN = frozenset({
    "type", "options", "variables", "conda_env", "bashrc_path", "prerun_commands",
    "postrun_commands", "use_srun", "srun_options", "srun_append", "python_path", "slurm_path",
    "remote_workdir", "create_unique_workdir", "time_limit", "poll_freq", "missing_grace",
    "requeue_window", "batch_window", "array", "array_parallelism", "max_jobs", "cleanup",
    "address", "username", "ssh_key_file", "port", "shared_filesystem", "retries",
})


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


def _flag(value: Any, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, str):
        return value.strip().lower() not in ("", "0", "false", "no", "off")
    return bool(value)
