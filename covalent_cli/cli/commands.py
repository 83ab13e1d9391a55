"""The helpers every command module shares (`_run`, `_state`, `_echo_json`, `_status_text`,
`STATUS_EXIT`); the commands are in their own modules (status and result: ``inspect_cmd``;
redispatch: ``redispatch_cmd``; logs: ``logs_cmd``)."""
from __future__ import annotations

import sys
from typing import Any

import click

from covalent_cli.cli.main import Context
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
