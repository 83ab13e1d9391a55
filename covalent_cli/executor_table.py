"""The manifest's ``executors`` table, built at dispatch from the tasks' executors (names from
the config file, ``ct.executor`` objects, users' Covalent-style executors), each checked now so
that a mistake fails the dispatch, not the runner later.
"""
from __future__ import annotations

import importlib.util
from typing import Any, Dict, Optional, Tuple

from covalent_cli import executor as executor_mod
from covalent_cli.errors import DispatchError
from runner import backends
from runner.config import executor_problem, get_value
from runner.redact import has_mask, split_secrets, unmask
from runner.rundir import RunDir


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # ValueError: set to None in sys.modules (blocked)
        return False


def executor_type(executor: Any) -> str:
    """The backend type an executor (a name from the config file, or an object) runs on."""
    if isinstance(executor, str):
        name = executor_mod.NAME_ALIASES.get(executor, executor)
        configured = get_value(f"executors.{name}")
        return str(configured.get("type", name)) if isinstance(configured, dict) else name
    return getattr(executor, "short_name", "local")


class ExecutorTable:
    """The manifest's ``executors`` table: each distinct executor once, by a short key, with
    its secret fields masked; their values go to ``secrets`` (the run's 0600 file). A redispatch
    takes the secrets of the old run's executors back (its pickled executors are masked)."""

    def __init__(self, reuse_from: Optional[RunDir] = None) -> None:
        self.table: Dict[str, Dict[str, Any]] = {}
        self.secrets: Dict[str, Dict[str, Any]] = {}
        self._full: Dict[str, Dict[str, Any]] = {}
        self._by_name: Dict[str, Tuple[str, Any]] = {}
        self._old = reuse_from

    def key(self, executor: Any, task: str) -> Tuple[str, Any]:
        if isinstance(executor, str):
            found = self._by_name.get(executor)
            if found is None:
                found = self._by_name[executor] = (self._add_named(executor, task), None)
            return found
        if isinstance(executor, executor_mod.BaseExecutor) and type(executor).__module__ != \
                executor_mod.__name__:
            # A user's Covalent-style executor: its run() is called in a local pool worker.
            secret = sorted(split_secrets(vars(executor))[1])
            if secret:
                raise DispatchError(
                    f"custom executor {type(executor).__name__} of task '{task}' has secret "
                    f"field(s) {', '.join(secret)}: it would be stored in the run directory",
                    "read the secret inside run() (from the environment or a file)")
            return self._add(f"{type(executor).__name__}", {"type": "local",
                             "custom": type(executor).__qualname__}), executor.run
        if isinstance(executor, executor_mod.BaseExecutor):
            config = executor.to_config()
            self._check_type(config["type"], task)
            return self._add(config["type"], config), None
        raise DispatchError(f"task '{task}' has an executor of type {type(executor).__name__}; "
                            "use a name such as 'local' or an object from ct.executor")

    def _add_named(self, name: str, task: str) -> str:
        canonical = executor_mod.NAME_ALIASES.get(name, name)
        configured = get_value(f"executors.{canonical}")
        if not isinstance(configured, dict):
            known = sorted(set(get_value("executors", {}) or {}) | set(executor_mod.NAME_ALIASES))
            raise DispatchError(
                f"unknown executor '{name}' (task '{task}'); known: {', '.join(known)}",
                "define it under 'executors:' in the cov config file")
        config = {"type": canonical, **configured}
        self._check_type(str(config["type"]), task)
        return self._add(name, config, exact=True)

    def _check_type(self, type_name: str, task: str) -> None:
        if not backends.is_known(type_name):
            raise DispatchError(f"executor type '{type_name}' of task '{task}' has no backend; "
                                f"known types: {', '.join(backends.known_types())}",
                                "register a backend class by 'module:Class' or an entry point")

    def _add(self, stem: str, config: Dict[str, Any], exact: bool = False) -> str:
        config = executor_mod.resolve_config(config)  # a Dask one without address: local
        if config.get("type") == "dask" and not _importable("distributed"):
            raise DispatchError(f"executor '{stem}' runs tasks on a Dask cluster, and "
                                "distributed is not installed", "pip install 'cov[dask]'")
        problem = executor_problem(stem, config)
        if problem:  # the runner would fail the task (or itself) on it later
            raise DispatchError(problem, "fix the executor's arguments or its config entry")
        masked, secrets = split_secrets(config)
        if self._old is not None and has_mask(secrets):
            secrets = self._inherited(masked, secrets)
        full = unmask(masked, secrets)
        for key, existing in self._full.items():
            if existing == full and (key == stem or not exact):
                return key
        key, n = stem, 1
        while key in self.table:
            n += 1
            key = f"{stem}-{n}"
        self.table[key], self._full[key] = masked, full
        if secrets:
            self.secrets[key] = secrets
        return key

    def _inherited(self, masked: Dict[str, Any], secrets: Dict[str, Any]) -> Dict[str, Any]:
        """A redispatched executor's masked values, from the old run's same executor."""
        assert self._old is not None
        for key, old in self._old.manifest.executors.items():
            if old == masked:
                return self._old.executor_secrets(key) or secrets
        return secrets
