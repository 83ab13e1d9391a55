"""The runs home: ``cov runs`` (alias ``cov list``), ``cov rm``, ``cov config``."""
from __future__ import annotations

import os
import shutil
import time
from typing import Dict, List, Optional, Tuple

import click
import yaml

from covalent_cli.cli.commands import _echo_json, _status_text
from covalent_cli.cli.main import Context, cli, pass_ctx
from covalent_cli.errors import RunUnreadable, UserError
from covalent_cli.result import resolve_run, wait_for_run
from runner.config import check_config, config_path, runs_home
from runner.query import format_seconds, format_time, iter_runs, list_runs
from runner.redact import mask_secrets
from runner.rundir import RunDir, RunDirError
from runner.state import TERMINAL


@cli.command("runs")
@click.option("--status", "status_filter", help="Only runs with this status (e.g. FAILED).")
@click.option("--json", "as_json", is_flag=True, help="JSON list.")
@click.option("-q", "--quiet", is_flag=True, help="Print only run ids.")
@click.option("-n", "--limit", type=int, default=0, help="At most this many (newest first).")
@click.option("--all", "show_all", is_flag=True, help="Include sublattices' child runs.")
@pass_ctx
def runs_cmd(ctx: Context, status_filter: Optional[str], as_json: bool, quiet: bool,
             limit: int, show_all: bool) -> None:
    """List runs, newest first (sublattices' child runs only with --all)."""
    rows = [r for r in list_runs(ctx.home, status_filter) if show_all or not r.get("parent")]
    if limit:
        rows = rows[:limit]
    if as_json:
        _echo_json(rows)
        return
    if quiet:
        for row in rows:
            click.echo(row["dispatch_id"])
        return
    if not rows:
        click.echo(f"No runs under {ctx.home}.", err=True)
        return
    click.echo(f"{'DISPATCH ID':36}  {'LATTICE':16}  {'STATUS':10}  {'TASKS':>9}  "
               f"{'STARTED':19}  RUNTIME")
    for r in rows:
        status = r["status"]
        click.echo(f"{r['dispatch_id']:36}  {r['lattice'][:16]:16}  "
                   f"{_status_text(status) + ' ' * max(0, 10 - len(status))}  "
                   f"{str(r['done']) + '/' + str(r['total']):>9}  {format_time(r['started']):19}  "
                   f"{format_seconds(r['runtime'])}")


cli.add_command(runs_cmd, "list")

RM_STOP_TIMEOUT_S = 60.0  # how long `cov rm` waits for a cancelled run to stop


@cli.command()
@click.argument("run_ids", nargs=-1, required=True)
@click.option("--force", is_flag=True,
              help=f"Remove a run even if it has not stopped {RM_STOP_TIMEOUT_S:g}s after its "
                   "cancel.")
@pass_ctx
def rm(ctx: Context, run_ids: Tuple[str, ...], force: bool) -> None:
    """Delete runs with their sublattices' child runs; a running one is cancelled first (its
    tasks are stopped), then removed."""
    children: Dict[str, List[RunDir]] = {}
    for other in iter_runs(ctx.home):
        try:
            parent = (other.header().get("parent") or {}).get("dispatch_id")
        except (RunDirError, AttributeError):
            continue
        if parent:
            children.setdefault(str(parent), []).append(other)
    for run_id in run_ids:
        run = resolve_run(run_id, ctx.home)
        family = _descendants(run, children) + [run]
        _cancel_and_wait(family, force)
        for member in family:
            # Rename first: the run vanishes at once and whole, then the files go.
            trash = member.path.parent / f".rm-{member.dispatch_id}"
            try:
                os.rename(member.path, trash)
            except FileNotFoundError:
                continue  # named twice, or removed meanwhile
            shutil.rmtree(trash, ignore_errors=True)
        extra = f" and {len(family) - 1} child run(s)" if len(family) > 1 else ""
        click.echo(f"Removed {run.dispatch_id}{extra}")


def _descendants(run: RunDir, children: Dict[str, List[RunDir]]) -> List[RunDir]:
    """The child runs of ``run``, deepest first (each before its parent)."""
    found: List[RunDir] = []
    for child in children.get(run.dispatch_id, []):
        found += _descendants(child, children) + [child]
    return found


def _cancel_and_wait(runs: List[RunDir], force: bool) -> None:
    """Cancel the unfinished ones and wait until they have stopped (a runner carries the
    cancel out: removing the directory first would leave its tasks running)."""
    def unfinished(run: RunDir) -> bool:
        try:
            return not run.state().finished
        except RunDirError:
            return False  # unreadable: nothing can run it

    pending = [r for r in runs if unfinished(r)]
    for run in pending:
        run.request_cancel()
    deadline = time.monotonic() + RM_STOP_TIMEOUT_S
    for run in pending:
        try:
            state = wait_for_run(run, max(0.0, deadline - time.monotonic()))
        except RunUnreadable:
            continue
        if state.status not in TERMINAL and not force:
            raise UserError(f"run {run.dispatch_id} has not stopped {RM_STOP_TIMEOUT_S:g}s after "
                            "its cancel", "see `cov status`; pass --force to remove it anyway")


@cli.command("config")
@click.option("--json", "as_json", is_flag=True)
def config_cmd(as_json: bool) -> None:
    """Print the effective configuration (secrets masked) and where it comes from; an
    unknown key or a value of the wrong type is an error (exit 1)."""
    data = mask_secrets(check_config())
    if as_json:
        _echo_json({"config_file": str(config_path()), "home": str(runs_home()), **data})
        return
    click.echo(f"# config file: {config_path()}" + ("" if config_path().exists() else " (absent)"))
    click.echo(f"# runs home:   {runs_home()}")
    click.echo(yaml.safe_dump(data, sort_keys=False).rstrip())
