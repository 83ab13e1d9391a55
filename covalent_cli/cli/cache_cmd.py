"""``cov cache ls`` / ``cov cache clear``: the home's result cache (``runner.cache``), and the
``--why`` explanation ``cov status RUN NODE --why`` prints (docs/cache.md)."""
from __future__ import annotations

from typing import Any, Dict, List, Optional

import click

from covalent_cli.cli.commands import _echo_json
from covalent_cli.cli.main import Context, cli, pass_ctx
from covalent_cli.cli.run_filters import Age
from runner.cache import KeyParts, ResultCache, cacheable
from runner.query import format_time
from runner.rundir import RunDir


@cli.group("cache")
def cache_group() -> None:
    """The result cache: what @ct.electron(cache=True) tasks take instead of running."""


@cache_group.command("ls")
@click.option("--json", "as_json", is_flag=True, help="The entries as JSON.")
@pass_ctx
def ls(ctx: Context, as_json: bool) -> None:
    """The cache's entries, most recently used first."""
    entries = sorted(ResultCache(ctx.home).entries(), key=lambda e: -e["used"])
    rows = [{"key": e["key"], "name": e.get("name"), "size": e["size"],
             "from": f"{e.get('run')}/{e.get('node')}", "used": e["used"]} for e in entries]
    if as_json:
        _echo_json({"schema": 1, "entries": rows,
                    "size": sum(r["size"] for r in rows)})
        return
    if not rows:
        click.echo("The cache is empty.")
        return
    click.echo(f"{'KEY':<12}  {'TASK':<20}  {'SIZE':>9}  {'LAST USED':<19}  FROM")
    for r in rows:
        click.echo(f"{r['key'][:12]:<12}  {str(r['name'])[:20]:<20}  {_size(r['size']):>9}  "
                   f"{format_time(r['used']):<19}  {r['from']}")
    click.echo(f"{len(rows)} entr{'y' if len(rows) == 1 else 'ies'}, "
               f"{_size(sum(r['size'] for r in rows))}")


@cache_group.command("clear")
@click.option("--older-than", "older_than", type=Age(), metavar="AGE",
              help="Only entries last used longer ago than AGE (90s, 30m, 12h, 7d, 2w).")
@pass_ctx
def clear(ctx: Context, older_than: Optional[float]) -> None:
    """Remove the cache's entries (the runs' own results stay)."""
    removed = ResultCache(ctx.home).clear(older_than)
    click.echo(f"Removed {len(removed)} cache entr{'y' if len(removed) == 1 else 'ies'} "
               f"({_size(sum(e['size'] for e in removed))})")


def why_lines(run: RunDir, node_id: int) -> List[str]:
    """Why a node's result came from the cache or not: for a cache-enabled node that ran, the
    parts of its key that differ from the nearest entry of the same task name."""
    manifest = run.manifest
    node = manifest.node(node_id)
    task = run.state().tasks.get(node_id)
    head = f"{node.name} #{node_id}: "
    if not cacheable(node):
        return [head + "not cached (no @ct.electron(cache=True), no cov dispatch --cache)"]
    if task is not None and task.cached_from:
        return [head + f"cached from {task.cached_from}"]
    cache = ResultCache(run.path.parent)
    parts = cache.key_parts(run, manifest, node_id)
    if parts is None:
        return [head + "its inputs are not all known yet (an upstream task has no result)"]
    here = f"{manifest.dispatch_id}/{node_id}"
    others = [e for e in cache.entries()
              if e.get("name") == node.name and f"{e.get('run')}/{e.get('node')}" != here]
    if not others:
        return [head + "ran: no earlier cached result of this task"]
    # Several nodes may share the task's name (a task called in a loop): among the entries
    # that differ least, an earlier run's first, and the same node of it (the same call in
    # an unchanged graph) before its siblings, then the most recently used.
    nearest = min(others, key=lambda e: (_distance(parts, e.get("parts") or {}),
                                         e.get("run") == manifest.dispatch_id,
                                         e.get("node") != node_id, -e["used"]))
    differs = _differences(parts, nearest.get("parts") or {})
    source = f"{nearest.get('run')}/{nearest.get('node')}"
    if not differs:
        return [head + f"ran before its equal entry ({source}) was in the cache"]
    return [head + f"ran: {'; '.join(differs)} (nearest entry: {source})"]


def _distance(parts: KeyParts, other: Dict[str, Any]) -> int:
    """How many parts differ (each input counts): the nearest entry differs least."""
    theirs = {str(k): str(v) for k, v in (other.get("inputs") or [])}
    mine = dict(parts.inputs)
    return (int(other.get("code") != parts.code) + int(other.get("executor") != parts.executor)
            + sum(1 for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k)))


def _differences(parts: KeyParts, other: Dict[str, Any]) -> List[str]:
    """What differs between ``parts`` and an entry's parts, in the words docs/cache.md uses."""
    found: List[str] = []
    if other.get("executor") != parts.executor:
        found.append("executor settings changed")
    elif other.get("code") != parts.code:
        found.append("code changed (its function, a helper, deps or hooks)")
    mine = dict(parts.inputs)
    theirs = {str(k): str(v) for k, v in (other.get("inputs") or [])}
    changed = [k for k in mine if k in theirs and mine[k] != theirs[k]]
    if set(mine) != set(theirs):
        found.append(f"arguments changed ({', '.join(sorted(theirs))} -> "
                     f"{', '.join(sorted(mine))})")
    if changed:
        found.append(f"input changed ({', '.join(changed)})")
    return found


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"
