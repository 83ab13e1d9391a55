"""Summaries of runs and tasks for people and scripts: what ``cov`` prints and the UI shows."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

from runner.rundir import TMP_PREFIX, RunDir, RunDirError
from runner.state import COMPLETED, TERMINAL, RunState


def iter_runs(home: Path) -> Iterator[RunDir]:
    """Every run directory under ``home`` (in no order)."""
    try:
        entries = list(os.scandir(home))
    except FileNotFoundError:
        return
    for entry in entries:
        if entry.name.startswith(".") or entry.name.startswith(TMP_PREFIX):
            continue
        if entry.is_dir() and os.path.exists(os.path.join(entry.path, "manifest.yaml")):
            yield RunDir(entry.path)


def run_summary(run: RunDir, state: Optional[RunState] = None) -> Dict[str, Any]:
    """One run in a line: id, lattice, status, progress, times (from the manifest header)."""
    header = run.header()
    state = state or run.state()
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
        "status": state.status,
        "error": state.error,
        "done": done,
        "total": total,
        "created": header.get("created"),
        "started": started,
        "ended": ended,
        "runtime": runtime,
        "path": str(run.path),
    }


def list_runs(home: Path, status: Optional[str] = None) -> List[Dict[str, Any]]:
    """Summaries of every readable run, newest first; unreadable runs are listed with why."""
    rows = []
    for run in iter_runs(home):
        try:
            row = run_summary(run)
        except (RunDirError, OSError) as exc:
            row = {"dispatch_id": run.dispatch_id, "lattice": "?", "status": "UNREADABLE",
                   "error": str(exc), "done": 0, "total": 0, "created": "", "started": None,
                   "ended": None, "runtime": None, "path": str(run.path), "parent": None}
        if status and row["status"] != status.upper():
            continue
        rows.append(row)
    rows.sort(key=lambda r: r.get("created") or "", reverse=True)
    return rows


def task_rows(run: RunDir, include_parameters: bool = False) -> List[Dict[str, Any]]:
    """Every node with its state: what ``cov status RUN`` and the UI's task table show."""
    manifest = run.manifest
    state = run.state()
    rows = []
    for node in manifest.nodes:
        if node.kind == "parameter" and not include_parameters:
            continue
        task = state.tasks.get(node.id)
        status = "COMPLETED" if node.kind == "parameter" else (task.status if task else "NEW_OBJECT")
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


def format_seconds(seconds: Optional[float]) -> str:
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
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp)) if stamp else "-"
