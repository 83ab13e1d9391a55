"""``covalent._results_manager.results_manager``: get_result, cancel, _delete_result ..."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import List, Optional, Union

from covalent_cli.errors import RunNotFound, RunUnreadable
from covalent_cli.redispatch import cancel
from covalent_cli.result import Result, get_result, resolve_run, wait_for_run
from runner.layout import trash_path
from runner.rundir import RunDir, RunDirError

__all__ = ["Result", "get_result", "cancel", "sync", "_delete_result"]

STOP_TIMEOUT_S = 60.0


def sync(dispatch_id: Union[str, List[str], None] = None) -> None:
    """Return when the run (or every run of a list) has ended."""
    if isinstance(dispatch_id, str):
        dispatch_id = [dispatch_id]
    if not isinstance(dispatch_id, list):
        raise RuntimeError(f"dispatch_id must be a string or a list. You passed a "
                           f"{type(dispatch_id)}.")
    for one in dispatch_id:
        get_result(one, wait=True, status_only=True)


def _delete_result(dispatch_id: str, results_dir: Optional[str] = None,
                   remove_parent_directory: bool = False) -> None:
    """Delete a run with its sublattices' child runs (an unfinished one is cancelled and
    waited for first, as ``cov rm`` does). An unknown id does nothing, as in Covalent.
    ``remove_parent_directory`` is ignored: cov never removes the runs home."""
    home = Path(results_dir) if results_dir else None
    try:
        run = resolve_run(dispatch_id, home)
    except RunNotFound:
        return
    family = _family(run)
    for member in family:
        try:
            if not member.state().finished:
                member.request_cancel()
                wait_for_run(member, STOP_TIMEOUT_S)
        except (RunDirError, RunUnreadable):
            pass
    for member in family:
        trash = trash_path(member.path.parent, member.dispatch_id)
        try:
            os.rename(member.path, trash)  # the run vanishes at once and whole
        except FileNotFoundError:
            continue
        shutil.rmtree(trash, ignore_errors=True)


def _family(run: RunDir) -> List[RunDir]:
    """``run`` and its child runs, deepest first."""
    found: List[RunDir] = []
    try:
        children = [t.child for t in run.state().tasks.values() if t.child]
    except RunDirError:
        children = []
    for child in children:
        path = run.path.parent / str(child)
        if path.exists():
            found += _family(RunDir(path))
    return found + [run]
