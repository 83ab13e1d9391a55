"""Configuration: one YAML file, environment overrides, and where the runs live.

Resolution of the runs home: ``$COV_HOME``, else ``home:`` in the config file, else
``~/.cov/runs``. The config file is ``$COV_CONFIG``, else ``~/.config/cov/config.yaml``. Keys are
read with dotted paths (``runner.workers``); ``executors.<name>`` holds named executors.

``check_config`` holds the file to a schema (``RUNNER_KEYS``, ``EXECUTOR_FIELDS``): known keys
only (a near miss gets a did-you-mean), values of the right type, executor types that have a
backend. Dispatch, ``cov config`` and the runner at start call it, so a mistake is one line
before anything is dispatched, not a runner dying later.
"""
from __future__ import annotations

import copy
import importlib.util
import os
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

import yaml

from runner import backends
from runner.fs import atomic_write

DEFAULTS: Dict[str, Any] = {
    "home": None,
    "runner": {
        "workers": None,  # local pool size; None = the CPU count
        "idle_timeout": 30.0,  # seconds with nothing to do before a runner exits
        "rescan_interval": 2.0,  # full rescan, the safety net under watchdog events
        "poll_interval": 1.0,  # polling observer's interval (network filesystems, --poll)
        "heartbeat_interval": 5.0,
    },
    "executors": {name: {"type": name} for name in backends.BUILTIN},  # local, ssh, slurm, dask
    "cache": {"max_size": "10GB"},  # the result cache's bound (runner/cache.py)
}

class ConfigError(Exception):
    """The config file cannot be read, or holds an unknown key or a value of the wrong type."""


def _seconds(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0


def _positive(value: Any) -> bool:
    return _seconds(value) and value > 0


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: value is None or check(value)


def _of(*types: type) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, types) and (bool in types or
                                                       not isinstance(value, bool))


TOP_KEYS = ("home", "runner", "executors", "cache")
# runner.<key> -> (what it must be, the check)
RUNNER_KEYS: Dict[str, Tuple[str, Callable[[Any], bool]]] = {
    "workers": ("a positive whole number", _optional(lambda v: _count(v) and v > 0)),
    "idle_timeout": ("a number of seconds", _seconds),
    "rescan_interval": ("a positive number of seconds", _positive),
    "poll_interval": ("a positive number of seconds", _positive),
    "heartbeat_interval": ("a positive number of seconds", _positive),
}
# Fields an executor may have (any type of executor), with the type they must have when set.
EXECUTOR_FIELDS: Dict[str, Tuple[str, Callable[[Any], bool]]] = {
    "type": ("text", _of(str)),
    "retries": ("a whole number", _optional(_count)),
    "time_limit": ("a number of seconds", _optional(_of(int, float))),
    "max_concurrent": ("a whole number", _optional(_count)),
    "max_sessions": ("a whole number", _optional(_count)),
    "max_connection_attempts": ("a whole number", _optional(_count)),
    "port": ("a port number", _optional(_count)),
    "poll_freq": ("a number of seconds", _optional(_seconds)),
    "connect_timeout": ("a number of seconds", _optional(_seconds)),
    "keepalive": ("a number of seconds", _optional(_seconds)),
    "retry_wait_time": ("a number of seconds", _optional(_seconds)),
    "prelude": ("a list of commands", _optional(_of(list))),
    "prerun_commands": ("a list of commands", _optional(_of(list))),
    "postrun_commands": ("a list of commands", _optional(_of(list))),
    "options": ("a mapping", _optional(_of(dict))),
    "variables": ("a mapping", _optional(_of(dict))),
    "srun_options": ("a mapping", _optional(_of(dict))),
    "use_srun": ("true or false", _optional(_of(bool))),
    "shared_filesystem": ("true or false", _optional(_of(bool))),
    "scheduler_address": ("a Dask scheduler address (tcp://host:port)", _optional(_of(str))),
    "persistent_worker": ("true or false", _optional(_of(bool))),
}


def config_path() -> Path:
    """Where the config file is (it need not exist)."""
    env = os.environ.get("COV_CONFIG")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "cov" / "config.yaml"


_cache: Dict[str, Any] = {}


def load_config(reload: bool = False) -> Dict[str, Any]:
    """The effective configuration: defaults deep-merged with the file."""
    path = config_path()
    try:
        stamp = path.stat().st_mtime_ns
    except FileNotFoundError:
        stamp = None
    key = f"{path}:{stamp}"
    if not reload and _cache.get("key") == key:
        return _cache["value"]
    _cache.clear()
    merged = copy.deepcopy(DEFAULTS)
    if stamp is not None:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark else ""
            raise ConfigError(f"config file {path} is not valid YAML{where}: fix or remove it") from None
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path} must be a mapping of keys to values")
        _merge(merged, data)
    _cache.update(key=key, value=merged)
    return merged


def check_config() -> Dict[str, Any]:
    """The effective configuration, or ``ConfigError`` naming its first mistake (an unknown
    key, a value of the wrong type, an executor type without a backend)."""
    config = load_config()
    if "problem" not in _cache:
        _cache["problem"] = config_problem(config)
    if _cache["problem"]:
        raise ConfigError(f"config file {config_path()}: {_cache['problem']}; "
                          "fix it there (`cov config` checks it)")
    return config


def config_problem(config: Dict[str, Any]) -> str:
    """What is wrong with ``config`` ("" if nothing)."""
    problem = _unknown("", config, TOP_KEYS)
    if problem:
        return problem
    home = config.get("home")
    if home is not None and not isinstance(home, str):
        return f"'home' must be a directory path (found {home!r})"
    runner = config.get("runner")
    if not isinstance(runner, dict):
        return f"'runner' must be a mapping (found {runner!r})"
    problem = _unknown("runner.", runner, tuple(RUNNER_KEYS))
    if problem:
        return problem
    for name, (what, check) in RUNNER_KEYS.items():
        if name in runner and not check(runner[name]):
            return f"runner.{name} must be {what} (found {runner[name]!r})"
    problem = _cache_problem(config.get("cache", {}))
    if problem:
        return problem
    executors = config.get("executors")
    if not isinstance(executors, dict):
        return f"'executors' must be a mapping of names to executors (found {executors!r})"
    for name, executor in executors.items():
        if executor == DEFAULTS["executors"].get(name):
            continue  # a built-in executor as shipped (checking the Slurm one imports its backend)
        problem = executor_problem(str(name), executor)
        if problem:
            return problem
    return ""


def _cache_problem(cache: Any) -> str:
    from runner.cache import parse_size

    if not isinstance(cache, dict):
        return f"'cache' must be a mapping (found {cache!r})"
    problem = _unknown("cache.", cache, ("max_size",))
    if problem:
        return problem
    if "max_size" in cache and parse_size(cache["max_size"]) is None:
        return f"cache.max_size must be a size such as 10GB or 500MB (found {cache['max_size']!r})"
    return ""


def executor_problem(name: str, executor: Any) -> str:
    """What is wrong with the config of executor ``name`` ("" if nothing)."""
    if not isinstance(executor, dict):
        return f"executors.{name} must be a mapping (found {executor!r})"
    for field, (what, check) in EXECUTOR_FIELDS.items():
        if field in executor and not check(executor[field]):
            return f"executors.{name}.{field} must be {what} (found {executor[field]!r})"
    type_name = executor.get("type", name)
    if type_name == "slurm":  # its parameters and resources, checked before any job exists
        from runner.backends.slurm.pilot_settings import pilot_problem
        from runner.backends.slurm.settings import settings_problem

        problem = settings_problem(executor)
        if not problem and executor.get("pilot") not in (None, False):
            problem = pilot_problem(executor)
        if problem:
            return f"executors.{name}: {problem}"
    return _backend_problem(f"executors.{name}.type", str(type_name)) if "type" in executor \
        else ""


def _backend_problem(where: str, type_name: str) -> str:
    if not backends.is_known(type_name):
        known = backends.known_types()
        from difflib import get_close_matches  # (only for a mistake)

        close = get_close_matches(type_name, known, n=1)
        return (f"{where}: no backend for executor type {type_name!r} "
                f"(did you mean {close[0]!r}?)" if close else
                f"{where}: no backend for executor type {type_name!r}; "
                f"known: {', '.join(known)}, or 'module:Class'")
    module = type_name.partition(":")[0] if ":" in type_name else ""
    if module:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            return (f"{where}: executor type {type_name!r} names module {module!r}, which "
                    "cannot be imported (is it installed, or on PYTHONPATH?)")
    return ""


def _unknown(prefix: str, mapping: Dict[str, Any], known: Tuple[str, ...]) -> str:
    for key in mapping:
        if key not in known:
            from difflib import get_close_matches  # (only for a mistake)

            close = get_close_matches(str(key), known, n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else \
                f" (known: {', '.join(prefix + k for k in known)})"
            return f"unknown key '{prefix}{key}'{hint}"
    return ""


def _merge(base: Dict[str, Any], extra: Dict[str, Any]) -> None:
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _merge(base[k], v)
        else:
            base[k] = v


def get_value(key: str, default: Any = None) -> Any:
    """A dotted key of the effective configuration."""
    node: Any = load_config()
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def set_values(values: Dict[str, Any]) -> None:
    """Set dotted keys in the config file (written atomically)."""
    path = config_path()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        data = {}
    for key, value in values.items():
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, yaml.safe_dump(data, sort_keys=False).encode())
    _cache.clear()


def runs_home(override: Optional[str] = None) -> Path:
    """The directory holding the run directories."""
    chosen = override or os.environ.get("COV_HOME") or get_value("home")
    if chosen and not isinstance(chosen, str):
        raise ConfigError(f"config file {config_path()}: 'home' must be a directory path "
                          f"(found {chosen!r}); fix it there (`cov config` checks it)")
    if chosen:
        return Path(chosen).expanduser().absolute()
    return Path(os.path.expanduser("~")) / ".cov" / "runs"
