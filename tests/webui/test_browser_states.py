"""The run page never shows NEW_OBJECT, and tasks an upstream failure kept from running read
NOT RUN in the graph, the table and the task view (headless Chromium, ``chromium_page``)."""
from __future__ import annotations

import os
from pathlib import Path

from runner.rundir import RunDir


def _node(run_dir: Path, name: str) -> int:
    return next(n.id for n in RunDir(run_dir).manifest.nodes if n.name == name)


def test_not_run_tasks_read_not_run(chromium_page, served, ui_home, tmp_path):
    page = chromium_page
    failing = ui_home.ids["failing"]
    combine = _node(ui_home.run_dir("failing"), "combine")
    page.goto(f"{served}/run/{failing}")
    node = page.locator(f'#graph .node[data-id="{combine}"]')
    node.wait_for()
    page.wait_for_function(
        f'document.querySelector(\'#graph .node[data-id="{combine}"]\').classList'
        '.contains("st-NOT_RUN")')
    row = page.locator(f'#task-table tr[data-id="{combine}"]')
    assert row.locator(".pill").inner_text() == "NOT RUN"
    assert "NEW_OBJECT" not in page.locator("body").inner_text()
    page.screenshot(path=str(Path(os.environ.get("COV_SHOTS", tmp_path)) / "not-run.png"))
    node.click()
    task = page.locator("#tab-task")
    task.locator("h2", has_text="combine").wait_for()
    assert task.locator(".pill").first.inner_text() == "NOT RUN"
    assert "NEW_OBJECT" not in task.inner_text()
