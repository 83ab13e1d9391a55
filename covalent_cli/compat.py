"""The rest of Covalent's top-level API: config access, task context, server no-ops."""
from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Dict, List, Union

from runner import config as _config


def get_config(entries: Union[str, List[str], None] = None) -> Any:
    """The whole config (dict), one dotted key, or a dict of several keys."""
    if entries is None:
        return _config.load_config()
    if isinstance(entries, str):
        return _config.get_value(entries)
    return {key: _config.get_value(key) for key in entries}


def set_config(new_config: Union[str, Dict[str, Any]], new_value: Any = None) -> None:
    """``set_config({"a.b": v})`` or ``set_config("a.b", v)``; writes the config file."""
    if isinstance(new_config, str):
        new_config = {new_config: new_value}
    _config.set_values(new_config)


def reload_config() -> None:
    _config.load_config(reload=True)


def get_context() -> Any:
    """Inside a task: ``dispatch_id``, ``node_id`` (and ``attempt``) of the running task."""
    from runner.worker_common import CURRENT_TASK

    return SimpleNamespace(dispatch_id=CURRENT_TASK.get("dispatch_id"),
                           node_id=CURRENT_TASK.get("node"),
                           attempt=CURRENT_TASK.get("attempt"))


def covalent_start(*args: Any, **kwargs: Any) -> None:
    """No server to start: runners start on demand."""


def covalent_stop(*args: Any, **kwargs: Any) -> None:
    """No server to stop."""


def is_covalent_running(*args: Any, **kwargs: Any) -> bool:
    """Always True: dispatch needs no server."""
    return True
