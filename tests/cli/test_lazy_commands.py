"""`cov` imports a command's module only when the command is used (covalent_cli/cli/lazy_group.py):
its static table must say what the modules register, `cov --help` must list the commands as
click lists the real ones, and a command must not import the others."""
from __future__ import annotations

import importlib
import subprocess
import sys

import click
import pytest

from covalent_cli.cli.main import COMMANDS, cli
from tests.conftest import REPO, WORKFLOWS


def _real_commands():
    """Every command the command modules register (all imported)."""
    for module, _ in COMMANDS.values():
        importlib.import_module(module)
    return dict(cli.commands)


def test_the_table_names_each_command_its_module_and_help():
    real = _real_commands()
    assert sorted(real) == sorted(COMMANDS), "COMMANDS in covalent_cli/cli/main.py is stale"
    for name, command in real.items():
        module, summary = COMMANDS[name]
        assert command.callback.__module__ == module, name
        stand_in = click.Command(name, help=summary)
        for limit in (20, 45, 60, 80, 1000):  # as `cov --help` shortens them at any width
            assert stand_in.get_short_help_str(limit) == command.get_short_help_str(limit), \
                f"{name}: the table's help is not the command's first sentence"


@pytest.mark.parametrize("columns", ["60", "100"])
def test_help_lists_every_command_as_click_lists_the_real_ones(run_cov, columns, monkeypatch):
    shown = run_cov("--help", env={"COLUMNS": columns})
    assert shown.returncode == 0, shown.stderr
    real = _real_commands()
    group = click.Group("cov", commands=real, help=cli.help, params=cli.params,
                        context_settings=cli.context_settings)
    monkeypatch.setenv("COLUMNS", columns)  # the width click's formatter takes, as there
    with click.Context(group, info_name="cov") as ctx:
        formatter = ctx.make_formatter()
        click.Group.format_commands(group, ctx, formatter)
    listing = formatter.getvalue()
    assert listing.startswith("Commands:") and "dispatch" in listing
    assert listing in shown.stdout


def _imported(*args: str) -> set:
    # (at exit: `cov dispatch` ends with os._exit once the atexit functions ran)
    code = ("import atexit, runpy, sys\nsys.argv = ['cov', *sys.argv[1:]]\n"
            "atexit.register(lambda: print(' '.join(sorted(sys.modules)), file=sys.__stderr__,"
            " flush=True))\n"
            "runpy.run_module('covalent_cli.cli', run_name='__main__')\n")
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          cwd=str(REPO), timeout=120)
    assert proc.stderr.strip(), proc
    return set(proc.stderr.splitlines()[-1].split())


def test_a_command_imports_its_own_module_only(tmp_path):
    modules = _imported("--home", str(tmp_path), "dispatch", "--dry-run",
                        str(WORKFLOWS / "hello.py"))
    commands = {module for module, _ in COMMANDS.values()}
    assert "covalent_cli.cli.dispatch_cmd" in modules
    assert not (commands - {"covalent_cli.cli.dispatch_cmd"}) & modules
    assert not commands & _imported("--help")


def test_an_unknown_command_is_one_error(run_cov):
    proc = run_cov("nosuch")
    assert proc.returncode == 2
    assert "Error: No such command 'nosuch'." in proc.stderr
