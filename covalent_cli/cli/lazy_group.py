"""A click group whose commands are imported when they are used (click's "lazily loading
subcommands" pattern): ``cov dispatch`` imports the dispatch command's module, not the status
table's, the web UI's or the cache's, whose imports were half of a small dispatch's start.

The group knows its commands from a static table, name -> (the module that registers it on
the group, the first sentence of its help). ``cov --help`` lists them from that table without
importing any; ``tests/cli/test_lazy_commands.py`` holds the table to the real commands. A
module registers its commands with ``@group.command()`` when imported, as before; each command
is handed to ``on_load`` once (``shell.finish_command``: the global options, completion).
"""
from __future__ import annotations

import importlib
import importlib.util
from typing import Callable, Dict, List, Optional, Set, Tuple

import click

# name -> (module registering it, the first sentence of its help, as `cov --help` shows it)
CommandTable = Dict[str, Tuple[str, str]]


class LazyGroup(click.Group):
    """A group that imports a command's module the first time the command is asked for."""

    def __init__(self, *args: object, lazy: Optional[CommandTable] = None,
                 on_load: Optional[Callable[[click.Command], None]] = None,
                 **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.lazy: CommandTable = dict(lazy or {})
        self.on_load = on_load
        self._loaded: Set[str] = set()

    def list_commands(self, ctx: click.Context) -> List[str]:
        return sorted(set(self.lazy) | set(self.commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> Optional[click.Command]:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            module = self.lazy[cmd_name][0]
            try:
                importlib.import_module(module)  # registers its commands on this group
            except ModuleNotFoundError as exc:
                if exc.name != module:
                    raise  # a broken module is not a missing command
        self._finish_new()
        return self.commands.get(cmd_name)

    def _finish_new(self) -> None:
        """``on_load`` for every command registered since the last call (a module may
        register several, and import another command module that registers its own)."""
        for name, command in list(self.commands.items()):
            if name not in self._loaded:
                self._loaded.add(name)
                if self.on_load is not None:
                    self.on_load(command)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """click's listing, with each command not imported yet stood in for by its help's
        first sentence from the table (nothing is imported to show ``--help``)."""
        rows = []
        for name in self.list_commands(ctx):
            command = self.commands.get(name) or self._stand_in(name)
            if command is not None and not command.hidden:
                rows.append((name, command))
        if rows:
            limit = formatter.width - 6 - max(len(name) for name, _ in rows)
            with formatter.section("Commands"):
                formatter.write_dl([(name, command.get_short_help_str(limit))
                                    for name, command in rows])

    def _stand_in(self, name: str) -> Optional[click.Command]:
        module, summary = self.lazy[name]
        if importlib.util.find_spec(module) is None:
            return None  # not installed here: listed by no one
        return click.Command(name, help=summary)
