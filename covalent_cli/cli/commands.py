"""The command redispatch (status and result: ``inspect_cmd``; logs: ``logs_cmd``), and the
helpers every command module shares (`_run`, `_state`, `_echo_json`, `_status_text`, `STATUS_EXIT`)."""
from __future__ import annotations

import sys
from typing import Any, Tuple

import click

from covalent_cli.cli.args import parse_args
from covalent_cli.cli.main import Context, cli, pass_ctx
from covalent_cli.errors import ExitCode, RunUnreadable
from covalent_cli.result import Result, resolve_run
from runner.json_view import dumps
from runner.query import check_readable
from runner.rundir import RunDir, RunDirError
from runner.state import CANCELLED, COMPLETED, FAILED, RunState

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



def _result_value(run: RunDir) -> Any:
    """A completed run's result; a result file cut short or damaged is one line, not our
    traceback (``cov redispatch --reuse`` recomputes it)."""
    try:
        return Result(run, intermediate_outputs=False, sublattice_results=False).result
    except RunDirError as exc:
        raise RunUnreadable(str(exc), "recompute it with `cov redispatch --reuse`") from None
    except Exception as exc:  # noqa: BLE001 - unpickling a damaged file raises anything
        raise RunUnreadable(f"run {run.dispatch_id}: its result cannot be unpickled: "
                            f"{type(exc).__name__}: {exc}") from None



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


