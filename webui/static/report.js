/* report.html: the run page frozen. Everything comes from the JSON embedded in the page; no
   request leaves it. */
"use strict";

(function () {
  var data = cov.pageData("report-data");
  var run = data.run, state = data.state, tasks = state.tasks;
  var graphBox = document.getElementById("graph");
  var graph = new cov.Graph(graphBox, { onSelect: function (id) { select(id); } });
  var rows = {};

  var fill = document.querySelector("#run-progress .fill");
  fill.style.width = (state.total ? Math.round(100 * state.done / state.total) : 0) + "%";
  document.getElementById("run-times").textContent = run.started ? "started " +
    cov.time(run.started) + " · runtime " + cov.duration(run.runtime) : "not started";

  Object.keys(tasks).forEach(function (k) { graph.status[k] = tasks[k][0]; });
  if (data.graph.laid_out) graph.draw(data.graph);
  else graphBox.replaceChildren(cov.el("p", { class: "muted pad", text: "Graph not drawn: " +
    data.graph.reason + "." }));

  var nodes = data.graph.nodes.filter(function (n) { return n.kind !== "parameter"; });
  var tbody = document.querySelector("#task-table tbody");
  tbody.replaceChildren.apply(tbody, nodes.map(function (n) {
    var t = tasks[n.id] || ["NEW_OBJECT", null, null];
    var tr = cov.el("tr", { class: "clickable", "data-id": n.id, onclick: function () { select(n.id); } }, [
      cov.el("td", { class: "num", text: n.id }), cov.el("td", { text: n.name }),
      cov.el("td", {}, [cov.pill(t[0])]), cov.el("td", { text: n.executor_type || n.executor || "-" }),
      cov.el("td", { text: t[1] ? cov.time(t[1]).slice(11) : "-" }),
      cov.el("td", { class: "num", text: cov.duration(t[1] && t[2] ? t[2] - t[1] : null) })]);
    rows[n.id] = tr;
    return tr;
  }));

  cov.renderRunDetails(document.getElementById("tab-details"), run, { live: false });

  function showTab(name) {
    Array.prototype.forEach.call(document.querySelectorAll("#side-tabs button"), function (b) {
      b.classList.toggle("active", b.dataset.tab === name);
    });
    ["tasks", "details", "task"].forEach(function (t) {
      document.getElementById("tab-" + t).hidden = t !== name;
    });
  }

  function select(id) {
    graph.select(id, true);
    Object.keys(rows).forEach(function (k) { rows[k].classList.toggle("selected", String(k) === String(id)); });
    var box = document.getElementById("tab-task");
    var detail = data.tasks[id];
    if (detail) {
      cov.renderTask(box, detail, { live: false });
    } else {
      var n = nodes.find(function (m) { return m.id === id; }) || { name: "?", kind: "?" };
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
  var firstFailed = (run.failed || [])[0];
  if (firstFailed) select(firstFailed.id);
})();
