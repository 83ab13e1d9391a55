"""The read model: summaries of runs and tasks for people and scripts, what ``cov`` prints and
the web UI shows. Read-only: nothing here writes to a run directory or starts a runner."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Protocol

from runner.json_view import timestamp
from runner.manifest import PARAMETER, NodeSpec
from runner.rundir import RunDir, RunDirError, is_run_name, unreadable_reasons
from runner.state import COMPLETED, NEW_OBJECT, TERMINAL, RunState, TaskState

UNREADABLE = "UNREADABLE"  # the status of a run directory that cannot be read


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
            "done": 0, "total": 0, "created": None, "started": None, "ended": None, "runtime": None,
            "path": str(path)}


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


def task_rows(run: RunDir, include_parameters: bool = False) -> List[Dict[str, Any]]:
    """Every node with its state: what ``cov status RUN`` and the UI's task table show."""
    manifest = run.manifest
    state = run.state()
    rows = []
    for node in manifest.nodes:
        if node.kind == PARAMETER and not include_parameters:
            continue
        task = state.tasks.get(node.id)
        status = node_status(node, task)
        started = task.started if task else None
        ended = task.ended if task and task.finished else None
        executor = manifest.executors.get(node.executor or "", {}) if node.executor else {}
        rows.append({
            "id": node.id,
            "name": node.name,
            "kind": node.kind,
            "status": status,
            "executor": node.executor,
            "executor_type": executor.get("type"),
            "host": task.host if task else None,
            "pid": task.pid if task else None,
            "job_id": task.job_id if task else None,
            "attempt": task.attempt if task else 0,
            "started": started,
            "ended": ended,
            "runtime": (ended - started) if started and ended else None,
            "error": task.error if task else None,
            "exception": task.exception if task else None,
            "child": task.child if task else None,
            "parents": [e.to_dict() for e in node.parents],
            "waits": node.waits,
            "value": node.value_repr,
        })
    return rows


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
