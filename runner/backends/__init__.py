"""Backends by executor type, imported on first use so that fabric loads only for SSH.

The runner takes every backend from here, the local pool included. Built-in types: ``local``,
``ssh``, ``slurm``, ``dask`` (``BUILTIN``: the one list of them; the config file's default
executors and the SDK's executor classes follow it). A user's own backend is registered by an entry
point in the group ``cov.backends`` (``name = "package.module:Class"``) or named directly as an
executor's ``type: "package.module:Class"`` in the config file.
"""
from __future__ import annotations

import importlib
import sys
from functools import lru_cache
from typing import Dict, List, Type

from runner.backends.base import Backend, Completion, Task

BUILTIN: Dict[str, str] = {
    "local": "runner.backends.local:LocalBackend",
    "ssh": "runner.backends.ssh:SSHBackend",
    "slurm": "runner.backends.slurm:SlurmBackend",
    "dask": "runner.backends.dask.backend:DaskBackend",  # needs distributed (the cov[dask] extra)
}
ENTRY_POINT_GROUP = "cov.backends"


@lru_cache(maxsize=None)
def _entry_points() -> Dict[str, str]:
    try:
        from importlib.metadata import entry_points

        if sys.version_info >= (3, 10):
            group = entry_points(group=ENTRY_POINT_GROUP)
        else:  # 3.9: a dict of groups
            group = entry_points().get(ENTRY_POINT_GROUP, ())
        return {ep.name: ep.value for ep in group}
    except Exception:  # noqa: BLE001 - broken metadata must not stop the runner
        return {}


def known_types() -> List[str]:
    return sorted(set(BUILTIN) | set(_entry_points()))


def is_known(type_name: str) -> bool:
    return type_name in BUILTIN or type_name in _entry_points() or ":" in type_name


def backend_class(type_name: str) -> Type[Backend]:
    """The backend class for an executor type."""
    target = BUILTIN.get(type_name) or _entry_points().get(type_name) or type_name
    module_name, _, attr = target.partition(":")
    if not attr:
        raise LookupError(f"no backend for executor type '{type_name}'")
    cls = getattr(importlib.import_module(module_name), attr)
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise LookupError(f"{target} is not a subclass of runner.backends.base.Backend")
    return cls


__all__ = ["Backend", "Completion", "Task", "backend_class", "is_known", "known_types"]
