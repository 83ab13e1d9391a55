"""``redispatch`` and ``cancel``: new runs from old ones, and stopping runs.

A redispatch runs either the lattice stored in the old run (Covalent's ``ct.redispatch``: it
works without the source) or a lattice loaded again from the edited script (``cov redispatch
--script``); with reuse, every task whose code fingerprint and inputs are unchanged takes the
old result instead of running (``reuse.py`` decides, and says why the others rerun).
"""
from __future__ import annotations

import functools
import inspect
import pickle
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from covalent_cli.dispatch import PreparedRun, create_run, prepare_run, start_runner, write_run
from covalent_cli.result import resolve_run
from covalent_cli.reuse import ReusePlan, plan_reuse, topological_order  # noqa: F401 (API)
from runner.daemon import request_cancel
from runner.manifest import Manifest
from runner.rundir import RunDir
from runner.state import COMPLETED, Event


def redispatch(dispatch_id: str, replace_electrons: Optional[Dict[str, Any]] = None,
               reuse_previous_results: bool = False) -> Callable[..., str]:
    """``redispatch(id, ...)(*new_args, **new_kwargs)``: a new run of an old run's lattice.

    Without arguments the old inputs are used (args and kwargs: Covalent drops the kwargs there,
    a bug we do not copy). ``replace_electrons={"name": new_electron}`` swaps electrons by
    function name; ``reuse_previous_results=True`` copies the outputs of nodes whose code,
    inputs and ancestors are unchanged instead of running them again. Works without the source.
    """
    def submit(*args: Any, **kwargs: Any) -> str:
        old = resolve_run(dispatch_id)
        lattice = stored_lattice(old)
        if not args and not kwargs:
            args, kwargs = stored_inputs(old)
        run = create_run(lattice, args, kwargs, home=old.path.parent,
                         replacements=replace_electrons,
                         reused=functools.partial(reusable_results, old)
                         if reuse_previous_results else None,
                         secrets_from=old)
        start_runner(run.path.parent)
        return run.dispatch_id

    return submit


def stored_lattice(old: RunDir) -> Any:
    """The lattice as the old run stored it (its code as it was at dispatch)."""
    return pickle.loads(old.read_blob(old.manifest.blobs["workflow"]))


def stored_inputs(old: RunDir) -> Tuple[Tuple[Any, ...], Dict[str, Any]]:
    inputs = pickle.loads(old.read_blob(old.manifest.blobs["inputs"]))
    return tuple(inputs["args"]), dict(inputs["kwargs"])


def merged_inputs(function: Callable[..., Any], args: Sequence[Any], kwargs: Dict[str, Any],
                  overrides: Dict[str, Any]) -> Tuple[Tuple[Any, ...], Dict[str, Any]]:
    """The old inputs with ``overrides`` by parameter name (one given positionally in the old
    run is replaced in place); a name the function does not take stays a keyword, so calling
    it fails the way the user's own call would."""
    try:
        signature = inspect.signature(function)
        bound = signature.bind_partial(*args, **kwargs)
    except (TypeError, ValueError):
        return tuple(args), {**kwargs, **overrides}
    extra: Dict[str, Any] = {}
    var_kw = next((p.name for p in signature.parameters.values() if p.kind == p.VAR_KEYWORD),
                  None)
    for name, value in overrides.items():
        param = signature.parameters.get(name)
        if param is not None and param.kind not in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            bound.arguments[name] = value
        elif var_kw is not None:
            bound.arguments.setdefault(var_kw, {})[name] = value
        else:
            extra[name] = value
    return tuple(bound.args), {**bound.kwargs, **extra}


def plan_redispatch(old: RunDir, lattice: Any, args: Sequence[Any], kwargs: Dict[str, Any],
                    reuse: bool, replacements: Optional[Dict[str, Any]] = None,
                    name: Optional[str] = None, tags: Sequence[str] = ()
                    ) -> Tuple[PreparedRun, ReusePlan]:
    """The new run, built and pickled but not written, and what of ``old`` it would reuse.
    It keeps ``old``'s name and tags unless ``name``/``tags`` are given, so that
    ``cov runs --name/--tag`` still finds the rerun of a labelled run."""
    prepared = prepare_run(lattice, args, kwargs, replacements=replacements, secrets_from=old,
                           name=name if name is not None else old.manifest.name,
                           tags=tags or old.manifest.tags)
    return prepared, plan_reuse(old, prepared.manifest, prepared.pack, enabled=reuse)


def write_redispatch(old: RunDir, prepared: PreparedRun, plan: ReusePlan) -> RunDir:
    """Create the planned run beside ``old``, its reused results taken over, and start it."""
    events, results = reuse_events(old, plan)
    run = write_run(prepared, old.path.parent, events, results)
    start_runner(run.path.parent)
    return run


def reusable_results(old: RunDir, new: Manifest, new_pack: bytes
                     ) -> Tuple[List[Event], List[Tuple[int, Union[Path, bytes]]]]:
    """Events and result files for the nodes of ``new`` whose old outputs are still valid
    (``reuse.plan_reuse``): the ``Reuse`` hook of ``create_run``."""
    return reuse_events(old, plan_reuse(old, new, new_pack))


def reuse_events(old: RunDir, plan: ReusePlan) -> Tuple[List[Event], List[Tuple[int, Union[Path, bytes]]]]:
    """An ``end`` event per reused node and the old result files to link in."""
    events: List[Event] = []
    results: List[Tuple[int, Union[Path, bytes]]] = []
    now = time.time()  # a reused node starts and ends at once (Covalent's convention)
    for node_id, old_id in sorted(plan.reused.items()):
        events.append({"ev": "end", "node": node_id, "status": COMPLETED, "attempt": 0,
                       "start": now, "end": now, "reused": True,
                       "reused_from": old.dispatch_id})
        if old.outcome_is_packed(old_id):  # format 2.0: its bytes become a file of the new run
            data = old.outcome_bytes(old_id)
            if data is not None:
                results.append((node_id, data))
        else:
            results.append((node_id, old.result_path(old_id)))
    return events, results


def cancel(dispatch_id: str, task_ids: Union[int, Sequence[int], None] = None,
           home: Optional[Path] = None, on_busy: Optional[Callable[[str], None]] = None) -> str:
    """Cancel a run, or only some of its nodes (and what depends on them). ``on_busy`` is
    told who holds the run's lock if it is held (the lock is then waited for)."""
    run = resolve_run(dispatch_id, home)
    nodes = None if task_ids is None else ([task_ids] if isinstance(task_ids, int) else list(task_ids))
    return request_cancel(run, nodes, on_busy=on_busy)
