"""What makes ``cov`` pleasant in a shell, applied to every command once all are registered:
``--home`` and ``--debug`` accepted after the subcommand too (``cov status --home X``), and
completion of run ids and node ids (``eval "$(_COV_COMPLETE=bash_source cov)"``, README).

Applied by walking the commands (``finish``), so that every command module, present or
future, gets both without spelling them: a parameter named ``run_id``/``run_ids`` completes
run ids, one named ``node``/``nodes`` the node ids of the run given before it.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, List, Optional

import click

if TYPE_CHECKING:  # imported where completions are made: not for every command line
    from click.shell_completion import CompletionItem

RUN_PARAMS = ("run_id", "run_ids")
NODE_PARAMS = ("node", "nodes")
MAX_DESCRIBED = 50  # candidates described with their lattice and status (each reads a header)


def finish(group: click.Group) -> None:
    """Give every command of ``group`` (recursively) the global options and completion."""
    for command in group.commands.values():
        finish_command(command)


def finish_command(command: click.Command) -> None:
    """Give ``command`` (and a group's commands, recursively) the global options and
    completion; once is enough, twice changes nothing (the main group's lazy loading calls it
    for each command it imports)."""
    names = {name for p in command.params for name in p.opts}
    if "--home" not in names:  # `cov ui --home` has its own, meaning the same
        command.params.append(click.Option(
            ["--home"], metavar="DIR", expose_value=False, callback=_set_home,
            help="Runs home (as `cov --home DIR`)."))
    if "--debug" not in names:
        command.params.append(click.Option(
            ["--debug"], is_flag=True, expose_value=False, callback=_set_debug,
            help="Show tracebacks of cov's own errors (as `cov --debug`)."))
    for param in command.params:
        if param.name in RUN_PARAMS and param._custom_shell_complete is None:
            param._custom_shell_complete = complete_run  # click's hook for shell_complete=
        elif param.name in NODE_PARAMS and param._custom_shell_complete is None:
            param._custom_shell_complete = complete_node
    if isinstance(command, click.Group):
        finish(command)


def _set_home(ctx: click.Context, param: click.Parameter, value: Optional[str]) -> None:
    if value is None:
        return
    ctx.meta["cov.home"] = value  # for completions (meta is shared by the whole command line)
    if ctx.resilient_parsing:
        return
    # ctx.obj is main.Context (not imported: main imports this module)
    if hasattr(ctx.obj, "set_home"):
        ctx.obj.set_home(value)


def _set_debug(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value and hasattr(ctx.obj, "debug"):
        ctx.obj.debug = True


def _home(ctx: click.Context) -> Optional[Path]:
    """The runs home a completion looks in: ``--home`` given so far, else the usual one."""
    from runner.config import ConfigError, runs_home

    given = ctx.meta.get("cov.home")
    node: Optional[click.Context] = ctx
    while node is not None:
        given = given or node.params.get("home")
        node = node.parent
    try:
        return runs_home(given)
    except ConfigError:
        return None


def complete_run(ctx: click.Context, param: click.Parameter, incomplete: str
                 ) -> List["CompletionItem"]:
    """Run ids under the home starting with ``incomplete`` (and ``latest``), newest first;
    described with their lattice and status when there are few."""
    from click.shell_completion import CompletionItem

    from runner.rundir import RunDir, is_run_name

    home = _home(ctx)
    if home is None:
        return []
    try:
        entries = [e for e in os.scandir(home) if is_run_name(e.name) and
                   e.name.startswith(incomplete) and e.is_dir()]
    except OSError:
        return []
    entries.sort(key=lambda e: _mtime(e), reverse=True)
    items = [CompletionItem("latest", help="the newest run")] if "latest".startswith(
        incomplete) else []
    for entry in entries:
        help_text = None
        if len(entries) <= MAX_DESCRIBED:
            try:
                header = RunDir(entry.path).header()
                help_text = str((header.get("lattice") or {}).get("name", ""))
            except Exception:  # noqa: BLE001 - a damaged run still completes, undescribed
                help_text = None
        items.append(CompletionItem(entry.name, help=help_text))
    return items


def _mtime(entry: Any) -> float:
    try:
        return float(entry.stat().st_mtime)
    except OSError:
        return 0.0


def complete_node(ctx: click.Context, param: click.Parameter, incomplete: str
                  ) -> List["CompletionItem"]:
    """Node ids (with their names) of the run named earlier on the line; tasks only."""
    from click.shell_completion import CompletionItem

    from covalent_cli.result import resolve_run

    run_id = ctx.params.get("run_id")
    home = _home(ctx)
    if not run_id or home is None:
        return []
    try:
        manifest = resolve_run(run_id, home).manifest
    except Exception:  # noqa: BLE001 - completion must never print a traceback
        return []
    from runner.query import RESHAPING

    # the user's tasks, as `cov status` lists them (reshaping nodes are ids nobody types)
    return [CompletionItem(str(n.id), help=n.name) for n in manifest.nodes
            if n.executes and n.kind not in RESHAPING and str(n.id).startswith(incomplete)]
