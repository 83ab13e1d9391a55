"""The runs home: ``cov runs`` (alias ``cov list``), ``cov rm``, ``cov config``."""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import click
import yaml

from covalent_cli.cli.commands import _echo_json, _status_text
from covalent_cli.cli.main import Context, cli, pass_ctx
from covalent_cli.cli.remote_on import on_option
from covalent_cli.cli.run_filters import Age, RunFilter, RunStatus, labels_text, params_text
from covalent_cli.errors import RunUnreadable, UserError
from covalent_cli.result import resolve_run, wait_for_run
from runner.config import check_config, config_path, runs_home
from runner.layout import trash_path
from runner.query import (UNREADABLE, format_seconds, format_time, iter_runs, list_runs,
                          safe_summary)
from runner.redact import mask_secrets
from runner.rundir import RunDir, RunDirError
from runner.snapshot import pulled_from
from runner.state import TERMINAL


def _filter_options(fn: Any) -> Any:
    """The options that choose runs, shared by ``cov runs`` and ``cov rm``."""
    for option in reversed([
        click.option("--status", "status", type=RunStatus(),
                     help="Only runs with this status (FAILED, COMPLETED, RUNNING, ...)."),
        click.option("--name", "name", metavar="GLOB",
                     help="Only runs whose --name matches (a glob: 'sweep-*')."),
        click.option("--tag", "tags", multiple=True, metavar="TAG",
                     help="Only runs with this tag (repeatable: all of them)."),
        click.option("--param", "params", multiple=True, metavar="NAME=VALUE",
                     help="Only runs whose lattice argument NAME had VALUE (as -a reads it)."),
        click.option("--older-than", "older_than", type=Age(), metavar="AGE",
                     help="Only runs dispatched longer ago than AGE (90s, 30m, 12h, 7d, 2w)."),
    ]):
        fn = option(fn)
    return fn


@cli.command("runs")
@_filter_options
@click.option("--json", "as_json", is_flag=True, help="One JSON document (docs/json.md).")
@click.option("-q", "--quiet", is_flag=True, help="Print only run ids.")
@click.option("-n", "--limit", type=int, default=0, help="At most this many (newest first).")
@click.option("--all", "show_all", is_flag=True, help="Include sublattices' child runs.")
@on_option
@pass_ctx
def runs_cmd(ctx: Context, status: Optional[str], name: Optional[str], tags: Tuple[str, ...],
             params: Tuple[str, ...], older_than: Optional[float], as_json: bool, quiet: bool,
             limit: int, show_all: bool) -> None:
    """List runs, newest first, with their name, tags and arguments (sublattices' child runs
    only with --all)."""
    chosen = RunFilter(status, name, tags, params, older_than)
    now = time.time()
    rows = [r for r in list_runs(ctx.home)
            if (show_all or not r.get("parent")) and chosen.keeps(r, now)]
    if limit:
        rows = rows[:limit]
    if as_json:
        _echo_json({"home": str(ctx.home), "runs": rows})
        return
    if quiet:
        for row in rows:
            click.echo(row["dispatch_id"])
        return
    if not rows:
        click.echo(f"No runs under {ctx.home}" + (" match." if chosen.given else "."), err=True)
        return
    labels = [labels_text(r) for r in rows]
    width = min(max(len(text) for text in labels), 24)
    click.echo(f"{'DISPATCH ID':36}  {'LATTICE':16}  {'STATUS':10}  {'TASKS':>9}  "
               f"{'STARTED':19}  {'RUNTIME':>7}  " +
               (f"{'NAME/TAGS':{width}}  " if width else "") + "ARGUMENTS")
    for r, label in zip(rows, labels):
        status_value = r["status"]
        line = (f"{r['dispatch_id']:36}  {r['lattice'][:16]:16}  "
                f"{_status_text(status_value) + ' ' * max(0, 10 - len(status_value))}  "
                f"{str(r['done']) + '/' + str(r['total']):>9}  {format_time(r['started']):19}  "
                f"{format_seconds(r['runtime']):>7}  " +
                (f"{label[:width]:{width}}  " if width else "") + params_text(r))
        click.echo(line.rstrip())


cli.add_command(runs_cmd, "list")

RM_STOP_TIMEOUT_S = 60.0  # how long `cov rm` waits for a cancelled run to stop


@cli.command()
@click.argument("run_ids", metavar="[RUN]...", nargs=-1)
@_filter_options
@click.option("--dry-run", is_flag=True, help="Print what would be removed; remove nothing.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors and warnings.")
@click.option("--force", is_flag=True,
              help=f"Remove a run even if it has not stopped {RM_STOP_TIMEOUT_S:g}s after its "
                   "cancel.")
@on_option
@pass_ctx
def rm(ctx: Context, run_ids: Tuple[str, ...], status: Optional[str], name: Optional[str],
       tags: Tuple[str, ...], params: Tuple[str, ...], older_than: Optional[float],
       dry_run: bool, quiet: bool, force: bool) -> None:
    """Delete runs with their sublattices' child runs: the RUNs named, or the runs the options
    choose (`cov rm --older-than 7d --status FAILED`), or those of the RUNs they choose.

    A running RUN named is cancelled first (its tasks are stopped), then removed; a running
    run the options choose is kept, saying so, unless --status names its status."""
    chosen = RunFilter(status, name, tags, params, older_than)
    if not run_ids and not chosen.given:
        raise click.UsageError("give RUN ids, or choose runs with --status, --name, --tag, "
                               "--param or --older-than")
    now = time.time()
    if run_ids:
        named = [resolve_run(run_id, ctx.home) for run_id in run_ids]
        targets = [(run, safe_summary(run)) for run in named]
        targets = [(run, row) for run, row in targets if chosen.keeps(row, now)]
    else:
        targets = [(RunDir(row["path"]), row) for row in list_runs(ctx.home)
                   if not row.get("parent") and chosen.keeps(row, now)]
    if not targets:
        if not quiet:
            click.echo("No runs match; nothing removed.", err=True)
        return
    children = _children_of(ctx.home)
    for run, row in targets:
        # A copy pulled from another host runs there, not here: nothing to cancel first.
        running = row["status"] not in TERMINAL and row["status"] != UNREADABLE and \
            pulled_from(run.path) is None
        if running and not run_ids and status != row["status"]:
            click.echo(f"Kept {run.dispatch_id}: it is {row['status']} (`cov rm "
                       f"{run.dispatch_id[:8]}` cancels and removes it)", err=True)
            continue
        family = _descendants(run, children) + [run]
        extra = f" and {len(family) - 1} child run(s)" if len(family) > 1 else ""
        if dry_run:
            click.echo(f"Would remove {run.dispatch_id}{extra}  ({row['status']}, "
                       f"{row['lattice']}, dispatched {format_time(row.get('created'))})")
            continue
        if running:
            click.echo(f"{run.dispatch_id} is {row['status']}: cancelling it first", err=True)
        _cancel_and_wait(family, force)
        for member in family:
            # Rename first: the run vanishes at once and whole, then the files go.
            trash = trash_path(member.path.parent, member.dispatch_id)
            try:
                os.rename(member.path, trash)
            except FileNotFoundError:
                continue  # named twice, or removed meanwhile
            shutil.rmtree(trash, ignore_errors=True)
        if not quiet:
            click.echo(f"Removed {run.dispatch_id}{extra}")


def _children_of(home: Path) -> Dict[str, List[RunDir]]:
    """Every run's child runs, by the parent's id (read from the manifest headers)."""
    children: Dict[str, List[RunDir]] = {}
    for other in iter_runs(home):
        try:
            parent = (other.header().get("parent") or {}).get("dispatch_id")
        except (RunDirError, AttributeError):
            continue
        if parent:
            children.setdefault(str(parent), []).append(other)
    return children


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
            return not run.state().finished and pulled_from(run.path) is None
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
    import _cov_import_hook

    data = mask_secrets(check_config())
    covalent = _cov_import_hook.describe()
    if as_json:
        _echo_json({"config_file": str(config_path()), "home": str(runs_home()),
                    "covalent": covalent, **data})
        return
    click.echo(f"# config file: {config_path()}" + ("" if config_path().exists() else " (absent)"))
    click.echo(f"# runs home:   {runs_home()}")
    click.echo(f"# covalent:    {covalent}")
    click.echo(yaml.safe_dump(data, sort_keys=False).rstrip())
