"""The UI in a real browser: headless Debian Chromium driven by Playwright (``chromium_page``).

Real runs, a real server on 127.0.0.1; the live tests dispatch runs whose first task waits for a
file the test creates, and watch the page change without reloading it.
"""
from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import expect

from runner.rundir import RunDir


def _node(run_dir: Path, name: str) -> int:
    return next(n.id for n in RunDir(run_dir).manifest.nodes if n.name == name)


def test_runs_page_to_a_failed_task_with_stdout_and_traceback(chromium_page, served, ui_home,
                                                              tmp_path):
    page = chromium_page
    failing = ui_home.ids["failing"]
    divide = _node(ui_home.run_dir("failing"), "divide")
    page.goto(served + "/")
    row = page.locator(f'#runs-body tr[data-id="{failing}"]')
    row.wait_for()
    assert row.locator(".pill").inner_text() == "FAILED"
    assert "1 of 4 tasks" in row.inner_text()
    row.locator(f'a[href="/run/{failing}"]').click()
    page.wait_for_url(f"**/run/{failing}")

    nodes = page.locator("#graph .node")
    nodes.first.wait_for()
    assert nodes.count() == 4  # parameters hidden
    assert page.locator(f'#graph .node[data-id="{divide}"]').get_attribute("class") \
        .startswith("node st-FAILED")
    assert page.locator("#graph .elabel", has_text="b").count() >= 1  # edges carry param names
    page.screenshot(path=str(tmp_path / "run-page.png"))
    assert (tmp_path / "run-page.png").stat().st_size > 10_000

    page.locator(f'#graph .node[data-id="{divide}"]').click()
    task = page.locator("#tab-task")
    task.locator("pre.traceback", has_text="ZeroDivisionError").first.wait_for()
    text = task.inner_text()
    assert "divide #" in text and "return a / b" in text
    assert "dividing 1 by 0" in task.locator("pre.stdout").inner_text()
    # the source as dispatched, recorded in the run (nothing unpickled to show it)
    assert "def divide(a, b):" in task.locator("pre.source").inner_text()
    assert task.locator("button.load", has_text="source").count() == 0
    assert f"#task={divide}" in page.url

    # a row of the task table opens its task too
    page.locator("#side-tabs button[data-tab=tasks]").click()
    ok = _node(ui_home.run_dir("failing"), "ok")
    page.locator(f'#task-table tr[data-id="{ok}"]').click()
    task.locator("h2", has_text="ok").wait_for()
    assert task.locator("pre.stdout").inner_text().strip() == "ok got 1"

    # parameters on request
    page.locator("#show-params").check()
    expect(page.locator("#graph .node")).to_have_count(7)
    assert page.locator("#graph .node.kind-parameter").count() == 3

    # run details
    page.locator("#side-tabs button[data-tab=details]").click()
    details = page.locator("#tab-details")
    details.locator(".workflow-source pre").wait_for()
    assert "The following tasks failed" in details.inner_text()
    assert "def failing(x=1):" in details.locator(".workflow-source").inner_text()


def test_sublattice_runs_open_under_their_parent(chromium_page, served, ui_home):
    page = chromium_page
    nested = ui_home.ids["nested"]
    page.goto(served + "/?q=nested")
    parent = page.locator(f'#runs-body tr[data-id="{nested}"]')
    parent.wait_for()
    page.locator("#search").fill("")
    expect(page.locator("#runs-body > tr:not(.child)")).not_to_have_count(1)
    parent.locator(".toggle").click()
    child = page.locator("#runs-body tr.child")
    child.first.wait_for()
    assert "inner" in child.first.inner_text() and "COMPLETED" in child.first.inner_text()


def test_a_running_node_turns_green_without_reload(chromium_page, served, ui_home, tmp_path):
    page = chromium_page
    flag = tmp_path / "release"
    run = ui_home.dispatch_gated(flag)
    node = _node(ui_home.home / run, "wait_for")
    page.goto(f"{served}/run/{run}")
    page.evaluate("window.__sameDocument = true")
    box = page.locator(f'#graph .node[data-id="{node}"]')
    page.wait_for_selector(f'#graph .node[data-id="{node}"].st-RUNNING', timeout=20_000)
    assert page.locator("#run-status").inner_text() == "RUNNING"
    assert page.locator("#cancel-btn").is_visible()
    flag.write_text("go")
    page.wait_for_selector(f'#graph .node[data-id="{node}"].st-COMPLETED', timeout=20_000)
    expect(page.locator("#run-status")).to_have_text("COMPLETED")
    assert page.evaluate("window.__sameDocument") is True  # no reload happened
    assert re.match(r"node st-COMPLETED", box.get_attribute("class"))
    assert page.locator("#run-progress .text").inner_text() == "3 of 3 tasks"
    assert not page.locator("#cancel-btn").is_visible()
    # the result appears in the run details once the run ended
    page.locator("#side-tabs button[data-tab=details]").click()
    page.locator("#tab-details pre.result", has_text="RELEASED").wait_for()


def test_cancel_button(chromium_page, served, ui_home, tmp_path):
    page = chromium_page
    run = ui_home.dispatch_gated(tmp_path / "never")
    node = _node(ui_home.home / run, "wait_for")
    page.goto(f"{served}/run/{run}")
    page.wait_for_selector(f'#graph .node[data-id="{node}"].st-RUNNING', timeout=20_000)
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#cancel-btn").click()
    expect(page.locator("#run-status")).to_have_text("CANCELLED", timeout=20_000)
    assert "st-CANCELLED" in page.locator(f'#graph .node[data-id="{node}"]').get_attribute("class")


def test_file_browser(chromium_page, served, ui_home):
    page = chromium_page
    failing = ui_home.ids["failing"]
    divide = _node(ui_home.run_dir("failing"), "divide")
    ok = _node(ui_home.run_dir("failing"), "ok")
    page.goto(f"{served}/run/{failing}")
    page.locator("#files-link").click()
    page.locator("#file-list").wait_for()
    # format 2.0: the short logs and small outcomes are in the workers' pack files
    run = RunDir(ui_home.run_dir("failing"))
    log_pack = run.log_location(divide, "stderr")[0].name
    outcome_pack = run.outcome_location(ok)[0]
    page.locator("#file-list a", has_text="logs/").click()
    page.locator("#file-list a", has_text=log_pack).click()
    assert "ZeroDivisionError" in page.locator("#file-text").inner_text()
    page.locator(".crumbs a", has_text="files").click()
    page.locator("#file-list a", has_text="results/").click()
    page.locator("#file-list a", has_text=outcome_pack).click()
    assert f"node {ok} attempt 1: ok int: 2" in page.locator("#file-text").inner_text()
    page.goto(f"{served}/run/{failing}/files/results/{ok}.pkl")  # a packed one, by its 1.0 name
    assert page.locator("#pickle-repr").inner_text() == "2"
    assert '"ok": true' in page.locator("#pickle-header").inner_text()
    page.locator(".crumbs a", has_text="files").click()
    page.locator("#file-list a", has_text="manifest.yaml").click()
    assert f"dispatch_id: {failing}" in page.locator("#file-text").inner_text()


def test_runs_page_shows_and_searches_run_names_and_tags(chromium_page, served, ui_home):
    """Before: `cov dispatch --name/--tag` labels were in the API but not on the page."""
    import subprocess
    import sys

    from tests.conftest import REPO

    proc = subprocess.run([sys.executable, "-m", "covalent_cli.cli", "dispatch",
                           str(REPO / "workflows" / "hello.py"), "--name", "calib <b>1</b>",
                           "--tag", "nightly", "--tag", "gpu-A", "-q", "--wait"],
                          env=ui_home.env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    run = proc.stdout.split()[0]
    page = chromium_page
    page.goto(f"{served}/")
    row = page.locator(f'tr[data-id="{run}"]')
    expect(row.locator(".run-name")).to_have_text("calib <b>1</b>")  # as text, never markup
    assert row.locator(".tag").all_inner_texts() == ["nightly", "gpu-A"]
    page.fill("#search", "gpu-a")
    expect(page.locator("#runs-body tr")).to_have_count(1)
    assert page.locator("#runs-body tr").get_attribute("data-id") == run
