"""``redispatch`` and ``cancel``: new runs from old ones, and stopping runs."""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from covalent_cli.dispatch import create_run, start_runner
from covalent_cli.result import resolve_run
from runner.manifest import PARAMETER, Manifest
from runner.rundir import RunDir
from runner.state import COMPLETED


def redispatch(dispatch_id: str, replace_electrons: Optional[Dict[str, Any]] = None,
               reuse_previous_results: bool = False) -> Callable[..., str]:
    """``redispatch(id, ...)(*new_args, **new_kwargs)``: a new run of an old run's lattice.

    Without arguments the old inputs are used (args and kwargs: Covalent drops the kwargs there,
    a bug we do not copy). ``replace_electrons={"name": new_electron}`` swaps electrons by
    function name; ``reuse_previous_results=True`` copies the outputs of nodes whose function,
    inputs and ancestors are unchanged instead of running them again. Works without the source.
    """
    def submit(*args: Any, **kwargs: Any) -> str:
        old = resolve_run(dispatch_id)
        lattice = pickle.loads(old.read_blob(old.manifest.blobs["workflow"]))
        if not args and not kwargs:
            inputs = pickle.loads(old.read_blob(old.manifest.blobs["inputs"]))
            args, kwargs = tuple(inputs["args"]), dict(inputs["kwargs"])
        run = create_run(lattice, args, kwargs, home=old.path.parent,
                         replacements=replace_electrons,
                         reuse_from=old if reuse_previous_results else None)
        start_runner(run.path.parent)
        return run.dispatch_id

    return submit


def reusable_results(old: RunDir, new: Manifest, new_pack: bytes
                     ) -> Tuple[List[Dict[str, Any]], List[Tuple[int, Path]]]:
    """Events and result files for the nodes of ``new`` whose old outputs are still valid:
    same name, kind, function bytes and inputs, every ancestor reused or an equal parameter."""
    state = old.state()
    om = old.manifest
    same: Dict[int, bool] = {}

    def blob_equal(a: Any, b: Any) -> bool:
        return a is not None and b is not None and a[1] == b[1] and \
            old.read_blob(a) == new_pack[b[0]:b[0] + b[1]]

    events, results = [], []
    for node in new.nodes:
        if node.id >= len(om.nodes):
            same[node.id] = False
            continue
        previous = om.node(node.id)
        ok = previous.name == node.name and previous.kind == node.kind and \
            [(e.node, e.param, e.type, e.index) for e in previous.parents] == \
            [(e.node, e.param, e.type, e.index) for e in node.parents] and \
            blob_equal(previous.blob, node.blob) and \
            all(same.get(e.node, False) for e in node.parents) and \
            all(same.get(w, False) for w in node.waits)
        if ok and node.kind != PARAMETER:
            task = state.tasks.get(node.id)
            header = old.outcome_header(node.id)
            ok = bool(task and task.status == COMPLETED and header and header.get("ok")
                      and not header.get("child"))
            if ok:
                events.append({"ev": "end", "node": node.id, "status": COMPLETED,
                               "start": task.started, "end": task.ended, "reused": True,
                               "attempt": 0})
                results.append((node.id, old.result_path(node.id)))
        same[node.id] = ok
    return events, results


def cancel(dispatch_id: str, task_ids: Union[int, Sequence[int], None] = None) -> str:
    """Cancel a run, or only some of its nodes (and what depends on them)."""
    run = resolve_run(dispatch_id)
    nodes = None if task_ids is None else ([task_ids] if isinstance(task_ids, int) else list(task_ids))
    run.request_cancel(nodes)
    start_runner(run.path.parent)  # a runner must be there to carry the request out
    what = "dispatch" if nodes is None else f"task(s) {', '.join(map(str, nodes))} of dispatch"
    return f"Cancellation requested for {what} {run.dispatch_id}"
