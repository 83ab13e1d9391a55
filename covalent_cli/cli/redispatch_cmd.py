"""``cov redispatch``: run an old run's lattice again."""
from __future__ import annotations

from typing import Tuple

import click

from covalent_cli.cli.commands import _parse_args, _run
from covalent_cli.cli.main import Context, cli, pass_ctx


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
    args, kwargs = _parse_args(pairs, None)
    new_id = redispatch_run(run.dispatch_id, reuse_previous_results=reuse)(*args, **kwargs)
    click.echo(new_id if quiet else f"Dispatched {new_id} (from {run.dispatch_id})")
