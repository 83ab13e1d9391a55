"""Starting and following runs: ``cov dispatch``, ``cov wait``, ``cov cancel``."""
from __future__ import annotations

import math
import sys
import time
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

import click

from covalent_cli.cli.as_job import describe, job_options, job_request, submit_job
from covalent_cli.cli.main import Context, cli, pass_ctx
from covalent_cli.cli.remote_on import dispatch_on_option, on_option
from covalent_cli.errors import ExitCode, RunNotFound, RunUnreadable, UserError

if TYPE_CHECKING:
    from runner.rundir import RunDir
    from runner.state import RunState

# The rest of what these commands use is imported where it is used: ``cov dispatch`` starts
# its runner (a fork of this process) before it imports the SDK's graph, pickling and result
# layers, so that those imports overlap with the runner's own start on another core.


@cli.command()
@click.argument("script", type=click.Path(dir_okay=True))
@click.argument("lattice_name", metavar="[LATTICE]", required=False)
@click.option("-a", "--arg", "pairs", multiple=True, metavar="NAME=VALUE",
              help="A lattice argument (value parsed as YAML 1.2: 3, 1.5, true, [1, 2], text).")
@click.option("--args-file", type=click.Path(), help="YAML/JSON mapping of arguments.")
@click.option("--name", metavar="NAME", help="A name for the run (cov runs shows it, --name "
              "filters by it).")
@click.option("--tag", "tags", multiple=True, metavar="TAG",
              help="A tag for the run (repeatable; cov runs --tag filters by it).")
@click.option("--wait", "wait_", is_flag=True, help="Wait for the end; print the result.")
@click.option("-q", "--quiet", is_flag=True, help="Print only the dispatch id(s).")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON document: the dispatch ids (with --wait, each run's result).")
@click.option("--dry-run", is_flag=True, help="Build the graph, print its tasks; write no run.")
@dispatch_on_option
@click.option("--cache", "use_cache", is_flag=True,
              help="Every task uses the result cache (as @ct.electron(cache=True)).")
@job_options
@pass_ctx
def dispatch(ctx: Context, script: str, lattice_name: Optional[str], pairs: Tuple[str, ...],
             args_file: Optional[str], name: Optional[str], tags: Tuple[str, ...], wait_: bool,
             quiet: bool, as_json: bool, dry_run: bool, use_cache: bool, as_job: bool,
             job_time: Optional[str], job_partition: Optional[str],
             job_cpus: Optional[int]) -> None:
    """Run SCRIPT (a Covalent script) and dispatch its lattice.

    If the script dispatches on its own when run (the usual Covalent script), those dispatches
    are reported; otherwise its one lattice (or LATTICE) is dispatched with the -a arguments.
    """
    request = job_request(as_job, job_time, job_partition, job_cpus)
    jobs: List[Dict[str, Any]] = []
    if request is not None:
        # Submitted before anything is written, so that sbatch refusing it (a wrong partition,
        # a walltime over the limit) leaves no run behind; each dispatch (the script's own
        # too) then makes sure of it, submitting it again if it already left, idle.
        jobs.append(submit_job(ctx.home, request))
    if not dry_run:
        _start_runner_early()
    from covalent_cli.dispatch import CACHE_ALL, RUNNER_STARTERS

    CACHE_ALL["on"] = use_cache
    if request is not None:
        RUNNER_STARTERS.append(lambda home: submit_job(home, request))
    try:
        ids = _dispatch(script, lattice_name, pairs, args_file, name, tags, dry_run, as_json)
    finally:
        if request is not None:
            RUNNER_STARTERS.pop()
    if ids is None:
        return  # a dry run, reported
    from covalent_cli.cli.commands import _echo_json

    if as_json and not wait_:
        _echo_json({"dispatch_ids": ids})
    elif not as_json:
        for dispatch_id in ids:
            click.echo(dispatch_id if quiet else f"Dispatched {dispatch_id}")
        if not quiet:
            _next_steps(ctx, ids)
            if jobs:
                click.echo(f"  runner         {describe(jobs[0])}", err=True)
    if wait_:
        wait_and_report(ctx, ids, quiet, as_json)


def _dispatch(script: str, lattice_name: Optional[str], pairs: Tuple[str, ...],
              args_file: Optional[str], name: Optional[str], tags: Tuple[str, ...],
              dry_run: bool, as_json: bool) -> Optional[List[str]]:
    """Load SCRIPT and dispatch (its own dispatches, or its lattice); the dispatch ids, or
    None for a dry run (reported here)."""
    from covalent_cli.cli import dry_run_cmd, quick_exit
    from covalent_cli.cli.args import parse_args
    from covalent_cli.dispatch import LABELS, start_runner
    from covalent_cli.dryrun import load_script
    from covalent_cli.script import find_lattices

    dry = dry_run_cmd.start() if dry_run else None  # runs are reported, not written
    args, kwargs = parse_args(pairs, args_file)
    LABELS.update(name=label(name, "--name"), tags=tuple(label(t, "--tag") for t in tags))
    given = [what for what, used in (("-a", pairs), ("--args-file", args_file),
                                     ("LATTICE", lattice_name)) if used]
    quick_exit.user_code_starts()  # what the script imports is torn down at exit, as usual
    namespace, ids = load_script(script, refuse="/".join(given))
    if not ids:
        lattices = find_lattices(namespace)
        if lattice_name:
            if lattice_name not in lattices:
                raise UserError(f"no lattice named '{lattice_name}' in {script}",
                                f"found: {', '.join(sorted(lattices)) or 'none'}")
            chosen = lattices[lattice_name]
        elif len(lattices) == 1:
            chosen = next(iter(lattices.values()))
        elif not lattices:
            raise UserError(f"{script} defines no lattice and dispatched nothing",
                            "decorate a function with @ct.lattice")
        else:
            raise UserError(f"{script} defines several lattices: {', '.join(sorted(lattices))}",
                            "name one: cov dispatch SCRIPT LATTICE")
        run = _create_from_cli(chosen, args, kwargs, script)
        start_runner(run.path.parent)
        ids = [run.dispatch_id]
    elif pairs or args_file or lattice_name:
        raise UserError(f"{script} dispatched on its own; -a/--args-file/LATTICE do not apply",
                        "remove the dispatch from the script or the arguments from the command")
    if dry is not None:
        dry_run_cmd.report(dry, ids, as_json)
        return None
    return ids


def _start_runner_early() -> None:
    """The runner, started now (``runner_start.start_runner_early``): a fork of this process,
    which has one thread and has not run the user's script yet (``runner.fork_start``), so its
    imports and its pool's start run on another core while this process imports the SDK,
    runs the script and builds the graph."""
    from covalent_cli.runner_start import start_runner_early
    from runner import fork_start

    with fork_start.allowed():
        start_runner_early()


def wait_and_report(ctx: Context, ids: List[str], quiet: bool, as_json: bool) -> None:
    """``--wait`` of dispatch and redispatch: wait for each run, print its result (a failed
    one's error and failed inner tasks on stderr) and exit with the worst run's code."""
    from covalent_cli.cli.commands import STATUS_EXIT, _echo_json, _result_value
    from runner.json_view import result_document
    from runner.query_failures import failed_tasks, inner_failure_lines
    from runner.state import COMPLETED

    outcomes = [_await(ctx, dispatch_id, None, progress=not (quiet or as_json))
                for dispatch_id in ids]
    results = []
    for run, state in outcomes:
        value = _result_value(run) if state.status == COMPLETED else None
        if state.status != COMPLETED:
            click.echo(f"{run.dispatch_id}: {state.status}" +
                       (f"\n{state.error}" if state.error else ""), err=True)
            for line in inner_failure_lines(failed_tasks(run)):  # what failed in sublattices
                click.echo(line, err=True)
        elif not as_json:
            click.echo(repr(value))
        results.append(result_document(run.dispatch_id, state.status, value, state.error))
    if as_json:
        _echo_json({"dispatch_ids": ids, "runs": results})
    code = max(int(STATUS_EXIT.get(state.status, ExitCode.ERROR)) for _, state in outcomes)
    if code:
        sys.exit(code)


def label(text: Optional[str], option: str) -> Optional[str]:
    """A run's name or tag: one line of text, not empty."""
    if text is None:
        return None
    if not text.strip() or "\n" in text:
        raise UserError(f"{option} {text!r}: give a non-empty one-line label", f"e.g. {option} "
                        "sweep-1")
    return text.strip()


def _next_steps(ctx: Context, ids: List[str]) -> None:
    """Where the run went and what to type next, for a person (stderr: stdout stays the ids)."""
    if len(ids) == 1:
        short = ids[0][:8]
        click.echo(f"  run directory  {ctx.home / ids[0]}", err=True)
        click.echo(f"  look at it     cov status {short}   cov logs {short}   cov ui", err=True)
    elif ids:
        click.echo(f"  runs home      {ctx.home}", err=True)
        click.echo("  look at them   cov runs   cov status RUN   cov logs RUN   cov ui", err=True)


def _create_from_cli(lattice: Any, args: List[Any], kwargs: Dict[str, Any], script: str) -> Any:
    """create_run, with the lattice body's own exceptions shown as the user's error."""
    from covalent_cli.dispatch import create_run
    from covalent_cli.script import building

    with building(lattice, script):
        return create_run(lattice, args, kwargs)


def _await(ctx: Context, run_id: str, timeout: Optional[float],
           progress: bool) -> Tuple[RunDir, RunState]:
    """The run and its state once it ended (or ``timeout`` passed). Ctrl-C stops the waiting,
    not the run: say so, and how to cancel it (exit 130)."""
    from covalent_cli.cli.commands import _run

    run = _run(ctx, run_id)
    try:
        return run, _wait_with_progress(run, timeout, not progress)
    except KeyboardInterrupt:
        click.echo("", err=True)
        click.echo(f"Interrupted: run {run.dispatch_id} goes on without you.", err=True)
        click.echo(f"  cancel it: cov cancel {run.dispatch_id[:8]}   wait again: cov wait "
                   f"{run.dispatch_id[:8]}", err=True)
        sys.exit(int(ExitCode.INTERRUPTED))


def _wait_with_progress(run: RunDir, timeout: Optional[float], quiet: bool) -> RunState:
    from covalent_cli.result import wait_for_run
    from runner.daemon import Keeper
    from runner.state import COMPLETED, TERMINAL

    keeper = Keeper(run.path, strict=True)
    if quiet or not sys.stderr.isatty():
        return wait_for_run(run, timeout, keeper)
    total = int(run.header().get("task_count") or 0)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        step = 0.2 if deadline is None else max(0.0, min(0.2, deadline - time.monotonic()))
        state = wait_for_run(run, step, keeper)
        done = sum(1 for t in state.tasks.values() if t.status == COMPLETED)
        click.echo(f"\r{run.dispatch_id[:8]} {state.status} {done}/{total} tasks", nl=False, err=True)
        if state.status in TERMINAL or (deadline is not None and time.monotonic() >= deadline):
            click.echo("", err=True)
            return state


class _Seconds(click.ParamType):
    """A duration: a number >= 0 (``inf`` is forever); ``nan`` and negatives are refused."""

    name = "seconds"

    def convert(self, value: Any, param: Optional[click.Parameter],
                ctx: Optional[click.Context]) -> float:
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        if math.isnan(seconds) or seconds < 0:
            self.fail(f"{value!r} is not a duration (give a number of seconds >= 0)", param, ctx)
        return seconds


SECONDS = _Seconds()


@cli.command("wait")
@click.argument("run_id")
@click.option("--timeout", type=SECONDS, default=None, help="Give up after this many seconds (exit 5).")
@click.option("-q", "--quiet", is_flag=True, help="No progress, only the exit code.")
@on_option
@pass_ctx
def wait_cmd(ctx: Context, run_id: str, timeout: Optional[float], quiet: bool) -> None:
    """Wait for a run to end; exit 0 completed, 3 failed, 4 cancelled, 5 timeout.

    Prints one line, ``ID STATUS`` (a failed run's error follows on stderr)."""
    from covalent_cli.cli.commands import STATUS_EXIT
    from runner.query_failures import failed_tasks, inner_failure_lines
    from runner.state import COMPLETED, TERMINAL

    run, state = _await(ctx, run_id, timeout, progress=not quiet)
    finished = state.status in TERMINAL
    if not quiet:
        click.echo(f"{run.dispatch_id} {state.status}")
        if not finished:
            click.echo(f"gave up waiting after {timeout:g}s; the run goes on", err=True)
        elif state.error:
            click.echo(state.error, err=True)
        if finished and state.status != COMPLETED:
            for line in inner_failure_lines(failed_tasks(run)):  # what failed in sublattices
                click.echo(line, err=True)
    sys.exit(int(STATUS_EXIT.get(state.status, ExitCode.ERROR)) if finished
             else int(ExitCode.TIMEOUT))


@cli.command()
@click.argument("run_id")
@click.argument("nodes", type=int, nargs=-1)
@on_option
@pass_ctx
def cancel(ctx: Context, run_id: str, nodes: Tuple[int, ...]) -> None:
    """Cancel a run, or only NODES of it (and what depends on them)."""
    from covalent_cli.cli.commands import _run, _state
    from covalent_cli.redispatch import cancel as cancel_run
    from runner.locks import LockBusy
    from runner.rundir import RunDirError
    from runner.snapshot import pulled_from

    run = _run(ctx, run_id)
    if _state(run).finished:
        click.echo(f"{run.dispatch_id} already ended {_state(run).status}", err=True)
        return
    pulled = pulled_from(run.path)
    if pulled is not None:  # its runner is the host's: a cancel here would reach nothing
        host = pulled.get("host", "?")
        raise UserError(f"run {run.dispatch_id} is a copy pulled from {host}: cancel it there",
                        f"cov cancel --on {host} {run.dispatch_id[:8]}")
    manifest = run.manifest
    for n in nodes:
        if not 0 <= n < len(manifest.nodes):
            raise RunNotFound(f"run {run.dispatch_id} has no node {n}")

    def busy(who: str) -> None:
        click.echo(f"{run.dispatch_id} is locked by {who}; retrying", err=True)

    try:
        message = cancel_run(run.dispatch_id, list(nodes) if nodes else None, ctx.home,
                             on_busy=busy)
    except LockBusy as exc:
        raise UserError(f"{run.dispatch_id} is still locked by {exc.holder} after "
                        f"{exc.waited:g} s; nothing was cancelled",
                        "resume or end that process (a stopped one: kill -CONT PID), "
                        "then cancel again") from None
    except RunDirError as exc:
        raise RunUnreadable(str(exc)) from None
    click.echo(message)

