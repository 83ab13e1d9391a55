"""Configuration: one YAML file, environment overrides, and where the runs live.

Resolution of the runs home: ``$COV_HOME``, else ``home:`` in the config file, else
``~/.cov/runs``. The config file is ``$COV_CONFIG``, else ``~/.config/cov/config.yaml``. Keys are
read with dotted paths (``runner.workers``); ``executors.<name>`` holds named executors.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Dict, Optional

import yaml

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
    "executors": {
        "local": {"type": "local"},
        "ssh": {"type": "ssh"},
        "slurm": {"type": "slurm"},
    },
}

# Keys whose values never appear in a manifest, a log or the UI.
SECRET_MARKERS = ("password", "passphrase", "secret", "token", "credential")


class ConfigError(Exception):
    """The config file cannot be read."""


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
    if chosen:
        return Path(chosen).expanduser().absolute()
    return Path(os.path.expanduser("~")) / ".cov" / "runs"


def mask_secrets(value: Any) -> Any:
    """A copy with the values of secret-looking keys replaced by ``***``."""
    if isinstance(value, dict):
        return {k: ("***" if any(m in str(k).lower() for m in SECRET_MARKERS) and v else
                    mask_secrets(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_secrets(v) for v in value]
    return value
