"""``cov ui`` as a user starts it, and the graph layout's one change to grandalf."""
from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from runner.manifest import Edge, Manifest, NodeSpec
from tests.conftest import REPO
from webui import layout


def _start_ui(ui_home, *args):
    proc = subprocess.Popen([sys.executable, "-m", "covalent_cli.cli", "ui", "--home",
                             str(ui_home.home), "--port", "0", *args],
                            env=ui_home.env, cwd=str(REPO), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            # a shell that starts jobs in the background ignores SIGINT in them;
                            # this test is about Ctrl-C, so give the UI the default disposition
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 30
    lines = []
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.strip().startswith("http://"):
            return proc, line.strip(), lines
    proc.kill()
    raise AssertionError(f"no URL printed: {lines} {proc.stderr.read()}")


def _stop(proc):
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=15)
    return proc.returncode, out, err


def test_cov_ui_prints_its_url_and_serves_until_ctrl_c(ui_home):
    proc, url, lines = _start_ui(ui_home)
    try:
        assert url.startswith("http://127.0.0.1:") and "/?token=" in url
        assert str(ui_home.home) in "".join(lines)
        with urllib.request.urlopen(url.replace("/?", "/api/runs?"), timeout=10) as resp:
            data = json.loads(resp.read())
        assert ui_home.ids["failing"] in [r["dispatch_id"] for r in data["runs"]]
    finally:
        code, out, err = _stop(proc)
    assert code == 0 and "Stopped." in out, err


def test_cov_ui_with_a_token_refuses_requests_without_it(ui_home):
    proc, url, _ = _start_ui(ui_home, "--token", "abc123")
    try:
        assert url.endswith("/?token=abc123")
        base = url.split("?")[0]
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(base + "api/runs", timeout=10)
        assert refused.value.code == 403
        with urllib.request.urlopen(base + "api/runs?token=abc123", timeout=10) as resp:
            assert resp.status == 200
    finally:
        _stop(proc)


def test_every_address_gets_a_generated_token(ui_home):
    from webui.server import prepare

    tokens = set()
    for host in ("0.0.0.0", "127.0.0.1"):
        server, url, token = prepare(ui_home.home, host, 0, None)
        server.server_close()
        assert token and len(token) >= 24 and url.endswith(f"?token={token}")
        tokens.add(token)
    assert len(tokens) == 2
    server, url, token = prepare(ui_home.home, "127.0.0.1", 0, None, no_token=True)
    server.server_close()
    assert token is None and "token" not in url


def _random_dag(n: int, seed: int) -> Manifest:
    rng = random.Random(seed)
    nodes = []
    for i in range(n):
        parents = [Edge(rng.randrange(i), f"p{k}") for k in range(rng.randint(0, 3))] if i else []
        nodes.append(NodeSpec(i, f"t{i}", "electron", "local", parents))
    return Manifest("x", "x", "wf", nodes, n - 1, {"local": {"type": "local"}})


def test_linear_ranking_gives_grandalf_own_ranks():
    """``layout._Sugiyama`` replaces grandalf's quadratic ranking; the ranks must not change."""
    from grandalf.graphs import Edge as GEdge
    from grandalf.graphs import Graph, Vertex
    from grandalf.layouts import SugiyamaLayout

    manifest = _random_dag(150, 7)
    nodes, edges = layout.graph_elements(manifest)

    def ranks(cls, build):
        vs = {n["id"]: Vertex(n["id"]) for n in nodes}
        for v in vs.values():
            v.view = layout._View(10, 10)
        es = [GEdge(vs[e["source"]], vs[e["target"]]) for e in edges]
        out = {}
        for core in build(list(vs.values()), es):
            sug = cls(core)
            sug.init_all()
            out.update({v.data: sug.grx[v].rank for v in core.sV})
        return out

    stock = ranks(SugiyamaLayout, lambda vs, es: Graph(vs, es).C)
    ours = ranks(layout._Sugiyama,
                 lambda vs, es: [layout._core(a, b) for a, b in layout._components(vs, es)])
    assert ours == stock


def test_layout_packs_disconnected_pieces_and_skips_huge_graphs(monkeypatch):
    nodes = [NodeSpec(i, f"solo{i}", "electron", "local") for i in range(100)]
    manifest = Manifest("x", "x", "wf", nodes, 99, {"local": {"type": "local"}})
    g = layout.layout(manifest)
    assert g["laid_out"] and len(g["nodes"]) == 100
    assert g["width"] < 10 * g["height"]  # a block, not a 100-box strip
    boxes = {(n["x"], n["y"]) for n in g["nodes"]}
    assert len(boxes) == 100  # no two on top of each other
    monkeypatch.setattr(layout, "MAX_LAYOUT_NODES", 50)
    big = layout.layout(manifest)
    assert not big["laid_out"] and "100 nodes" in big["reason"] and "x" not in big["nodes"][0]
    assert layout.layout(manifest, force=True)["laid_out"]
