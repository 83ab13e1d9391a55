"""``cov ui`` (the web UI) and ``cov report RUN`` (a static report.html)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import click

from covalent_cli.cli.main import Context, cli, pass_ctx
from covalent_cli.errors import RunUnreadable, UserError
from covalent_cli.result import resolve_run
from runner.fs import home_warning
from runner.query import check_readable
from runner.rundir import RunDirError


def _home(ctx: Context, home: Optional[str]) -> Path:
    return Path(home).expanduser().absolute() if home else ctx.home


@cli.command()
@click.option("--home", "home", metavar="DIR", default=None,
              help="Runs home to browse (default: the one cov uses).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on.")
@click.option("--port", type=int, default=None,
              help="Port (default: 8765, or the next free one).")
@click.option("--token", default=None, metavar="TEXT", envvar="COV_UI_TOKEN",
              help="Require this token (default: a new random one, printed in the URL). "
                   "Other accounts see command lines in `ps`: prefer $COV_UI_TOKEN.")
@click.option("--no-token", "no_token", is_flag=True,
              help="Require no token: every account on this machine can then read and cancel "
                   "your runs.")
@pass_ctx
def ui(ctx: Context, home: Optional[str], host: str, port: Optional[int],
       token: Optional[str], no_token: bool) -> None:
    """Serve the web UI: runs, graphs, tasks, logs and files. Ctrl-C stops it.

    It listens on 127.0.0.1 and requires a token, printed in the URL (other accounts on a
    shared machine reach 127.0.0.1 too). From another machine use
    `ssh -L 8765:localhost:8765 HOST` and open the URL printed.
    """
    from webui.server import serve

    if token and no_token:
        raise UserError("--token and --no-token contradict each other", "give one of them")

    path = _home(ctx, home)
    if not path.is_dir():
        click.echo(f"Note: {path} does not exist yet; runs appear when dispatched.", err=True)
    elif home:  # ctx.home warns about the default home itself
        warning = home_warning(path)
        if warning:
            click.echo(warning, err=True)
    try:
        serve(path, host=host, port=port, token=token, echo=click.echo, no_token=no_token)
    except OSError as exc:
        where = f"{host}:{port}" if port is not None else f"{host}:8765-8785"
        raise UserError(f"cannot listen on {where}: {exc.strerror or exc}",
                        "choose another --port") from None


@cli.command()
@click.argument("run_id", metavar="RUN")
@click.option("--home", "home", metavar="DIR", default=None, help="Runs home of the run.")
@pass_ctx
def report(ctx: Context, run_id: str, home: Optional[str]) -> None:
    """Write RUN's report.html into its run directory: graph, tasks, errors; one file that
    opens in a browser with no server."""
    from webui.report import write_report
    from webui.security import valid_run_id

    path = _home(ctx, home)
    run = resolve_run(run_id, path)
    if not valid_run_id(run.dispatch_id):
        raise UserError(f"run directory name {run.dispatch_id!r} is not a run id (letters, "
                        "digits, '-' and '_')", "rename the directory to its dispatch id")
    try:
        check_readable(run)
        written = write_report(run.path.parent, run.dispatch_id)
    except (RunDirError, OSError) as exc:
        raise RunUnreadable(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - the report reads everything of a damaged run
        raise RunUnreadable(f"run {run.dispatch_id}: cannot build its report: "
                            f"{type(exc).__name__}: {exc}") from None
    click.echo(str(written))
