"""``cov report RUN``: one self-contained ``report.html`` in the run directory.

The page is the run page frozen: the same graph drawing, timeline, task table and task view
code, the stylesheets and the scripts inlined, the data (run details, the graph laid out with
its groups collapsed and with them all expanded, task states, the task listing and task details)
embedded as JSON. It needs no server and loads nothing from anywhere, so it opens from the file
system, from a mail attachment, or on a machine without cov.

Task details (inputs, result, logs, traceback) are embedded for every failed task and for the
first ``DETAILED_TASKS`` others; the rest keep their row (status, times, host, error). Values
are the previews recorded when tasks finished and sources those captured at dispatch
(``sources.json``; a run made before that has none in its report): writing a report
unpickles nothing, so a report of someone else's run runs none of its code.

The page is safe to open whatever the run holds: every value goes into the page as text (the
scripts build elements with ``textContent``; the template escapes), and a Content-Security-Policy
lets only the inlined scripts run (by their hashes) and the page load nothing.
"""
from __future__ import annotations

import base64
import hashlib
import json
import time
from pathlib import Path
from typing import Any, Dict

from runner.fs import atomic_write
from runner.state import FAILED

from webui import views
from webui.app import HERE, page_json, render
from webui.listing import task_listing
from webui.live import LiveRun, RunCache

DETAILED_TASKS = 300
SCRIPTS = ("common.js", "graph.js", "graphgroups.js", "timeline.js", "tasktable.js",
           "taskview.js", "report.js")
STYLES = ("style.css", "run.css")


def report_data(cache: RunCache, live: LiveRun) -> Dict[str, Any]:
    """Everything the report shows, as JSON-ready data."""
    detail = views.run_detail(cache, live)
    state = views.run_state(live)
    graph = live.layout(parameters=False, force=False)
    groups = frozenset(str(n["id"]) for n in graph["nodes"] if n["kind"] == "group")
    expanded = live.layout(parameters=False, force=False, expand=groups) if groups else None
    listing = task_listing(live)
    tasks: Dict[str, Any] = {}
    failed = [int(k) for k, v in state["tasks"].items() if v[0] == FAILED]
    others = [t["id"] for t in listing["tasks"] if t["id"] not in set(failed)]
    for node in failed + others[:DETAILED_TASKS]:
        task = views.task_detail(cache, live, node)
        if task is not None:
            tasks[str(node)] = task
    return {"run": detail, "state": state, "graph": graph, "graph_expanded": expanded,
            "listing": listing, "tasks": tasks, "generated": time.time()}


def render_report(data: Dict[str, Any]) -> str:
    """The HTML text of a report."""
    static = HERE / "static"
    css = "\n".join((static / name).read_text(encoding="utf-8") for name in STYLES)
    scripts = []
    for name in SCRIPTS:
        text = (static / name).read_text(encoding="utf-8")
        if "</script" in text.lower():  # would end the inline <script> early
            raise ValueError(f"static/{name} cannot be inlined")
        scripts.append(text)
    return render("report.tpl", title=f"{data['run']['lattice']} report", css=css,
                  scripts=scripts, run=data["run"], data=page_json(data),
                  csp=report_csp(css, scripts),
                  generated=time.strftime("%Y-%m-%d %H:%M:%S",
                                          time.localtime(data["generated"])))


def report_csp(css: str, scripts: list) -> str:
    """The report's Content-Security-Policy: nothing loaded from anywhere, no plugin, no form,
    and only these inline scripts and this stylesheet (by hash), so markup that got into the
    page could run nothing."""
    def digest(text: str) -> str:
        return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"

    # The template puts a newline on each side of every inlined text.
    hashes = " ".join(digest("\n" + s + "\n") for s in scripts)
    return (f"default-src 'none'; script-src {hashes}; style-src {digest(chr(10) + css + chr(10))}; "
            "img-src data:; base-uri 'none'; form-action 'none'")


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
