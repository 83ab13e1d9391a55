"""``@lattice``: a function of electrons becomes a workflow.

The body runs once, at dispatch, with placeholders for task outputs; what it returns becomes the
``:postprocess:reconstruct`` node whose output is the workflow's result.
"""
from __future__ import annotations

import functools
import sys
from typing import Any, Callable, Dict, Optional

from covalent_cli.build import Builder
from covalent_cli.deps import as_bash, as_calls, as_pip
from covalent_cli.errors import NotSupportedByCov
from covalent_cli.triggers import trigger_message
from covalent_cli.graph import Graph

DEFAULT_EXECUTOR = "local"


class Lattice:
    """A workflow: its function and the defaults its electrons inherit."""

    __name__: str  # set by functools.update_wrapper, from the workflow function

    def __init__(self, workflow_function: Callable[..., Any], executor: Any = None,
                 workflow_executor: Any = None, deps_bash: Any = None, deps_pip: Any = None,
                 call_before: Any = None, call_after: Any = None, triggers: Any = None) -> None:
        self.workflow_function = workflow_function
        functools.update_wrapper(self, workflow_function)  # __name__, __doc__, __module__
        self.executor = executor
        self._workflow_executor = workflow_executor
        self.deps_bash = as_bash(deps_bash)
        self.deps_pip = as_pip(deps_pip)
        self.call_before = as_calls(call_before, "call_before")
        self.call_after = as_calls(call_after, "call_after")
        if triggers:
            raise NotSupportedByCov(trigger_message("@ct.lattice(triggers=...)"))
        self.triggers = None
        self.transport_graph: Graph = Graph()  # built by build_graph (Covalent: empty until then)
        self.python_version = ".".join(map(str, sys.version_info[:3]))

    @property
    def workflow_executor(self) -> Any:
        return self._workflow_executor if self._workflow_executor is not None else (
            self.executor if self.executor is not None else DEFAULT_EXECUTOR)

    @property
    def metadata(self) -> Dict[str, Any]:
        return {"executor": self.executor if self.executor is not None else DEFAULT_EXECUTOR,
                "workflow_executor": self.workflow_executor,
                "deps": {"bash": self.deps_bash, "pip": self.deps_pip},
                "call_before": self.call_before, "call_after": self.call_after}

    def inheritable_metadata(self) -> Dict[str, Any]:
        """What a sublattice inherits where it sets nothing (executor names only: JSON)."""
        def name(e: Any) -> Any:
            return e if isinstance(e, str) or e is None else e.to_config()
        return {"executor": name(self.executor), "workflow_executor": name(self._workflow_executor)}

    def build_graph(self, *args: Any, replacements: Optional[Dict[str, Any]] = None,
                    **kwargs: Any) -> Graph:
        """Run the body once with task placeholders and return the graph."""
        with Builder(self, replacements) as builder:
            retval = self.workflow_function(*args, **kwargs)
            graph = builder.finish(retval)
        self.transport_graph = graph
        return graph

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.workflow_function(*args, **kwargs)

    def __getstate__(self) -> Dict[str, Any]:
        # The last built graph holds every argument's value: never pickle it with the lattice.
        state = dict(self.__dict__)
        state["transport_graph"] = Graph()
        return state

    # ``dispatch`` and ``dispatch_sync`` (deprecated in Covalent) are bound by
    # covalent_cli.dispatch, which builds on this module.

    def draw(self, *args: Any, **kwargs: Any) -> None:
        """Covalent posts the graph to its server's preview page; cov has no server."""
        raise NotSupportedByCov(
            "lattice.draw() is not supported by cov (there is no server to preview on): "
            "dispatch the lattice and open its graph with `cov ui`, or `cov report RUN`")

    def __repr__(self) -> str:
        return f"<Lattice {self.__name__}>"


def lattice(_func: Optional[Callable[..., Any]] = None, *, backend: Any = None,
            executor: Any = None, workflow_executor: Any = None, deps_bash: Any = None,
            deps_pip: Any = None, call_before: Any = None, call_after: Any = None,
            triggers: Any = None) -> Any:
    """Make a function of electrons a workflow (bare ``@lattice`` or ``@lattice(...)``).

    ``executor`` is the default for electrons that set none; ``workflow_executor`` runs the small
    reshaping nodes (lists, items, the final reconstruct). Deps and hooks given here are the
    defaults of electrons that set none.
    """
    def decorate(func: Callable[..., Any]) -> Lattice:
        return Lattice(func, executor=executor if executor is not None else backend,
                       workflow_executor=workflow_executor, deps_bash=deps_bash,
                       deps_pip=deps_pip, call_before=call_before, call_after=call_after,
                       triggers=triggers)

    if _func is not None:
        return decorate(_func)
    return decorate
