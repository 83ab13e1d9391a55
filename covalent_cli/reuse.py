"""Which tasks of a redispatch can take an old run's results, and why the others rerun.

A node's *key* is a hash of its name, kind, code fingerprint (a parameter: its value's pickle)
and the keys of its inputs and waits, in order: equal keys mean the same code on the same
inputs, however the nodes are numbered (a task added to the script shifts every id after it).
A new task is reused when an old node with its key completed with a result on file and every
task it depends on is reused too. Each other task gets reasons, found by comparing it with its
*counterpart*: the old node of the same name and occurrence (the third ``square`` call with the
third), as Snakemake's ``-n`` lists them.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

from runner.manifest import (ATTRIBUTE, COLLECTION, OPERATOR, PARAMETER, POSTPROCESS, SUBLATTICE,
                             Manifest, NodeSpec)
from runner.rundir import RunDir
from runner.state import COMPLETED, FAILED

from covalent_cli.fingerprint import FP_VERSION

# Nodes that only reshape values (lists, items, operators, the final reconstruct): listed by
# the task that consumes them, not on their own.
INTERNAL_KINDS = frozenset({COLLECTION, ATTRIBUTE, OPERATOR, POSTPROCESS})

# The reasons a task reruns (the words ``--dry-run`` prints; docs/rerun.md lists them).
CODE_CHANGED = "code changed"
OLD_FINGERPRINT = "code fingerprint unknown (run from an older cov)"
INPUT_CHANGED = "input changed"
UPSTREAM = "upstream reran"
FAILED_BEFORE = "failed before"
NOT_FINISHED = "did not complete before"
NEW_TASK = "new task"
SUBLATTICE_REASON = "sublattice (always reruns)"
NO_RESULT = "old result missing"
NOT_ASKED = "reuse is off (pass --reuse or --script)"


@dataclass
class ReusePlan:
    """``reused``: new node id -> the old node whose result it takes; ``reasons``: for each
    other executing node, why it reruns (never empty)."""

    reused: Dict[int, int] = field(default_factory=dict)
    reasons: Dict[int, List[str]] = field(default_factory=dict)


def plan_reuse(old: RunDir, new: Manifest, new_pack: bytes, enabled: bool = True) -> ReusePlan:
    """The reuse plan of ``new`` (its pack ``new_pack``) against the finished or failed ``old``."""
    if not enabled:
        return ReusePlan(reasons={n.id: [NOT_ASKED] for n in new.nodes if n.executes})
    om = old.manifest
    state = old.state()
    order = topological_order(new)
    old_keys = node_keys(om, old.read_blob)
    new_keys = node_keys(new, lambda b: new_pack[b[0]:b[0] + b[1]], order)
    by_key: Dict[str, List[int]] = {}
    for node in om.nodes:
        if node.executes:
            by_key.setdefault(old_keys[node.id], []).append(node.id)
    counterparts = _counterparts(om, new)
    versions = (om.versions.get("python"), new.versions.get("python"))
    python = f" (or Python {versions[0]} -> {versions[1]})" \
        if versions[0] and versions[0] != versions[1] else ""
    checked: Dict[int, bool] = {}

    def has_result(old_id: int) -> bool:
        """The old node completed with its value on file (a sublattice's value lives in its
        child run, which is not taken over). One read per old node."""
        found = checked.get(old_id)
        if found is None:
            task = state.tasks.get(old_id)
            header = old.outcome_header(old_id) if task and task.status == COMPLETED else None
            found = checked[old_id] = bool(header and header.get("ok") and
                                           not header.get("child"))
        return found

    plan = ReusePlan()
    for node_id in order:
        node = new.node(node_id)
        if not node.executes:
            continue
        upstream = [p for p in [e.node for e in node.parents] + list(node.waits)
                    if new.node(p).executes and p not in plan.reused]
        candidates = by_key.get(new_keys[node_id], [])
        done = next((c for c in candidates if has_result(c)), None)
        if done is not None and not upstream:
            plan.reused[node_id] = done
            continue
        reasons: List[str] = []
        if upstream:
            reasons += _upstream_reasons(new, plan, node, upstream)
        if node.kind == SUBLATTICE:
            reasons.append(SUBLATTICE_REASON)
        elif candidates and done is None:
            status = state.tasks[candidates[0]].status if candidates[0] in state.tasks else None
            if status == FAILED:
                reasons.append(FAILED_BEFORE)
            elif status == COMPLETED:
                reasons.append(NO_RESULT)
            elif not upstream:  # else it did not run because its upstream failed: said
                reasons.append(NOT_FINISHED)
        elif not candidates:
            reasons += _what_differs(om, new, node, counterparts.get(node_id), old_keys,
                                     new_keys, explained=bool(reasons), python=python)
        plan.reasons[node_id] = _unique(reasons) or [NO_RESULT]
    return plan


def _what_differs(om: Manifest, new: Manifest, node: NodeSpec, previous: Optional[NodeSpec],
                  old_keys: Dict[int, str], new_keys: Dict[int, str],
                  explained: bool, python: str) -> List[str]:
    """Why ``node`` has no old twin, comparing it with its counterpart ``previous``
    (``explained``: an upstream rerun already says why; ``python``: the Python versions, if
    they differ: other bytecode is other code to the fingerprint)."""
    if previous is None:
        return [NEW_TASK]
    reasons: List[str] = []
    if previous.fingerprint != node.fingerprint:
        old_style = not (previous.fingerprint or "").startswith(FP_VERSION)
        reasons.append(OLD_FINGERPRINT if old_style else CODE_CHANGED + python)
    old_inputs = {(e.param, e.type, e.index): e.node for e in previous.parents}
    new_inputs = {(e.param, e.type, e.index): e.node for e in node.parents}
    if set(old_inputs) != set(new_inputs):
        reasons.append(f"{INPUT_CHANGED} (arguments {_signature(previous)} -> {_signature(node)})")
    else:
        changed = [slot[0] for slot, p in new_inputs.items()
                   if old_keys[old_inputs[slot]] != new_keys[p]
                   and not new.node(p).executes]
        if changed:
            reasons.append(f"{INPUT_CHANGED} ({', '.join(changed)})")
    if not reasons and not explained:  # same code and direct inputs: something further up
        reasons.append(INPUT_CHANGED)
    return reasons


def _upstream_reasons(new: Manifest, plan: ReusePlan, node: NodeSpec,
                      upstream: List[int]) -> List[str]:
    """``upstream reran (name #id)`` for real tasks. A reshaping node (a list of arguments,
    an item of a result) passes its reasons on: a changed list element is an input of
    ``node`` changing."""
    reasons: List[str] = []
    names: List[str] = []
    for p in upstream:
        if new.node(p).kind not in INTERNAL_KINDS:
            names.append(f"{new.node(p).name} #{p}")
            continue
        for reason in plan.reasons.get(p, ()):
            if reason.startswith(INPUT_CHANGED):
                params = [e.param for e in node.parents if e.node == p]
                reasons.append(f"{INPUT_CHANGED} ({', '.join(params)})" if params
                               else INPUT_CHANGED)
            elif reason != NEW_TASK:
                reasons.append(reason)
    if names:
        more = f" and {len(names) - 2} more" if len(names) > 2 else ""
        reasons.insert(0, f"{UPSTREAM} ({', '.join(names[:2])}{more})")
    return reasons


def _signature(node: NodeSpec) -> str:
    return "(" + ", ".join(e.param for e in node.parents) + ")"


def _unique(items: List[str]) -> List[str]:
    seen: Dict[str, None] = {}
    for item in items:
        seen.setdefault(item, None)
    merged = list(seen)
    if any(r.startswith(UPSTREAM) for r in merged):  # a plain "upstream reran" says no more
        merged = [r for r in merged if r != UPSTREAM]
    return merged


def _counterparts(om: Manifest, new: Manifest) -> Dict[int, NodeSpec]:
    """New executing node id -> the old node of the same name and occurrence number."""
    def occurrences(m: Manifest) -> Dict[Tuple[str, int], NodeSpec]:
        seen: Dict[str, int] = {}
        found: Dict[Tuple[str, int], NodeSpec] = {}
        for n in m.nodes:
            if n.executes:
                k = seen.get(n.name, 0)
                seen[n.name] = k + 1
                found[(n.name, k)] = n
        return found

    old_by = occurrences(om)
    return {n.id: old_by[k] for k, n in occurrences(new).items() if k in old_by}


def node_keys(manifest: Manifest, read: Callable[[Tuple[int, int]], bytes],
              order: Optional[List[int]] = None) -> Dict[int, str]:
    """Every node's key (see the module docstring); ``read`` gives a blob's bytes, ``order``
    is ``topological_order(manifest)`` if known."""
    keys: Dict[int, str] = {}
    for node_id in order if order is not None else topological_order(manifest):
        node = manifest.node(node_id)
        if node.kind == PARAMETER:
            own = hashlib.sha1(read(node.blob)).hexdigest() if node.blob else "-"
        else:
            own = node.fingerprint or "-"
        parts = [node.name, node.kind, own]
        parts += [f"{e.param}|{e.type}|{e.index}|{keys[e.node]}" for e in node.parents]
        parts.append("waits")
        parts += sorted(keys[w] for w in node.waits)
        keys[node_id] = hashlib.sha1("\x00".join(parts).encode()).hexdigest()
    return keys


def topological_order(manifest: Manifest) -> List[int]:
    """Node ids, every node after its parents and waits (ids are not: Covalent numbers a
    task before the nodes made for its arguments)."""
    order: List[int] = []
    seen: Dict[int, int] = {}  # 1 = on the stack, 2 = done
    for root in range(len(manifest.nodes)):
        if root in seen:
            continue
        stack = [(root, False)]
        while stack:
            node_id, expanded = stack.pop()
            if expanded:
                seen[node_id] = 2
                order.append(node_id)
                continue
            if seen.get(node_id):
                continue
            seen[node_id] = 1
            stack.append((node_id, True))
            node = manifest.node(node_id)
            for dep in [e.node for e in node.parents] + list(node.waits):
                if not seen.get(dep):
                    stack.append((dep, False))
    return order
