"""The JSON API and the guards, through the Bottle app object (no server, no browser)."""
from __future__ import annotations

import json

import pytest

from tests.webui.conftest import call, get_json, load_json
from webui import values
from webui.app import create_app


def _node(run_dir, name):
    from runner.rundir import RunDir

    return next(n.id for n in RunDir(run_dir).manifest.nodes if n.name == name)


def test_runs_newest_first_with_sublattice_runs_nested(app, ui_home):
    data = get_json(app, "/api/runs", "per_page=100")
    order = [r["dispatch_id"] for r in data["runs"]]
    ids = ui_home.ids
    assert order.index(ids["bigvalue"]) < order.index(ids["nested"]) < order.index(ids["failing"])
    nested = data["runs"][order.index(ids["nested"])]
    assert [c["lattice"] for c in nested["children"]] == ["inner"]
    child = nested["children"][0]
    assert child["parent"]["dispatch_id"] == ids["nested"]
    assert child["dispatch_id"] not in order  # not listed again at the top level
    assert (child["status"], child["done"], child["total"]) == ("COMPLETED", 2, 2)
    failing = data["runs"][order.index(ids["failing"])]
    assert (failing["status"], failing["done"], failing["total"]) == ("FAILED", 1, 4)


def test_runs_filter_search_and_pages(app, ui_home):
    ids = ui_home.ids
    failed = get_json(app, "/api/runs", "status=FAILED")
    assert ids["failing"] in [r["dispatch_id"] for r in failed["runs"]]
    assert all(r["status"] == "FAILED" for r in failed["runs"])
    assert failed["counts"]["FAILED"] >= 1 and failed["counts"]["COMPLETED"] >= 2
    by_name = get_json(app, "/api/runs", "q=NESTED")
    assert [r["dispatch_id"] for r in by_name["runs"]] == [ids["nested"]]
    child_id = get_json(app, "/api/runs", "q=nested")["runs"][0]["children"][0]["dispatch_id"]
    by_child = get_json(app, "/api/runs", f"q={child_id[:13]}")  # matches through the child
    assert [r["dispatch_id"] for r in by_child["runs"]] == [ids["nested"]]
    by_id = get_json(app, "/api/runs", f"q={ids['failing'][:8]}")
    assert [r["dispatch_id"] for r in by_id["runs"]] == [ids["failing"]]
    first = get_json(app, "/api/runs", "per_page=1&page=1")
    second = get_json(app, "/api/runs", "per_page=1&page=2")
    assert first["pages"] == first["total"] >= 3
    assert first["runs"][0]["dispatch_id"] != second["runs"][0]["dispatch_id"]
    assert get_json(app, "/api/runs", "per_page=1&page=999")["page"] == first["pages"]


def test_run_detail_of_a_failed_run(app, ui_home):
    d = get_json(app, f"/api/runs/{ui_home.ids['failing']}")
    assert d["status"] == "FAILED" and d["result"] is None
    assert "divide" in d["error"]
    assert [(f["name"], f["exception"]) for f in d["failed"]] == \
        [("divide", "ZeroDivisionError: division by zero")]
    assert d["doc"].startswith("divide() raises")
    assert d["started"] <= d["ended"] and d["runtime"] >= 0
    assert ui_home.ids["failing"] in d["manifest_yaml"]
    source = load_json(app, f"/api/runs/{ui_home.ids['failing']}/source")
    assert "def failing(x=1):" in source["text"] and source["error"] is None


def test_run_detail_result_and_child_runs(app, ui_home):
    d = get_json(app, f"/api/runs/{ui_home.ids['nested']}")
    assert d["status"] == "COMPLETED" and d["result"]["repr"] == "10"
    [child] = d["children"]
    assert child["status"] == "COMPLETED"
    back = get_json(app, f"/api/runs/{child['dispatch_id']}")
    assert back["parent"]["dispatch_id"] == ui_home.ids["nested"]
    assert back["parent"]["node"] == child["node"]


def test_state_is_one_object_full_then_only_changes(app, ui_home):
    path = f"/api/runs/{ui_home.ids['failing']}/state"
    full = get_json(app, path)
    divide = _node(ui_home.run_dir("failing"), "divide")
    assert full["full"] and full["tasks"][str(divide)][0] == "FAILED"
    assert full["counts"] == {"COMPLETED": 1, "FAILED": 1, "NOT_RUN": 2}
    combine = _node(ui_home.run_dir("failing"), "combine")
    assert full["tasks"][str(combine)] == ["NOT_RUN", None, None]
    assert full["not_run"][str(combine)] == divide
    assert (full["done"], full["total"], full["status"]) == (1, 4, "FAILED")
    same = get_json(app, path, f"since={full['version']}")
    assert same["tasks"] == {} and not same["full"] and same["version"] == full["version"]
    ahead = get_json(app, path, f"since={full['version'] + 50}")  # a stale client: all again
    assert ahead["full"] and ahead["tasks"] == full["tasks"]


def test_graph_hides_parameters_unless_asked_and_labels_edges(app, ui_home):
    run = ui_home.ids["failing"]
    g = get_json(app, f"/api/runs/{run}/graph")
    assert g["laid_out"] and not g["parameters"]
    assert sorted(n["name"] for n in g["nodes"]) == \
        [":postprocess:reconstruct", "combine", "divide", "ok"]
    by_name = {n["name"]: n for n in g["nodes"]}
    into_combine = {tuple(e["params"]) for e in g["edges"] if e["target"] == by_name["combine"]["id"]}
    assert into_combine == {("a",), ("b",)}
    for n in g["nodes"]:
        assert n["w"] > 0 and 0 < n["x"] < g["width"] and 0 < n["y"] < g["height"]
    for e in g["edges"]:
        assert len(e["points"]) >= 2
    # layered top to bottom: a task sits below its inputs
    assert by_name["combine"]["y"] > by_name["divide"]["y"]
    with_params = get_json(app, f"/api/runs/{run}/graph", "parameters=1")
    params = [n for n in with_params["nodes"] if n["kind"] == "parameter"]
    assert sorted(p["value"] for p in params) == ["0", "1", "1"]
    assert {"x", "a", "b"} <= {p for e in with_params["edges"] for p in e["params"]}


def test_task_view_of_a_failed_task(app, ui_home):
    run = ui_home.ids["failing"]
    divide = _node(ui_home.run_dir("failing"), "divide")
    t = get_json(app, f"/api/runs/{run}/tasks/{divide}")
    assert (t["name"], t["status"], t["executor"]) == ("divide", "FAILED", "local")
    assert t["host"] and t["started"] <= t["ended"]
    assert "ZeroDivisionError: division by zero" in t["traceback"]
    assert "return a / b" in t["traceback"]
    assert "dividing 1 by 0" in t["stdout"]["text"]
    assert "ZeroDivisionError" in t["stderr"]["text"]
    assert [(i["param"], i["value"]["repr"]) for i in t["inputs"]] == [("a", "1"), ("b", "0")]
    assert t["result"] is None
    # the source as dispatched (sources.json): viewing unpickles no function
    assert t["source"]["text"].startswith("@ct.electron\ndef divide(a, b):")
    assert t["source"]["captured"] and t["source_loadable"]
    source = load_json(app, f"/api/runs/{run}/tasks/{divide}/source")
    assert source["text"].startswith("@ct.electron\ndef divide(a, b):")
    assert [c["name"] for c in t["consumers"]] == ["combine"]


def test_task_view_of_a_completed_task(app, ui_home):
    run = ui_home.ids["failing"]
    ok = _node(ui_home.run_dir("failing"), "ok")
    t = get_json(app, f"/api/runs/{run}/tasks/{ok}")
    assert t["status"] == "COMPLETED" and t["traceback"] is None
    assert (t["result"]["repr"], t["result"]["type"]) == ("2", "int")
    assert t["stdout"]["text"] == "ok got 1\n"


def test_large_result_is_truncated_with_its_size(app, ui_home):
    run = ui_home.ids["bigvalue"]
    big = _node(ui_home.run_dir("bigvalue"), "big")
    preview = get_json(app, f"/api/runs/{run}/tasks/{big}")["result"]
    assert preview["preview"] and preview["type"] == "list"
    assert preview["size"] > 100_000 and preview["size_text"].endswith("KiB")
    assert preview["repr"].startswith("[0, 1, 2, ") and len(preview["repr"]) < 300
    r = load_json(app, f"/api/runs/{run}/tasks/{big}/value")
    assert r["truncated"] and r["type"] == "list" and r["size"] == preview["size"]
    assert len(r["repr"]) == values.REPR_LIMIT and r["repr"].startswith("[0, 1, 2, ")


def test_sublattice_task_links_its_child_run(app, ui_home):
    run = ui_home.ids["nested"]
    from runner.rundir import RunDir

    sub = next(n.id for n in RunDir(ui_home.run_dir("nested")).manifest.nodes
               if n.kind == "sublattice")
    t = get_json(app, f"/api/runs/{run}/tasks/{sub}")
    child = get_json(app, f"/api/runs/{run}")["children"][0]["dispatch_id"]
    assert t["child"] == {"dispatch_id": child, "status": "COMPLETED"}
    assert (t["result"]["repr"], t["result"]["type"]) == ("10", "int")  # the child's preview
    source = load_json(app, f"/api/runs/{run}/tasks/{sub}/source")
    assert "def inner(x):" in source["text"]  # the sublattice's lattice, not cov's glue
    assert "def inner(x):" in t["source"]["text"]  # the same, as captured at dispatch
    assert t["source"]["file"].endswith("make_runs.py") and t["source"]["captured"]


@pytest.mark.parametrize("path", [
    "/api/runs/nope", "/api/runs/{run}/tasks/999", "/api/runs/{run}/tasks/abc",
    "/api/runs/{run}/tasks/-1", "/api/runs/{run}/graph/x", "/run/nope",
])
def test_unknown_things_are_404(app, ui_home, path):
    status, headers, body = call(app, path.format(run=ui_home.ids["failing"]))
    assert status == 404


def test_config_page_masks_secrets(ui_home, monkeypatch, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("executors:\n  cluster:\n    type: ssh\n    hostname: login1\n"
                      "    password: hunter2\n    ssh_key_passphrase: sesame\n")
    monkeypatch.setenv("COV_CONFIG", str(config))
    app = create_app(ui_home.home)
    data = get_json(app, "/api/config")
    assert data["config"]["executors"]["cluster"] == {
        "type": "ssh", "hostname": "login1", "password": "***", "ssh_key_passphrase": "***"}
    status, _, page = call(app, "/config")
    assert status == 200 and b"login1" in page
    assert b"hunter2" not in page and b"sesame" not in page


def test_token_checked_on_every_request(ui_home):
    app = create_app(ui_home.home, token="s3cret", host="0.0.0.0")
    for path in ("/", "/api/runs", "/static/style.css", f"/run/{ui_home.ids['failing']}"):
        status, _, _ = call(app, path, token=None)
        assert status == 403, path
    status, _, _ = call(app, "/api/runs", query="token=wrong", token=None)
    assert status == 403
    status, headers, _ = call(app, "/run/" + ui_home.ids["failing"], query="token=s3cret&x=1",
                              token=None)
    assert status == 303 and headers["Location"].endswith(f"/run/{ui_home.ids['failing']}?x=1")
    cookie = headers["Set-Cookie"].split(";")[0]
    assert "s3cret" in cookie and "httponly" in headers["Set-Cookie"].lower()
    assert call(app, "/", headers={"Cookie": cookie}, token=None)[0] == 200
    assert call(app, "/api/runs", token="s3cret")[0] == 200
    assert call(app, "/api/runs", query="token=s3cret", token=None)[0] == 200
    # off loopback any Host is fine once the token is checked (how such a UI is reached)
    assert call(app, "/api/runs", headers={"Cookie": cookie, "Host": "node12:8765"},
                token=None)[0] == 200


def test_on_loopback_only_loopback_host_names(app):
    assert call(app, "/api/runs", headers={"Host": "evil.example:8765"})[0] == 403
    assert call(app, "/api/runs", headers={"Host": "localhost:9999"})[0] == 200
    assert call(app, "/api/runs", headers={"Host": "[::1]:8765"})[0] == 200


def test_security_headers(app, ui_home):
    for path in ("/", "/api/runs", "/nope", f"/run/{ui_home.ids['failing']}/files/"):
        _, headers, _ = call(app, path)
        assert headers["X-Content-Type-Options"] == "nosniff", path
        assert "script-src 'self'" in headers["Content-Security-Policy"], path
        assert headers["Referrer-Policy"] == "no-referrer"


def test_cancel_is_a_post_with_a_header_and_the_token(ui_home):
    from runner.rundir import RunDir

    run = ui_home.ids["bigvalue"]
    app = create_app(ui_home.home, token="tok")
    path = f"/api/runs/{run}/cancel"
    assert call(app, path, token="tok")[0] == 405  # GET
    assert call(app, path, method="POST", headers={"X-Cov-Request": "1"}, token=None)[0] == 403
    status, _, body = call(app, path, method="POST", token="tok")
    assert status == 400 and b"X-Cov-Request" in body
    assert RunDir(ui_home.run_dir("bigvalue")).cancel_request() is None
    status, _, body = call(app, path, method="POST", body=b'{"nodes": [0]}', token="tok",
                           headers={"X-Cov-Request": "1", "Content-Type": "application/json"})
    assert status == 200 and json.loads(body)["message"].startswith("Cancellation requested")
    assert RunDir(ui_home.run_dir("bigvalue")).cancel_request()["nodes"] == [0]


def test_api_files(app, ui_home):
    run = ui_home.ids["failing"]
    top = get_json(app, f"/api/runs/{run}/files")
    names = {e["name"]: e for e in top["entries"]}
    assert {"manifest.yaml", "events.jsonl", "logs", "results"} <= set(names)
    assert names["logs"]["dir"] and not names["manifest.yaml"]["dir"]
    text = get_json(app, f"/api/runs/{run}/files/manifest.yaml")
    assert text["kind"] == "text" and run in text["text"]
    ok = _node(ui_home.run_dir("failing"), "ok")
    pickled = get_json(app, f"/api/runs/{run}/files/results/{ok}.pkl")  # packed: its 1.0 name
    assert pickled["kind"] == "pickle" and pickled["value"]["repr"] == "2"
    assert pickled["header"]["ok"] is True
    packs = [e["name"] for e in get_json(app, f"/api/runs/{run}/files/results")["entries"]]
    assert packs and all(n.startswith("pack-") and n.endswith(".bin") for n in packs), packs
    listed = get_json(app, f"/api/runs/{run}/files/results/{packs[0]}")
    assert listed["kind"] == "pickle" and listed["text"].startswith(f"results/{packs[0]} packs")
    assert "attempt 1: ok" in listed["text"]
    pack = get_json(app, f"/api/runs/{run}/files/tasks.pkl")
    assert "node 2 divide: function" in pack["text"]


def test_only_a_few_runs_keep_their_manifest_in_memory(ui_home, monkeypatch):
    from webui import live as live_mod
    from webui.live import RunCache

    monkeypatch.setattr(live_mod, "HEAVY_RUNS", 1)
    cache = RunCache(ui_home.home)
    first = cache.open(ui_home.ids["failing"])
    assert first.layout(False, False)["laid_out"]
    second = cache.open(ui_home.ids["nested"])
    assert second.manifest.lattice_name == "nested"
    assert first._data is None and not first._layouts  # dropped, read again on demand
    assert cache.open(ui_home.ids["failing"]).manifest.lattice_name == "failing"


def test_an_unreadable_run_is_listed_and_explained(tmp_path):
    home = tmp_path / "home"
    broken = home / "broken-run"
    broken.mkdir(parents=True)
    (broken / "manifest.yaml").write_text("format_version: '1.0'\ndispatch_id: broken-run\n"
                                          "lattice: {name: wf}\noutput_node: 0\n"
                                          "task_count: 1\nnodes:\n  - {not json\n")
    garbage = home / "garbage-run"
    garbage.mkdir()
    (garbage / "manifest.yaml").write_text("{{{")
    app = create_app(home)
    runs = {r["dispatch_id"]: r for r in get_json(app, "/api/runs")["runs"]}
    assert runs["garbage-run"]["status"] == "UNREADABLE"
    assert "corrupted" in runs["garbage-run"]["error"]
    assert runs["broken-run"]["lattice"] == "wf"
    status, _, body = call(app, "/api/runs/broken-run/graph")
    assert status == 500 and json.loads(body)["error"].startswith("cannot read the run")
    assert call(app, "/api/runs/garbage-run")[0] == 404
