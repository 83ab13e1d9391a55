"""The task listing behind the run page's table and timeline (``/api/runs/<id>/tasks``).

One row per task with what the table sorts and shows (status, times, the parameter values it
was given at dispatch) and what the timeline groups by (host, worker pid, backend). Built from
the manifest and the folded state; nothing is unpickled.
"""
from __future__ import annotations

import time
from collections import Counter
from typing import Any, Dict, Optional

from runner.manifest import PARAMETER
from runner.query import node_status
from runner.rundir import RunDirError

from webui.live import LiveRun

MAX_INPUTS = 100  # a reduce's thousands of inputs are not parameters worth a column


def task_listing(live: LiveRun) -> Dict[str, Any]:
    """Every task for the table and the timeline: ``tasks`` (``[{"id", "name", "kind",
    "executor", "executor_type", "params", "status", "started", "ended", "host", "pid",
    "job_id", "backend", "reused_from", "cached_from"}]``; ``params``: {parameter name: the repr of the
    value it was given at dispatch}, for the inputs that are values, not other tasks' results)
    and ``params`` (those parameter names, the most used first)."""
    manifest = live.manifest
    with live.lock:
        state = live.refresh()
        rows = []
        used: Counter = Counter()
        budget = 2000  # outcome headers read per listing, for an older run's worker pids
        for spec in manifest.nodes:
            if spec.kind == PARAMETER:
                continue
            params = {}
            for edge in spec.parents[:MAX_INPUTS]:
                parent = manifest.node(edge.node)
                if parent.kind == PARAMETER and edge.param not in params:
                    params[edge.param] = parent.value_repr
            used.update(params.keys())  # (a dict would be read as counts)
            task = state.tasks.get(spec.id)
            executor = manifest.executors.get(spec.executor or "", {}) if spec.executor else {}
            row: Dict[str, Any] = {
                "id": spec.id, "name": spec.name, "kind": spec.kind, "executor": spec.executor,
                "executor_type": executor.get("type"), "params": params,
                "status": node_status(spec, task)}
            if task is not None:
                host, pid = task.host, task.pid
                if pid is None and task.finished and task.backend == "local" and \
                        not task.reused and budget > 0:  # a run from before end events had it
                    budget -= 1
                    host, pid = _worker_of(live, spec.id, host)
                extra = {"started": task.started, "ended": task.ended if task.finished else None,
                         "host": host, "pid": pid, "job_id": task.job_id,
                         "backend": task.backend, "reused_from": task.reused_from,
                         "cached_from": task.cached_from}
                row.update((k, v) for k, v in extra.items() if v is not None)
            rows.append(row)
    return {"tasks": rows, "params": [name for name, _ in used.most_common()],
            "version": live.version, "now": time.time()}


def _worker_of(live: LiveRun, node: int, host: Optional[str]) -> Any:
    """(host, pid) of the local worker that ran a finished task: the events name only the
    host, its outcome header the pid too (read once per task, then kept)."""
    found = live.workers.get(node)
    if found is None:
        try:
            header = live.data.read_outcome(node)[0] or {}
        except (RunDirError, OSError):
            header = {}
        pid = header.get("pid")
        found = live.workers[node] = (header.get("host") or host,
                                      pid if isinstance(pid, int) else None)
    return found
