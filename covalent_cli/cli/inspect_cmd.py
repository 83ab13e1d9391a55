"""``cov status`` and ``cov result``: one run, or one node of it, for people and scripts."""
from __future__ import annotations

import json
import sys
from typing import Dict, Optional

import click

from covalent_cli.cli.commands import (STATUS_EXIT, _echo_json, _result_value, _run, _state,
                                       _status_text)
from covalent_cli.cli.main import Context, cli, pass_ctx
from covalent_cli.errors import CovError, ExitCode, RunUnreadable
from covalent_cli.result import keep_served
from runner.query import format_seconds, run_summary, task_rows
from runner.rundir import RunDir, RunDirError
from runner.state import COMPLETED, TERMINAL


@cli.command()
@click.argument("run_id", default="latest", required=False)
@click.option("--json", "as_json", is_flag=True, help="Run and task states as JSON.")
@click.option("--all", "show_all", is_flag=True, help="Include parameter nodes.")
@pass_ctx
def status(ctx: Context, run_id: str, as_json: bool, show_all: bool) -> None:
    """One run's status and its task table (RUN: id, prefix or 'latest')."""
    run = _run(ctx, run_id)
    try:
        summary = run_summary(run)
        rows = task_rows(run, include_parameters=show_all)
    except RunDirError as exc:
        raise RunUnreadable(str(exc)) from None
    if summary["status"] not in TERMINAL:
        keep_served(run)
    preview = _result_preview(run) if summary["status"] == COMPLETED else None
    if as_json:
        _echo_json({**summary, "result_preview": preview, "tasks": rows})
        return
    click.echo(f"run      {summary['dispatch_id']}  ({summary['lattice']})")
    click.echo(f"status   {_status_text(summary['status'])}  {summary['done']}/{summary['total']}"
               f" tasks  runtime {format_seconds(summary['runtime'])}")
    if summary["error"]:
        click.echo(f"error    {summary['error']}")
    if summary["status"] == COMPLETED:
        click.echo("result   " + (f"{preview['repr']}  ({preview['type']})" if preview else
                                  "(preview not recorded; `cov result` loads the value)"))
    click.echo("")
    click.echo(f"{'ID':>5}  {'NAME':28}  {'STATUS':10}  {'EXECUTOR':10}  {'HOST':12}  "
               f"{'RUNTIME':>8}  NOTE")
    for r in rows:
        note = r["error"] or r["exception"] or (f"child {r['child']}" if r["child"] else "")
        status_value = r["status"]
        click.echo(f"{r['id']:>5}  {r['name'][:28]:28}  "
                   f"{_status_text(status_value) + ' ' * max(0, 10 - len(status_value))}  "
                   f"{(r['executor'] or '-')[:10]:10}  {(r['host'] or '-')[:12]:12}  "
                   f"{format_seconds(r['runtime']):>8}  {note.splitlines()[0] if note else ''}")


@cli.command()
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_ctx
def result(ctx: Context, run_id: str, as_json: bool) -> None:
    """Print a finished run's result (exit 3 if it failed, 4 cancelled, 5 not finished).

    It unpickles the value, which runs code from the run: only for runs you trust (`cov status`
    shows a preview recorded when the task finished, without unpickling).
    """
    run = _run(ctx, run_id)
    state = _state(run)
    if state.status not in TERMINAL:
        keep_served(run)
        raise _NotFinished(f"run {run.dispatch_id} is {state.status}", "wait with `cov wait`")
    value = _result_value(run) if state.status == COMPLETED else None
    if as_json:
        try:
            encoded = json.loads(json.dumps(value))
        except (TypeError, ValueError):
            encoded = repr(value)
        _echo_json({"dispatch_id": run.dispatch_id, "status": state.status,
                    "result": encoded, "error": state.error})
    elif state.status == COMPLETED:
        click.echo(repr(value))
    else:
        click.echo(f"{run.dispatch_id}: {state.status}" + (f"\n{state.error}" if state.error else ""),
                   err=True)
    sys.exit(int(STATUS_EXIT[state.status]))


def _result_preview(run: RunDir) -> Optional[Dict[str, str]]:
    """The result's preview recorded when its task finished (``{"type", "repr"}``), or None:
    ``cov status`` shows it without unpickling, which would run the run's code."""
    try:
        header, _ = run.read_outcome(run.manifest.output_node)
    except (RunDirError, OSError):
        return None
    preview = (header or {}).get("preview")
    return preview if isinstance(preview, dict) and isinstance(preview.get("repr"), str) else None



class _NotFinished(CovError):
    exit_code = ExitCode.TIMEOUT
