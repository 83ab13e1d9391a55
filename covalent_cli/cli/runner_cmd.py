"""``cov runner``: start, stop and inspect runners (normally started by dispatch itself)."""
from __future__ import annotations


import click

from covalent_cli.cli.main import Context, cli, pass_ctx
from runner.json_view import dumps


@cli.group()
def runner() -> None:
    """Runners: started on demand by dispatch; these commands are for the curious."""


@runner.command("start")
@click.option("--foreground", is_flag=True, help="Run in this terminal until idle.")
@click.option("--poll", is_flag=True, help="Use the polling observer (network filesystems).")
@click.option("--idle-timeout", type=float, default=None, help="Exit after this long idle.")
@click.option("--workers", type=int, default=None, help="Local worker processes.")
@click.option("--run", "runs", multiple=True, help="Serve only this run (repeatable).")
@pass_ctx
def start(ctx: Context, foreground: bool, poll: bool, idle_timeout: float, workers: int,
          runs: tuple) -> None:
    """Start a runner for the home (in the background unless --foreground)."""
    from runner.daemon import serve, spawn_runner

    home = ctx.home
    if foreground:
        raise SystemExit(serve(home, runs=list(runs), poll=poll, idle_timeout=idle_timeout,
                               workers=workers))
    extra = (["--poll"] if poll else []) + ([f"--idle-timeout={idle_timeout}"] if idle_timeout
                                            is not None else [])
    extra += [f"--workers={workers}"] if workers else []
    for run in runs:
        extra += ["--run", run]
    pid = spawn_runner(home, extra)
    click.echo(f"Started runner pid {pid} for {home}")


@runner.command("stop")
@pass_ctx
def stop(ctx: Context) -> None:
    """Stop this host's runners of the home (running local tasks are re-run later).

    Unfinished runs are not lost: the next command that needs one (a dispatch, `cov wait`,
    `cov status`, `cov result`, `cov logs`, the web UI, `ct.get_result`) starts a runner."""
    from runner.daemon import stop_runners

    pids = stop_runners(ctx.home)
    click.echo(f"Stopped {len(pids)} runner(s)" + (f": {', '.join(map(str, pids))}" if pids else ""))
    if pids:
        click.echo("Unfinished runs resume when a command next needs them "
                   "(cov wait, cov status, cov result, a dispatch).")


@runner.command("status")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def status(ctx: Context, as_json: bool) -> None:
    """List runners with a heartbeat under the home (exit 0 if one is alive, else 1)."""
    from runner.liveness import read_runners

    infos = read_runners(ctx.home)
    if as_json:
        click.echo(dumps({"home": str(ctx.home), "runners": infos}))
    else:
        for info in infos:
            state = "alive" if info["alive"] else "dead"
            click.echo(f"{info.get('id', '?')}  {state}  heartbeat {info['age']:.1f}s ago")
        if not infos:
            click.echo(f"No runners for {ctx.home}.")
    raise SystemExit(0 if any(i["alive"] for i in infos) else 1)
