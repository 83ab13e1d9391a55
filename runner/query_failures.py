"""Why a run failed, however deep: its FAILED tasks, each sublattice's with the failed tasks of
its child run, and the lines that name them (``cov status``, ``cov dispatch``, ``cov logs``, the
UI's task panel). Read-only, as all of the read model (``runner.query``).
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

from runner.rundir import RunDir, RunDirError, is_run_name
from runner.state import FAILED


def failed_tasks(run: RunDir, depth: int = 0) -> List[Dict[str, Any]]:
    """The run's FAILED tasks (``dispatch_id``, ``node``, ``name``, ``error``, ``exception``,
    ``child``), each sublattice's with the failed tasks of its child run in ``inner``, down
    the nesting: what names the task that made a run fail, however deep it is."""
    manifest, state = run.manifest, run.state()
    out: List[Dict[str, Any]] = []
    for node_id, task in sorted(state.tasks.items()):
        if task.status != FAILED or not 0 <= node_id < len(manifest.nodes):
            continue
        entry: Dict[str, Any] = {"dispatch_id": run.dispatch_id, "node": node_id,
                                 "name": manifest.node(node_id).name, "error": task.error,
                                 "exception": task.exception, "child": task.child, "inner": []}
        child = _child_run(run, task.child)
        if child is not None and depth < 50:
            try:
                entry["inner"] = failed_tasks(child, depth + 1)
            except (RunDirError, OSError):
                pass  # the child run is gone or damaged: the node's own error says what is known
        out.append(entry)
    return out


def _child_run(run: RunDir, child: Optional[str]) -> Optional[RunDir]:
    """The child run a node of ``run`` names, beside it in the home; None for a name that is
    no run's (the log of a run from someone else may name any path: never followed)."""
    if not child or not is_run_name(child) or "/" in child or "\0" in child:
        return None
    return RunDir(run.path.parent / child)


def failure_leaves(run: RunDir, child: str) -> List[Dict[str, Any]]:
    """The tasks whose own failure made the sublattice run ``child`` (of ``run``) fail, at
    whatever depth: ``failed_tasks`` entries that are not sublattices' (empty if the child
    run is gone or unreadable)."""
    child_run = _child_run(run, child)
    if child_run is None:
        return []
    try:
        found = failed_tasks(child_run)
    except (RunDirError, OSError):
        return []
    leaves: List[Dict[str, Any]] = []
    while found:
        entry = found.pop(0)
        if entry["inner"]:
            found[:0] = entry["inner"]
        else:
            leaves.append({k: v for k, v in entry.items() if k != "inner"})
    return leaves


def inner_failure_lines(failed: List[Dict[str, Any]], indent: str = "",
                        short: Callable[[str], str] = str) -> List[str]:
    """Lines naming the tasks that failed inside sublattices (``failed_tasks``' ``inner``),
    nested as the runs are; none if no failed task is a sublattice's. ``short`` gives the run
    id to show."""
    lines: List[str] = []
    for entry in failed:
        if not entry["inner"]:
            continue
        lines.append(f"{indent}in sublattice run {short(entry['child'])} (node {entry['node']} "
                     f"{entry['name']}):")
        for inner in entry["inner"]:
            why = inner["exception"] or (inner["error"] or "").split("\n")[0] if \
                not inner["inner"] else ""
            lines.append(f"{indent}  {inner['node']}: {inner['name']}" + (f": {why}" if why else ""))
        lines += inner_failure_lines(entry["inner"], indent + "  ", short)
    return lines
