"""``@electron``: a function becomes a task.

Outside a lattice an electron is a plain call. Inside a lattice body it adds a node to the graph
being built and returns a placeholder for its output (see ``build.py``).
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Dict, List, Optional

from covalent_cli.build import Proxy, current_builder
from covalent_cli.deps import (DepsBash, DepsCall, DepsModule, DepsPip, Hook, as_bash, as_calls,
                               as_pip)
from covalent_cli.fs import RESERVED_FILES_KEYWORD, FileTransfer, as_transfers


class Electron:
    """A task: a function plus where and how it runs."""

    receives_files = True  # a task with files=[...] gets their paths as its `files` argument

    def __init__(self, function: Callable[..., Any], executor: Any = None,
                 deps_bash: Any = None, deps_pip: Any = None, call_before: Any = None,
                 call_after: Any = None, files: Any = None, deps_module: Any = None,
                 cache: bool = False) -> None:
        self.function = function
        self.cache = bool(cache)  # an equal earlier task's result may stand in (docs/cache.md)
        self.executor = executor
        self.deps_bash: Optional[DepsBash] = as_bash(deps_bash)
        self.deps_pip: Optional[DepsPip] = as_pip(deps_pip)
        self.call_before: Optional[List[Hook]] = as_calls(call_before, "call_before")
        self.call_after: Optional[List[Hook]] = as_calls(call_after, "call_after")
        if deps_module is not None:
            modules = deps_module if isinstance(deps_module, (list, tuple)) else [deps_module]
            self.call_before = [DepsModule(m) for m in modules] + (self.call_before or [])
        self.files: List[FileTransfer] = as_transfers(files)

    @property
    def hooks(self) -> tuple:
        return (self.deps_bash, self.deps_pip, self.call_before, self.call_after)

    @property
    def metadata(self) -> Dict[str, Any]:
        """Covalent's metadata view (keys only where set)."""
        hooks: Dict[str, Any] = {}
        deps = {k: v for k, v in (("bash", self.deps_bash), ("pip", self.deps_pip)) if v}
        if deps:
            hooks["deps"] = deps
        if self.call_before:
            hooks["call_before"] = self.call_before
        if self.call_after:
            hooks["call_after"] = self.call_after
        meta: Dict[str, Any] = {"executor": self.executor, "hooks": hooks}
        if self.files:
            meta["files"] = self.files
        return meta

    def retval_keywords(self) -> List[str]:
        """Keyword arguments filled at run time, not in the graph: call_before return values
        and ``files`` (the transfers' paths)."""
        words = [c.retval_keyword for c in (self.call_before or [])
                 if isinstance(c, DepsCall) and c.retval_keyword]
        return words + [RESERVED_FILES_KEYWORD] if self.files and self.receives_files else words

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        builder = current_builder()
        if builder is None:
            return self.function(*args, **kwargs)
        return builder.call_electron(self, args, kwargs)

    def __repr__(self) -> str:
        return f"Electron({getattr(self.function, '__name__', self.function)!r})"


def electron(_func: Optional[Callable[..., Any]] = None, *, backend: Any = None,
             executor: Any = None, files: Any = None, deps_bash: Any = None,
             deps_pip: Any = None, deps_module: Any = None, call_before: Any = None,
             call_after: Any = None, cache: bool = False) -> Any:
    """Make a function (or a lattice, giving a sublattice) a task.

    Usable bare (``@electron``) or with arguments (``@electron(executor="ssh")``).
    ``executor`` is a name (``"local"``, ``"ssh"``, a name from the config) or an executor object;
    None means the lattice's. ``deps_bash``, ``deps_pip``, ``call_before``, ``call_after`` run in
    the task's environment, in that order, around it. ``files`` is a list of
    ``ct.fs.FileTransfer``: copies before or after the task, whose (from, to) paths the task
    receives as its ``files`` keyword argument. ``cache=True`` (cov's own): a task with the same
    code and input values as an earlier completed one, in any run of the home, takes that
    result instead of running (docs/cache.md).
    """
    chosen = executor if executor is not None else backend

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        task = Electron(func, executor=chosen, deps_bash=deps_bash, deps_pip=deps_pip,
                        call_before=call_before, call_after=call_after, files=files,
                        deps_module=deps_module, cache=cache)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return task(*args, **kwargs)

        wrapper.electron_object = task  # type: ignore[attr-defined]
        return wrapper

    if _func is not None:
        return decorate(_func)
    return decorate


def wait(child: Any, parents: Any) -> Any:
    """Make ``child`` run after ``parents`` (one task output or a list), passing no value.
    Outside a lattice it does nothing. Returns ``child``."""
    builder = current_builder()
    if builder is not None and isinstance(child, Proxy):
        builder.wait(child, parents)
    return child
