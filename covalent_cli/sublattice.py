"""Sublattices: built when their node runs, from its real inputs, as a child run."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runner.worker import CURRENT_TASK, ChildRun


def build_sublattice(sub_lattice: Any, metadata: str, *args: Any, **kwargs: Any) -> ChildRun:
    """Runs in a local worker: dispatch ``sub_lattice`` as a child of the current run.

    The child inherits the parent's executors where it sets none, lives beside the parent in the
    same home, and records ``parent`` and ``root_dispatch_id`` in its manifest. The runner makes
    this node's output the child's result when the child ends.
    """
    from covalent_cli.dispatch import create_run
    from runner.rundir import RunDir

    inherited = json.loads(metadata) if metadata else {}
    if sub_lattice.executor is None and inherited.get("executor") is not None:
        sub_lattice.executor = _executor(inherited["executor"])
    if sub_lattice._workflow_executor is None and inherited.get("workflow_executor") is not None:
        sub_lattice._workflow_executor = _executor(inherited["workflow_executor"])
    parent_dir = RunDir(CURRENT_TASK["run"])
    parent = parent_dir.manifest
    run = create_run(sub_lattice, args, kwargs, home=Path(CURRENT_TASK["run"]).parent,
                     parent={"dispatch_id": parent.dispatch_id, "node": CURRENT_TASK["node"]},
                     root_dispatch_id=parent.root_dispatch_id)
    return ChildRun(run.dispatch_id)


def _executor(value: Any) -> Any:
    if isinstance(value, dict):
        from covalent_cli import executor as ex

        classes = {"local": ex.LocalExecutor, "ssh": ex.SSHExecutor, "slurm": ex.SlurmExecutor}
        params = {k: v for k, v in value.items() if k != "type"}
        cls = classes.get(value.get("type", "local"))
        return cls(**params) if cls else value.get("type")
    return value
