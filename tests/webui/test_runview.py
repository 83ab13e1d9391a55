"""The run page for real runs, in headless Chromium: a 200-wide fan-out fits and collapses into a
group, a 10,000-task run stays fluid (frame times measured), the source panel shows the code as
dispatched, the timeline has a row per worker, the table sorts and has parameter columns, a
failed run's progress bar is red for its failed share, a reused task links to its run, and a
running run updates itself.

Runs are real dispatches into a home of this module's own (other UI tests count the runs of
theirs), served by a real server on 127.0.0.1. Screenshots go to ``$COV_SHOTS`` (default: the
test's tmp dir) for a person to look at.
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator

import pytest
from playwright.sync_api import expect

from runner.rundir import RunDir
from tests.conftest import REPO
from tests.webui.conftest import TOKEN, UIHome

SCRIPT = '''
import json, sys
import covalent_cli as ct


@ct.electron
def simulate(seed, scale=1.0):
    return seed * scale


@ct.electron
def summarize(values):
    return sum(values)


@ct.lattice
def sweep(n=200, scale=2.0):
    """A fan-out of n simulations and a reduce."""
    return summarize([simulate(i, scale) for i in range(n)])


@ct.electron
def shaky(i):
    if i % 4 == 3:
        raise ValueError(f"bad seed {i}")
    return i


@ct.lattice
def partly(n=8):
    """Two of eight tasks fail."""
    return summarize([shaky(i) for i in range(n)])


@ct.electron
@ct.lattice
def inner(x):
    return shaky(x)


@ct.lattice
def outer(x=3):
    """A sublattice whose task fails."""
    return inner(x)


ids = {}
ids["fan"] = ct.dispatch_sync(sweep)(200).dispatch_id
ids["partly"] = ct.dispatch_sync(partly)().dispatch_id
ids["outer"] = ct.dispatch_sync(outer)().dispatch_id
ids["small"] = ct.dispatch_sync(sweep)(8).dispatch_id
reused = ct.redispatch(ids["small"], reuse_previous_results=True)()
ct.get_result(reused, wait=True)
ids["reused"] = reused
print(json.dumps(ids))
'''

BIG_SCRIPT = '''
import covalent_cli as ct


@ct.electron
def simulate(seed, scale=1.0):
    return seed * scale


@ct.electron
def analyze(x):
    return x + 1


@ct.electron
def summarize(values):
    return sum(values)


@ct.lattice
def big(n=5000, scale=2.0):
    return summarize([analyze(simulate(i, scale)) for i in range(n)])


print(ct.dispatch_sync(big)().dispatch_id)
'''

VERSION_1 = '''
import covalent_cli as ct


@ct.electron
def step(x):
    return x + 1  # version 1, as dispatched


@ct.lattice
def edited(x=1):
    return step(x)


print(ct.dispatch_sync(edited)().dispatch_id)
'''

LIVE_SCRIPT = '''
import sys
import covalent_cli as ct


@ct.electron
def gate(path, i):
    """Prints, then waits until the test creates ``path`` (60 s at most)."""
    import os, time
    print("waiting", i, flush=True)
    deadline = time.time() + 60
    while not os.path.exists(path):
        if time.time() > deadline:
            raise TimeoutError(path)
        time.sleep(0.05)
    return i


@ct.electron
def total(values):
    return sum(values)


@ct.lattice
def gated_fan(path, n=10):
    return total([gate(path, i) for i in range(n)])


print(ct.dispatch(gated_fan)(sys.argv[1]))
'''


class Served:
    def __init__(self, home: UIHome, url: str) -> None:
        self.home, self.url = home, url


@pytest.fixture(scope="module")
def view_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UIHome]:
    root = tmp_path_factory.mktemp("runview")
    config = root / "config.yaml"
    config.write_text("runner:\n  idle_timeout: 3\n  rescan_interval: 0.5\n"
                      "  heartbeat_interval: 1\n  workers: 3\n")
    made = UIHome(root, root / "home", config, {})
    made.ids = json.loads(made.run_script(SCRIPT, name="views.py").strip().splitlines()[-1])
    yield made
    from runner.daemon import stop_runners

    stop_runners(made.home, timeout=10)


@pytest.fixture(scope="module")
def view_server(view_home: UIHome) -> Iterator[Served]:
    from webui.app import create_app
    from webui.server import make

    server = make(create_app(view_home.home, token=TOKEN), "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              daemon=True)
    thread.start()
    yield Served(view_home, f"http://127.0.0.1:{server.server_address[1]}")
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def page(chromium_browser: Any, view_server: Served) -> Iterator[Any]:
    """A 1400x850 page holding the token's cookie for ``view_server``."""
    ctx = chromium_browser.new_context(viewport={"width": 1400, "height": 850})
    try:
        p = ctx.new_page()
        p.set_default_timeout(45_000)
        p.goto(f"{view_server.url}/?token={TOKEN}")
        p.wait_for_url(f"{view_server.url}/")
        yield p
    finally:
        ctx.close()


def shot(page: Any, name: str, tmp_path: Path) -> Path:
    """Save a screenshot (``$COV_SHOTS`` or the test's tmp dir) and return its path."""
    folder = Path(os.environ.get("COV_SHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path))
    assert path.stat().st_size > 10_000
    return path


def inside_graph(page: Any) -> Dict[str, Any]:
    """How many drawn boxes lie outside the graph pane (0: the whole graph is in view)."""
    return page.evaluate("""() => {
        const box = document.getElementById("graph").getBoundingClientRect();
        const items = document.querySelectorAll("#graph .node, #graph .group-frame");
        let outside = 0;
        for (const el of items) {
            const r = el.getBoundingClientRect();
            if (r.left < box.left - 1 || r.top < box.top - 1 || r.right > box.right + 1 ||
                r.bottom > box.bottom + 1) outside++;
        }
        return {count: items.length, outside: outside, width: box.width};
    }""")


FRAMES = """async (steps) => {
  // Drag and wheel-zoom the graph, one event per animation frame; the frame-to-frame times.
  const box = document.getElementById("graph");
  const r = box.getBoundingClientRect(), x = r.left + r.width / 2, y = r.top + r.height / 2;
  const deltas = [];
  let last = performance.now();
  for (let i = 0; i < steps; i++) {
    await new Promise(done => requestAnimationFrame(() => {
      const now = performance.now(); deltas.push(now - last); last = now; done();
    }));
    if (i % 2) {
      box.dispatchEvent(new WheelEvent("wheel", {deltaY: i % 40 < 20 ? -40 : 40, clientX: x,
                                                 clientY: y, bubbles: true, cancelable: true}));
    } else {
      box.dispatchEvent(new MouseEvent("mousedown", {button: 0, clientX: x, clientY: y,
                                                     bubbles: true}));
      window.dispatchEvent(new MouseEvent("mousemove", {clientX: x + 9 * Math.sin(i / 5),
                                                        clientY: y + 6, bubbles: true}));
      window.dispatchEvent(new MouseEvent("mouseup", {bubbles: true}));
    }
  }
  return deltas.slice(1);
}"""


def test_a_200_wide_fan_out_fits_as_one_expandable_group(page, view_server, tmp_path):
    run = view_server.home.ids["fan"]
    page.goto(f"{view_server.url}/run/{run}")
    group = page.locator("#graph .node.group")
    group.first.wait_for()
    assert group.count() == 1
    assert "simulate ×200" in group.text_content()
    assert page.locator("#run-inputs").inner_text() == "200"  # the run's inputs, in its header
    counts = json.loads(group.locator(".gbar").get_attribute("data-counts"))
    assert counts == {"COMPLETED": 200}
    fit = inside_graph(page)
    assert fit["count"] >= 4 and fit["outside"] == 0, fit
    # the box reads at this zoom: the whole layout is narrow, not 38,816 px
    layout = page.evaluate(f"fetch('/api/runs/{run}/graph').then(r => r.json())")
    assert layout["width"] < 1000, layout["width"]
    shot(page, "fanout-200", tmp_path)

    group.click()
    cells = page.locator("#graph .cell[data-id]")
    expect(cells).to_have_count(200)
    assert inside_graph(page)["outside"] == 0  # fitted again, expanded
    shot(page, "fanout-200-expanded", tmp_path)
    cells.nth(7).click()
    page.locator("#tab-task h2", has_text="simulate").wait_for()
    page.locator("#graph .gtitle").click()  # collapse
    expect(page.locator("#graph .node.group")).to_have_count(1)
    assert not page.locator("#fold-groups").is_visible()
    group.click()
    page.locator("#fold-groups").click()  # or all at once, whatever the zoom
    expect(page.locator("#graph .node.group")).to_have_count(1)


def test_a_10k_task_run_renders_and_pans_smoothly(page, view_server, tmp_path):
    home = view_server.home
    run = home.run_script(BIG_SCRIPT, name="big.py").strip().splitlines()[-1]
    assert RunDir(home.home / run).manifest.task_count > 10_000
    started = time.time()
    page.goto(f"{view_server.url}/run/{run}")
    page.locator("#graph .node.group").first.wait_for(timeout=60_000)
    opened = time.time() - started
    assert page.locator("#graph .node.group").count() == 2  # simulate ×5000, analyze ×5000
    assert inside_graph(page)["outside"] == 0
    expect(page.locator("#task-count")).to_have_text("10003 of 10003")
    page.evaluate(FRAMES, 20)  # warm-up: the first frames after a drawing rasterize it once
    grouped = page.evaluate(FRAMES, 120)
    page.locator("#fit").click()
    page.wait_for_timeout(300)  # the whole drawing is back 150 ms after the last move
    shot(page, "run-10k", tmp_path)

    page.locator("#graph .node.group").first.click()
    page.locator("#graph .cells.many[data-drawn]").first.wait_for(timeout=60_000)
    page.wait_for_timeout(300)
    page.evaluate(FRAMES, 20)
    expanded = page.evaluate(FRAMES, 120)
    page.locator("#fit").click()
    page.wait_for_timeout(300)
    shot(page, "run-10k-expanded", tmp_path)
    # a click on a cell of a large group opens its task
    cell = page.evaluate("""() => {
        const r = document.querySelector("#graph .cellhit").getBoundingClientRect();
        return [r.left + 3, r.top + 3]; }""")
    page.mouse.click(cell[0], cell[1])
    page.locator("#tab-task h2", has_text="simulate").wait_for()

    g_med, e_med = statistics.median(grouped), statistics.median(expanded)
    print(f"\n10k-task run: page to graph {opened:.1f} s; pan/zoom frame time median "
          f"{g_med:.1f} ms (p90 {sorted(grouped)[int(len(grouped) * .9)]:.1f}) grouped, "
          f"{e_med:.1f} ms (p90 {sorted(expanded)[int(len(expanded) * .9)]:.1f}) with "
          f"5,000 cells expanded; load average {os.getloadavg()[0]:.1f}")
    assert g_med < 50, grouped
    assert e_med < 100, expanded  # generous: a loaded 2-core machine


def test_the_source_panel_shows_the_code_as_dispatched(page, view_server, tmp_path):
    home = view_server.home
    run = home.run_script(VERSION_1, name="edited.py").strip().splitlines()[-1]
    script = home.root / "edited.py"
    script.write_text(script.read_text().replace("version 1, as dispatched", "version 2, edited"))
    node = next(n.id for n in RunDir(home.home / run).manifest.nodes if n.name == "step")
    page.goto(f"{view_server.url}/run/{run}#task={node}")
    source = page.locator("#tab-task pre.source")
    source.wait_for()
    assert "version 1, as dispatched" in source.inner_text()
    assert "(as dispatched)" in page.locator("#tab-task .source-box h3").inner_text()
    page.locator("#side-tabs button[data-tab=details]").click()
    assert "def edited(x=1):" in page.locator("#tab-details .workflow-source pre").inner_text()

    # a run from before sources were captured says so, and offers the file as it is now
    old = home.home / run
    copy = home.home / (run[:-4] + "0ld0")
    shutil.copytree(old, copy)
    (copy / "sources.json").unlink()
    manifest = (copy / "manifest.yaml").read_text().replace(run, copy.name)
    (copy / "manifest.yaml").write_text(manifest)
    page.goto(f"{view_server.url}/run/{copy.name}#task={node}")
    note = page.locator("#tab-task .not-captured")
    note.wait_for()
    assert note.inner_text() == "source not captured (run made by an older cov)"
    page.locator("#tab-task button.load", has_text="as it is now").click()
    assert "version 2, edited" in page.locator("#tab-task pre.source").inner_text()


def test_timeline_has_a_row_per_worker(page, view_server, tmp_path):
    run = view_server.home.ids["fan"]
    listing = page.evaluate(f"fetch('/api/runs/{run}/tasks').then(r => r.json())")
    workers = {(t["host"], t["pid"]) for t in listing["tasks"] if t.get("pid")}
    assert len(workers) >= 2, workers  # a pool of 3
    page.goto(f"{view_server.url}/run/{run}")
    page.locator("#graph .node.group").wait_for()
    page.locator("#view-timeline").click()
    rows = page.locator("#timeline .trow")
    expect(rows).to_have_count(len(workers))
    labels = rows.locator(".row-label").all_text_contents()
    assert all(" · pid " in text for text in labels), labels
    assert sum(int(t.rsplit("(", 1)[1].rstrip(")")) for t in labels) == len(listing["tasks"])
    assert page.locator("#timeline .bar.st-COMPLETED").count() == len(listing["tasks"])
    shot(page, "timeline", tmp_path)
    bar = page.locator("#timeline .bar").first  # bars of 1 ms overlap: click it, not its spot
    bar.dispatch_event("click")
    page.locator("#tab-task h2", has_text=f"#{bar.get_attribute('data-id')}").wait_for()


def test_task_table_sorts_and_has_parameter_columns(page, view_server):
    home = view_server.home
    page.goto(f"{view_server.url}/run/{home.ids['fan']}")
    head = page.locator("#task-table thead th")
    head.first.wait_for()
    assert {"seed", "scale"} <= set(head.all_inner_texts())
    seed_col = head.all_inner_texts().index("seed")
    first = page.locator("#task-table tbody tr").first
    assert first.locator("td").nth(seed_col).inner_text() == "0"

    listing = page.evaluate(f"fetch('/api/runs/{home.ids['fan']}/tasks').then(r => r.json())")
    by_start = [t["id"] for t in sorted(listing["tasks"], key=lambda t: (t["started"], t["id"]))]
    page.locator("#task-table th[data-sort=start]").click()
    ids = [int(x) for x in page.locator("#task-table tbody tr td:first-child").all_inner_texts()]
    assert ids[:50] == by_start[:50]
    by_runtime = sorted(listing["tasks"], key=lambda t: (-(t["ended"] - t["started"]), t["id"]))
    page.locator("#task-table th[data-sort=runtime]").click()
    ids = [int(x) for x in page.locator("#task-table tbody tr td:first-child").all_inner_texts()]
    assert ids[:5] == [t["id"] for t in by_runtime[:5]]
    page.locator(f"#task-table th[data-sort='param:seed']").click()
    seeds = page.locator("#task-table tbody tr").nth(1).locator("td").nth(seed_col).inner_text()
    assert seeds == "1"  # numerically: 0, 1, 2 ... not 0, 1, 10

    page.goto(f"{view_server.url}/run/{home.ids['partly']}")
    page.locator("#task-table th[data-sort=status]").click()
    statuses = page.locator("#task-table tbody .pill").all_inner_texts()
    assert statuses[:2] == ["FAILED", "FAILED"] and "COMPLETED" in statuses
    page.locator("#task-table th[data-sort=status]").click()
    assert page.locator("#task-table tbody .pill").all_inner_texts()[0] != "FAILED"


def test_a_failed_run_shows_its_failed_share_in_red(page, view_server, tmp_path):
    home = view_server.home
    page.goto(f"{view_server.url}/run/{home.ids['partly']}")
    page.locator("#graph .node.group").wait_for()
    state = page.evaluate(f"fetch('/api/runs/{home.ids['partly']}/state').then(r => r.json())")
    done, total = state["done"], state["total"]
    assert (done, state["counts"]["FAILED"]) == (6, 2)
    bar = page.locator("#run-progress")
    expect(bar.locator(".text")).to_have_text(f"6 of {total} tasks · 2 failed")
    widths = page.evaluate("""() => {
        const bar = document.querySelector("#run-progress .bar").getBoundingClientRect().width;
        const w = s => document.querySelector("#run-progress " + s).getBoundingClientRect().width;
        const red = getComputedStyle(document.querySelector("#run-progress .fail")).backgroundColor;
        return {bar: bar, fill: w(".fill"), fail: w(".fail"), red: red}; }""")
    assert abs(widths["fail"] / widths["bar"] - 2 / total) < 0.02, widths
    assert abs(widths["fill"] / widths["bar"] - done / total) < 0.02, widths
    assert widths["red"] == "rgb(214, 69, 69)"
    counts = json.loads(page.locator("#graph .node.group .gbar").get_attribute("data-counts"))
    assert counts == {"COMPLETED": 6, "FAILED": 2}
    assert "st-FAILED" in page.locator("#graph .node.group").get_attribute("class")
    # the runs page's bar too
    page.goto(f"{view_server.url}/")
    row = page.locator(f'#runs-body tr[data-id="{home.ids["partly"]}"]')
    row.wait_for()
    assert row.locator(".progress .fail").evaluate("e => e.getBoundingClientRect().width") > 3

    # a failed sublattice: the parent run names the failure, its child run is one click away
    page.goto(f"{view_server.url}/run/{home.ids['outer']}")
    page.locator("#graph .node").first.wait_for()
    page.locator("#side-tabs button[data-tab=details]").click()
    page.locator("#tab-details h3", has_text="Sublattice runs").wait_for()
    shot(page, "failed-sublattice", tmp_path)
    page.locator("#tab-details li a.mono").first.click()
    page.locator("#graph .node.st-FAILED").first.wait_for()
    expect(page.locator("#run-status")).to_have_text("FAILED")
    shot(page, "failed-sublattice-child", tmp_path)


def test_a_reused_task_links_to_the_run_it_came_from(page, view_server):
    home = view_server.home
    old, new = home.ids["small"], home.ids["reused"]
    node = next(n.id for n in RunDir(home.home / new).manifest.nodes if n.name == "simulate")
    page.goto(f"{view_server.url}/run/{new}#task={node}")
    link = page.locator("#tab-task .reused-from a")
    link.wait_for()
    assert link.inner_text() == f"{old} #{node}"
    link.click()
    page.wait_for_url(f"**/run/{old}#task={node}")
    page.locator("#tab-task h2", has_text=f"simulate  #{node}").wait_for()
    assert page.locator("#tab-task .reused-from").count() == 0  # it ran there


def test_a_running_run_updates_without_reload(page, view_server, tmp_path):
    home = view_server.home
    flag = tmp_path / "release"
    run = home.run_script(LIVE_SCRIPT, str(flag), name="live.py").strip().splitlines()[-1]
    nodes = RunDir(home.home / run).manifest.nodes
    gate = next(n.id for n in nodes if n.name == "gate")
    page.goto(f"{view_server.url}/run/{run}#task={gate}")
    page.evaluate("window.__sameDocument = true")
    task = page.locator("#tab-task")
    task.locator(".pill", has_text="RUNNING").wait_for(timeout=30_000)
    group = page.locator("#graph .node.group")
    page.wait_for_function("""() => {
        const b = document.querySelector("#graph .node.group .gbar");
        return b && JSON.parse(b.getAttribute("data-counts")).RUNNING >= 1; }""", timeout=30_000)
    assert "st-RUNNING" in group.get_attribute("class")
    expect(page.locator("#run-status")).to_have_text("RUNNING")
    page.locator("#view-timeline").click()
    page.locator("#timeline .bar.st-RUNNING").first.wait_for(timeout=30_000)
    shot(page, "live-running-timeline", tmp_path)
    page.locator("#view-graph").click()
    shot(page, "live-running", tmp_path)

    flag.write_text("go")
    expect(page.locator("#run-status")).to_have_text("COMPLETED", timeout=30_000)
    task.locator(".pill", has_text="COMPLETED").wait_for()  # the task panel refreshed itself
    assert task.locator("tr", has_text="Ended").locator("td").inner_text() != "-"
    page.wait_for_function("""() => JSON.parse(document.querySelector(
        "#graph .node.group .gbar").getAttribute("data-counts")).COMPLETED === 10""")
    assert page.evaluate("window.__sameDocument") is True
    total = len([n for n in nodes if n.kind != "parameter"])
    expect(page.locator("#run-progress .text")).to_have_text(f"{total} of {total} tasks")
    shot(page, "live-done", tmp_path)


def test_the_report_has_groups_a_fitting_graph_a_timeline_and_the_table(
        page, view_server, tmp_path):
    home = view_server.home
    run = home.ids["fan"]
    proc = subprocess.run([sys.executable, "-m", "covalent_cli.cli", "report", run],
                          env={**home.env, "PYTHONPATH": str(REPO)}, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = home.home / run / "report.html"
    page.goto(report.as_uri())
    group = page.locator("#graph .node.group")
    group.wait_for()
    assert "simulate ×200" in group.text_content()
    assert inside_graph(page)["outside"] == 0
    assert "seed" in page.locator("#task-table thead").inner_text()
    group.click()
    expect(page.locator("#graph .cell[data-id]")).to_have_count(200)
    assert inside_graph(page)["outside"] == 0
    page.locator("#view-timeline").click()
    assert page.locator("#timeline .trow").count() >= 2
    shot(page, "report-timeline", tmp_path)
