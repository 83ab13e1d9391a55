"""``cov report RUN``: a self-contained report.html in the run directory, opened from file://."""
from __future__ import annotations

import re
from html import unescape
import subprocess
import sys

from tests.conftest import REPO
from webui.report import embedded_data


def test_report_is_self_contained_and_works_from_the_file_system(chromium_page, ui_home):
    failing = ui_home.ids["failing"]
    proc = subprocess.run([sys.executable, "-m", "covalent_cli.cli", "report", failing[:8]],
                          env=ui_home.env, cwd=str(REPO), capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    path = ui_home.run_dir("failing") / "report.html"
    assert proc.stdout.strip() == str(path)
    html = path.read_text()

    # nothing is fetched: no external scripts, styles, images or links
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=", html)
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in html

    data = embedded_data(html)
    divide = next(n["id"] for n in data["graph"]["nodes"] if n["name"] == "divide")
    assert data["run"]["status"] == "FAILED"
    assert "ZeroDivisionError" in data["tasks"][str(divide)]["traceback"]

    page = chromium_page
    requests = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(path.as_uri())
    page.locator("#graph .node").first.wait_for()
    assert page.locator("#graph .node").count() == 4
    assert "FAILED" in page.locator(f'#graph .node[data-id="{divide}"]').get_attribute("class")
    # the first failed task is open; its traceback is there
    assert "ZeroDivisionError" in page.locator("#tab-task pre.traceback").first.inner_text()
    assert page.locator("#task-table tbody tr").count() == 4
    page.locator("#side-tabs button[data-tab=details]").click()
    assert "The following tasks failed" in page.locator("#tab-details").inner_text()
    # writing a report unpickles nothing: values are previews, sources those recorded at
    # dispatch (sources.json)
    assert "def failing(x=1):" in page.locator("#tab-details .workflow-source pre").inner_text()
    assert page.locator("#tab-task button.load").count() == 0
    assert requests == [path.as_uri()]
    # only the inlined scripts may run (the graph and the task view above prove they do)
    csp = unescape(re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html).group(1))
    assert "default-src 'none'" in csp and "script-src 'sha256-" in csp
    assert "unsafe-inline" not in csp


def test_report_of_an_unknown_run(ui_home):
    proc = subprocess.run([sys.executable, "-m", "covalent_cli.cli", "report", "no-such-run"],
                          env=ui_home.env, cwd=str(REPO), capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode != 0
    assert "no run matches 'no-such-run'" in proc.stderr
