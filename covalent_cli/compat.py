"""The rest of Covalent's top-level API: config access, task context, server no-ops."""
from __future__ import annotations

import os
import sys
from types import SimpleNamespace
from typing import Any, Dict, List, Optional, Union

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


class TaskContext(SimpleNamespace):
    """``ct.get_context()``: the running task's ``dispatch_id``, ``node_id`` and ``attempt``,
    and ``checkpoint_dir``: a directory of the task's own in its run (``checkpoints/<node>``),
    the same for every attempt, requeue and retry, where a long task keeps what it needs to
    resume (None outside a task). ``time_warning``: the Slurm job's time limit is near (it got
    SIGUSR1, ``max_requeues``): save now; the job is submitted again after its TIMEOUT."""

    @property
    def checkpoint_dir(self) -> Optional[str]:
        from runner import layout

        task = _current_task()
        run, node = task.get("run"), task.get("node")
        path = os.path.join(run, layout.checkpoint_rel(node)) if run and node is not None \
            else os.environ.get("COV_CHECKPOINT_DIR")  # a Slurm job's (script.py)
        if path:
            os.makedirs(path, mode=0o700, exist_ok=True)
        return path or None

    @property
    def time_warning(self) -> bool:
        return bool(_current_task().get("warned"))


def _current_task() -> Dict[str, Any]:
    """The running task's ``CURRENT_TASK``: a pool worker's (``runner.worker_common``), or, in
    a Slurm job or on an SSH host, that of ``python worker.py ...`` (``__main__`` there)."""
    main = sys.modules.get("__main__")
    found = getattr(main, "CURRENT_TASK", None)
    if isinstance(found, dict) and hasattr(main, "execute_bundle"):
        return found
    from runner.worker_common import CURRENT_TASK

    return CURRENT_TASK


def get_context() -> Any:
    """Inside a task: its ``dispatch_id``, ``node_id``, ``attempt``, ``checkpoint_dir`` and
    ``time_warning`` (``TaskContext``)."""
    task = _current_task()
    return TaskContext(dispatch_id=task.get("dispatch_id"), node_id=task.get("node"),
                       attempt=task.get("attempt"))


def covalent_start(*args: Any, **kwargs: Any) -> None:
    """No server to start: runners start on demand."""


def covalent_stop(*args: Any, **kwargs: Any) -> None:
    """No server to stop."""


def is_covalent_running(*args: Any, **kwargs: Any) -> bool:
    """Always True: dispatch needs no server."""
    return True
