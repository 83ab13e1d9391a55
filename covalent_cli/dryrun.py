"""Dispatching without writing: dry runs, loading an edited script, refusing a script's own
dispatches.

All three use ``dispatch.INTERCEPT``: while a hook is set, ``create_run`` builds and pickles
the run as usual (so an unknown executor or an unpicklable argument is still an error) and
hands it to the hook instead of writing it; no runner starts.
"""
from __future__ import annotations

import contextlib
import os
import traceback
from collections import Counter
from typing import Any, Dict, Iterator, List, Optional, Tuple

from covalent_cli.dispatch import INTERCEPT, PreparedRun
from covalent_cli.errors import RunNotFound, UserError
from covalent_cli.script import find_lattices, run_script, user_location
from runner.manifest import PARAMETER, SUBLATTICE, Manifest


class DryRun:
    """An ``INTERCEPT`` hook that keeps the runs it is given; ``stopped`` says why the
    script did not run to its end, if it did not."""

    def __init__(self) -> None:
        self.runs: List[PreparedRun] = []
        self.stopped: Optional[str] = None

    def __call__(self, prepared: PreparedRun) -> None:
        self.runs.append(prepared)

    @property
    def ids(self) -> List[str]:
        return [r.manifest.dispatch_id for r in self.runs]


@contextlib.contextmanager
def intercepting(hook: Any) -> Iterator[Any]:
    """Hand the runs ``create_run`` would write to ``hook`` while the block runs."""
    INTERCEPT.append(hook)
    try:
        yield hook
    finally:
        INTERCEPT.remove(hook)


def active_dry_run() -> Optional[DryRun]:
    hook = INTERCEPT[-1] if INTERCEPT else None
    return hook if isinstance(hook, DryRun) else None


def load_script(path: str, refuse: str = "") -> Tuple[Dict[str, Any], List[str]]:
    """``run_script`` for ``cov dispatch``. ``refuse``: what the command was given that a
    script dispatching on its own cannot take (``-a``): its first ``ct.dispatch`` is then an
    error, before it creates a run. In a dry run, a script that waits for the result of a
    dispatch it made (which was not written) is stopped there: the dispatches so far are
    reported and ``DryRun.stopped`` says where it stopped."""
    dry = active_dry_run()
    if refuse:
        def refuse_dispatch(prepared: PreparedRun) -> None:
            where = user_location(traceback.extract_stack())
            raise UserError(f"{path} dispatched on its own (lattice "
                            f"'{prepared.lattice.__name__}'{' at ' + where if where else ''}"
                            f"): {refuse} cannot apply to it, so nothing was dispatched",
                            "remove the dispatch from the script, or the arguments from the "
                            "command")
        with intercepting(refuse_dispatch):
            return run_script(path)
    if dry is None:
        return run_script(path)
    try:
        return run_script(path)
    except RunNotFound as exc:
        waited = [i for i in dry.ids if i in str(exc)]
        if not waited:
            raise
        where = user_location(traceback.extract_tb(exc.__traceback__))
        dry.stopped = (f"the script waited for the result of its dispatch "
                       f"{dry.ids.index(waited[0]) + 1}{f' (at {where})' if where else ''}: "
                       "a dry run stops it there "
                       "(nothing ran; code after that point was not run)")
        return {}, dry.ids


def load_lattice(path: str, name: str) -> Tuple[Any, int]:
    """The lattice ``name`` of the script at ``path``, loaded afresh (an edited script),
    without running the script's main block, and how many dispatches the script made while
    loading: they are intercepted (not written), and their lattices count too."""
    path = os.path.abspath(path)
    captured = DryRun()
    with intercepting(captured):
        try:
            namespace, _ = run_script(path, run_name="__cov_redispatch__")
        except RunNotFound:
            if not captured.runs:
                raise
            namespace = {}  # it waited for a result of its own (intercepted) dispatch
    lattices = find_lattices(namespace)
    for run in captured.runs:
        lattices.setdefault(run.lattice.__name__, run.lattice)
    if name not in lattices:
        raise UserError(f"{path} has no lattice named '{name}' (the run's lattice)",
                        f"found: {', '.join(sorted(lattices)) or 'none'}")
    return lattices[name], len(captured.runs)


def task_counts(manifest: Manifest) -> Dict[str, Any]:
    """What a dry run reports of one run: tasks per function and executor, internal nodes
    (lists, items, the final reconstruct), parameters and sublattices."""
    from covalent_cli.reuse import INTERNAL_KINDS  # (a dry run's report only)

    per: Counter = Counter()
    internal = parameters = sublattices = 0
    for node in manifest.nodes:
        if node.kind == PARAMETER:
            parameters += 1
        elif node.kind in INTERNAL_KINDS:
            internal += 1
        else:
            per[(node.name, node.executor or "-")] += 1
            sublattices += node.kind == SUBLATTICE
    rows = [{"function": fn, "executor": ex, "tasks": n}
            for (fn, ex), n in sorted(per.items(), key=lambda kv: (-kv[1], kv[0]))]
    return {"lattice": manifest.lattice_name, "source_file": manifest.source_file,
            "inputs": manifest.inputs, "tasks": sum(per.values()), "internal": internal,
            "parameters": parameters, "sublattices": sublattices, "by_function": rows,
            "executors": manifest.executors}
