"""``cov``: the command-line interface. Each user mistake is one ``Error:`` line and an exit
code from ``ExitCode`` (README.md lists them); ``--debug`` shows tracebacks."""
from __future__ import annotations

import gc
import os
import sys
from pathlib import Path
from typing import Any, Optional

import click

from covalent_cli.cli.lazy_group import CommandTable, LazyGroup
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


# Each command's module (imported when the command is used: ``lazy_group``) and the first
# sentence of its help, which `cov --help` lists; tests/cli/test_lazy_commands.py holds this
# table to the commands the modules register.
COMMANDS: CommandTable = {
    "cache": ("covalent_cli.cli.cache_cmd",
              "The result cache: what @ct.electron(cache=True) tasks take instead of running."),
    "cancel": ("covalent_cli.cli.dispatch_cmd",
               "Cancel a run, or only NODES of it (and what depends on them)."),
    "check": ("covalent_cli.cli.check_cmd",
              "Check an SSH host: HOST is an ~/.ssh/config alias, user@host[:port], or the "
              "name of an executor in the config file."),
    "config": ("covalent_cli.cli.runs_cmd",
               "Print the effective configuration (secrets masked) and where it comes from; "
               "an unknown key or a value of the wrong type is an error (exit 1)."),
    "dispatch": ("covalent_cli.cli.dispatch_cmd",
                 "Run SCRIPT (a Covalent script) and dispatch its lattice."),
    "list": ("covalent_cli.cli.runs_cmd",
             "List runs, newest first, with their name, tags and arguments (sublattices' "
             "child runs only with --all)."),
    "logs": ("covalent_cli.cli.logs_cmd",
             "Print tasks' stdout and stderr (all tasks, or NODE), with the failed tasks of "
             "sublattices' child runs; everything goes to stdout, each line marked [NODE "
             "STREAM] unless --stream picks one."),
    "pull": ("covalent_cli.cli.remote_cmd",
             "Copy the run RUN_ID of HOST into this runs home (only what changed since the "
             "last pull); then every command and the UI work on it here, offline."),
    "redispatch": ("covalent_cli.cli.redispatch_cmd",
                   "Dispatch an old run's lattice again, with its arguments (-a overrides "
                   "some)."),
    "report": ("covalent_cli.cli.ui_cmd",
               "Write RUN's report.html into its run directory: graph, tasks, errors; one "
               "file that opens in a browser with no server."),
    "result": ("covalent_cli.cli.inspect_cmd",
               "Print a finished run's result, or one NODE's output (exit 3 if it failed, 4 "
               "cancelled, 5 not finished)."),
    "rm": ("covalent_cli.cli.runs_cmd",
           "Delete runs with their sublattices' child runs: the RUNs named, or the runs the "
           "options choose (`cov rm --older-than 7d --status FAILED`), or those of the RUNs "
           "they choose."),
    "runner": ("covalent_cli.cli.runner_cmd",
               "Runners: started on demand by dispatch; these commands are for the curious."),
    "runs": ("covalent_cli.cli.runs_cmd",
             "List runs, newest first, with their name, tags and arguments (sublattices' "
             "child runs only with --all)."),
    "status": ("covalent_cli.cli.inspect_cmd",
               "One run's status and its task table, or one NODE of it in full (RUN: id, "
               "prefix or 'latest'; NODE: a node id or a task name)."),
    "ui": ("covalent_cli.cli.ui_cmd", "Serve the web UI: runs, graphs, tasks, logs and files."),
    "wait": ("covalent_cli.cli.dispatch_cmd",
             "Wait for a run to end; exit 0 completed, 3 failed, 4 cancelled, 5 timeout."),
}


def _finish_command(command: click.Command) -> None:
    from covalent_cli.cli.shell import finish_command

    finish_command(command)  # --home/--debug after the subcommand, run and node id completion


class CovGroup(LazyGroup):
    """Turns our errors into one line and an exit code; imports a command's module when the
    command is used (``COMMANDS``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, lazy=COMMANDS, on_load=_finish_command, **kwargs)

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
    from covalent_cli.cli.remote_on import run_on_or_none

    code = run_on_or_none(sys.argv[1:])  # ``--on HOST``: the command runs there
    if code is not None:
        sys.exit(code)
    try:
        cli(prog_name="cov")
    except SystemExit as exc:
        from covalent_cli.cli.quick_exit import end

        end(exc.code)  # without the teardown of cov's modules where that loses nothing
    finally:
        # The interpreter's teardown collects garbage over every object the command made
        # (~45 ms of CPU after a dispatch: a fifth of a small run's wait). Frozen, they are
        # freed by their reference counts alone, files flushed and closed as before.
        gc.freeze()


if __name__ == "__main__":  # pragma: no cover
    main()
    sys.exit(0)
