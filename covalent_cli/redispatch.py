"""``redispatch`` and ``cancel``: new runs from old ones, and stopping runs."""
from __future__ import annotations

import functools
import pickle
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from covalent_cli.dispatch import create_run, start_runner
from covalent_cli.result import resolve_run
from runner.daemon import request_cancel
from runner.manifest import PARAMETER, Manifest
from runner.rundir import RunDir
from runner.state import COMPLETED, Event


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
                         reused=functools.partial(reusable_results, old)
                         if reuse_previous_results else None,
                         secrets_from=old)
        start_runner(run.path.parent)
        return run.dispatch_id

    return submit


def reusable_results(old: RunDir, new: Manifest, new_pack: bytes
                     ) -> Tuple[List[Event], List[Tuple[int, Path]]]:
    """Events and result files for the nodes of ``new`` whose old outputs are still valid:
    same name, kind, function bytes and inputs, every ancestor reused or an equal parameter."""
    state = old.state()
    om = old.manifest
    same: Dict[int, bool] = {}

    def blob_equal(a: Any, b: Any) -> bool:
        return a is not None and b is not None and a[1] == b[1] and \
            old.read_blob(a) == new_pack[b[0]:b[0] + b[1]]

    def unchanged(node_id: int) -> bool:
        """Same node, same inputs, all ancestors unchanged (called in topological order)."""
        if node_id in same:
            return same[node_id]
        node = new.node(node_id)
        if node_id >= len(om.nodes):
            return False
        previous = om.node(node_id)
        ok = previous.name == node.name and previous.kind == node.kind and \
            [(e.node, e.param, e.type, e.index) for e in previous.parents] == \
            [(e.node, e.param, e.type, e.index) for e in node.parents] and \
            sorted(previous.waits) == sorted(node.waits)
        if ok and node.kind == PARAMETER:
            ok = blob_equal(previous.blob, node.blob)
        elif ok:
            ok = previous.fingerprint == node.fingerprint and \
                all(same.get(e.node, False) for e in node.parents) and \
                all(same.get(w, False) for w in node.waits)
            task = state.tasks.get(node_id)
            header = old.outcome_header(node_id) if ok else None
            ok = bool(ok and task and task.status == COMPLETED and header and header.get("ok")
                      and not header.get("child"))
        same[node_id] = ok
        return ok

    for node_id in topological_order(new):
        unchanged(node_id)
    events: List[Event] = []
    results: List[Tuple[int, Path]] = []
    now = time.time()  # a reused node starts and ends at once (Covalent's convention)
    for node in new.nodes:
        if node.kind != PARAMETER and same.get(node.id):
            events.append({"ev": "end", "node": node.id, "status": COMPLETED, "attempt": 0,
                           "start": now, "end": now, "reused": True})
            results.append((node.id, old.result_path(node.id)))
    return events, results


def topological_order(manifest: Manifest) -> List[int]:
    """Node ids, every node after its parents and waits (ids are not: Covalent numbers a
    task before the nodes made for its arguments)."""
    order: List[int] = []
    seen: Dict[int, int] = {}  # 1 = on the stack, 2 = done
    for root in range(len(manifest.nodes)):
        if root in seen:
            continue
        stack = [(root, False)]
        while stack:
            node_id, expanded = stack.pop()
            if expanded:
                seen[node_id] = 2
                order.append(node_id)
                continue
            if seen.get(node_id):
                continue
            seen[node_id] = 1
            stack.append((node_id, True))
            node = manifest.node(node_id)
            for dep in [e.node for e in node.parents] + list(node.waits):
                if not seen.get(dep):
                    stack.append((dep, False))
    return order


def cancel(dispatch_id: str, task_ids: Union[int, Sequence[int], None] = None,
           home: Optional[Path] = None, on_busy: Optional[Callable[[str], None]] = None) -> str:
    """Cancel a run, or only some of its nodes (and what depends on them). ``on_busy`` is
    told who holds the run's lock if it is held (the lock is then waited for)."""
    run = resolve_run(dispatch_id, home)
    nodes = None if task_ids is None else ([task_ids] if isinstance(task_ids, int) else list(task_ids))
    return request_cancel(run, nodes, on_busy=on_busy)
