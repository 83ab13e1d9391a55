"""When a dispatch makes sure of a runner: ``start_runner`` once the run is written, and
``start_runner_early`` before it, with the hooks that change both (``INTERCEPT``: a dry run,
``RUNNER_STARTERS``: ``--as-job``).

Apart from the dispatch module because it imports only the runner's config and daemon, which
the runner needs too: ``cov dispatch`` starts the runner (a fork of itself, ``runner.fork_start``)
from here before it imports the SDK's graph and pickling layers, so that those imports, the
script and its graph run in this process while the runner's own imports and its pool's start
run in the other, on another core.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, List

from runner.config import check_config, runs_home
from runner.daemon import ensure_running

# Hooks that take the runs ``create_run`` would write, newest last. While one is set, a
# prepared run is handed to it instead of written and no runner starts: ``cov dispatch
# --dry-run`` and loading an edited script for a redispatch (``covalent_cli/dryrun.py``). A
# hook may raise (a script-style dispatch given -a is refused before it creates a run). Each
# takes a ``dispatch.PreparedRun`` (not named here: that module imports this one).
INTERCEPT: List[Callable[[Any], None]] = []

# What every run's reshaping nodes (lists, items, attributes, the final reconstruct) unpickle
# their functions from: a runner forked by the dispatch has its pool's workers import it first.
WORKER_MODULES = ("covalent_cli.build",)

# ``cov dispatch --as-job`` sets one: the runner is submitted as a Slurm job (runner_job).
RUNNER_STARTERS: List[Callable[[Path], Any]] = []


def start_runner(home: Path) -> None:
    """Make sure a runner serves ``home`` (start one unless a live one does); not in a dry
    run (see ``INTERCEPT``). ``RUNNER_STARTERS``' newest, if any, starts it instead."""
    if not INTERCEPT:
        (RUNNER_STARTERS[-1] if RUNNER_STARTERS else ensure_running)(home)


def start_runner_early() -> None:
    """Start the runner before the graph is built, so that its interpreter start and imports
    (the larger part of a small run's fixed cost) overlap with building, pickling and writing
    the run, on another core. Best effort: ``start_runner`` after the run is written is the one
    that reports a failure (or starts another if this one went idle meanwhile). Nothing starts
    in a dry run, nor with a config mistake (``prepare_run`` reports it; a runner started now
    would only die of it)."""
    if INTERCEPT or os.environ.get("COV_NO_RUNNER"):
        return
    from runner import fork_start

    fork_start.worker_modules = WORKER_MODULES  # for a runner forked now (see there)
    try:
        check_config()
        ensure_running(runs_home())
    except Exception:  # noqa: BLE001 - said again, with its hint, by start_runner
        pass
