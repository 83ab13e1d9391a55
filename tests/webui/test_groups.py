"""Wide fan-outs as group nodes (webui/groups.py) and what the layout makes of them."""
from __future__ import annotations

from runner.manifest import Edge, Manifest, NodeSpec
from runner.query import NOT_CAPTURED, dispatched_source
from webui import layout


def _fan(width: int) -> Manifest:
    """prepare -> simulate x width -> analyze x width -> a list -> summarize."""
    nodes = [NodeSpec(0, "prepare", "electron", "local")]
    sims = list(range(1, width + 1))
    nodes += [NodeSpec(i, "simulate", "electron", "local", parents=[Edge(0, "data")])
              for i in sims]
    nodes += [NodeSpec(width + i, "analyze", "electron", "local", parents=[Edge(i, "x")])
              for i in sims]
    collect = 2 * width + 1
    nodes.append(NodeSpec(collect, ":electron_list:", "collection", "local",
                          parents=[Edge(width + i, f"arg[{i - 1}]") for i in sims]))
    nodes.append(NodeSpec(collect + 1, "summarize", "electron", "local",
                          parents=[Edge(collect, "values")]))
    return Manifest("x", "x", "wf", nodes, collect + 1, {"local": {"type": "local"}})


def test_a_200_wide_fan_out_lays_out_narrow_as_groups():
    g = layout.layout(_fan(200))
    assert g["laid_out"]
    groups = [n for n in g["nodes"] if n["kind"] == "group"]
    assert [(n["name"], n["count"], n["id"]) for n in groups] == \
        [("simulate", 200, "g1"), ("analyze", 200, "g201")]
    assert len(g["nodes"]) == 5 and g["width"] < 400, g["width"]  # was 38,816 px box by box
    edges = {(e["source"], e["target"]): e for e in g["edges"]}
    assert edges[("g1", "g201")]["count"] == 200 and edges[("g1", "g201")]["params"] == ["x"]
    assert edges[(0, "g1")]["count"] == 200
    assert edges[("g201", 401)]["params"] == ["arg[…]"]

    opened = layout.layout(_fan(200), expand=frozenset({"g1", "g999"}))
    assert opened["expanded"] == ["g1"]
    box = next(n for n in opened["nodes"] if n["id"] == "g1")
    assert box["expanded"] and box["cols"] * box["cell_w"] <= box["w"]
    assert box["w"] < 1000 and box["h"] < box["w"]  # a grid about twice as wide as high


def test_small_fan_outs_and_different_functions_stay_boxes():
    g = layout.layout(_fan(5))
    assert not [n for n in g["nodes"] if n["kind"] == "group"]
    nodes = [NodeSpec(i, f"task{i}", "electron", "local") for i in range(20)]
    distinct = Manifest("x", "x", "wf", nodes, 19, {"local": {"type": "local"}})
    assert len(layout.layout(distinct)["nodes"]) == 20


def test_a_run_without_sources_says_so():
    spec = NodeSpec(0, "f", "electron", "local", fingerprint="abc")
    assert dispatched_source(None, spec) == {"text": None, "file": None, "line": None,
                                             "error": NOT_CAPTURED, "captured": False}
    recorded = {"functions": {"abc": {"text": "def f(): pass\n", "file": "/w.py", "line": 3}},
                "workflow": {"text": None, "error": "defined interactively"}}
    assert dispatched_source(recorded, spec)["text"] == "def f(): pass\n"
    assert dispatched_source(recorded)["error"] == "defined interactively"
    assert dispatched_source(recorded, NodeSpec(1, ":parameter:1", "parameter")) is None
    junk = {"functions": {"abc": {"text": 5, "line": "x"}}}
    assert dispatched_source(junk, spec)["text"] is None  # a damaged file shows nothing odd
