"""``cov``: the command-line interface. Each user mistake is one ``Error:`` line and an exit
code from ``ExitCode`` (README.md lists them); ``--debug`` shows tracebacks."""
from __future__ import annotations

import gc
import os
import sys
from pathlib import Path
from typing import Any, Optional

import click

from covalent_cli.errors import CovError, ExitCode
from runner.config import ConfigError, runs_home
from runner.fs import home_warning


class Context:
    """What every command needs: the runs home and output preferences."""

    def __init__(self, home: Optional[str], debug: bool) -> None:
        self._home: Optional[str] = None
        self.debug = debug
        self._warned = False
        self.set_home(home)

    def set_home(self, home: Optional[str]) -> None:
        """Use ``home`` (``--home``, before or after the subcommand); exported as
        ``COV_HOME`` for what the command starts (runners, scripts)."""
        if home:
            self._home = home
            os.environ["COV_HOME"] = str(Path(home).expanduser().absolute())

    @property
    def home(self) -> Path:
        try:
            path = runs_home(self._home)
        except ConfigError as exc:
            raise CovError(str(exc)) from None
        if not self._warned:
            self._warned = True
            warning = home_warning(path)
            if warning:
                click.echo(warning, err=True)
        return path


pass_ctx = click.make_pass_decorator(Context)


class CovGroup(click.Group):
    """Turns our errors into one line and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CovError as exc:
            if getattr(ctx.obj, "debug", False):
                raise
            if exc.detail:
                click.echo(exc.detail.rstrip(), err=True)
            click.echo(f"Error: {exc.line()}", err=True)
            ctx.exit(int(exc.exit_code))
        except ConfigError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(int(ExitCode.ERROR))
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            ctx.exit(int(ExitCode.INTERRUPTED))


@click.group(cls=CovGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--home", envvar="COV_HOME", metavar="DIR",
              help="Runs home (default: $COV_HOME, the config's 'home', ~/.cov/runs).")
@click.option("--debug", is_flag=True, help="Show tracebacks of cov's own errors.")
@click.version_option(package_name="cov", prog_name="cov")
@click.pass_context
def cli(ctx: click.Context, home: Optional[str], debug: bool) -> None:
    """cov: Covalent workflows from files. No server, no database."""
    ctx.obj = Context(home, debug)


def main() -> None:
    """Entry point of the ``cov`` script."""
    import importlib

    for module in COMMAND_MODULES:  # each registers its commands on ``cli``
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
    from covalent_cli.cli.shell import finish

    finish(cli)  # --home/--debug after the subcommand, run and node id completion
    from covalent_cli.cli.remote_on import run_on_or_none

    code = run_on_or_none(sys.argv[1:])  # ``--on HOST``: the command runs there
    if code is not None:
        sys.exit(code)
    try:
        cli(prog_name="cov")
    finally:
        # The interpreter's teardown collects garbage over every object the command made
        # (~45 ms of CPU after a dispatch: a fifth of a small run's wait). Frozen, they are
        # freed by their reference counts alone, files flushed and closed as before.
        gc.freeze()


COMMAND_MODULES = ("covalent_cli.cli.commands", "covalent_cli.cli.inspect_cmd",
                   "covalent_cli.cli.dispatch_cmd", "covalent_cli.cli.runs_cmd",
                   "covalent_cli.cli.redispatch_cmd", "covalent_cli.cli.runner_cmd",
                   "covalent_cli.cli.ui_cmd", "covalent_cli.cli.check_cmd",
                   "covalent_cli.cli.logs_cmd", "covalent_cli.cli.cache_cmd",
                   "covalent_cli.cli.remote_cmd")


if __name__ == "__main__":  # pragma: no cover
    main()
    sys.exit(0)
