"""A run directory from someone else: it may hold markup in every field, symlinks out of it,
and pickles that run code when loaded. Viewing it (UI, report, ``cov status/logs/result``) runs
none of it and reads nothing outside it.

The runs are real runs copied and then doctored the way a hostile colleague (or a damaged disk)
would; the browser is real headless Chromium.
"""
from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect

from runner import layout, outcome
from runner.manifest import Manifest
from runner.rundir import RunDir
from tests.conftest import REPO
from tests.webui.conftest import call, get_json

PAYLOAD = ('<img src=x onerror="window.__pwned=1"><b class="injected">x</b>'
           '<script>window.__pwned=2</script>"\' ><svg onload="window.__pwned=3">')
BAD_NAME = '<img src=x onerror="window.__pwned=4">.txt'


def _copy_run(ui_home, name: str, new_id: str) -> Path:
    target = ui_home.home / new_id
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(ui_home.run_dir(name), target, symlinks=True)
    text = (target / "manifest.yaml").read_text()
    (target / "manifest.yaml").write_text(text.replace(ui_home.ids[name], new_id))
    return target


def _unpack(run: Path) -> None:
    """Turn a format 2.0 run's packed outcomes and logs into per-node files (as 1.0 has them;
    readers take both), so that the fixture can write markup into each one."""
    data = RunDir(run)
    nodes = [n.id for n in data.manifest.nodes]
    for node in nodes:
        loc = data.outcome_location(node)
        if loc is not None:  # the record's bytes are an outcome file's, failures' too
            name, offset, length = loc
            record = (run / "results" / name).read_bytes()[offset:offset + length]
            (run / "results" / f"{node}.pkl").write_bytes(record)
        for stream, suffix in (("stdout", "out"), ("stderr", "err")):
            if data.log_location(node, stream) is not None:
                (run / "logs" / f"{node}.{suffix}").write_text(data.read_log(node, stream))
    for folder in (run / "results", run / "logs"):
        for entry in folder.iterdir():
            if entry.name.startswith(layout.PACKED_PREFIX):
                entry.unlink()
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    for event in events:
        event.pop("at", None)
        event.pop("log_at", None)
    (run / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))


@pytest.fixture(scope="module")
def hostile(ui_home) -> str:
    """The failed run with markup in every field the UI shows: lattice name and doc, inputs,
    parent id, node names, executor names and types, parameter reprs, statuses, error texts,
    hosts, value previews and types, logs and a file name. (Kinds are checked when the manifest
    is read: one that is not a kind makes the run UNREADABLE; the graph's drawing of any kind
    is tested on its own below.)"""
    run = _copy_run(ui_home, "failing", "hostile-run")
    _unpack(run)  # per-node files, as format 1.0 has them, for the markup written below
    manifest = Manifest.from_yaml((run / "manifest.yaml").read_text())
    manifest.lattice_name = manifest.doc = PAYLOAD
    manifest.inputs = {"args": [PAYLOAD], "kwargs": {PAYLOAD: PAYLOAD}}
    manifest.parent = {"dispatch_id": PAYLOAD, "node": 0}
    manifest.executors = {PAYLOAD: {"type": PAYLOAD, PAYLOAD: PAYLOAD}}
    for node in manifest.nodes:
        node.name = PAYLOAD + str(node.id)
        if node.executor:
            node.executor = PAYLOAD
        if node.kind == "parameter":
            node.value_repr = PAYLOAD
    (run / "manifest.yaml").write_text(manifest.to_yaml())
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    for event in events:
        if event.get("ev") == "claim":
            event["host"] = PAYLOAD
        if event.get("ev") == "end":
            event.update(exception=PAYLOAD, error=PAYLOAD, host=PAYLOAD, pid=1,
                         reused=True, reused_from=PAYLOAD, cached_from=f"{PAYLOAD}/1")
        if event.get("ev") == "run" and event.get("status") == "FAILED":
            event["error"] = PAYLOAD
    (run / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    for result in (run / "results").iterdir():
        line, _, payload = result.read_bytes().partition(b"\n")
        header = json.loads(line)
        header.update(host=PAYLOAD, preview={"type": PAYLOAD, "repr": PAYLOAD})
        if not header["ok"]:
            header["error"] = PAYLOAD
        outcome.write_outcome(str(result), header, payload)
    for log in (run / "logs").iterdir():
        log.write_text(PAYLOAD + "\n")
    (run / BAD_NAME).write_text(PAYLOAD)
    sources = {"workflow": {"text": PAYLOAD, "file": PAYLOAD, "line": 1},
               "functions": {n.fingerprint: {"text": PAYLOAD, "file": PAYLOAD, "line": PAYLOAD}
                             for n in manifest.nodes if n.fingerprint}}
    (run / "sources.json").write_text(json.dumps(sources))
    # Kinds and statuses are checked where they are read: markup there makes the run UNREADABLE,
    # and the reason, which quotes it, is shown (the graph's drawing of any kind and status is
    # tested on its own below).
    bad = _copy_run(ui_home, "failing", "hostile-kind")
    text = (bad / "manifest.yaml").read_text()
    (bad / "manifest.yaml").write_text(text.replace('"kind": "electron"',
                                                    '"kind": ' + json.dumps(PAYLOAD), 1))
    return run.name


def _assert_nothing_ran(page) -> None:
    assert page.evaluate("window.__pwned") is None
    assert page.locator(".injected").count() == 0
    assert page.locator("img[src=x]").count() == 0


def test_markup_in_a_run_runs_no_script_in_the_ui(chromium_page, served, hostile):
    page = chromium_page
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(f"{served}/?q=hostile")
    page.locator('#runs-body tr[data-id="hostile-run"]').wait_for()
    page.locator('#runs-body tr[data-id="hostile-kind"]').wait_for()
    assert '<b class="injected">' in page.locator("#runs-body").inner_text()  # shown as text
    _assert_nothing_ran(page)
    page.goto(f"{served}/run/hostile-kind")  # the reason it is unreadable quotes the kind
    expect(page.locator("#tab-details .error-text")).to_contain_text('<b class="injected">')
    _assert_nothing_ran(page)

    page.goto(f"{served}/run/{hostile}")
    page.locator("#graph .node").first.wait_for()
    page.locator("#show-params").check()
    page.locator("#graph .node.kind-parameter").first.wait_for()
    ids = [g.get_attribute("data-id") for g in page.locator("#graph .node").all()]
    assert len(ids) == 7
    for node in ids:
        page.locator(f'#graph .node[data-id="{node}"]').click()
        page.locator("#tab-task h2", has_text=f"{PAYLOAD}{node}").wait_for()
        _assert_nothing_ran(page)
    page.locator("#graph .node.kind-electron").first.click()
    page.locator("#tab-task pre.source", has_text=PAYLOAD).wait_for()  # as text
    page.locator("#side-tabs button[data-tab=details]").click()
    page.locator("#tab-details", has_text="Executors").wait_for()
    assert PAYLOAD in page.locator("#tab-details").inner_text()
    _assert_nothing_ran(page)
    page.locator("#view-timeline").click()  # rows named by the (markup) host
    page.locator("#timeline .trow").first.wait_for()
    assert PAYLOAD in page.locator("#timeline").text_content()
    page.locator("#side-tabs button[data-tab=tasks]").click()
    page.locator("#task-table th[data-sort=status]").click()
    _assert_nothing_ran(page)

    page.goto(f"{served}/run/{hostile}/files/")
    page.locator("#file-list").wait_for()
    assert BAD_NAME in page.locator("#file-list").inner_text()
    page.locator("#file-list a", has_text="img src").click()
    page.locator("#file-text").wait_for()
    assert page.locator("#file-text").inner_text() == PAYLOAD
    _assert_nothing_ran(page)
    page.goto(f"{served}/run/{hostile}/files/results/0.pkl")
    page.locator("#pickle-header").wait_for()
    _assert_nothing_ran(page)
    assert dialogs == []


def test_graph_drawing_escapes_every_layout_value(chromium_page, served, ui_home):
    """graph.js on its own, in the page that uses it, with markup in every value of a layout
    and of a status (the server's checks keep such kinds and statuses out; this is the layer
    under them)."""
    page = chromium_page
    page.goto(f"{served}/run/{ui_home.ids['failing']}")
    page.locator("#graph .node").first.wait_for()
    drawn = page.evaluate("""(p) => {
      const box = document.createElement("div");
      document.body.appendChild(box);
      const g = new cov.Graph(box, {});
      g.status[p] = p;
      g.draw({width: 100, height: 100, nodes: [
        {id: p, name: p, kind: p, executor: p, executor_type: p, value: p, x: p, y: 1, w: p, h: 1},
        {id: 1, name: p, kind: "parameter", value: p, x: 1, y: 1, w: 1, h: 1}],
        edges: [{source: p, target: p, params: [p], wait: false, points: [[p, p], [1, 1]],
                 label_at: [p, p]}]});
      g.setStatus(p, p + "x");
      const count = box.querySelectorAll(".node").length;
      // group nodes, folded and expanded (small: a cell per member; large: a bitmap)
      const many = Array.from({length: 500}, (_, i) => i + 10);
      g.draw({width: 100, height: 100, edges: [], nodes: [
        {id: p, name: p, kind: "group", member_kind: p, executor_type: p, members: [p, 2],
         count: p, expanded: false, x: p, y: 1, w: p, h: 1},
        {id: p + "e", name: p, kind: "group", members: [p, 3], count: p, expanded: true,
         cols: p, cell_w: p, cell_h: p, head: p, x: 1, y: 1, w: p, h: 1},
        {id: p + "m", name: p, kind: "group", members: many, count: 500, expanded: true,
         cols: 20, cell_w: 50, cell_h: 20, head: 30, x: 1, y: 1, w: 1000, h: 600}]});
      g.setStatus(p, p);
      return count + box.querySelectorAll(".node.group, .group-frame").length;
    }""", PAYLOAD)
    assert drawn == 5
    _assert_nothing_ran(page)
    assert page.locator("svg text", has_text='<b class="injected">').count() >= 1


def test_markup_in_a_run_runs_no_script_in_its_report(chromium_page, ui_home, hostile):
    proc = subprocess.run([sys.executable, "-m", "covalent_cli.cli", "report", hostile],
                          env=ui_home.env, cwd=str(REPO), capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    page = chromium_page
    violations = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security" in m.text
            else None)
    page.goto((ui_home.home / hostile / "report.html").as_uri())
    page.locator("#graph .node").first.wait_for()  # the report's own scripts run
    rows = page.locator("#task-table tbody tr")
    assert rows.count() == 4
    for i in range(rows.count()):
        page.locator("#side-tabs button[data-tab=tasks]").click()
        rows.nth(i).click()
        page.locator("#tab-task h2").wait_for()
        _assert_nothing_ran(page)
    page.locator("#side-tabs button[data-tab=details]").click()
    assert PAYLOAD in page.locator("#tab-details").inner_text()
    _assert_nothing_ran(page)
    assert violations == []  # nothing was even attempted: the payloads are text


# -- containment ----------------------------------------------------------------------------------
SECRET = "root-secret-line-outside-the-run"


@pytest.fixture(scope="module")
def linked(ui_home, tmp_path_factory) -> dict:
    """Copies of a failed and a completed run whose log and result files are symlinks to files
    outside them (a secret text, a valid outcome file with a secret value), plus a run whose
    logs/ directory is a symlink out and one whose log is a FIFO."""
    outside = tmp_path_factory.mktemp("outside")
    (outside / "secret.txt").write_text(SECRET + "\n")
    outcome.write_outcome(str(outside / "outcome.pkl"),
                         {"ok": True, "preview": {"type": "str", "repr": SECRET}},
                         pickle.dumps(SECRET))
    (outside / "logs").mkdir()
    for name in ("0.out", "0.err", "2.out", "2.err"):
        (outside / "logs" / name).write_text(SECRET)
    failing = _copy_run(ui_home, "failing", "linked-logs")
    ok = next(n.id for n in RunDir(failing).manifest.nodes if n.name == "ok")
    for log in (failing / "logs").iterdir():
        log.unlink()
        os.symlink(outside / "secret.txt", log)
    (failing / "logs" / f"{ok}.out").unlink(missing_ok=True)
    os.symlink(outside / "secret.txt", failing / "logs" / f"{ok}.out")
    done = _copy_run(ui_home, "bigvalue", "linked-result")
    out = RunDir(done).manifest.output_node
    for path in (done / "results" / f"{out}.pkl", done / "result.pkl"):
        path.unlink()
        os.symlink(outside / "outcome.pkl", path)
    whole = _copy_run(ui_home, "failing", "linked-dir")
    shutil.rmtree(whole / "logs")
    os.symlink(outside / "logs", whole / "logs")
    fifo = _copy_run(ui_home, "failing", "fifo-log")
    (fifo / "logs" / f"{ok}.out").unlink(missing_ok=True)
    os.mkfifo(fifo / "logs" / f"{ok}.out")
    for log in (fifo / "logs").iterdir():  # format 2.0: the logs packs too
        if layout.is_pack_name(log.name, layout.LOG_PACK_SUFFIX):
            log.unlink()
            os.mkfifo(log)
    return {"ok": ok, "out": out}


def _cov(ui_home, *args, timeout=60):
    return subprocess.run([sys.executable, "-m", "covalent_cli.cli", *args], env=ui_home.env,
                          cwd=str(REPO), capture_output=True, text=True, timeout=timeout)


def test_a_symlink_out_of_the_run_is_never_read(app, ui_home, linked):
    ok = linked["ok"]
    for run in ("linked-logs", "linked-dir"):
        task = get_json(app, f"/api/runs/{run}/tasks/{ok}")
        assert SECRET not in json.dumps(task)
        assert task["stdout"]["text"].startswith("(not shown:") and task["stdout"]["refused"]
        status, _, body = call(app, f"/run/{run}/files/logs/{ok}.out")
        assert status == 404 and SECRET.encode() not in body
        logs = _cov(ui_home, "logs", run)
        assert SECRET not in logs.stdout + logs.stderr
        assert "leads outside its directory" in logs.stderr or "symbolic link" in logs.stderr
        report = _cov(ui_home, "report", run)
        assert report.returncode == 0, report.stderr
        assert SECRET not in (ui_home.home / run / "report.html").read_text()

    detail = get_json(app, "/api/runs/linked-result")
    assert SECRET not in json.dumps(detail)
    assert SECRET not in json.dumps(get_json(app, f"/api/runs/linked-result/tasks/{linked['out']}"))
    result = _cov(ui_home, "result", "linked-result")
    assert SECRET not in result.stdout + result.stderr
    assert result.returncode != 0 and "Error:" in result.stderr
    status = _cov(ui_home, "status", "linked-result")
    assert SECRET not in status.stdout + status.stderr


def test_a_fifo_in_a_run_does_not_hang_its_reader(app, ui_home, linked):
    start = time.monotonic()
    task = get_json(app, f"/api/runs/fifo-log/tasks/{linked['ok']}")
    assert task["stdout"]["refused"] and time.monotonic() - start < 10
    logs = _cov(ui_home, "logs", "fifo-log", timeout=30)
    assert logs.returncode == 0 and "not a regular file" in logs.stderr


# -- nothing unpickled on view --------------------------------------------------------------------
class _Evil:
    """Unpickling it creates a directory: what a crafted pickle could do on a viewer's account."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_viewing_a_run_unpickles_nothing(app, ui_home, tmp_path):
    marker = tmp_path / "code-ran"
    run = _copy_run(ui_home, "bigvalue", "evil-result")
    _unpack(run)
    out = RunDir(run).manifest.output_node
    evil = pickle.dumps(_Evil(marker))
    # an outcome as a run from before previews has it: no preview in the header
    for path in list((run / "results").iterdir()) + [run / "result.pkl"]:
        header = json.loads(path.read_bytes().partition(b"\n")[0])
        header.pop("preview", None)
        path.unlink()
        outcome.write_outcome(str(path), header, evil)
    (run / "bogus.pkl").write_bytes(evil)

    detail = get_json(app, "/api/runs/evil-result")
    assert detail["result"]["repr"] == "(preview not recorded; load value)"
    for node in range(len(RunDir(run).manifest.nodes)):
        get_json(app, f"/api/runs/evil-result/tasks/{node}")
    for name in (f"results/{out}.pkl", "result.pkl", "bogus.pkl", "tasks.pkl"):
        assert call(app, f"/run/evil-result/files/{name}")[0] == 200
        get_json(app, f"/api/runs/evil-result/files/{name}")
    status = _cov(ui_home, "status", "evil-result")
    assert status.returncode == 0 and "(preview not recorded; `cov result` loads" in status.stdout
    assert _cov(ui_home, "report", "evil-result").returncode == 0
    assert not marker.exists()

    # the explicit load does unpickle (so the pickle above is live and the test can fail)
    status, _, _ = call(app, "/api/runs/evil-result/value", headers={"X-Cov-Request": "1"})
    assert status == 200 and marker.is_dir()
