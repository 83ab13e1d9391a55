/* report.html: the run page frozen. Everything comes from the JSON embedded in the page; no
   request leaves it. The graph comes laid out twice, wide fan-outs as groups and with every
   group expanded: a click on a group expands them all, a click on a group's title folds them. */
"use strict";

(function () {
  var data = cov.pageData("report-data");
  var run = data.run, state = data.state, tasks = state.tasks;
  var graphBox = document.getElementById("graph");
  var timelineBox = document.getElementById("timeline");
  function drawGraph(layout) {
    if (layout && layout.laid_out) graph.draw(layout);
    else graphBox.replaceChildren(cov.el("p", { class: "muted pad", text: "Graph not drawn: " +
      (layout ? layout.reason : "not in this report") + "." }));
  }
  var graph = new cov.Graph(graphBox, {
    onSelect: function (id) { select(id); },
    onExpand: function () { if (data.graph_expanded) drawGraph(data.graph_expanded); },
    onCollapse: function () { drawGraph(data.graph); } });
  var timeline = new cov.Timeline(timelineBox, { onSelect: function (id) { select(id); } });
  var table = new cov.TaskTable({ table: document.getElementById("task-table"),
    state: function (id) { return tasks[id]; }, onSelect: function (id) { select(id); } });
  table.per = 100000;  // one page: the report has no pager

  cov.setProgress(document.getElementById("run-progress"), state.done, state.total,
                  (state.counts || {}).FAILED || 0);
  document.getElementById("run-times").textContent = run.started ? "started " +
    cov.time(run.started) + " · runtime " + cov.duration(run.runtime) : "not started";

  Object.keys(tasks).forEach(function (k) { graph.status[k] = tasks[k][0]; });
  drawGraph(data.graph);
  table.setTasks(data.listing);
  cov.renderRunDetails(document.getElementById("tab-details"), run, { live: false });
  cov.showInputs(document.getElementById("run-inputs"), run.inputs);

  function showTab(name) {
    Array.prototype.forEach.call(document.querySelectorAll("#side-tabs button"), function (b) {
      b.classList.toggle("active", b.dataset.tab === name);
    });
    ["tasks", "details", "task"].forEach(function (t) {
      document.getElementById("tab-" + t).hidden = t !== name;
    });
  }

  function showView(name) {
    graphBox.hidden = name !== "graph";
    timelineBox.hidden = name !== "timeline";
    document.getElementById("view-graph").classList.toggle("active", name === "graph");
    document.getElementById("view-timeline").classList.toggle("active", name === "timeline");
    ["fit", "zoom-in", "zoom-out"].forEach(function (b) { document.getElementById(b).hidden = name !== "graph"; });
    if (name === "timeline") timeline.draw(data.listing.tasks, tasks, data.generated);
    else graph.fit();
  }

  function select(id) {
    graph.select(id, true);
    table.select(id);
    timeline.select(id);
    var box = document.getElementById("tab-task");
    var detail = data.tasks[id];
    if (detail) {
      cov.renderTask(box, detail, { live: false });
    } else {
      var n = table.byId[id] || { name: "?", kind: "?" };
      var t = tasks[id] || ["NEW_OBJECT", null, null];
      cov.renderTask(box, { dispatch_id: run.dispatch_id, id: id, name: n.name, kind: n.kind,
        status: t[0], executor: n.executor, started: t[1], ended: t[2] }, { live: false });
      box.appendChild(cov.el("p", { class: "muted", text: "Details of this task are not in the " +
        "report (only failed tasks and the first ones are); open the run with `cov ui`." }));
    }
    var tab = document.getElementById("task-tab");
    tab.hidden = false;
    tab.textContent = "Task #" + id;
    showTab("task");
  }

  document.getElementById("side-tabs").addEventListener("click", function (ev) {
    var b = ev.target.closest("button");
    if (b) showTab(b.dataset.tab);
  });
  document.getElementById("tab-details").addEventListener("click", function (ev) {
    var a = ev.target.closest("a[data-task]");
    if (a) { ev.preventDefault(); select(parseInt(a.dataset.task, 10)); }
  });
  document.getElementById("fit").addEventListener("click", function () { graph.fit(); });
  document.getElementById("zoom-in").addEventListener("click", function () { graph.zoomBy(1.25); });
  document.getElementById("zoom-out").addEventListener("click", function () { graph.zoomBy(0.8); });
  document.getElementById("view-graph").addEventListener("click", function () { showView("graph"); });
  document.getElementById("view-timeline").addEventListener("click", function () { showView("timeline"); });
  var firstFailed = (run.failed || [])[0];
  if (firstFailed) select(firstFailed.id);
})();
