"""The inspecting commands (status, result, logs, redispatch) and the helpers every command
module shares (`_run`, `_state`, `_echo_json`, `_status_text`, `STATUS_EXIT`)."""
from __future__ import annotations

import sys
import time
from typing import Any, Dict, Optional, Tuple

import click

from covalent_cli.cli.args import parse_args
from covalent_cli.cli.main import Context, cli, pass_ctx
from covalent_cli.errors import CovError, ExitCode, RunNotFound, RunUnreadable
from covalent_cli.result import Result, keep_served, resolve_run
from runner.daemon import Keeper
from runner.json_view import dumps, result_document
from runner.query import check_readable, format_seconds, run_summary, task_rows
from runner.rundir import OutsideRunError, RunDir, RunDirError
from runner.state import CANCELLED, COMPLETED, FAILED, TERMINAL, RunState

STATUS_EXIT = {COMPLETED: ExitCode.SUCCESS, FAILED: ExitCode.RUN_FAILED,
               CANCELLED: ExitCode.RUN_CANCELLED}
COLORS = {COMPLETED: "green", FAILED: "red", CANCELLED: "yellow", "RUNNING": "blue",
          "DISPATCHING": "blue"}


def _run(ctx: Context, run_id: str) -> RunDir:
    """The run, checked readable: a damaged one is one ``Error:`` line and exit 8."""
    run = resolve_run(run_id, ctx.home)
    try:
        return check_readable(run)
    except (RunDirError, OSError) as exc:
        raise RunUnreadable(str(exc)) from None


def _state(run: RunDir) -> RunState:
    try:
        return run.state()
    except RunDirError as exc:
        raise RunUnreadable(str(exc)) from None


def _echo_json(value: Any) -> None:
    """A JSON document on stdout: ``schema`` first, values JSON cannot hold marked as reprs,
    times as epoch seconds (``runner.json_view``, docs/json.md); compact, for ``jq``."""
    click.echo(dumps(value))


def _status_text(status: str) -> str:
    return click.style(status, fg=COLORS.get(status)) if sys.stdout.isatty() else status



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
        _echo_json(result_document(run.dispatch_id, state.status, value, state.error))
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


def _result_value(run: RunDir) -> Any:
    """A completed run's result; a result file cut short or damaged is one line, not our
    traceback (``cov redispatch --reuse`` recomputes it)."""
    try:
        return Result(run).result
    except RunDirError as exc:
        raise RunUnreadable(str(exc), "recompute it with `cov redispatch --reuse`") from None
    except Exception as exc:  # noqa: BLE001 - unpickling a damaged file raises anything
        raise RunUnreadable(f"run {run.dispatch_id}: its result cannot be unpickled: "
                            f"{type(exc).__name__}: {exc}") from None


class _NotFinished(CovError):
    exit_code = ExitCode.TIMEOUT



@cli.command()
@click.argument("run_id")
@click.argument("node", type=int, required=False)
@click.option("-f", "--follow", is_flag=True, help="Keep printing until the run ends.")
@click.option("--stream", type=click.Choice(["stdout", "stderr", "both"]), default="both")
@pass_ctx
def logs(ctx: Context, run_id: str, node: Optional[int], follow: bool, stream: str) -> None:
    """Print tasks' stdout and stderr (all tasks, or NODE)."""
    run = _run(ctx, run_id)
    manifest = run.manifest
    if node is not None and not 0 <= node < len(manifest.nodes):
        raise RunNotFound(f"run {run.dispatch_id} has no node {node}",
                          f"node ids go from 0 to {len(manifest.nodes) - 1}")
    streams = ["stdout", "stderr"] if stream == "both" else [stream]
    offsets: Dict[Tuple[int, str], int] = {}
    keeper = Keeper(run.path, strict=follow) if not _state(run).finished else None
    refused: set = set()
    while True:
        if keeper is not None:
            keep_served(run, keeper)
        nodes = [node] if node is not None else [n.id for n in manifest.nodes if n.executes]
        for n in nodes:
            for s in streams:
                path = run.stdout_path(n) if s == "stdout" else run.stderr_path(n)
                try:
                    with run.open_file(path) as f:  # contained: the run may be someone else's
                        f.seek(offsets.get((n, s), 0))
                        data = f.read()
                except FileNotFoundError:
                    continue
                except OutsideRunError as exc:
                    if (n, s) not in refused:
                        refused.add((n, s))
                        click.echo(f"Warning: {exc}", err=True)
                    continue
                if not data:
                    continue
                if node is None and (n, s) not in offsets:
                    click.echo(f"== {n} {manifest.node(n).name} ({s}) ==")
                offsets[(n, s)] = offsets.get((n, s), 0) + len(data)
                target = sys.stdout if s == "stdout" else sys.stderr
                target.write(data.decode("utf-8", "replace"))
                target.flush()
        if not follow or _state(run).finished:
            break
        time.sleep(0.5)


@cli.command()
@click.argument("run_id")
@click.option("--reuse", is_flag=True, help="Reuse results of unchanged tasks.")
@click.option("-a", "--arg", "pairs", multiple=True, metavar="NAME=VALUE", help="New arguments.")
@click.option("-q", "--quiet", is_flag=True, help="Print only the new id.")
@pass_ctx
def redispatch(ctx: Context, run_id: str, reuse: bool, pairs: Tuple[str, ...], quiet: bool) -> None:
    """Dispatch an old run's lattice again (its inputs, or new -a ones)."""
    from covalent_cli.redispatch import redispatch as redispatch_run
    from covalent_cli.script import alias_covalent

    alias_covalent()
    run = _run(ctx, run_id)
    args, kwargs = parse_args(pairs, None)
    new_id = redispatch_run(run.dispatch_id, reuse_previous_results=reuse)(*args, **kwargs)
    click.echo(new_id if quiet else f"Dispatched {new_id} (from {run.dispatch_id})")


