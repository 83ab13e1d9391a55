"""``cov runner``: start, stop and inspect runners (normally started by dispatch itself)."""
from __future__ import annotations

from typing import Optional

import click

from covalent_cli.cli.as_job import describe, job_options, job_request, submit_job
from covalent_cli.cli.main import Context, cli, pass_ctx
from covalent_cli.errors import UserError
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
@job_options
@pass_ctx
def start(ctx: Context, foreground: bool, poll: bool, idle_timeout: float, workers: int,
          runs: tuple, as_job: bool, job_time: Optional[str], job_partition: Optional[str],
          job_cpus: Optional[int]) -> None:
    """Start a runner for the home (in the background unless --foreground; --as-job: as a
    Slurm job, which serves the whole home)."""
    from runner.daemon import serve, spawn_runner

    home = ctx.home
    if as_job:
        for flag, used in (("--foreground", foreground), ("--run", runs)):
            if used:
                raise UserError(f"{flag} does not go with --as-job",
                                "the runner job serves the whole home until idle")
    job_args = (["--poll"] if poll else []) + ([f"--idle-timeout={idle_timeout}"] if
                                               idle_timeout is not None else [])
    request = job_request(as_job, job_time, job_partition, job_cpus,
                          job_args + ([f"--workers={workers}"] if workers else []))
    if request is not None:
        job = submit_job(home, request)
        click.echo(f"Runner for {home}: {describe(job)}")
        return
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
    """Stop this host's runners of the home, and its runner job if it has one (running local
    tasks are re-run later).

    Unfinished runs are not lost: the next command that needs one (a dispatch, `cov wait`,
    `cov status`, `cov result`, `cov logs`, the web UI, `ct.get_result`) starts a runner."""
    from runner.daemon import stop_runners
    from runner.runner_job.submit import cancel_job

    job = cancel_job(ctx.home)
    if job:
        click.echo(f"Cancelled runner job {job}")
    pids = stop_runners(ctx.home)
    click.echo(f"Stopped {len(pids)} runner(s)" + (f": {', '.join(map(str, pids))}" if pids else ""))
    if pids or job:
        click.echo("Unfinished runs resume when a command next needs them "
                   "(cov wait, cov status, cov result, a dispatch).")


@runner.command("status")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def status(ctx: Context, as_json: bool) -> None:
    """List runners with a heartbeat under the home, and its runner job while Slurm has not
    ended it (exit 0 if one is alive, else 1)."""
    from runner.liveness import read_runners
    from runner.runner_job.record import as_runner_info, serving_job

    infos = read_runners(ctx.home)
    job = serving_job(ctx.home)
    if job is not None:
        infos.append(as_runner_info(job))
    if as_json:
        click.echo(dumps({"home": str(ctx.home), "runners": infos}))
    else:
        for info in infos:
            if info.get("job_id") and info.get("id", "").startswith("slurm-job:"):
                where = f" on {info['host']}" if info.get("host") else ""
                click.echo(f"Slurm job {info['job_id']}  {info.get('state') or 'alive'}{where}  "
                           "(the home's runner job)")
                continue
            state = "alive" if info["alive"] else "dead"
            click.echo(f"{info.get('id', '?')}  {state}  heartbeat {info['age']:.1f}s ago")
        if not infos:
            click.echo(f"No runners for {ctx.home}.")
    raise SystemExit(0 if any(i["alive"] for i in infos) else 1)
