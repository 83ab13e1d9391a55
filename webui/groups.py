"""Wide fan-outs collapsed: many calls of one function in the same place become one group node.

A 200-wide fan-out laid out box by box is 38,000 px wide: no zoom shows it and no eye reads it.
So before the layout, sibling nodes that do the same thing in the same place of the graph are
merged into one *group* node (``simulate ×200``) that the browser draws with a status bar of
its members; a group can be *expanded*, and is then laid out as one big box holding a grid of
its members' cells (still one vertex for the layout, so the drawing stays compact).

"The same thing in the same place" is a *class*, computed layer by layer from the top: a node's
class is its name (a parameter's: the task parameter it fills), its kind, its executor and the
set of its parents' identities, where a parent's identity is its group if it was grouped, else
its own id. Members of a class have the same depth (the class fixes the parents' classes), so
when a layer is reached every parent's identity is final. A class of at least ``GROUP_MIN``
nodes becomes a group, named ``g<smallest member id>`` (stable across requests, so an expanded
group stays expanded while the page polls).
"""
from __future__ import annotations

import math
import re
from collections import defaultdict
from typing import Any, Dict, FrozenSet, Hashable, List, Sequence, Tuple

from runner.manifest import PARAMETER

GROUP_MIN = 8  # siblings of one class from which they are drawn as one group
CELL_W, CELL_H = 58.0, 22.0  # a member's cell in an expanded group
GROUP_HEAD = 30.0  # the expanded group's title line
GROUP_W, GROUP_H = 190.0, 60.0  # a collapsed group: name ×count, executor, status bar


def group_fanouts(nodes: List[Dict[str, Any]], edges: List[Dict[str, Any]],
                  expand: FrozenSet[str] = frozenset(), minimum: int = GROUP_MIN
                  ) -> Tuple[List[Dict[str, Any]], List[Dict[str, Any]]]:
    """The nodes and edges to lay out: ``nodes`` with each wide fan-out replaced by one group
    node (``kind`` "group", ``members``, ``count``, ``expanded``), edges merged between the
    nodes and groups they now join (``count`` of the merged edges). ``expand``: group ids to
    draw as a grid of their members."""
    by_id = {n["id"]: n for n in nodes}
    parents: Dict[Any, List[Any]] = defaultdict(list)
    consumers: Dict[Any, List[Tuple[str, str]]] = defaultdict(list)
    for e in edges:
        parents[e["target"]].append(e["source"])
        target = by_id[e["target"]]
        for param in e["params"]:
            consumers[e["source"]].append((target["name"], param))
    depth = _depths([n["id"] for n in nodes], edges)

    identity: Dict[Any, Hashable] = {}
    members: Dict[str, List[Any]] = {}
    layers: Dict[int, List[Any]] = defaultdict(list)
    for n in nodes:
        layers[depth[n["id"]]].append(n["id"])
    for level in sorted(layers):
        classes: Dict[Hashable, List[Any]] = defaultdict(list)
        for node_id in layers[level]:
            n = by_id[node_id]
            label: Hashable = n["name"] if n["kind"] != PARAMETER else \
                frozenset(consumers.get(node_id, ()))
            key = (label, n["kind"], n.get("executor"),
                   frozenset(identity[p] for p in parents.get(node_id, ())))
            classes[key].append(node_id)
        for same in classes.values():
            if len(same) >= minimum:
                gid = f"g{min(same)}"
                members[gid] = sorted(same)
                for m in same:
                    identity[m] = gid
            else:
                for m in same:
                    identity[m] = m

    out_nodes: List[Dict[str, Any]] = []
    placed = set()
    for n in nodes:
        ident = identity[n["id"]]
        if ident == n["id"]:
            out_nodes.append(n)
        elif ident not in placed:
            placed.add(ident)
            out_nodes.append(_group_node(str(ident), by_id, members[str(ident)],
                                         str(ident) in expand))
    merged: Dict[Tuple[Hashable, Hashable, bool], Dict[str, Any]] = {}
    for e in edges:
        s, t = identity[e["source"]], identity[e["target"]]
        entry = merged.setdefault((s, t, e["wait"]), {
            "source": s, "target": t, "params": [], "wait": e["wait"], "count": 0})
        entry["count"] += 1
        for p in e["params"]:
            if isinstance(s, str) or isinstance(t, str):
                p = _INDEXED.sub("[…]", p)  # arg[0], arg[1], ... of a list: arg[…]
            if p not in entry["params"] and len(entry["params"]) < 8:
                entry["params"].append(p)
    return out_nodes, list(merged.values())


_INDEXED = re.compile(r"\[\d+\]")


def _group_node(gid: str, by_id: Dict[Any, Dict[str, Any]], ids: Sequence[Any],
                expanded: bool) -> Dict[str, Any]:
    first = by_id[ids[0]]
    name = first["name"] if first["kind"] != PARAMETER else "parameter"
    node: Dict[str, Any] = {
        "id": gid, "name": name, "kind": "group", "member_kind": first["kind"],
        "executor": first.get("executor"), "executor_type": first.get("executor_type"),
        "value": None, "members": list(ids), "count": len(ids), "expanded": expanded,
        "size": (GROUP_W, GROUP_H)}
    if expanded:
        cols = max(4, min(len(ids), math.ceil(math.sqrt(len(ids) * 0.8))))  # about 2:1
        rows = math.ceil(len(ids) / cols)
        node.update(cols=cols, cell_w=CELL_W, cell_h=CELL_H, head=GROUP_HEAD,
                    size=(cols * CELL_W + 8, rows * CELL_H + GROUP_HEAD + 6))
    return node


def _depths(ids: List[Any], edges: List[Dict[str, Any]]) -> Dict[Any, int]:
    """Longest-path depth of each node from the roots (Kahn's order, O(V + E))."""
    children: Dict[Any, List[Any]] = defaultdict(list)
    waiting = {i: 0 for i in ids}
    for e in edges:
        children[e["source"]].append(e["target"])
        waiting[e["target"]] += 1
    depth = {i: 0 for i in ids}
    ready = [i for i in ids if not waiting[i]]
    while ready:
        node = ready.pop()
        for c in children.get(node, ()):
            depth[c] = max(depth[c], depth[node] + 1)
            waiting[c] -= 1
            if not waiting[c]:
                ready.append(c)
    return depth
