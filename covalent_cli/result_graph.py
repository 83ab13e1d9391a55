"""What a ``Result`` holds of its nodes, read once, and Covalent's view of it:
``result.lattice.transport_graph.get_node_value(node_id, key)``.

A ``Result`` is a snapshot: everything it answers with is read when it is made (outputs and
logs of every node, unless ``get_result(intermediate_outputs=False)``), so it still answers
after its run directory is removed. The one thing read later, on first use, is a task's
``metadata`` (its executor and hooks: unpickling a task's function for every node of every
``get_result`` would cost too much); it comes from the run's pack of pickles, which the
snapshot keeps open, so it too survives the run directory's removal (POSIX keeps an open file
readable after its name is gone).
"""
from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any, Dict, List, Optional

from covalent_cli.deps import hooks_metadata
from covalent_cli.status import RESULT_STATUS, Status
from covalent_cli.transport import TransportableObject
from runner.manifest import PARAMETER, Manifest
from runner.query import node_status
from runner.layout import log_file
from runner.rundir import RunDir
from runner.state import COMPLETED, QUEUED, RunState

# The keys ``get_node_value`` knows (Covalent's transport-graph node attributes).
NODE_KEYS = ("name", "status", "output", "stdout", "stderr", "error", "start_time", "end_time",
             "sub_dispatch_id", "sublattice_result", "metadata", "function", "value",
             "node_id", "task_group_id")


def utc(stamp: Optional[float]) -> Optional[datetime]:
    """A timestamp as Covalent gives it (an aware UTC datetime), None if unset."""
    return datetime.fromtimestamp(stamp, tz=timezone.utc) if stamp else None


def covalent_status(status: str) -> Status:
    """A task status as Covalent's API reports it: cov's QUEUED (claimed, not started) is
    RUNNING there, as Covalent marks a task RUNNING once it hands it to its executor."""
    return RESULT_STATUS.RUNNING if status == QUEUED else Status(status)


@dataclass
class NodeData:
    """One node as it was when the snapshot was taken."""

    id: int
    name: str
    kind: str
    status: Status
    start: Optional[float]
    end: Optional[float]
    error: Optional[str]
    child: Optional[str]
    output: Optional[bytes]  # pickled output; None if not finished or not loaded
    stdout: Optional[str]
    stderr: Optional[str]


def read_nodes(rundir: RunDir, manifest: Manifest, state: RunState,
               outputs: bool) -> List[NodeData]:
    """Every node's state, logs and (with ``outputs``) pickled output."""
    try:
        logs = set(os.listdir(rundir.logs_dir))
    except OSError:
        logs = set()
    done = [n.id for n in manifest.nodes if n.kind != PARAMETER and
            node_status(n, state.tasks.get(n.id)) == COMPLETED] if outputs else []
    results = rundir.read_outputs(done)  # one containment check for them all: big runs
    nodes = []
    for spec in manifest.nodes:
        task = state.tasks.get(spec.id)
        status = node_status(spec, task)
        data = results.get(spec.id)
        if outputs and spec.kind == PARAMETER and spec.blob is not None:
            data = rundir.read_blob(spec.blob)
        nodes.append(NodeData(
            id=spec.id, name=spec.name, kind=spec.kind, status=covalent_status(status),
            # a QUEUED task is RUNNING here, since its submission, as Covalent has it
            start=(task.started or task.claimed) if task else None, end=task.ended if task else None,
            error=task.error if task else None, child=task.child if task else None,
            output=data,
            stdout=_log(rundir, spec.id, "stdout", logs),
            stderr=_log(rundir, spec.id, "stderr", logs)))
    return nodes


def _log(rundir: RunDir, node: int, stream: str, present: set) -> Optional[str]:
    # the name checked before any Path is built: a 10,000-node snapshot has 20,000 of them
    if log_file(node, "out" if stream == "stdout" else "err") not in present and \
            rundir.log_location(node, stream) is None:
        return None
    return rundir.read_log(node, stream) or None


class TransportGraph:
    """The finished graph of a run, read-only: Covalent's ``_TransportGraph`` accessors."""

    def __init__(self, result: Any) -> None:
        self._result = result
        self._metadata: Dict[int, Dict[str, Any]] = {}

    def _node(self, node_id: int) -> NodeData:
        nodes = self._result._nodes
        if not isinstance(node_id, int) or not 0 <= node_id < len(nodes):
            raise KeyError(node_id)
        return nodes[node_id]

    def get_node_value(self, node_key: int, value_key: str) -> Any:
        """A node's attribute: ``name``, ``status``, ``output`` (a TransportableObject),
        ``stdout``, ``stderr``, ``error``, ``start_time``, ``end_time``, ``sub_dispatch_id``,
        ``sublattice_result``, ``metadata``, ``function``, ``value``. Unknown: KeyError."""
        node = self._node(node_key)
        if value_key == "name":
            return node.name
        if value_key == "status":
            return node.status
        if value_key in ("output", "value"):
            if value_key == "value" and node.kind != PARAMETER:
                raise KeyError(value_key)
            return None if node.output is None else TransportableObject.from_pickle(node.output)
        if value_key in ("stdout", "stderr", "error"):
            return getattr(node, value_key)
        if value_key == "start_time":
            return utc(node.start)
        if value_key == "end_time":
            return utc(node.end)
        if value_key == "sub_dispatch_id":
            return node.child
        if value_key == "sublattice_result":
            return self._result._children.get(node.id)
        if value_key in ("node_id", "task_group_id"):
            return node.id
        if value_key == "metadata":
            return self._node_metadata(node)
        if value_key == "function":
            blob = self._task_blob(node)
            return None if blob is None else TransportableObject(blob.get("fn"))
        raise KeyError(value_key)

    def get_dependencies(self, node_key: int) -> List[int]:
        """The nodes whose outputs (or completion) ``node_key`` waits for."""
        self._node(node_key)
        spec = self._result._manifest.node(node_key)
        return sorted({e.node for e in spec.parents} | set(spec.waits))

    def get_edge_data(self, dep_key: int, node_key: int) -> Dict[int, Dict[str, Any]]:
        """Covalent's edge attributes between two nodes, by edge number."""
        spec = self._result._manifest.node(node_key)
        edges = [{"edge_name": e.param, "param_type": e.type, "arg_index": e.index}
                 for e in spec.parents if e.node == dep_key]
        edges += [{"edge_name": "!waiting_edge"} for w in spec.waits if w == dep_key]
        return dict(enumerate(edges))

    def __len__(self) -> int:
        return len(self._result._nodes)

    @property
    def _graph(self) -> Any:
        """Covalent's networkx graph, as far as programs read it: ``_graph.nodes``."""
        return SimpleNamespace(nodes=list(range(len(self._result._nodes))))

    def _task_blob(self, node: NodeData) -> Optional[Dict[str, Any]]:
        spec = self._result._manifest.node(node.id)
        if spec.kind == PARAMETER or spec.blob is None:
            return None
        import cloudpickle  # noqa: F401  (by-value functions need it importable)

        blob = pickle.loads(self._result._dir.read_blob(spec.blob))
        return blob if isinstance(blob, dict) else None

    def _node_metadata(self, node: NodeData) -> Dict[str, Any]:
        if node.id not in self._metadata:
            manifest = self._result._manifest
            spec = manifest.node(node.id)
            executor = manifest.executors.get(spec.executor or "", {}) if spec.executor else {}
            blob = self._task_blob(node) or {}
            self._metadata[node.id] = {
                "executor": executor.get("type"),
                "executor_data": {"short_name": executor.get("type"),
                                  "attributes": {k: v for k, v in executor.items()
                                                 if k != "type"}} if executor else {},
                "hooks": hooks_metadata(blob.get("hooks") or {}),
            }
        return self._metadata[node.id]
