"""The graph a lattice builds: nodes in creation order, edges naming the parameter they fill.

Pure data: no I/O, no pickling. ``dispatch`` turns it into a manifest and a pack of pickles.
Programs (and Covalent's own tests) read a built graph through Covalent's ``_TransportGraph``
accessors: ``lattice.build_graph(...)``, then ``lattice.transport_graph.get_node_value(0,
"name")``; those are here too (a dispatched run's graph is ``result_graph.TransportGraph``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

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

    # -- Covalent's ``_TransportGraph`` accessors, as a built (not yet run) graph has them ------
    def get_node_value(self, node_key: int, value_key: str) -> Any:
        """A node's attribute before its run: ``name``, ``function`` and (parameters)
        ``value`` as TransportableObjects, ``metadata``, ``task_group_id``. What a run
        sets (status, output, times, logs) is not there yet: KeyError, as in Covalent."""
        node = self._node(node_key)
        if value_key == "name":
            return node.name
        if value_key == "task_group_id":
            return node.id
        if value_key == "function":
            from covalent_cli.transport import TransportableObject

            return TransportableObject(node.function)
        if value_key == "value" and node.is_parameter:
            from covalent_cli.transport import TransportableObject

            return TransportableObject(node.value)
        if value_key == "metadata":
            metadata = getattr(node.owner, "metadata", None)
            metadata = dict(metadata) if isinstance(metadata, dict) else {"hooks": {}}
            metadata["executor"] = node.executor
            return metadata
        raise KeyError(value_key)

    def get_dependencies(self, node_key: int) -> List[int]:
        """The nodes whose outputs (or completion) ``node_key`` waits for."""
        node = self._node(node_key)
        return sorted({e.parent for e in node.parents} | set(node.waits))

    def get_edge_data(self, dep_key: int, node_key: int) -> Optional[Dict[int, Dict[str, Any]]]:
        """The edges from ``dep_key`` to ``node_key`` by number, None if there is none."""
        node = self._node(node_key)
        edges: List[Dict[str, Any]] = [
            {"edge_name": e.param, "param_type": e.type, "arg_index": e.index}
            for e in node.parents if e.parent == dep_key]
        edges += [{"edge_name": "!waiting_edge"} for w in node.waits if w == dep_key]
        return dict(enumerate(edges)) if edges else None

    def _node(self, node_key: int) -> GraphNode:
        if not isinstance(node_key, int) or not 0 <= node_key < len(self.nodes):
            raise KeyError(node_key)
        return self.nodes[node_key]
