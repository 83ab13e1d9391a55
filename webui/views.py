"""The JSON behind the pages (``/api/...``), built from ``LiveRun`` objects; no HTTP here.

Every function returns plain data (str, int, float, None, lists, dicts) that ``json.dumps``
takes as it is; docs/webui.md documents each shape. Viewing unpickles nothing (values are the
recorded previews, see ``values``); only the ``load_*`` functions do, on an explicit request.
"""
from __future__ import annotations

import math
import pickle
import time
from collections import Counter, defaultdict
from typing import Any, Dict, List, Optional

from runner.query import (NOT_RUN, UNREADABLE, dispatched_source, node_status,
                          not_run_causes, safe_summary)
from runner.manifest import ELECTRON, PARAMETER, SUBLATTICE
from runner.outcome import OutcomeHeader
from runner.redact import mask_secrets
from runner.rundir import RunDirError, unreadable_reasons
from runner.state import COMPLETED, NEW_OBJECT, TERMINAL

from webui import values
from webui.live import LiveRun, RunCache

PER_PAGE = 20
MAX_INPUTS = 100  # inputs of one task shown with their values (a reduce may have thousands)


# -- runs ---------------------------------------------------------------------------------------
def run_row(live: LiveRun, set_aside: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    """``run_summary``'s fields for one run, or an UNREADABLE row saying why."""
    return safe_summary(live, set_aside)


def status_group(status: str) -> str:
    """The filter tab a status belongs to (everything unfinished is RUNNING)."""
    if status in TERMINAL or status == UNREADABLE:
        return status
    return "RUNNING"


def runs_listing(cache: RunCache, status: Optional[str] = None, query: Optional[str] = None,
                 page: int = 1, per_page: int = PER_PAGE) -> Dict[str, Any]:
    """Top-level runs, newest first, each with its sublattice runs nested in ``children``;
    filtered by status group and by a search in ids and lattice names (a run matches if it or
    one of its children does), then paged."""
    set_aside = unreadable_reasons(cache.home)
    rows = {live.dispatch_id: run_row(live, set_aside) for live in cache.all()}
    children: Dict[str, List[Dict[str, Any]]] = defaultdict(list)
    roots = []
    for row in rows.values():
        parent = (row.get("parent") or {}).get("dispatch_id")
        if parent and parent in rows and parent != row["dispatch_id"]:
            children[parent].append(row)
        else:
            roots.append(row)

    def nest(row: Dict[str, Any], depth: int = 0) -> Dict[str, Any]:
        kids = sorted(children.get(row["dispatch_id"], ()), key=lambda r: r.get("created") or 0.0)
        row["children"] = [nest(k, depth + 1) for k in kids] if depth < 50 else []
        return row

    roots = [nest(r) for r in roots]
    counts = Counter(status_group(r["status"]) for r in roots)
    counts["ALL"] = len(roots)
    wanted = (status or "").upper()
    if wanted and wanted != "ALL":
        roots = [r for r in roots if status_group(r["status"]) == wanted]
    needle = (query or "").strip().lower()
    if needle:
        roots = [r for r in roots if _matches(r, needle)]
    roots.sort(key=lambda r: r.get("created") or 0.0, reverse=True)
    per_page = max(1, min(int(per_page), 500))
    pages = max(1, math.ceil(len(roots) / per_page))
    page = max(1, min(int(page), pages))
    return {"runs": roots[(page - 1) * per_page: page * per_page], "total": len(roots),
            "page": page, "pages": pages, "per_page": per_page, "counts": dict(counts),
            "home": str(cache.home), "now": time.time()}


def _matches(row: Dict[str, Any], needle: str) -> bool:
    """The search box: id, lattice, the run's --name or one of its --tag labels."""
    labels = [row["dispatch_id"], row.get("lattice", ""), row.get("name") or "",
              *(row.get("tags") or ())]
    if any(needle in str(label).lower() for label in labels):
        return True
    return any(_matches(child, needle) for child in row.get("children", ()))


# -- one run ------------------------------------------------------------------------------------
def run_detail(cache: RunCache, live: LiveRun) -> Dict[str, Any]:
    """Everything the run page shows besides the graph: summary, docstring, inputs, result,
    error and failed tasks, timings, executors, parent and child runs, the manifest header."""
    import yaml

    with live.lock:
        summary = run_row(live)
        state = live.state
        manifest = live.manifest
        header = mask_secrets(live.header())
        result = None
        if state.status == COMPLETED:
            result = _node_value(live, manifest.output_node)
        failed = [{"id": node, "name": manifest.node(node).name, "exception": task.exception,
                   "error": task.error}
                  for node, task in sorted(state.tasks.items())
                  if task.status == "FAILED" and node < len(manifest.nodes)]
        children = [{"node": node, "name": manifest.node(node).name, "dispatch_id": task.child,
                     "status": _status_of(cache, task.child)}
                    for node, task in sorted(state.tasks.items())
                    if task.child and node < len(manifest.nodes)]
        kinds = Counter(n.kind for n in manifest.nodes)
    parent = header.get("parent")
    if parent:
        parent = dict(parent, status=_status_of(cache, parent.get("dispatch_id")))
    return {
        **summary,
        "inputs": manifest.inputs,
        "result": result,
        "failed": failed,
        "children": children,
        "parent": parent,
        "executors": mask_secrets(manifest.executors),
        "kinds": dict(kinds),
        "node_count": len(manifest.nodes),
        "output_node": manifest.output_node,
        "manifest": header,
        "manifest_yaml": yaml.safe_dump(header, sort_keys=False, default_flow_style=False,
                                        width=100),
        "cancel_requested": live.rundir.cancel_request(),
        "source": dispatched_source(live.data.sources()),
        "now": time.time(),
    }


def load_run_source(live: LiveRun) -> Dict[str, Any]:
    """The workflow function's source (``{"text", "file", "line", "error"}``): unpickles the
    workflow (trusting the run). Its own request: the pickled lattice carries its whole graph,
    megabytes for a 10,000-task run."""
    manifest = live.manifest
    blob = manifest.blobs.get("workflow")
    if not blob:
        return {"text": None, "file": None, "line": None, "error": "no workflow in this run"}
    return _source_from_blob(live, blob, manifest.cwd, attribute=None)


def run_state(live: LiveRun, since: Optional[int] = None) -> Dict[str, Any]:
    """The run's live state in one small object: run status and timings, counts per status, and
    ``tasks`` ({node id: [status, started, ended]}) for every task with a state (``full``) or,
    with ``since``, only those changed after that ``version``. Tasks an upstream failure keeps
    from running are in ``tasks`` as NOT_RUN in every answer with any task in it (they change
    with another node), and ``not_run`` names that upstream node for each ({node id: upstream
    id})."""
    with live.lock:
        state = live.refresh()
        full = since is None or since <= 0 or since > live.version
        nodes = list(state.tasks) if full or since is None else live.changed_since(since)
        tasks: Dict[str, List[Any]] = {}
        for node in nodes:
            task = state.tasks[node]
            tasks[str(node)] = [task.status, task.started, task.ended if task.finished else None]
        causes = not_run_causes(live.manifest, state)
        if full or nodes:  # a task is NOT_RUN once an upstream one ended: with any change
            for node in causes:
                tasks[str(node)] = [NOT_RUN, None, None]
        counts: Counter = Counter(str(t.status) for n, t in state.tasks.items() if n not in causes)
        total = int(live.header().get("task_count") or 0)
        if causes:
            counts[NOT_RUN] = sum(1 for n in causes if live.manifest.node(n).executes)
        waiting = total - sum(counts.values())
        if waiting > 0:
            counts[NEW_OBJECT] += waiting
        ended = state.ended if state.finished else None
        return {
            "dispatch_id": live.dispatch_id,
            "status": state.status,
            "error": state.error,
            "started": state.started,
            "ended": ended,
            "runtime": ((ended or time.time()) - state.started) if state.started else None,
            "done": counts.get(COMPLETED, 0),
            "total": total,
            "counts": dict(counts),
            "version": live.version,
            "full": full,
            "tasks": tasks,
            "not_run": {str(n): c for n, c in causes.items()},
            "now": time.time(),
        }


def task_detail(cache: RunCache, live: LiveRun, node_id: int) -> Optional[Dict[str, Any]]:
    """One node in full: state, executor, host, times, inputs and result (reprs cut to size),
    stdout, stderr, traceback, function source, sublattice run. None if there is no such node."""
    manifest = live.manifest
    if not 0 <= node_id < len(manifest.nodes):
        return None
    spec = manifest.node(node_id)
    data = live.data
    with live.lock:
        state = live.refresh()
        task = state.tasks.get(node_id)
    status = node_status(spec, task)
    cause = not_run_causes(manifest, state).get(node_id)
    if cause is not None:
        status = NOT_RUN
    header = _outcome_header(live, node_id) if spec.kind != PARAMETER else None
    executor = manifest.executors.get(spec.executor or "", {}) if spec.executor else {}
    out: Dict[str, Any] = {
        "dispatch_id": live.dispatch_id, "id": spec.id, "name": spec.name, "kind": spec.kind,
        "status": status, "executor": spec.executor, "executor_config": mask_secrets(executor),
        "value": spec.value_repr,
        "not_run": None if cause is None else {"node": cause, "name": manifest.node(cause).name,
                                               "status": str(state.tasks[cause].status)},
    }
    if task is not None:
        out.update(attempt=task.attempt, backend=task.backend, host=task.host, pid=task.pid,
                   job_id=task.job_id, runner=task.runner, claimed=task.claimed,
                   started=task.started, ended=task.ended if task.finished else None,
                   runtime=(task.ended - task.started) if task.finished and task.started and
                   task.ended else None,
                   error=task.error, exception=task.exception, reused=task.reused,
                   reason=task.reason, reused_from=task.reused_from,
                   cached_from=task.cached_from)
    if header and not out.get("host"):
        out["host"] = header.get("host")

    out["inputs"] = [_input(live, state, edge.node, edge.param, edge.type)
                     for edge in spec.parents[:MAX_INPUTS]]
    out["inputs_total"] = len(spec.parents)
    out["waits"] = list(spec.waits)
    out["consumers"] = [{"id": n.id, "name": n.name, "params": [e.param for e in n.parents
                                                                 if e.node == node_id]}
                        for n in manifest.nodes if any(e.node == node_id for e in n.parents)]

    out["result"] = None
    if spec.kind == PARAMETER and spec.blob:
        out["result"] = values.recorded_repr(spec.value_repr, spec.blob[1])
    elif status == COMPLETED:
        out["result"] = _node_value(live, node_id)

    if spec.kind != PARAMETER:
        out["stdout"] = values.read_log_tail(data, node_id, "stdout")
        out["stderr"] = values.read_log_tail(data, node_id, "stderr")
        out["traceback"] = values.traceback_of(header, out["stderr"]["text"])
    # As dispatched (sources.json); an older run's only from its file now, on request
    # (load_task_source: it unpickles the function).
    out["source"] = dispatched_source(data.sources(), spec)
    out["source_loadable"] = _source_blob(live, spec) is not None

    child = (task.child if task else None) or (header or {}).get("child")
    out["child"] = {"dispatch_id": child, "status": _status_of(cache, child)} if child else None
    out["now"] = time.time()
    return out


def _input(live: LiveRun, state: Any, node: int, param: str, kind: str) -> Dict[str, Any]:
    manifest = live.manifest
    source = manifest.node(node)
    entry: Dict[str, Any] = {"param": param, "type": kind, "node": node, "name": source.name,
                             "kind": source.kind}
    if source.kind == PARAMETER:
        size = source.blob[1] if source.blob else None
        entry["value"] = {"repr": source.value_repr, "size": size,
                          "size_text": values.human_size(size)}
        return entry
    task = state.tasks.get(node)
    if task is None or task.status != COMPLETED:
        entry["value"] = None  # not computed (yet)
        return entry
    entry["value"] = _node_value(live, node)
    return entry


_NO_RESULT = {"repr": "(no complete result file)", "type": None, "size": None, "preview": True}


def _outcome_header(live: LiveRun, node: int) -> Optional[OutcomeHeader]:
    """A node's outcome header, or None (absent, incomplete, or leading out of the run)."""
    try:
        return live.data.read_outcome(node)[0]
    except (RunDirError, OSError):
        return None


def _node_value(live: LiveRun, node: int) -> Dict[str, Any]:
    """A completed node's ``VALUE`` as its outcome header previews it (nothing unpickled)."""
    try:
        header, _ = live.data.read_outcome(node)
    except (RunDirError, OSError) as exc:
        return {"repr": f"<cannot read the result: {exc}>", "size": None, "preview": True}
    return values.outcome_preview(header) or _NO_RESULT


def load_value(live: LiveRun, node: Optional[int] = None) -> Optional[Dict[str, Any]]:
    """The ``VALUE`` of a node (None: the run's result) from its unpickled value: trusts the
    run, since unpickling runs its code. None if there is no such node or no value yet."""
    manifest = live.manifest
    node = manifest.output_node if node is None else node
    if not 0 <= node < len(manifest.nodes):
        return None
    try:
        return values.pickled_value(live.data.output_bytes(node))
    except (RunDirError, OSError) as exc:
        return {"repr": f"<cannot read the value: {exc}>", "size": None}


def load_task_source(live: LiveRun, node: int) -> Optional[Dict[str, Any]]:
    """A task's function source, from its unpickled function (trusts the run); None if the
    node has none (parameters, and the nodes cov builds itself)."""
    manifest = live.manifest
    if not 0 <= node < len(manifest.nodes):
        return None
    found = _source_blob(live, manifest.node(node))
    if found is None:
        return None
    blob, attribute = found
    return _source_from_blob(live, blob, manifest.cwd, attribute=attribute)


def _source_blob(live: LiveRun, spec: Any) -> Optional[Any]:
    """(blob, attribute) holding the user's function for an electron, the sublattice's lattice
    for a sublattice node; None for the nodes cov builds itself (collections, attributes,
    operators, result)."""
    if spec.kind == ELECTRON and spec.blob:
        return spec.blob, "fn"
    if spec.kind == SUBLATTICE:
        for edge in spec.parents:
            if edge.param == "sub_lattice":
                parent = live.manifest.node(edge.node)
                if parent.blob:
                    return parent.blob, None
    return None


def _source_from_blob(live: LiveRun, blob: Any, cwd: str, attribute: Optional[str]
                      ) -> Dict[str, Any]:
    try:
        import cloudpickle  # noqa: F401

        obj = pickle.loads(live.data.read_blob(blob))
        if attribute:
            obj = obj[attribute] if isinstance(obj, dict) else getattr(obj, attribute)
    except Exception as exc:  # noqa: BLE001 - unpickling user code may fail in many ways
        return {"text": None, "file": None, "line": None,
                "error": f"cannot load the function: {type(exc).__name__}: {exc}"}
    return values.function_source(obj, cwd)


def _status_of(cache: RunCache, run_id: Optional[str]) -> Optional[str]:
    if not run_id:
        return None
    live = cache.get(run_id)
    if live is None:
        return None
    try:
        return live.refresh().status
    except (RunDirError, OSError):
        return None
