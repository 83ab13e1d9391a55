"""A task whose result came from the result cache, on the run page in headless Chromium: it says
"cached from RUN #NODE", the link opens that task of that run, and the task that ran there says
nothing of the kind. Real dispatches into a home of this module's own, a real server on
127.0.0.1."""
from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest

from runner.rundir import RunDir
from tests.webui.conftest import TOKEN, UIHome

SCRIPT = '''
import json
import covalent_cli as ct


@ct.electron(cache=True)
def cube(x):
    return x ** 3


@ct.electron
def total(values):
    return sum(values)


@ct.lattice
def cubes(n=3):
    return total([cube(i) for i in range(n)])


first = ct.dispatch_sync(cubes)().dispatch_id
again = ct.dispatch_sync(cubes)().dispatch_id
print(json.dumps({"first": first, "again": again}))
'''


@pytest.fixture(scope="module")
def cached_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UIHome]:
    root = tmp_path_factory.mktemp("cachedview")
    config = root / "config.yaml"
    config.write_text("runner:\n  idle_timeout: 3\n  rescan_interval: 0.5\n"
                      "  heartbeat_interval: 1\n")
    made = UIHome(root, root / "home", config, {})
    made.ids = json.loads(made.run_script(SCRIPT, name="cached.py").strip().splitlines()[-1])
    yield made
    from runner.daemon import stop_runners

    stop_runners(made.home, timeout=10)


@pytest.fixture
def page(chromium_browser: Any, cached_home: UIHome) -> Iterator[Any]:
    from webui.app import create_app
    from webui.server import make

    server = make(create_app(cached_home.home, token=TOKEN), "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              daemon=True)
    thread.start()
    ctx = chromium_browser.new_context(viewport={"width": 1400, "height": 850})
    try:
        p = ctx.new_page()
        p.set_default_timeout(45_000)
        p.base = f"http://127.0.0.1:{server.server_address[1]}"
        p.goto(f"{p.base}/?token={TOKEN}")
        p.wait_for_url(f"{p.base}/")
        yield p
    finally:
        ctx.close()
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_a_cached_task_says_cached_from_and_links_to_the_task_it_came_from(
        page: Any, cached_home: UIHome, tmp_path: Path) -> None:
    first, again = cached_home.ids["first"], cached_home.ids["again"]
    node = next(n.id for n in RunDir(cached_home.home / again).manifest.nodes
                if n.name == "cube")
    page.goto(f"{page.base}/run/{again}#task={node}")
    shown = page.locator("#tab-task .cached-from")
    shown.wait_for()
    assert shown.inner_text() == f"cached from {first} #{node}"
    assert page.locator("#tab-task .reused-from").count() == 0  # not told as a redispatch's
    page.screenshot(path=str(tmp_path / "cached-task.png"))
    shown.locator("a").click()
    page.wait_for_url(f"**/run/{first}#task={node}")
    page.locator("#tab-task h2", has_text=f"cube  #{node}").wait_for()
    assert page.locator("#tab-task .cached-from").count() == 0  # it ran there
