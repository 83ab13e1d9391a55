"""``cov redispatch``: run an old run's lattice again, from its stored code or from the edited
script (``--script``), reusing what did not change; ``--dry-run`` says what would rerun and why.
"""
from __future__ import annotations

import os
from collections import Counter
from datetime import datetime
from typing import Any, Dict, List, Optional, Tuple

import click

from covalent_cli.cli.args import parse_args
from covalent_cli.cli.commands import _echo_json, _run
from covalent_cli.cli.dispatch_cmd import label, wait_and_report
from covalent_cli.cli.main import Context, cli, pass_ctx
from covalent_cli.errors import UserError
from covalent_cli.reuse import INTERNAL_KINDS, ReusePlan
from runner.manifest import Manifest
from runner.rundir import RunDir


@cli.command()
@click.argument("run_id")
@click.option("--script", "script_path", type=click.Path(dir_okay=False), metavar="FILE",
              help="Rebuild from this (edited) script instead of the stored code; "
                   "implies --reuse.")
@click.option("--reuse/--no-reuse", default=None,
              help="Reuse results of unchanged tasks (default: with --script only).")
@click.option("--dry-run", is_flag=True, help="Print what would rerun and why; write nothing.")
@click.option("-a", "--arg", "pairs", multiple=True, metavar="NAME=VALUE",
              help="Override one of the run's arguments (value parsed as YAML).")
@click.option("--args-file", type=click.Path(), help="YAML/JSON mapping of arguments.")
@click.option("--name", metavar="NAME", help="A name for the new run (default: the old run's).")
@click.option("--tag", "tags", multiple=True, metavar="TAG",
              help="A tag for the new run (repeatable; default: the old run's tags).")
@click.option("--wait", "wait_", is_flag=True, help="Wait for the end; print the result.")
@click.option("-q", "--quiet", is_flag=True, help="Print only the new id.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the new id (with --dry-run: the plan; with --wait: the result) as JSON.")
@pass_ctx
def redispatch(ctx: Context, run_id: str, script_path: Optional[str], reuse: Optional[bool],
               dry_run: bool, pairs: Tuple[str, ...], args_file: Optional[str],
               name: Optional[str], tags: Tuple[str, ...], wait_: bool, quiet: bool, as_json: bool) -> None:
    """Dispatch an old run's lattice again, with its arguments (-a overrides some).

    Without --script the code stored in the run is used, as it was at dispatch; with
    --script FILE the lattice of the same name is loaded from FILE, and every task whose code
    and inputs are unchanged keeps its old result: changed tasks and all downstream rerun.
    """
    from covalent_cli.dryrun import load_lattice
    from covalent_cli.redispatch import (merged_inputs, plan_redispatch, stored_inputs,
                                         stored_lattice, write_redispatch)
    from covalent_cli.script import alias_covalent, building

    alias_covalent()
    old = _run(ctx, run_id)
    manifest = old.manifest
    reuse = bool(script_path) if reuse is None else reuse
    new_args, overrides = parse_args(pairs, args_file)
    if script_path:
        lattice, intercepted = load_lattice(script_path, manifest.lattice_name)
        if intercepted and not quiet:
            click.echo(f"note: {script_path} dispatched {intercepted} run(s) on its own while "
                       f"loading; they were not run (only its lattice '{lattice.__name__}' "
                       "is used)", err=True)
    else:
        lattice = _stored(old, stored_lattice)
        if not quiet:
            _note_stored_code(old, manifest, reuse)
    args, kwargs = _stored(old, stored_inputs)
    if new_args:
        args = tuple(new_args)
    args, kwargs = merged_inputs(lattice.workflow_function, args, kwargs, overrides)
    where = script_path or manifest.source_file or f"run {old.dispatch_id}"
    with building(lattice, where):
        prepared, plan = plan_redispatch(old, lattice, args, kwargs, reuse,
                                         name=label(name, "--name"),
                                         tags=tuple(label(t, "--tag") or "" for t in tags))
    quiet = quiet or as_json  # stdout holds the one JSON document
    if dry_run:
        if as_json:
            _echo_json(_plan_document(old, prepared.manifest, plan))
        else:
            _print_plan(old, prepared.manifest, plan)
        return
    run = write_redispatch(old, prepared, plan)
    if as_json:
        if not wait_:  # with --wait, the one document is the result's
            _echo_json({"dispatch_ids": [run.dispatch_id], "from": old.dispatch_id})
    elif quiet:
        click.echo(run.dispatch_id)
    else:
        click.echo(f"Dispatched {run.dispatch_id} (from {old.dispatch_id})")
    if reuse and not quiet:
        total = len(_tasks(prepared.manifest))
        click.echo(f"reused {len(_tasks(prepared.manifest, plan.reused))} of {total} tasks; "
                   f"{len(_tasks(prepared.manifest, plan.reasons))} rerun "
                   f"(`cov redispatch {old.dispatch_id[:8]} --dry-run ...` says why)", err=True)
    if wait_:
        wait_and_report(ctx, [run.dispatch_id], quiet, as_json=as_json)


def _stored(old: RunDir, load: Any) -> Any:
    """The old run's stored lattice or inputs; a stored pickle that no longer loads (a module
    it needs is gone) is one line."""
    try:
        return load(old)
    except Exception as exc:  # noqa: BLE001 - unpickling raises anything
        raise UserError(f"run {old.dispatch_id}: its stored lattice cannot be loaded: "
                        f"{type(exc).__name__}: {exc}",
                        "pass the script with --script FILE") from None


def _note_stored_code(old: RunDir, manifest: Manifest, reuse: bool) -> None:
    """Say that edits are not used: the stored code runs, not the file as it is now."""
    source = manifest.source_file
    changed = False
    if source:
        try:
            created = datetime.fromisoformat(manifest.created).timestamp()
            changed = os.stat(source).st_mtime > created
        except (OSError, ValueError, TypeError):
            pass
    if not (reuse or changed):
        return
    what = f"{source} changed since, but its edits are not used" if changed else \
        "edits to the script are not used"
    hint = f"--script {source}" if source else "--script FILE"
    click.echo(f"note: this runs the code stored in run {old.dispatch_id[:8]} as it was "
               f"dispatched; {what}. To run the edited script: cov redispatch "
               f"{old.dispatch_id[:8]} {hint}", err=True)


def _tasks(manifest: Manifest, among: Optional[Dict[int, Any]] = None) -> List[int]:
    """Executing nodes that are not internal reshaping nodes (of ``among`` if given)."""
    return [n.id for n in manifest.nodes if n.executes and n.kind not in INTERNAL_KINDS
            and (among is None or n.id in among)]


def _plan_document(old: RunDir, new: Manifest, plan: ReusePlan) -> Dict[str, Any]:
    """``cov redispatch --dry-run --json`` (docs/json.md): each task that would rerun with its
    reasons, and the reused ones."""
    return {"dry_run": True, "from": old.dispatch_id, "lattice": new.lattice_name,
            "rerun": [{"node": n, "name": new.node(n).name, "reasons": list(plan.reasons[n])}
                      for n in _tasks(new, plan.reasons)],
            "reused": [{"node": n, "name": new.node(n).name} for n in _tasks(new, plan.reused)]}


def _print_plan(old: RunDir, new: Manifest, plan: ReusePlan) -> None:
    """Snakemake's ``-n`` with reasons: each task that would rerun and why (tasks of one
    function with the same reasons on one line: a fan-out stays readable), the reused ones
    counted by function."""
    rerun = _tasks(new, plan.reasons)
    reused = _tasks(new, plan.reused)
    click.echo(f"Dry run: nothing was written. Redispatch of {old.dispatch_id[:8]} "
               f"({new.lattice_name}): {len(rerun)} task(s) would rerun, "
               f"{len(reused)} would be reused.")
    groups: Dict[Tuple[str, str], List[int]] = {}
    for node_id in rerun:
        groups.setdefault((new.node(node_id).name, "; ".join(plan.reasons[node_id])),
                          []).append(node_id)
    if groups:
        width = max([len(name) for name, _ in groups] + [4])
        click.echo(f"  {'NODE':>6}  {'TASK':{width}}  WHY")
        for (name, why), ids in groups.items():
            if len(ids) == 1:
                click.echo(f"  {ids[0]:>6}  {name:{width}}  {why}")
            else:
                shown = ", ".join(map(str, ids[:3])) + (f" ... {ids[-1]}" if len(ids) > 3 else "")
                click.echo(f"  {'x' + str(len(ids)):>6}  {name:{width}}  {why}  (nodes {shown})")
    if reused:
        counts = Counter(new.node(i).name for i in reused)
        click.echo("reused: " + ", ".join(f"{name} x{n}" if n > 1 else name
                                          for name, n in counts.most_common()))
