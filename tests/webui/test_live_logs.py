"""The task view tails a running task's stdout and stderr (headless Chromium, a real run), and
the endpoint it polls answers what the logs gained past the offsets it is given."""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

from playwright.sync_api import expect

from runner.rundir import RunDir
from tests.webui.conftest import call

TALKING_SCRIPT = '''
import os, sys, time
import covalent_cli as ct


@ct.electron
def talk(path):
    """Prints a line a second on both streams until the test creates ``path`` (60 s at most)."""
    deadline = time.time() + 60
    i = 0
    while not os.path.exists(path) and time.time() < deadline:
        print(f"tick {i}", flush=True)
        print(f"tock {i} é", file=sys.stderr, flush=True)
        i += 1
        time.sleep(0.5)
    return i


@ct.lattice
def talking(path):
    return talk(path)


print(ct.dispatch(talking)(sys.argv[1]))
'''


def _dispatch(ui_home, flag: Path) -> str:
    return ui_home.run_script(TALKING_SCRIPT, str(flag), name="talking.py").strip().splitlines()[-1]


def _wait_running(ui_home, run: str, node: int) -> None:
    deadline = time.time() + 30
    while time.time() < deadline:
        task = RunDir(ui_home.home / run).state().tasks.get(node)
        if task is not None and task.status == "RUNNING":
            return
        time.sleep(0.1)
    raise AssertionError("the task never ran")


def test_task_view_tails_a_running_tasks_output(chromium_page, served, ui_home, tmp_path):
    page = chromium_page
    flag = tmp_path / "stop-talking"
    run = _dispatch(ui_home, flag)
    try:
        page.goto(f"{served}/run/{run}#task=0")
        stdout = page.locator("#tab-task pre.stdout")
        expect(stdout).to_contain_text("tick 1", timeout=20_000)  # while it runs
        assert RunDir(ui_home.home / run).state().tasks[0].status == "RUNNING"
        page.evaluate("window.__sameDocument = true")
        expect(stdout).to_contain_text("tick 8", timeout=15_000)  # and it keeps growing
        expect(page.locator("#tab-task pre.stderr")).to_contain_text("tock 8 é")
        assert page.evaluate("window.__sameDocument") is True  # tailed, not reloaded
        text = stdout.inner_text()
        assert text.count("tick 2\n") == 1  # each line once, in order
        assert text.index("tick 1") < text.index("tick 2") < text.index("tick 3")
        head = page.locator("#tab-task h3", has_text="stdout").inner_text()
        assert int(re.search(r"stdout · (\d+) B", head).group(1)) >= len("tick 0\n") * 5, head
        page.screenshot(path=str(tmp_path / "live-task.png"))
    finally:
        flag.write_text("stop")
    expect(page.locator("#tab-task .pill").first).to_have_text("COMPLETED", timeout=20_000)


def test_logs_endpoint_answers_from_offsets(app, ui_home, tmp_path):
    flag = tmp_path / "stop"
    run = _dispatch(ui_home, flag)
    try:
        _wait_running(ui_home, run, 0)
        deadline = time.time() + 20
        first: dict = {}
        while time.time() < deadline:
            status, _, body = call(app, f"/api/runs/{run}/tasks/0/logs", query="stdout=0&stderr=0")
            assert status == 200
            first = json.loads(body)
            if "tick 1" in first["stdout"]["text"]:
                break
            time.sleep(0.2)
        assert first["stdout"]["text"].startswith("tick 0\ntick 1\n"), first
        end = first["stdout"]["end"]
        later = json.loads(call(app, f"/api/runs/{run}/tasks/0/logs",
                                query=f"stdout={end}&stderr={first['stderr']['end']}")[2])
        assert later["stdout"]["offset"] == end and not later["stdout"]["restarted"]
        assert "tick 0" not in later["stdout"]["text"]  # only what is new
        restarted = json.loads(call(app, f"/api/runs/{run}/tasks/0/logs",
                                    query="stdout=99999999&stderr=0")[2])
        assert restarted["stdout"]["restarted"] and restarted["stdout"]["offset"] == 0
        assert call(app, f"/api/runs/{run}/tasks/99/logs")[0] == 404
        assert call(app, f"/api/runs/{run}/tasks/x/logs")[0] == 404
        assert call(app, f"/api/runs/{run}/tasks/0/logs", token=None)[0] in (401, 403)
    finally:
        flag.write_text("stop")
