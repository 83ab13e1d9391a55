"""The run commands: dispatch, runs, logs, wait, cancel, redispatch, rm, config (``status`` and
``result`` are in ``covalent_cli.cli.inspect_cmd``)."""
from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from typing import Any, Dict, List, Optional, Tuple

import click
import yaml

from covalent_cli.cli.main import Context, cli, pass_ctx
from covalent_cli.errors import (CovError, ExitCode, RunNotFound, RunUnreadable, ScriptError,
                                 UserError)
from covalent_cli.result import Result, keep_served, resolve_run, wait_for_run
from runner.config import ConfigError, check_config, config_path, runs_home
from runner.daemon import Keeper
from runner.layout import trash_path
from runner.locks import LockBusy
from runner.query import (check_readable, failed_tasks, format_seconds, format_time,
                          inner_failure_lines, iter_runs, list_runs)
from runner.redact import mask_secrets
from runner.rundir import OutsideRunError, RunDir, RunDirError
from runner.state import CANCELLED, COMPLETED, FAILED, TERMINAL, RunState

STATUS_EXIT = {COMPLETED: ExitCode.SUCCESS, FAILED: ExitCode.RUN_FAILED,
               CANCELLED: ExitCode.RUN_CANCELLED}
COLORS = {COMPLETED: "green", FAILED: "red", CANCELLED: "yellow", "RUNNING": "blue",
          "DISPATCHING": "blue"}


def _run(ctx: Context, run_id: str) -> RunDir:
    """The run, checked readable: a damaged one is one ``Error:`` line and exit 8."""
    run = resolve_run(run_id, ctx.home)
    try:
        return check_readable(run)
    except (RunDirError, OSError) as exc:
        raise RunUnreadable(str(exc)) from None


def _state(run: RunDir) -> RunState:
    try:
        return run.state()
    except RunDirError as exc:
        raise RunUnreadable(str(exc)) from None


def _echo_json(value: Any) -> None:
    # Compact: json's C encoder (indent forces the pure-Python one, 2x slower on 10k tasks).
    # Pipe through `jq` to read it.
    click.echo(json.dumps(value, default=str))


def _status_text(status: str) -> str:
    return click.style(status, fg=COLORS.get(status)) if sys.stdout.isatty() else status


# -- dispatch ---------------------------------------------------------------------------------
MAX_ALIAS_EXPANSION = 100_000  # values YAML aliases may add to an argument once copied out


def _load_yaml(text: str, what: str) -> Any:
    """``yaml.safe_load``, refusing a document whose aliases add more than
    ``MAX_ALIAS_EXPANSION`` values once expanded (a "billion laughs" bomb: tiny as text,
    exponential once repr'd, as the manifest does). Big documents without aliases pass."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        expanded, distinct = _expanded_size(node)
        if expanded - distinct > MAX_ALIAS_EXPANSION:
            raise UserError(f"{what}: its YAML aliases expand past {MAX_ALIAS_EXPANSION:,} "
                            "values (or loop)", "write the values out, or have the lattice "
                            "read them from a file")
        return loader.construct_document(node)
    except RecursionError:
        raise UserError(f"{what} is nested too deeply") from None
    finally:
        loader.dispose()


def _expanded_size(root: yaml.Node) -> Tuple[float, int]:
    """Values in the document once every alias is copied out (an alias loop: infinite), and
    distinct values. Linear in the composed graph: each node's size is computed once."""
    sizes: Dict[int, float] = {}
    stack: List[Tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        if done:
            children = _children(node)
            sizes[id(node)] = 1 + sum(sizes.get(id(c), math.inf) for c in children)
            continue
        if id(node) in sizes:
            continue
        sizes[id(node)] = math.inf  # on the stack: met again before it is done, it is a loop
        stack.append((node, True))
        stack.extend((c, False) for c in _children(node) if id(c) not in sizes)
    return sizes[id(root)], len(sizes)


def _children(node: yaml.Node) -> List[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _parse_args(pairs: Tuple[str, ...], args_file: Optional[str]) -> Tuple[List[Any], Dict[str, Any]]:
    args: List[Any] = []
    kwargs: Dict[str, Any] = {}
    if args_file:
        try:
            with open(args_file, encoding="utf-8") as f:
                data = _load_yaml(f.read(), f"--args-file {args_file}") or {}
        except OSError as exc:
            raise UserError(f"cannot read --args-file {args_file}: {exc.strerror}") from None
        except yaml.YAMLError:
            raise UserError(f"--args-file {args_file} is not valid YAML or JSON") from None
        if isinstance(data, list):
            args = data
        elif isinstance(data, dict):
            args = list(data.pop("args", []) or []) if isinstance(data.get("args"), list) else []
            kwargs = dict(data.pop("kwargs", data) or {})
        else:
            raise UserError(f"--args-file {args_file} must hold a mapping of names to values")
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise UserError(f"bad --arg {pair!r}: expected NAME=VALUE", "e.g. -a n=10")
        try:
            kwargs[name.strip()] = _load_yaml(value, f"-a {name.strip()}") if value.strip() else ""
        except yaml.YAMLError:
            kwargs[name.strip()] = value
    return args, kwargs


@cli.command()
@click.argument("script", type=click.Path(dir_okay=True))
@click.argument("lattice_name", metavar="[LATTICE]", required=False)
@click.option("-a", "--arg", "pairs", multiple=True, metavar="NAME=VALUE",
              help="A lattice argument (value parsed as YAML: 3, 1.5, true, [1, 2], text).")
@click.option("--args-file", type=click.Path(), help="YAML/JSON mapping of arguments.")
@click.option("--wait", "wait_", is_flag=True, help="Wait for the end; print the result.")
@click.option("-q", "--quiet", is_flag=True, help="Print only the dispatch id(s).")
@click.option("--json", "as_json", is_flag=True, help="Print the dispatch id(s) as JSON.")
@pass_ctx
def dispatch(ctx: Context, script: str, lattice_name: Optional[str], pairs: Tuple[str, ...],
             args_file: Optional[str], wait_: bool, quiet: bool, as_json: bool) -> None:
    """Run SCRIPT (a Covalent script) and dispatch its lattice.

    If the script dispatches on its own when run (the usual Covalent script), those dispatches
    are reported; otherwise its one lattice (or LATTICE) is dispatched with the -a arguments.
    """
    from covalent_cli.dispatch import start_runner
    from covalent_cli.script import find_lattices, run_script

    args, kwargs = _parse_args(pairs, args_file)
    namespace, ids = run_script(script)
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
    if as_json:
        _echo_json({"dispatch_ids": ids})
    else:
        for dispatch_id in ids:
            click.echo(dispatch_id if quiet else f"Dispatched {dispatch_id}")
    if wait_:
        codes = [_wait_and_report(ctx, dispatch_id, None, quiet, show_result=True)
                 for dispatch_id in ids]
        code = max(codes)
        if code:
            sys.exit(code)


def _create_from_cli(lattice: Any, args: List[Any], kwargs: Dict[str, Any], script: str) -> Any:
    """create_run, with the lattice body's own exceptions shown as the user's error."""
    from covalent_cli.dispatch import create_run
    from covalent_cli.script import user_traceback

    try:
        return create_run(lattice, args, kwargs)
    except (CovError, ConfigError):
        raise
    except RecursionError:
        raise ScriptError(f"building lattice '{lattice.__name__}' of {script} failed: "
                          "RecursionError (recursion too deep)") from None
    except Exception as exc:  # noqa: BLE001 - the user's code raised while building the graph
        raise ScriptError(f"building lattice '{lattice.__name__}' of {script} failed: "
                          f"{type(exc).__name__}: {exc}", detail=user_traceback(exc)) from None


def _wait_and_report(ctx: Context, run_id: str, timeout: Optional[float], quiet: bool,
                     show_result: bool) -> int:
    run = _run(ctx, run_id)
    state = _wait_with_progress(run, timeout, quiet)
    if state.status not in TERMINAL:
        if not quiet:
            click.echo(f"{run.dispatch_id}: still {state.status} after {timeout:g}s", err=True)
        return int(ExitCode.TIMEOUT)
    if state.status == COMPLETED and show_result:
        click.echo(repr(_result_value(run)))
    elif state.status != COMPLETED:
        click.echo(f"{run.dispatch_id}: {state.status}" +
                   (f"\n{state.error}" if state.error else ""), err=True)
        for line in inner_failure_lines(failed_tasks(run)):  # what failed inside sublattices
            click.echo(line, err=True)
    return int(STATUS_EXIT.get(state.status, ExitCode.ERROR))


def _wait_with_progress(run: RunDir, timeout: Optional[float], quiet: bool) -> RunState:
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


# -- listing and inspecting -------------------------------------------------------------------
@cli.command("runs")
@click.option("--status", "status_filter", help="Only runs with this status (e.g. FAILED).")
@click.option("--json", "as_json", is_flag=True, help="JSON list.")
@click.option("-q", "--quiet", is_flag=True, help="Print only run ids.")
@click.option("-n", "--limit", type=int, default=0, help="At most this many (newest first).")
@click.option("--all", "show_all", is_flag=True, help="Include sublattices' child runs.")
@pass_ctx
def runs_cmd(ctx: Context, status_filter: Optional[str], as_json: bool, quiet: bool,
             limit: int, show_all: bool) -> None:
    """List runs, newest first (sublattices' child runs only with --all)."""
    rows = [r for r in list_runs(ctx.home, status_filter) if show_all or not r.get("parent")]
    if limit:
        rows = rows[:limit]
    if as_json:
        _echo_json(rows)
        return
    if quiet:
        for row in rows:
            click.echo(row["dispatch_id"])
        return
    if not rows:
        click.echo(f"No runs under {ctx.home}.", err=True)
        return
    click.echo(f"{'DISPATCH ID':36}  {'LATTICE':16}  {'STATUS':10}  {'TASKS':>9}  "
               f"{'STARTED':19}  RUNTIME")
    for r in rows:
        status = r["status"]
        click.echo(f"{r['dispatch_id']:36}  {r['lattice'][:16]:16}  "
                   f"{_status_text(status) + ' ' * max(0, 10 - len(status))}  "
                   f"{str(r['done']) + '/' + str(r['total']):>9}  {format_time(r['started']):19}  "
                   f"{format_seconds(r['runtime'])}")


cli.add_command(runs_cmd, "list")


def _result_value(run: RunDir) -> Any:
    """A completed run's result; a result file cut short or damaged is one line, not our
    traceback (``cov redispatch --reuse`` recomputes it)."""
    try:
        return Result(run, intermediate_outputs=False, sublattice_results=False).result
    except RunDirError as exc:
        raise RunUnreadable(str(exc), "recompute it with `cov redispatch --reuse`") from None
    except Exception as exc:  # noqa: BLE001 - unpickling a damaged file raises anything
        raise RunUnreadable(f"run {run.dispatch_id}: its result cannot be unpickled: "
                            f"{type(exc).__name__}: {exc}") from None


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


@cli.command("wait")
@click.argument("run_id")
@click.option("--timeout", type=SECONDS, default=None, help="Give up after this many seconds (exit 5).")
@click.option("-q", "--quiet", is_flag=True, help="No progress, only the exit code.")
@pass_ctx
def wait_cmd(ctx: Context, run_id: str, timeout: Optional[float], quiet: bool) -> None:
    """Wait for a run to end; exit 0 completed, 3 failed, 4 cancelled, 5 timeout."""
    code = _wait_and_report(ctx, run_id, timeout, quiet, show_result=False)
    if not quiet:
        run = _run(ctx, run_id)
        click.echo(f"{run.dispatch_id} {_state(run).status}")
    sys.exit(code)


@cli.command()
@click.argument("run_id")
@click.argument("nodes", type=int, nargs=-1)
@pass_ctx
def cancel(ctx: Context, run_id: str, nodes: Tuple[int, ...]) -> None:
    """Cancel a run, or only NODES of it (and what depends on them)."""
    from covalent_cli.redispatch import cancel as cancel_run

    run = _run(ctx, run_id)
    if _state(run).finished:
        click.echo(f"{run.dispatch_id} already ended {_state(run).status}", err=True)
        return
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


RM_STOP_TIMEOUT_S = 60.0  # how long `cov rm` waits for a cancelled run to stop


@cli.command()
@click.argument("run_ids", nargs=-1, required=True)
@click.option("--force", is_flag=True,
              help=f"Remove a run even if it has not stopped {RM_STOP_TIMEOUT_S:g}s after its "
                   "cancel.")
@pass_ctx
def rm(ctx: Context, run_ids: Tuple[str, ...], force: bool) -> None:
    """Delete runs with their sublattices' child runs; a running one is cancelled first (its
    tasks are stopped), then removed."""
    children: Dict[str, List[RunDir]] = {}
    for other in iter_runs(ctx.home):
        try:
            parent = (other.header().get("parent") or {}).get("dispatch_id")
        except (RunDirError, AttributeError):
            continue
        if parent:
            children.setdefault(str(parent), []).append(other)
    for run_id in run_ids:
        run = resolve_run(run_id, ctx.home)
        family = _descendants(run, children) + [run]
        _cancel_and_wait(family, force)
        for member in family:
            # Rename first: the run vanishes at once and whole, then the files go.
            trash = trash_path(member.path.parent, member.dispatch_id)
            try:
                os.rename(member.path, trash)
            except FileNotFoundError:
                continue  # named twice, or removed meanwhile
            shutil.rmtree(trash, ignore_errors=True)
        extra = f" and {len(family) - 1} child run(s)" if len(family) > 1 else ""
        click.echo(f"Removed {run.dispatch_id}{extra}")


def _descendants(run: RunDir, children: Dict[str, List[RunDir]]) -> List[RunDir]:
    """The child runs of ``run``, deepest first (each before its parent)."""
    found: List[RunDir] = []
    for child in children.get(run.dispatch_id, []):
        found += _descendants(child, children) + [child]
    return found


def _cancel_and_wait(runs: List[RunDir], force: bool) -> None:
    """Cancel the unfinished ones and wait until they have stopped (a runner carries the
    cancel out: removing the directory first would leave its tasks running)."""
    def unfinished(run: RunDir) -> bool:
        try:
            return not run.state().finished
        except RunDirError:
            return False  # unreadable: nothing can run it

    pending = [r for r in runs if unfinished(r)]
    for run in pending:
        run.request_cancel()
    deadline = time.monotonic() + RM_STOP_TIMEOUT_S
    for run in pending:
        try:
            state = wait_for_run(run, max(0.0, deadline - time.monotonic()))
        except RunUnreadable:
            continue
        if state.status not in TERMINAL and not force:
            raise UserError(f"run {run.dispatch_id} has not stopped {RM_STOP_TIMEOUT_S:g}s after "
                            "its cancel", "see `cov status`; pass --force to remove it anyway")


@cli.command("config")
@click.option("--json", "as_json", is_flag=True)
def config_cmd(as_json: bool) -> None:
    """Print the effective configuration (secrets masked) and where it comes from; an
    unknown key or a value of the wrong type is an error (exit 1)."""
    import _cov_import_hook

    data = mask_secrets(check_config())
    covalent = _cov_import_hook.describe()
    if as_json:
        _echo_json({"config_file": str(config_path()), "home": str(runs_home()),
                    "covalent": covalent, **data})
        return
    click.echo(f"# config file: {config_path()}" + ("" if config_path().exists() else " (absent)"))
    click.echo(f"# runs home:   {runs_home()}")
    click.echo(f"# covalent:    {covalent}")
    click.echo(yaml.safe_dump(data, sort_keys=False).rstrip())
