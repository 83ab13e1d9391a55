"""Sublattices: built when their node runs, from its real inputs, as a child run."""
from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from runner.worker import CURRENT_TASK, ChildRun


def build_sublattice(sub_lattice: Any, metadata: str, *args: Any, **kwargs: Any) -> ChildRun:
    """Runs in a local worker: dispatch ``sub_lattice`` as a child of the current run.

    The child inherits the parent's executors where it sets none, lives beside the parent in the
    same home, and records ``parent`` and ``root_dispatch_id`` in its manifest. The runner makes
    this node's output the child's result when the child ends.

    The child's id follows from the parent run and the node, so that a re-run of this task (its
    runner was killed after the child was created) finds that child instead of creating a second
    one whose tasks would run again.
    """
    from covalent_cli.dispatch import create_run
    from runner.rundir import RunDir

    home = Path(CURRENT_TASK["run"]).parent
    child_id = child_dispatch_id(CURRENT_TASK["dispatch_id"], CURRENT_TASK["node"])
    if RunDir(home / child_id).exists():
        return ChildRun(child_id)
    inherited = json.loads(metadata) if metadata else {}
    if sub_lattice.executor is None and inherited.get("executor") is not None:
        sub_lattice.executor = _executor(inherited["executor"])
    if sub_lattice._workflow_executor is None and inherited.get("workflow_executor") is not None:
        sub_lattice._workflow_executor = _executor(inherited["workflow_executor"])
    parent_dir = RunDir(CURRENT_TASK["run"])
    parent = parent_dir.manifest
    run = create_run(sub_lattice, args, kwargs, home=home,
                     parent={"dispatch_id": parent.dispatch_id, "node": CURRENT_TASK["node"]},
                     root_dispatch_id=parent.root_dispatch_id, dispatch_id=child_id)
    return ChildRun(run.dispatch_id)


def child_dispatch_id(parent_id: str, node: int) -> str:
    """The one child run id of sublattice ``node`` of run ``parent_id`` (a UUID, like any)."""
    return str(uuid.uuid5(_CHILD_NAMESPACE, f"{parent_id}/{int(node)}"))


_CHILD_NAMESPACE = uuid.UUID("5b0c3c58-8e0f-4d53-9d0e-3a8a6f2f3c11")


def _executor(value: Any) -> Any:
    if isinstance(value, dict):
        from covalent_cli import executor as ex

        params = {k: v for k, v in value.items() if k != "type"}
        cls = ex.BY_TYPE.get(value.get("type", "local"))
        return cls(**params) if cls else value.get("type")
    return value
