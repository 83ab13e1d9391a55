"""The inspecting command logs (status and result: ``inspect_cmd``; redispatch:
``redispatch_cmd``), and the helpers every command module shares (`_run`, `_state`,
`_echo_json`, `_status_text`, `STATUS_EXIT`)."""
from __future__ import annotations

import sys
import time
from typing import Any, Dict, Optional, Tuple

import click

from covalent_cli.cli.main import Context, cli, pass_ctx
from covalent_cli.errors import ExitCode, RunNotFound, RunUnreadable
from covalent_cli.result import Result, keep_served, resolve_run
from runner.daemon import Keeper
from runner.json_view import dumps
from runner.query import check_readable
from runner.rundir import OutsideRunError, RunDir, RunDirError
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


