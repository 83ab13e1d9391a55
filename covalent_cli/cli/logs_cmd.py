"""``cov logs``: tasks' stdout and stderr, optionally followed while the run runs."""
from __future__ import annotations

import sys
import time
from typing import Dict, Optional, Tuple

import click

from covalent_cli.cli.commands import _run, _state
from covalent_cli.cli.main import Context, cli, pass_ctx
from covalent_cli.errors import RunNotFound
from covalent_cli.result import keep_served
from runner.daemon import Keeper
from runner.rundir import OutsideRunError


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
