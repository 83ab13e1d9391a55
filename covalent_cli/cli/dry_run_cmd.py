"""``cov dispatch --dry-run``: build the graph, print its tasks, write nothing.

The ``dispatch`` command (commands.py) calls ``start`` first and ``report`` at the end; in
between it runs as usual, with every run it would create handed to a ``DryRun`` instead.
"""
from __future__ import annotations

from typing import Any, Dict, List

import click

from covalent_cli.cli.commands import _echo_json
from covalent_cli.dryrun import DryRun, intercepting, task_counts


def start() -> DryRun:
    """Intercept the runs of this command (until its click context closes)."""
    return click.get_current_context().with_resource(intercepting(DryRun()))


def report(dry: DryRun, ids: List[str], as_json: bool) -> None:
    """Print what would have been dispatched: per run, its tasks by function and executor."""
    plans = [task_counts(r.manifest) for r in dry.runs if r.manifest.dispatch_id in ids]
    if as_json:
        _echo_json({"dry_run": True, "dispatches": plans, "stopped": dry.stopped})
        return
    click.echo("Dry run: nothing was written and nothing ran.")
    if not plans:
        click.echo("The script made no dispatch.")
    for n, plan in enumerate(plans, 1):
        click.echo("")
        click.echo(_title(n, len(plans), plan))
        width = max([len(r["function"]) for r in plan["by_function"]] + [8])
        click.echo(f"  {'TASKS':>6}  {'FUNCTION':{width}}  EXECUTOR")
        for row in plan["by_function"]:
            executor = row["executor"]
            kind = plan["executors"].get(executor, {}).get("type", executor)
            shown = executor if kind == executor else f"{executor} ({kind})"
            click.echo(f"  {row['tasks']:>6}  {row['function']:{width}}  {shown}")
        if plan["sublattices"]:
            click.echo(f"  note: {plan['sublattices']} sublattice node(s): their own tasks are "
                       "built when they run")
    if dry.stopped:
        click.echo("")
        click.echo(f"note: {dry.stopped}")


def _title(n: int, count: int, plan: Dict[str, Any]) -> str:
    inputs = plan["inputs"] or {}
    shown = ", ".join([str(a) for a in inputs.get("args", [])] +
                      [f"{k}={v}" for k, v in (inputs.get("kwargs") or {}).items()])
    prefix = f"Dispatch {n} of {count}: " if count > 1 else "Would dispatch "
    return (f"{prefix}{plan['lattice']}({shown}): {plan['tasks']} task(s), "
            f"{plan['internal']} internal node(s), {plan['parameters']} parameter(s)")
