"""The read model: summaries of runs and tasks for people and scripts, what ``cov`` prints and
the web UI shows. Read-only: nothing here writes to a run directory or starts a runner.

What people see of a task's status (``shown_status``) differs from the folded one in two ways:
a task no event names yet is PENDING (never NEW_OBJECT), and one that can never run because a
node upstream FAILED or was CANCELLED is NOT_RUN, naming that node (``not_run_causes``). The
reshaping nodes (parameters, collections, attribute and item look-ups, the lattice's return
value put together: ``RESHAPING``) are left out of the tables and counts unless asked for.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Protocol

from runner.json_view import timestamp
from runner.manifest import (ATTRIBUTE, COLLECTION, ELECTRON, PARAMETER, POSTPROCESS,
                             SUBLATTICE, Manifest, NodeSpec)
from runner.query_failures import failure_leaves
from runner.rundir import RunDir, RunDirError, is_run_name, unreadable_reasons
from runner.derived import gc_paused
from runner.state import (CANCELLED, COMPLETED, FAILED, NEW_OBJECT, TERMINAL, RunState,
                          TaskState)

UNREADABLE = "UNREADABLE"  # the status of a run directory that cannot be read
PENDING = "PENDING"  # shown for NEW_OBJECT: waiting for its inputs or for a runner
NOT_RUN = "NOT_RUN"  # shown for a task an upstream failure or cancel keeps from running
# Nodes the graph builder adds to reshape values (a parameter, a list or dict of results, an
# attribute or item of one, the lattice's return value put together): not the user's tasks,
# hidden unless asked for (`cov status --all`) or FAILED (a failure is never out of sight).
RESHAPING = frozenset({PARAMETER, COLLECTION, ATTRIBUTE, POSTPROCESS})
SHORT_ID = 8  # the shortest prefix a run id is shown with (as git shows commits)


def iter_runs(home: Path) -> Iterator[RunDir]:
    """Every run directory under ``home`` (in no order)."""
    try:
        entries = list(os.scandir(home))
    except FileNotFoundError:
        return
    for entry in entries:
        if is_run_name(entry.name) and entry.is_dir():
            run = RunDir(entry.path)
            if run.manifest_path.exists():  # any kind of file: a damaged one is listed UNREADABLE
                yield run


class SummarySource(Protocol):
    """What ``run_summary`` reads: a ``RunDir``, or the UI's cached ``LiveRun``."""

    path: Path

    def header(self) -> Dict[str, Any]: ...


def run_summary(run: SummarySource, state: Optional[RunState] = None) -> Dict[str, Any]:
    """One run in a line: id, lattice, name and tags, inputs, status, progress, times (numbers,
    seconds since the epoch: ``created`` too, which the manifest holds as ISO 8601 text), from
    the manifest header and the folded state."""
    header = run.header()
    if state is None:
        assert isinstance(run, RunDir), "only a RunDir folds its own state"
        state = run.state()
    total = int(header.get("task_count") or 0)
    done = sum(1 for t in state.tasks.values() if t.status == COMPLETED)
    failed = sum(1 for t in state.tasks.values() if t.status == FAILED)
    ended = state.ended if state.status in TERMINAL else None
    started = state.started
    runtime = ((ended or time.time()) - started) if started else None
    lattice = header.get("lattice") or {}
    return {
        "dispatch_id": header["dispatch_id"],
        "root_dispatch_id": header.get("root_dispatch_id") or header["dispatch_id"],
        "parent": header.get("parent"),
        "lattice": lattice.get("name", ""),
        "doc": lattice.get("doc", ""),
        "name": header.get("name"),
        "tags": header.get("tags") or [],
        "inputs": _inputs(header),
        "status": state.status,
        "error": state.error,
        "done": done,
        "failed_count": failed,
        "total": total,
        "created": timestamp(header.get("created")),
        "started": started,
        "ended": ended,
        "runtime": runtime,
        "path": str(run.path),
    }


def _inputs(header: Dict[str, Any]) -> Dict[str, Any]:
    """The lattice's inputs as dispatch recorded them: ``{"args": [repr], "kwargs": {name:
    repr}}`` (reprs cut to 200 characters; nothing unpickled)."""
    inputs = header.get("inputs")
    inputs = inputs if isinstance(inputs, dict) else {}
    args, kwargs = inputs.get("args"), inputs.get("kwargs")
    return {"args": [str(a) for a in args] if isinstance(args, list) else [],
            "kwargs": {str(k): str(v) for k, v in kwargs.items()}
            if isinstance(kwargs, dict) else {}}


def check_readable(run: RunDir) -> RunDir:
    """``run`` if every file readers trust is well-formed (manifest, event log, cancel
    request), else ``RunDirError`` saying what is damaged: what makes a run UNREADABLE. A run
    a runner set aside for damage only it finds (see ``safe_summary``) is unreadable too."""
    reason = unreadable_reasons(run.path.parent).get(run.path.name)
    if reason:
        raise RunDirError(reason)
    run.header()
    run.manifest  # noqa: B018 - parsed and checked once, kept for the caller
    run.state()
    run.cancel_request()
    return run


def unreadable_row(dispatch_id: str, path: Path, exc: BaseException) -> Dict[str, Any]:
    """A listing row for a run that cannot be read: ``run_summary``'s fields, status
    UNREADABLE, and why in ``error`` (docs/run-directory.md says what makes a run unreadable)."""
    reason = str(exc) if isinstance(exc, RunDirError) else f"{type(exc).__name__}: {exc}"
    return {"dispatch_id": dispatch_id, "root_dispatch_id": dispatch_id, "parent": None,
            "lattice": "?", "doc": "", "name": None, "tags": [],
            "inputs": {"args": [], "kwargs": {}}, "status": UNREADABLE, "error": reason,
            "done": 0, "failed_count": 0, "total": 0, "created": None, "started": None,
            "ended": None, "runtime": None, "path": str(path)}


def safe_summary(run: Any, set_aside: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    """``run.summary()`` or ``run_summary(run)``; an UNREADABLE row if the run cannot be read,
    or if a runner set it aside (``set_aside``: ``unreadable_reasons(home)``, for damage a
    listing, which reads only the manifest header and the event log, would not see). One
    damaged run must never break a listing of all runs, whatever the damage."""
    reason = (set_aside or {}).get(run.path.name)
    if reason:
        return unreadable_row(run.dispatch_id, run.path, RunDirError(reason))
    try:
        return run.summary() if hasattr(run, "summary") else run_summary(run)
    except Exception as exc:  # noqa: BLE001 - any damage makes this one row UNREADABLE
        return unreadable_row(run.dispatch_id, run.path, exc)


def list_runs(home: Path, status: Optional[str] = None) -> List[Dict[str, Any]]:
    """Summaries of every readable run, newest first; unreadable runs are listed with why."""
    rows = []
    set_aside = unreadable_reasons(home)
    for run in iter_runs(home):
        row = safe_summary(run, set_aside)
        if status and row["status"] != status.upper():
            continue
        rows.append(row)
    rows.sort(key=lambda r: r.get("created") or 0.0, reverse=True)
    return rows


def task_rows(run: RunDir, include_parameters: bool = False,
              include_reshaping: bool = True) -> List[Dict[str, Any]]:
    """Every node with its state: what ``cov status RUN`` and the UI's task table show.
    ``status`` is the folded one (QUEUED, NEW_OBJECT ...), ``shown`` what people see (see the
    module docstring) and ``not_run`` the upstream node that keeps a NOT_RUN task from running
    (``{"node", "name", "status"}``). One pass with no branch per field (a node no event names
    reads as a fresh ``TaskState``): 100,000 rows are made at scale."""
    manifest = run.manifest
    state = run.state()
    causes = not_run_causes(manifest, state)
    executor_types = {name: config.get("type") for name, config in manifest.executors.items()}
    tasks = state.tasks
    never = TaskState()  # what a node no event names reads as: NEW_OBJECT, attempt 0
    rows = []
    with gc_paused():
        for node in manifest.nodes:
            kind = node.kind
            task = tasks.get(node.id)
            if kind in RESHAPING:
                if kind == PARAMETER:
                    if not include_parameters:
                        continue
                elif not include_reshaping and (task is None or task.status != FAILED):
                    continue
            t = task or never
            status = COMPLETED if kind == PARAMETER else t.status
            started = t.started
            ended = t.ended if t.status in TERMINAL else None
            cause = causes.get(node.id) if causes else None
            rows.append({
                "id": node.id,
                "name": node.name,
                "kind": kind,
                "status": status,
                "shown": shown_status(status, cause is not None) if status == NEW_OBJECT
                else status,
                "not_run": None if cause is None else {
                    "node": cause, "name": manifest.node(cause).name,
                    "status": str(tasks[cause].status)},
                "reason": t.reason,
                "failed_inside": failure_leaves(run, t.child)
                if t.child and t.status == FAILED else None,
                "backend": t.backend,
                "claimed": t.claimed,
                "executor": node.executor,
                "executor_type": executor_types.get(node.executor) if node.executor else None,
                "host": t.host,
                "pid": t.pid,
                "job_id": t.job_id,
                "attempt": t.attempt,
                "started": started,
                "ended": ended,
                "runtime": (ended - started) if started and ended else None,
                "error": t.error,
                "exception": t.exception,
                "child": t.child,
                "parents": [{"node": e.node, "param": e.param, "type": e.type}
                            if e.index is None else
                            {"node": e.node, "param": e.param, "type": e.type, "index": e.index}
                            for e in node.parents] if node.parents else [],
                "waits": list(node.waits),
                "value": node.value_repr,
            })
    return rows


def not_run_causes(manifest: Manifest, state: RunState) -> Dict[int, int]:
    """Unfinished nodes that can never run -> the FAILED or CANCELLED node upstream that keeps
    them from it (the nearest one's own cause, so a chain names the first failure). One pass
    over the graph in id order (a node's inputs and waits are made before it); an input with a
    higher id, which the builder never makes, is looked at only once it is known."""
    causes: Dict[int, int] = {}
    stopped = {n for n, t in state.tasks.items() if t.status in (FAILED, CANCELLED)}
    if not stopped:
        return causes
    for node in manifest.nodes:
        task = state.tasks.get(node.id)
        if task is not None and task.finished:
            continue
        for upstream in [e.node for e in node.parents] + list(node.waits):
            if upstream in stopped:
                causes[node.id] = upstream
                break
            if upstream in causes:
                causes[node.id] = causes[upstream]
                break
    return causes


def shown_status(status: str, not_run: bool = False) -> str:
    """A status as people see it: NEW_OBJECT is PENDING, or NOT_RUN for a task that an
    upstream failure keeps from running; the others are as folded."""
    if status == NEW_OBJECT:
        return NOT_RUN if not_run else PENDING
    return status


def status_counts(rows: List[Dict[str, Any]]) -> Dict[str, int]:
    """Tasks per shown status, in the order people read them."""
    return ordered_counts([row["shown"] for row in rows])


def ordered_counts(shown: List[str]) -> Dict[str, int]:
    """How many of ``shown`` (shown statuses) there are of each, in the order people read
    them."""
    counts: Dict[str, int] = dict.fromkeys(shown, 0)  # each status as first met, in that order
    for status in shown:
        counts[status] += 1
    order = {s: i for i, s in enumerate(SHOWN_STATUSES)}
    return dict(sorted(counts.items(), key=lambda item: order.get(item[0], len(order))))


# The statuses people see, in reading order (`cov status --status` takes these).
SHOWN_STATUSES = ("COMPLETED", "RUNNING", "DISPATCHING", "QUEUED", PENDING, FAILED, CANCELLED,
                  NOT_RUN)


def unique_prefix(name: str, others: List[str], minimum: int = SHORT_ID) -> str:
    """The shortest prefix of ``name``, at least ``minimum`` characters, that no other of
    ``others`` starts with (git's short commit ids)."""
    length = minimum
    for other in others:
        if other == name:
            continue
        common = 0
        for a, b in zip(name, other):
            if a != b:
                break
            common += 1
        length = max(length, common + 1)
    return name[:length]


def run_names(home: Path) -> List[str]:
    """The names of the run directories under ``home`` (for ``unique_prefix``)."""
    try:
        return [e.name for e in os.scandir(home) if is_run_name(e.name)]
    except OSError:
        return []


NOT_CAPTURED = "source not captured (run made by an older cov)"


def dispatched_source(sources: Optional[Dict[str, Any]], node: Optional[NodeSpec] = None
                      ) -> Optional[Dict[str, Any]]:
    """The source a task (``node``) or the workflow (``node`` None) ran with, as captured at
    dispatch (``RunDir.sources()``): ``{"text", "file", "line", "error", "captured"}``; for a
    run made before cov captured sources, ``text`` None, ``captured`` False and the error
    ``NOT_CAPTURED``. None for a node that has no function of the user's."""
    if node is not None and node.kind not in (ELECTRON, SUBLATTICE):
        return None
    if sources is None:
        return {"text": None, "file": None, "line": None, "error": NOT_CAPTURED,
                "captured": False}
    if node is None:
        found = sources.get("workflow")
    else:
        functions = sources.get("functions")
        nodes = sources.get("nodes")
        key = node.fingerprint if node.kind == ELECTRON else \
            (nodes.get(str(node.id)) if isinstance(nodes, dict) else None)
        found = functions.get(key) if isinstance(functions, dict) and key else None
    if not isinstance(found, dict):
        return {"text": None, "file": None, "line": None, "captured": True,
                "error": "no source was captured for it at dispatch"}
    text, file, line = found.get("text"), found.get("file"), found.get("line")
    return {"text": text if isinstance(text, str) else None,
            "file": file if isinstance(file, str) else None,
            "line": line if isinstance(line, int) else None,
            "error": None if isinstance(text, str) else str(found.get("error") or "no source"),
            "captured": True}


def node_status(node: NodeSpec, task: Optional[TaskState]) -> str:
    """A node's status: a parameter is COMPLETED (it has its value from the start), a task
    that no event names yet is NEW_OBJECT."""
    if node.kind == PARAMETER:
        return COMPLETED
    return task.status if task else NEW_OBJECT


def format_seconds(seconds: Optional[float]) -> str:
    """A duration for a table cell: ``850ms``, ``12.3s``, ``4m05s``, ``2h07m``; ``-`` if none."""
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 120:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def format_time(stamp: Optional[float]) -> str:
    """A wall-clock time in local time (``2026-01-31 12:00:00``); ``-`` if none."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp)) if stamp else "-"
