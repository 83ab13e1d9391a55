"""``cov status`` and ``cov result``: one run, or one node of it, for people and scripts.

The tables fit 80 columns: run ids are shown by their shortest unique prefix (8 characters at
least, as git shows commits), names are cut, and a note too long for its column goes on the
next line, whole. The data is the read model's (``runner.query``, ``runner.query_node``).
"""
from __future__ import annotations

import sys
import textwrap
import time
from typing import Any, Dict, List, Optional

import click

from covalent_cli.cli.commands import (COLORS, STATUS_EXIT, _echo_json, _result_value, _run,
                                       _state, _status_text)
from covalent_cli.cli.main import Context, cli, pass_ctx
from covalent_cli.cli.remote_on import on_option
from covalent_cli.errors import CovError, ExitCode, RunNotFound, RunUnreadable, UserError
from covalent_cli.result import keep_served
from runner.query import (NOT_RUN, PENDING, SHOWN_STATUSES, format_seconds, format_time,
                          run_names, run_summary, status_counts, task_rows, unique_prefix)
from runner.query_failures import failed_tasks, inner_failure_lines
from runner.json_view import dumps_spliced, jsonable, result_document
from runner.query_json import NotPlain, TaskTable, task_table
from runner.query_node import node_detail
from runner.manifest import PARAMETER
from runner.rundir import RunDir, RunDirError
from runner.state import COMPLETED, TERMINAL

WIDTH = 80
SHOWN_COLORS = {**COLORS, "QUEUED": "cyan", PENDING: None, NOT_RUN: "magenta"}


class _NotFinished(CovError):
    exit_code = ExitCode.TIMEOUT


def _statuses(text: Optional[str]) -> Optional[List[str]]:
    """``--status`` values (comma-separated, any case, ``not-run`` for NOT_RUN)."""
    if not text:
        return None
    wanted = [w.strip().upper().replace("-", "_").replace(" ", "_") for w in text.split(",")]
    for value in wanted:
        if value not in SHOWN_STATUSES:
            raise UserError(f"--status {value!r} is not a task status",
                            "one of: " + ", ".join(s.lower().replace("_", "-")
                                                   for s in SHOWN_STATUSES))
    return wanted


def _node_id(run: RunDir, text: str) -> int:
    """NODE: a node id, or the name of the run's one node so named."""
    nodes = run.manifest.nodes
    if text.lstrip("-").isdigit():
        node = int(text)
        if not 0 <= node < len(nodes):
            raise RunNotFound(f"run {run.dispatch_id} has no node {node}",
                              f"node ids go from 0 to {len(nodes) - 1}")
        return node
    named = [n.id for n in nodes if n.name == text]
    if len(named) == 1:
        return named[0]
    if not named:
        raise RunNotFound(f"run {run.dispatch_id} has no node named {text!r}",
                          "give a node id or a task name (`cov status RUN --all` lists them)")
    shown = ", ".join(map(str, named[:10])) + (" ..." if len(named) > 10 else "")
    raise RunNotFound(f"{len(named)} nodes of run {run.dispatch_id} are named {text!r}",
                      f"give one's id: {shown}")


def _colored(text: str, status: str) -> str:
    """``text`` in ``status``'s colour on a terminal."""
    return click.style(text, fg=SHOWN_COLORS.get(status)) if sys.stdout.isatty() else text


def _short(run: RunDir, names: List[str], dispatch_id: Optional[str] = None) -> str:
    return unique_prefix(dispatch_id or run.dispatch_id, names)


def _where(row: Dict[str, Any]) -> str:
    """Where a task runs: a Slurm job id, else host:pid (or the host)."""
    if row.get("job_id"):
        return f"job {row['job_id']}"
    host = row.get("host") or ""
    if row.get("pid"):
        return f"{host}:{row['pid']}" if host else f"pid {row['pid']}"
    return host or "-"


def _note(row: Dict[str, Any], names: List[str]) -> str:
    """One line saying why a task is as it is (nothing cut: the caller wraps it)."""
    if row.get("not_run"):
        cause = row["not_run"]
        how = "failed" if cause["status"] == "FAILED" else "was cancelled"
        return f"not run: node {cause['node']} {how}"
    if row.get("reason"):
        return f"pending: {row['reason']}"
    inside = row.get("failed_inside")
    if inside:  # a sublattice: name the tasks that failed in its run (and how)
        first = inside[0]
        why = first["exception"] or (first["error"] or "").split("\n")[0]
        more = f" (and {len(inside) - 1} more)" if len(inside) > 1 else ""
        return (f"in run {unique_prefix(first['dispatch_id'], names)}: node {first['node']} "
                f"{first['name']} failed{more}" + (f": {why}" if why else ""))
    text = row.get("error") or row.get("exception") or ""
    child = row.get("child")
    if child:
        short = unique_prefix(child, names)
        text = text.replace(child, short) if text else f"child run {short}"
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def _runtime(row: Dict[str, Any]) -> Optional[float]:
    """A task's runtime; a running one's so far."""
    if row["runtime"] is None and row["status"] == "RUNNING" and row.get("started"):
        return max(0.0, time.time() - row["started"])
    return row["runtime"]


def _pad(text: str, width: int) -> str:
    """``text`` cut to ``width`` (an ellipsis marks the cut) and padded."""
    if len(text) > width:
        text = text[:width - 1] + "…"
    return text + " " * (width - len(text))


def _table(rows: List[Dict[str, Any]], names: List[str]) -> List[str]:
    ids = max([2] + [len(str(r["id"])) for r in rows])
    name_w = min(20, max([4] + [len(r["name"]) for r in rows]))
    status_w = max([6] + [len(r["shown"].replace("_", " ")) for r in rows])
    where_w = min(20, max([5] + [len(_where(r)) for r in rows]))
    fixed = ids + name_w + status_w + where_w + 7 + 5 * 2
    note_w = WIDTH - fixed
    lines = [f"{'ID':>{ids}}  {_pad('NAME', name_w)}  {_pad('STATUS', status_w)}  "
             f"{_pad('WHERE', where_w)}  {'RUNTIME':>7}  NOTE".rstrip()]
    for r in rows:
        shown = r["shown"].replace("_", " ")
        note = _note(r, names)
        line = (f"{r['id']:>{ids}}  {_pad(r['name'], name_w)}  "
                f"{_colored(shown, r['shown']) + ' ' * (status_w - len(shown))}  "
                f"{_pad(_where(r), where_w)}  {format_seconds(_runtime(r)):>7}")
        if note and len(note) <= note_w:
            lines.append(f"{line}  {note}")
            continue
        lines.append(line.rstrip())
        if note:  # too long for its column: whole, on the lines below, indented
            lines.extend(textwrap.wrap(note, WIDTH, initial_indent=" " * (ids + 2),
                                       subsequent_indent=" " * (ids + 4)))
    return lines


@cli.command()
@click.argument("run_id", default="latest", required=False)
@click.argument("node", required=False)
@click.option("--json", "as_json", is_flag=True, help="Run and task states as JSON.")
@click.option("--all", "show_all", is_flag=True,
              help="Include the reshaping nodes (parameters, collections, attributes).")
@click.option("--status", "status_filter", metavar="S[,S...]",
              help="Only tasks with these statuses (completed, running, queued, pending, "
                   "failed, cancelled, not-run, dispatching).")
@click.option("--why", is_flag=True,
              help="With NODE: why its result came from the result cache or not.")
@on_option
@pass_ctx
def status(ctx: Context, run_id: str, node: Optional[str], as_json: bool, show_all: bool,
           status_filter: Optional[str], why: bool) -> None:
    """One run's status and its task table, or one NODE of it in full (RUN: id, prefix or
    'latest'; NODE: a node id or a task name)."""
    wanted = _statuses(status_filter)
    run = _run(ctx, run_id)
    if why:
        from covalent_cli.cli.cache_cmd import why_lines
        if node is None:
            raise UserError("--why explains one task: give its NODE",
                            "e.g. cov status RUN NODE --why")
        try:
            click.echo("\n".join(why_lines(run, _node_id(run, node))))
        except RunDirError as exc:
            raise RunUnreadable(str(exc)) from None
        return
    table: Optional[TaskTable] = None
    try:
        summary = run_summary(run)
        if node is not None:
            detail = node_detail(run, _node_id(run, node))
        else:
            if as_json:  # the rows' JSON made a column at a time (runner/query_json.py)
                try:
                    table = task_table(run, include_parameters=show_all,
                                       include_reshaping=show_all, wanted=wanted)
                except NotPlain:
                    pass  # a value only the general encoder marks: the rows as dicts
            rows = [] if table is not None else \
                task_rows(run, include_parameters=show_all, include_reshaping=show_all)
    except RunDirError as exc:
        raise RunUnreadable(str(exc)) from None
    if summary["status"] not in TERMINAL:
        keep_served(run)
    names = run_names(run.path.parent)
    if node is not None:
        if as_json:
            _echo_json(detail)
        else:
            click.echo("\n".join(_node_lines(detail, names)))
        return
    preview = _result_preview(run) if summary["status"] == COMPLETED else None
    if table is not None:  # as the dicts below would print (tests/cli/test_status_json_text.py)
        click.echo(dumps_spliced({**summary, "total": table.total, "done": table.done,
                                  "result_preview": preview, "counts": table.counts,
                                  "notes": _notes(run), "tasks": []}, table.json))
        return
    counts = status_counts(rows)
    shown_rows = [r for r in rows if wanted is None or r["shown"] in wanted]
    if as_json:
        # total/done of the tasks this table is about (reshaping nodes only with --all), as
        # the text says "tasks 3: 3 completed"; parameter nodes are values, never tasks
        tasks = [r for r in rows if r["kind"] != PARAMETER]
        _echo_json({**summary, "total": len(tasks),
                    "done": sum(1 for r in tasks if r["status"] == COMPLETED),
                    "result_preview": preview, "counts": counts, "notes": _notes(run),
                    "tasks": shown_rows})
        return
    click.echo(f"run      {_short(run, names)}  {summary['lattice']}")
    click.echo(f"status   {_status_text(summary['status'])}  runtime "
               f"{format_seconds(summary['runtime'])}")
    click.echo(f"tasks    {len(rows)}: " + ", ".join(
        f"{n} {s.lower().replace('_', ' ')}" for s, n in counts.items()))
    if summary["error"]:
        error = summary["error"].splitlines() + inner_failure_lines(
            failed_tasks(run), short=lambda child: unique_prefix(child, names))
        for i, line in enumerate(error):
            click.echo(("error    " if i == 0 else "         ") + line)
    for i, note in enumerate(_notes(run)):
        click.echo("\n".join(textwrap.wrap(note, WIDTH, subsequent_indent=" " * 9,
                                            initial_indent="note     " if i == 0 else " " * 9)))
    if summary["status"] == COMPLETED:
        click.echo("result   " + (f"{preview['repr']}  ({preview['type']})" if preview else
                                  "(preview not recorded; `cov result` loads the value)"))
    click.echo("")
    if not shown_rows:
        click.echo(f"(no task is {', '.join(w.lower() for w in wanted or [])})")
        return
    for line in _table(shown_rows, names):
        click.echo(line)


def _notes(run: RunDir) -> List[str]:
    """What the run's executors do other than what was asked (a Dask executor without a
    scheduler address is the local pool)."""
    return [f"executor {name} has no scheduler_address: its tasks run in the local pool"
            for name, config in run.manifest.executors.items()
            if config.get("requested") == "dask"]


def _node_lines(d: Dict[str, Any], names: List[str]) -> List[str]:
    """``cov status RUN NODE`` for people."""
    lines = [f"node     {d['id']} {d['name']}  ({d['kind']}, run "
             f"{unique_prefix(d['dispatch_id'], names)})"]
    shown = d["shown"].replace("_", " ")
    status_line = f"status   {_colored(shown, d['shown'])}"
    if d["attempt"] > 1:
        status_line += f"  attempt {d['attempt']}"
    note = _note(d, names)
    lines.append(status_line + (f"  {note}" if note and not d.get("error") and
                                not d.get("exception") else ""))
    if d["executor"]:
        kind = d["executor_type"] or "local"
        if d.get("executor_requested") == "dask":
            kind += ": no scheduler_address"
        lines.append(f"executor {d['executor']} ({kind})")
    if d["backend"] or d["host"]:
        lines.append(f"where    {_where(d)}" + (f"  (runner {d['runner']})" if d["runner"] else ""))
    if d["claimed"]:
        lines.append(f"queued   {format_time(d['claimed'])}" +
                     (f"  for {format_seconds(d['queued'])}" if d["queued"] is not None else ""))
    if d["started"]:
        lines.append(f"started  {format_time(d['started'])}")
    if d["ended"]:
        lines.append(f"ended    {format_time(d['ended'])}  runtime {format_seconds(d['runtime'])}")
    texts = [_note(d, names)] if d.get("failed_inside") else [
        _note({"error": t, "child": d.get("child")}, names)
        for t in (d.get("exception"), d.get("error")) if t]
    for text in texts:
        if text:
            wrapped = textwrap.wrap(text, WIDTH - 9) or [""]
            lines += ["error    " + wrapped[0]] + ["         " + w for w in wrapped[1:]]
    if d["child"]:
        lines.append(f"child    run {unique_prefix(d['child'], names)} (`cov status "
                     f"{unique_prefix(d['child'], names)}`)")
    lines.append("inputs" + ("   (none)" if not d["inputs"] else ""))
    for entry in d["inputs"]:
        name = entry["param"] if entry["type"] == "kwarg" else f"[{entry['index']}]" \
            if entry["index"] is not None else entry["param"]
        if entry["source"] == "literal":
            where = f"literal (node {entry['node']})"
        else:
            where = f"node {entry['node']} {entry['name']} ({entry['status'].lower()})"
        lines.append(f"  {name} = {where}" + _value_text(entry["value"], 2 + len(name) + 3))
    if d["inputs_total"] > len(d["inputs"]):
        lines.append(f"  ... and {d['inputs_total'] - len(d['inputs'])} more")
    if d["waits"]:
        lines.append("waits    for node(s) " + ", ".join(map(str, d["waits"])))
    if d["kind"] != "parameter" or d["result"]:
        lines.append("result   " + (_value_text(d["result"], 9).lstrip(": ") if d["result"]
                                    else "(none yet)" if d["status"] not in TERMINAL else "(none)"))
    for log in d["log_files"] or []:
        size = "not written" if log["size"] is None else f"{log['size']} B"
        if "offset" in log:  # format 2.0: a finished task's short output, in a logs pack
            size += f" at offset {log['offset']}"
        lines.append(f"{log['stream']:<8} {log['path']}  ({size})")
    return lines


def _value_text(value: Optional[Dict[str, Any]], indent: int) -> str:
    """``: repr  (type, size)`` of a recorded value, cut to the line."""
    if not value:
        return ""
    facts = ", ".join(x for x in (value.get("type"), None if value.get("size") is None
                                  else f"{value['size']} B") if x)
    text = f": {value.get('repr') or '?'}"
    tail = f"  ({facts})" if facts else ""
    room = WIDTH - indent - len(tail)
    if len(text) > room:
        text = text[:max(8, room) - 1] + "…"
    return text + tail


@cli.command()
@click.argument("run_id")
@click.argument("node", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@on_option
@pass_ctx
def result(ctx: Context, run_id: str, node: Optional[str], as_json: bool) -> None:
    """Print a finished run's result, or one NODE's output (exit 3 if it failed, 4 cancelled,
    5 not finished).

    It unpickles the value, which runs code from the run: only for runs you trust (`cov status`
    shows a preview recorded when the task finished, without unpickling).
    """
    run = _run(ctx, run_id)
    if node is not None:
        _node_result(run, _node_id(run, node), as_json)
        return
    state = _state(run)
    if state.status not in TERMINAL:
        keep_served(run)
        raise _NotFinished(f"run {run.dispatch_id} is {state.status}", "wait with `cov wait`")
    value = _result_value(run) if state.status == COMPLETED else None
    if as_json:
        _echo_json(result_document(run.dispatch_id, state.status, value, state.error))
    elif state.status == COMPLETED:
        click.echo(repr(value))
    else:
        click.echo(f"{run.dispatch_id}: {state.status}" + (f"\n{state.error}" if state.error else ""),
                   err=True)
    sys.exit(int(STATUS_EXIT[state.status]))


def _node_result(run: RunDir, node: int, as_json: bool) -> None:
    """``cov result RUN NODE``: the node's output (unpickled), or why there is none."""
    try:
        detail = node_detail(run, node)
    except RunDirError as exc:
        raise RunUnreadable(str(exc)) from None
    status = detail["status"]
    if status != COMPLETED:
        if status not in TERMINAL:
            keep_served(run)
        message = f"node {node} {detail['name']} of run {run.dispatch_id} is {detail['shown']}"
        if as_json:
            _echo_json({"dispatch_id": run.dispatch_id, "node": node, "name": detail["name"],
                        "status": status, "shown": detail["shown"], "result": None,
                        "error": detail["error"] or detail["exception"]})
            sys.exit(int(STATUS_EXIT.get(status, ExitCode.TIMEOUT)))
        if status in TERMINAL:
            click.echo(message + "".join(f"\n{t}" for t in (detail["exception"], detail["error"])
                                         if t), err=True)
            sys.exit(int(STATUS_EXIT[status]))
        raise _NotFinished(message, f"wait with `cov wait {run.dispatch_id[:8]}`")
    try:
        value = run.load_output(node)
    except RunDirError as exc:
        raise RunUnreadable(str(exc), "recompute it with `cov redispatch --reuse`") from None
    except Exception as exc:  # noqa: BLE001 - unpickling a damaged file raises anything
        raise RunUnreadable(f"run {run.dispatch_id}: node {node}'s output cannot be "
                            f"unpickled: {type(exc).__name__}: {exc}") from None
    if as_json:
        recorded = detail["result"] or {}
        _echo_json({"dispatch_id": run.dispatch_id, "node": node, "name": detail["name"],
                    "status": status, "result": jsonable(value),
                    "type": recorded.get("type") or type(value).__qualname__,
                    "size": recorded.get("size"), "repr": recorded.get("repr")})
    else:
        click.echo(repr(value))


def _result_preview(run: RunDir) -> Optional[Dict[str, str]]:
    """The result's preview recorded when its task finished (``{"type", "repr"}``), or None:
    ``cov status`` shows it without unpickling, which would run the run's code."""
    try:
        header, _ = run.read_outcome(run.manifest.output_node)
    except (RunDirError, OSError):
        return None
    preview = (header or {}).get("preview")
    return preview if isinstance(preview, dict) and isinstance(preview.get("repr"), str) else None

