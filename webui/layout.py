"""The task graph laid out for drawing: node boxes and edge polylines, top to bottom.

The layout is grandalf's Sugiyama layout (layering, dummy vertices for long edges, crossing
reduction, Brandes-Koepf coordinates), computed here in Python and sent to the browser as plain
coordinates. Why server-side grandalf and not a JavaScript library: dagre and Graphviz-in-wasm
both took 10-40 s on a 1,000-task map/reduce graph in Chromium (labels and wide fan-ins are
their worst case), grandalf takes well under a second; the manifest never changes, so the
layout is computed once per run and cached; and ``cov report`` can inline the coordinates
without shipping a layout engine in every report.

Only one piece of grandalf is replaced: its initial ranking rescans every in-edge of a vertex
each time one of its parents gets a rank, which is quadratic for a reduce node with thousands of
inputs. ``_Sugiyama._rank_init`` gives the same ranks in O(V + E).

Disconnected pieces (one per independent branch once parameters are hidden) are laid out one by
one and packed on shelves, so a thousand independent tasks make a block, not a strip.
"""
from __future__ import annotations

import math
from typing import Any, Dict, FrozenSet, List, Optional, Sequence, Tuple

from runner.manifest import PARAMETER, POSTPROCESS, Manifest

from webui.groups import group_fanouts

NODE_W, NODE_H = 170.0, 46.0  # a task box: name, then "#id · executor"
PARAM_W, PARAM_H = 110.0, 26.0  # a parameter box (shown on request)
X_SPACE, Y_SPACE = 24.0, 46.0  # between boxes of a layer, between layers
GAP = 40.0  # between disconnected pieces
MARGIN = 20.0
MAX_LAYOUT_NODES = 3000  # above this the graph is drawn only when asked (force=True)

Point = Tuple[float, float]


class _View:
    """grandalf's per-vertex and per-edge drawing slot."""

    __slots__ = ("w", "h", "xy", "path")

    def __init__(self, w: float = 0.0, h: float = 0.0) -> None:
        self.w, self.h = w, h
        self.xy: Point = (0.0, 0.0)
        self.path: List[Point] = []

    def setpath(self, points: List[Point]) -> None:
        self.path = points


def graph_elements(manifest: Manifest, parameters: bool = False
                   ) -> Tuple[List[Dict[str, Any]], List[Dict[str, Any]]]:
    """The nodes and edges to draw: parameter nodes only if asked; value edges labelled with
    their parameter names (several between the same pair merged); ``wait_for`` edges too, except
    the result node's waits on every task, which would only add clutter."""
    shown = {n.id for n in manifest.nodes if parameters or n.kind != PARAMETER}
    nodes = []
    edges: Dict[Tuple[int, int], Dict[str, Any]] = {}
    for node in manifest.nodes:
        if node.id not in shown:
            continue
        executor = manifest.executors.get(node.executor or "", {}) if node.executor else {}
        nodes.append({"id": node.id, "name": node.name, "kind": node.kind,
                      "executor": node.executor, "executor_type": executor.get("type"),
                      "value": node.value_repr})
        for edge in node.parents:
            if edge.node in shown:
                entry = edges.setdefault((edge.node, node.id), {
                    "source": edge.node, "target": node.id, "params": [], "wait": False})
                entry["params"].append(edge.param)
        if node.kind != POSTPROCESS:
            for wait in node.waits:
                if wait in shown and (wait, node.id) not in edges:
                    edges[(wait, node.id)] = {"source": wait, "target": node.id, "params": [],
                                              "wait": True}
    return nodes, list(edges.values())


def layout(manifest: Manifest, parameters: bool = False, force: bool = False,
           expand: FrozenSet[str] = frozenset()) -> Dict[str, Any]:
    """The graph as JSON-ready data: ``nodes`` (with x, y = box centre, w, h; wide fan-outs
    as group nodes, see ``webui.groups``), ``edges`` (with ``points``, a polyline from box
    border to box border, and ``label_at``), ``width``, ``height``; ``laid_out`` is False (and
    no coordinates given) for a graph of over ``MAX_LAYOUT_NODES`` boxes unless ``force``.
    ``expand``: the ids of the groups to draw as a grid of their members."""
    nodes, edges = graph_elements(manifest, parameters)
    nodes, edges = group_fanouts(nodes, edges, expand)
    result: Dict[str, Any] = {"nodes": nodes, "edges": edges, "parameters": parameters,
                              "laid_out": False, "width": 0, "height": 0, "reason": None,
                              "expanded": sorted(g for g in expand
                                                 if any(n["id"] == g for n in nodes))}
    if len(nodes) > MAX_LAYOUT_NODES and not force:
        result["reason"] = (f"the graph has {len(nodes)} nodes; drawing more than "
                            f"{MAX_LAYOUT_NODES} is done only on request")
        return result
    if nodes:
        width, height = _place(nodes, edges)
        result.update(width=width, height=height)
    result["laid_out"] = True
    return result


def _place(nodes: List[Dict[str, Any]], edges: List[Dict[str, Any]]) -> Tuple[float, float]:
    """Fill in coordinates (mutates ``nodes`` and ``edges``); returns the drawing's size."""
    from grandalf.graphs import Edge, Vertex

    vertices: Dict[Any, Any] = {}
    for index, node in enumerate(nodes):
        small = node["kind"] == PARAMETER
        v = Vertex(index)  # the node's place in the list: ids are ints, group ids text
        w, h = node.pop("size", None) or ((PARAM_W, PARAM_H) if small else (NODE_W, NODE_H))
        v.view = _View(w, h)
        vertices[node["id"]] = v
    gedges = []
    for edge in edges:
        e = Edge(vertices[edge["source"]], vertices[edge["target"]])
        e.view = _View()
        gedges.append(e)

    pieces = []
    for members, member_edges in _components(list(vertices.values()), gedges):
        component = _core(members, member_edges)
        if len(members) == 1:
            v = members[0]
            v.view.xy = (v.view.w / 2, v.view.h / 2)
        else:
            sug = _Sugiyama(component)
            sug.xspace, sug.yspace = X_SPACE, Y_SPACE
            sug.init_all(roots=[v for v in members if not any(e.v[1] is v for e in v.e)])
            sug.draw(N=1.5 if len(members) <= 500 else 0.5)
        pieces.append(_Piece(component))
    pieces.sort(key=lambda p: p.first)

    # Shelf packing: rows about as wide as the whole drawing would be if it were square.
    area = sum(p.width * p.height for p in pieces)
    row_width = max(max(p.width for p in pieces), math.sqrt(area) * 1.6)
    x = y = MARGIN
    row_h = 0.0
    width = 0.0
    for piece in pieces:
        if x > MARGIN and x + piece.width > row_width + MARGIN:
            x, y = MARGIN, y + row_h + GAP
            row_h = 0.0
        piece.shift(x, y)
        x += piece.width + GAP
        row_h = max(row_h, piece.height)
        width = max(width, x - GAP)
    height = y + row_h

    for node in nodes:
        v = vertices[node["id"]]
        node.update(x=round(v.view.xy[0], 1), y=round(v.view.xy[1], 1), w=v.view.w, h=v.view.h)
    for edge, e in zip(edges, gedges):
        src, dst = e.v[0].view, e.v[1].view
        points = list(e.view.path) or [src.xy, dst.xy]
        if len(points) < 2:
            points = [src.xy, dst.xy]
        points[0] = _border(src, points[1])
        points[-1] = _border(dst, points[-2])
        edge["points"] = [[round(px, 1), round(py, 1)] for px, py in points]
        # The label sits near the target, where the parameter is consumed.
        (ax, ay), (bx, by) = points[-2], points[-1]
        edge["label_at"] = [round(ax + (bx - ax) * 0.7, 1), round(ay + (by - ay) * 0.7, 1)]
    return round(width + MARGIN, 1), round(height + MARGIN, 1)


class _Piece:
    """One connected component's vertices and edges, moved as a block."""

    def __init__(self, component: Any) -> None:
        self.vertices = list(component.sV)
        self.edges = list(component.sE)
        xs0 = [v.view.xy[0] - v.view.w / 2 for v in self.vertices]
        ys0 = [v.view.xy[1] - v.view.h / 2 for v in self.vertices]
        xs1 = [v.view.xy[0] + v.view.w / 2 for v in self.vertices]
        ys1 = [v.view.xy[1] + v.view.h / 2 for v in self.vertices]
        for e in self.edges:
            for px, py in e.view.path:
                xs0.append(px)
                xs1.append(px)
                ys0.append(py)
                ys1.append(py)
        self.x0, self.y0 = min(xs0), min(ys0)
        self.width, self.height = max(xs1) - self.x0, max(ys1) - self.y0
        self.first = min(v.data for v in self.vertices)

    def shift(self, x: float, y: float) -> None:
        dx, dy = x - self.x0, y - self.y0
        for v in self.vertices:
            v.view.xy = (v.view.xy[0] + dx, v.view.xy[1] + dy)
        for e in self.edges:
            e.view.path = [(px + dx, py + dy) for px, py in e.view.path]


def _border(view: _View, toward: Sequence[float]) -> Point:
    """Where the segment from the box centre toward a point leaves the box."""
    cx, cy = view.xy
    dx, dy = toward[0] - cx, toward[1] - cy
    if not dx and not dy:
        return cx, cy
    hw, hh = view.w / 2, view.h / 2
    if abs(dy) * hw > abs(dx) * hh:
        hh = hh if dy > 0 else -hh
        return cx + hh * dx / dy, cy + hh
    hw = hw if dx > 0 else -hw
    return cx + hw, cy + hw * dy / dx


def _components(vertices: List[Any], edges: List[Any]) -> List[Tuple[List[Any], List[Any]]]:
    """The connected components (union-find), each as (vertices, edges) in input order."""
    parent = {id(v): id(v) for v in vertices}

    def find(k: int) -> int:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    for e in edges:
        a, b = find(id(e.v[0])), find(id(e.v[1]))
        if a != b:
            parent[a] = b
    groups: Dict[int, Tuple[List[Any], List[Any]]] = {}
    for v in vertices:
        groups.setdefault(find(id(v)), ([], []))[0].append(v)
    for e in edges:
        groups[find(id(e.v[0]))][1].append(e)
    return list(groups.values())


def _core(vertices: List[Any], edges: List[Any]) -> Any:
    """A grandalf ``graph_core`` for one known-connected component, built in linear time.

    grandalf's own constructors check connectivity by comparing vertex sets once per vertex and
    attach edges after a list search, both quadratic for a node with thousands of inputs; the
    edges here are already de-duplicated and the component known, so neither check is needed.
    """
    from grandalf.graphs import graph_core
    from grandalf.utils.poset import Poset

    core = graph_core.__new__(graph_core)
    core.directed = True
    core.sV = Poset(vertices)
    core.sE = Poset(edges)
    core.degenerated_edges = set()
    for v in vertices:
        v.c = core
    for e in edges:
        e.v[0].e.append(e)
        e.v[1].e.append(e)
    return core


def _sugiyama_class() -> Any:
    from grandalf.layouts import SugiyamaLayout

    class Sugiyama(SugiyamaLayout):
        def _rank_init(self, unranked: List[Any]) -> None:
            """grandalf's ranking (a vertex is ranked in the wave after its last in-edge is
            scanned), with in-edge counters instead of rescans: O(V + E)."""
            assert self.dag
            waiting: Dict[Any, int] = {}
            while unranked:
                wave: List[Any] = []
                queued = set()
                for v in unranked:
                    self.setrank(v)
                    for e in v.e_out():
                        x = e.v[1]
                        left = waiting.get(x)
                        if left is None:
                            left = len(x.e_in())
                        waiting[x] = left - 1
                        if left - 1 == 0 and x not in queued:
                            queued.add(x)
                            wave.append(x)
                unranked = wave

        def rank_all(self, roots: List[Any], optimize: bool = False) -> None:
            """grandalf's rank_all without its list-membership scan of the roots."""
            self._edge_inverter()
            known = set(roots)
            extra = [x for x in self.g.sV if x not in known and not x.e_in()]
            self._rank_init(roots + extra)
            if optimize:
                self._rank_optimize()
            self._edge_inverter()

    return Sugiyama


_SUGIYAMA: Optional[Any] = None


def _Sugiyama(component: Any) -> Any:  # noqa: N802 - a lazily built class
    global _SUGIYAMA
    if _SUGIYAMA is None:
        _SUGIYAMA = _sugiyama_class()
    return _SUGIYAMA(component)
