"""The read model of one node: what ``cov status RUN NODE`` and ``cov result RUN NODE`` show.

``node_detail`` reads the manifest, the folded log and outcome headers (the recorded previews),
never a pickled value: viewing a node runs none of the run's code. Its fields are documented in
docs/run-directory.md ("One node, for people and scripts").
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

from runner.manifest import PARAMETER
from runner.outcome import OutcomeHeader
from runner.query import node_status, not_run_causes, shown_status
from runner.query_failures import failure_leaves
from runner.rundir import RunDir, RunDirError
from runner.state import RunState, TaskState

MAX_INPUTS = 100  # inputs listed one by one (a reduce may have thousands)


def node_detail(run: RunDir, node_id: int) -> Dict[str, Any]:
    """One node in full: status, where and when it ran, its inputs with their sources (a node
    and its recorded preview, or a literal), its result (type, size, repr), its log files.
    ``KeyError`` if the run has no such node."""
    manifest = run.manifest
    if not 0 <= node_id < len(manifest.nodes):
        raise KeyError(node_id)
    node = manifest.node(node_id)
    state = run.state()
    task = state.tasks.get(node_id)
    status = node_status(node, task)
    cause = not_run_causes(manifest, state).get(node_id)
    executor = manifest.executors.get(node.executor or "", {}) if node.executor else {}
    header = _header(run, node_id) if node.kind != PARAMETER else None
    out: Dict[str, Any] = {
        "dispatch_id": run.dispatch_id, "id": node.id, "name": node.name, "kind": node.kind,
        "status": status, "shown": shown_status(status, cause is not None),
        "not_run": None if cause is None else {"node": cause, "name": manifest.node(cause).name,
                                               "status": str(state.tasks[cause].status)},
        "executor": node.executor, "executor_type": executor.get("type"),
        "executor_requested": executor.get("requested"),
        **_where(task, header), **_times(task),
        "error": task.error if task else None, "exception": task.exception if task else None,
        "child": (task.child if task else None) or (header or {}).get("child"),
        "reused": bool(task and task.reused),
        "failed_inside": failure_leaves(run, task.child) if task and task.child and
        task.status == "FAILED" else None,
        "inputs": [_input(run, state, e.node, e.param, e.type, e.index)
                   for e in node.parents[:MAX_INPUTS]],
        "inputs_total": len(node.parents),
        "waits": list(node.waits),
        "result": _result(node.kind, node.value_repr, node.blob, header)
        if status == "COMPLETED" else None,
        "log_files": _logs(run, node_id) if node.executes else None,
    }
    return out


def _header(run: RunDir, node: int) -> Optional[OutcomeHeader]:
    try:
        return run.read_outcome(node)[0]
    except (RunDirError, OSError):
        return None


def _where(task: Optional[TaskState], header: Optional[OutcomeHeader]) -> Dict[str, Any]:
    header = header or {}
    if task is None:
        return {"attempt": 0, "backend": None, "runner": None, "host": header.get("host"),
                "pid": header.get("pid"), "job_id": None, "reason": None}
    return {"attempt": task.attempt, "backend": task.backend, "runner": task.runner,
            "host": task.host or header.get("host"), "pid": task.pid or header.get("pid"),
            "job_id": task.job_id, "reason": task.reason}


def _times(task: Optional[TaskState]) -> Dict[str, Any]:
    if task is None:
        return {"claimed": None, "started": None, "ended": None, "queued": None, "runtime": None}
    ended = task.ended if task.finished else None
    started = task.started
    return {"claimed": task.claimed, "started": started, "ended": ended,
            "queued": (started - task.claimed) if started and task.claimed and
            started >= task.claimed else None,
            "runtime": (ended - started) if started and ended else None}


def _input(run: RunDir, state: RunState, node: int, param: str, kind: str,
           index: Optional[int]) -> Dict[str, Any]:
    """One input: the parameter it fills and where its value comes from."""
    source = run.manifest.node(node)
    entry: Dict[str, Any] = {"param": param, "type": kind, "index": index, "node": node,
                             "name": source.name, "kind": source.kind}
    if source.kind == PARAMETER:
        entry["source"] = "literal"
        entry["status"] = "COMPLETED"
        entry["value"] = _result(PARAMETER, source.value_repr, source.blob, None)
        return entry
    task = state.tasks.get(node)
    entry["source"] = "node"
    entry["status"] = str(node_status(source, task))
    entry["value"] = _result(source.kind, None, None, _header(run, node)) \
        if task is not None and task.finished else None
    return entry


def _result(kind: str, value_repr: Optional[str], blob: Any,
            header: Optional[OutcomeHeader]) -> Optional[Dict[str, Any]]:
    """``{"type", "size", "repr"}`` of a value: a parameter's recorded repr, or the preview in
    a task's outcome header (None: no complete outcome)."""
    if kind == PARAMETER:
        return {"type": None, "size": blob[1] if blob else None, "repr": value_repr}
    if not header or not header.get("ok"):
        return None
    found = header.get("preview")
    preview: Dict[str, Any] = found if isinstance(found, dict) else {}
    return {"type": preview.get("type"), "size": header.get("len"), "repr": preview.get("repr")}


def _logs(run: RunDir, node: int) -> List[Dict[str, Any]]:
    """The node's log files, with their sizes (None: not written)."""
    out = []
    for stream, path in (("stdout", run.stdout_path(node)), ("stderr", run.stderr_path(node))):
        packed = run.log_location(node, stream)
        if packed is not None:  # format 2.0: in the logs pack, at an offset
            out.append({"stream": stream, "path": str(packed[0]), "offset": packed[1],
                        "size": packed[2]})
            continue
        try:
            size: Optional[int] = path.lstat().st_size  # not followed: a link may lead out
        except OSError:
            size = None
        out.append({"stream": stream, "path": str(path), "size": size})
    return out
