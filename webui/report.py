"""``cov report RUN``: one self-contained ``report.html`` in the run directory.

The page is the run page frozen: the same graph drawing and task view code, the stylesheet and
the scripts inlined, the data (run details, laid-out graph, task states and task details)
embedded as JSON. It needs no server and loads nothing from anywhere, so it opens from the file
system, from a mail attachment, or on a machine without cov.

Task details (inputs, result, logs, traceback, source) are embedded for every failed task and
for the first ``DETAILED_TASKS`` others; the rest keep their row (status, times, host, error).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Dict

from runner.fs import atomic_write
from runner.state import FAILED

from webui import views
from webui.app import HERE, page_json, render
from webui.live import LiveRun, RunCache

DETAILED_TASKS = 300
SCRIPTS = ("common.js", "graph.js", "taskview.js", "report.js")


def report_data(cache: RunCache, live: LiveRun) -> Dict[str, Any]:
    """Everything the report shows, as JSON-ready data."""
    detail = views.run_detail(cache, live)
    detail["source"] = views.run_source(live)
    state = views.run_state(live)
    graph = live.layout(parameters=False, force=False)
    tasks: Dict[str, Any] = {}
    failed = [int(k) for k, v in state["tasks"].items() if v[0] == FAILED]
    others = [n["id"] for n in graph["nodes"] if n["id"] not in set(failed)]
    for node in failed + others[:DETAILED_TASKS]:
        task = views.task_detail(cache, live, node)
        if task is not None:
            tasks[str(node)] = task
    return {"run": detail, "state": state, "graph": graph, "tasks": tasks,
            "generated": time.time()}


def render_report(data: Dict[str, Any]) -> str:
    """The HTML text of a report."""
    static = HERE / "static"
    css = (static / "style.css").read_text(encoding="utf-8")
    scripts = []
    for name in SCRIPTS:
        text = (static / name).read_text(encoding="utf-8")
        if "</script" in text.lower():  # would end the inline <script> early
            raise ValueError(f"static/{name} cannot be inlined")
        scripts.append(text)
    return render("report.tpl", title=f"{data['run']['lattice']} report", css=css,
                  scripts=scripts, run=data["run"], data=page_json(data),
                  generated=time.strftime("%Y-%m-%d %H:%M:%S",
                                          time.localtime(data["generated"])))


def write_report(home: Path, run_id: str) -> Path:
    """Write ``report.html`` into the run directory (atomically); returns its path."""
    cache = RunCache(home)
    live = cache.open(run_id)
    if live is None:
        raise FileNotFoundError(f"no run {run_id} under {home}")
    html = render_report(report_data(cache, live))
    path = live.data.report_path
    atomic_write(path, html.encode("utf-8"))
    return path


def embedded_data(html: str) -> Dict[str, Any]:
    """The JSON embedded in a report (for tests and scripts)."""
    start = html.index('id="report-data">') + len('id="report-data">')
    end = html.index("</script>", start)
    return json.loads(html[start:end])
