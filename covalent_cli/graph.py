"""The graph a lattice builds: nodes in creation order, edges naming the parameter they fill.

Pure data: no I/O, no pickling. ``dispatch`` turns it into a manifest and a pack of pickles.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional

from runner.manifest import PARAMETER

NO_VALUE = object()


@dataclass
class GraphEdge:
    """``parent``'s output fills parameter ``param`` (positional ``index`` or keyword)."""

    parent: int
    param: str
    type: str = "arg"
    index: Optional[int] = None


@dataclass
class GraphNode:
    """A vertex: a task to run, or a parameter holding a value."""

    id: int
    name: str
    kind: str
    function: Optional[Callable[..., Any]] = None
    value: Any = NO_VALUE
    executor: Any = None  # a name, an executor declaration, or None (the lattice's)
    hooks: Any = None  # (bash, pip, call_before, call_after) from deps.py
    owner: Any = None  # the Electron that made it (one pickled function per owner)
    parents: List[GraphEdge] = field(default_factory=list)
    waits: List[int] = field(default_factory=list)

    @property
    def is_parameter(self) -> bool:
        return self.kind == PARAMETER


@dataclass
class Graph:
    """Nodes whose ids are their positions (Covalent numbers nodes in creation order)."""

    nodes: List[GraphNode] = field(default_factory=list)
    output_node: int = -1

    @property
    def _graph(self) -> Any:
        """Covalent's networkx graph as far as programs read it: ``_graph.nodes``, the ids."""
        from types import SimpleNamespace

        return SimpleNamespace(nodes=[n.id for n in self.nodes])

    def add(self, name: str, kind: str, **fields: Any) -> GraphNode:
        node = GraphNode(id=len(self.nodes), name=name, kind=kind, **fields)
        self.nodes.append(node)
        return node

    def connect(self, parent: int, child: int, param: str, type: str = "arg",
                index: Optional[int] = None) -> None:
        self.nodes[child].parents.append(GraphEdge(parent, param, type, index))

    def wait(self, child: int, parent: int) -> None:
        waits = self.nodes[child].waits
        if parent not in waits and parent != child:
            waits.append(parent)
