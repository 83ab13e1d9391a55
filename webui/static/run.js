/* The run page: graph + task table + run details + task view, kept live by ONE request per
   refresh: GET /api/runs/<id>/state?since=<version> answers only the tasks that changed. */
"use strict";

(function () {
  var page = cov.pageData();
  var runId = page.dispatch_id;
  var api = "/api/runs/" + encodeURIComponent(runId);
  var graphBox = document.getElementById("graph");
  var timelineBox = document.getElementById("timeline");
  var expanded = {};  // group ids drawn as a grid of their members
  var graph = new cov.Graph(graphBox, {
    onSelect: function (id) { selectTask(id, false); },
    onExpand: function (gid) { expanded[gid] = 1; loadGraph(false); },
    onCollapse: function (gid) { delete expanded[gid]; loadGraph(false); },
  });
  var timeline = new cov.Timeline(timelineBox, { onSelect: function (id) { selectTask(id, true); } });

  var run = { version: 0, status: null, tasks: {}, skew: 0 };  // tasks: id -> [status, start, end]
  var listing = null, listingAt = 0, view = "graph", timelineDrawn = 0;
  var table = new cov.TaskTable({
    table: document.getElementById("task-table"), pager: document.getElementById("task-pager"),
    count: document.getElementById("task-count"),
    state: function (id) { return run.tasks[id]; }, skew: function () { return run.skew; },
    onSelect: function (id) { selectTask(id, true); } });
  var selected = null, showParams = false, pollTimer = null, tickTimer = null, lastForce = false;

  // -- header -------------------------------------------------------------------------------------
  function renderHead(s) {
    var pill = document.getElementById("run-status");
    pill.className = "pill st-" + s.status;
    pill.textContent = s.status;
    cov.setProgress(document.getElementById("run-progress"), s.done, s.total,
                    (s.counts || {}).FAILED || 0);
    document.getElementById("cancel-btn").hidden = !!cov.TERMINAL[s.status];
    tick();
  }

  function tick() {
    var el = document.getElementById("run-times");
    if (!run.started) { el.textContent = "not started"; return; }
    var end = run.ended || (Date.now() / 1000 + run.skew);
    el.textContent = "started " + cov.time(run.started) + " · runtime " + cov.duration(end - run.started);
  }

  // -- live state ---------------------------------------------------------------------------------
  function poll() {
    clearTimeout(pollTimer);
    var url = api + "/state" + (run.version ? "?since=" + run.version : "");
    return cov.api(url).then(applyState).catch(function () {}).then(schedule);
  }

  function schedule() {
    clearTimeout(pollTimer);
    if (!cov.TERMINAL[run.status]) pollTimer = setTimeout(poll, table.tasks.length > 3000 ? 2000 : 1000);
  }

  function applyState(s) {
    var ended = run.status !== null && !cov.TERMINAL[run.status] && !!cov.TERMINAL[s.status];
    if (s.full) run.tasks = {};
    var changed = Object.keys(s.tasks);
    changed.forEach(function (k) {
      run.tasks[k] = s.tasks[k];
      graph.setStatus(k, s.tasks[k][0]);
      table.updateRow(k);
    });
    run.version = s.version; run.status = s.status;
    run.started = s.started; run.ended = s.ended; run.skew = s.now - Date.now() / 1000;
    renderHead(s);
    if (table.sortsByState() && changed.length) table.render();
    if (selected !== null && changed.indexOf(String(selected)) >= 0) loadTask(selected);
    if (ended) {  // the result or the error is known now, and where every task ran
      loadDetails();
      loadListing().then(function () { if (view === "timeline") { timelineDrawn = 0; refreshTimeline(); } });
    } else if (view === "timeline" && (changed.length || !cov.TERMINAL[s.status])) {
      refreshTimeline();
    }
  }

  // -- graph and timeline -------------------------------------------------------------------------
  function loadGraph(force) {
    force = force || lastForce;
    var q = "?parameters=" + (showParams ? 1 : 0) + (force ? "&force=1" : "") +
      (Object.keys(expanded).length ? "&expand=" + Object.keys(expanded).join(",") : "");
    if (force) graphBox.replaceChildren(cov.el("p", { class: "muted pad", text: "Laying out the graph…" }));
    return cov.api(api + "/graph" + q).then(function (g) {
      Object.keys(run.tasks).forEach(function (k) { graph.status[k] = run.tasks[k][0]; });
      document.getElementById("fold-groups").hidden = !(g.expanded || []).length;
      if (g.laid_out) {
        lastForce = force;
        graph.draw(g);
      } else {
        graphBox.replaceChildren(cov.el("div", { class: "pad" }, [
          cov.el("p", { class: "muted", text: "Not drawn: " + g.reason + ". The task table lists every task." }),
          cov.el("button", { text: "Draw it anyway", onclick: function () { loadGraph(true); } })]));
      }
    }).catch(function (err) {
      graphBox.replaceChildren(cov.el("p", { class: "error-text pad", text: "Cannot load the graph: " + err.message }));
    });
  }

  /* Where each task runs (for the timeline) and its parameters (for the table). */
  function loadListing() {
    return cov.api(api + "/tasks").then(function (l) {
      listing = l; listingAt = Date.now();
      table.setTasks(l);
    });
  }

  function refreshTimeline() {
    // Claims and ends say where tasks run: the listing is fetched again while the run runs, at
    // most once a second, when a task started that it does not place, else every 5 s.
    var age = Date.now() - listingAt;
    var stale = !cov.TERMINAL[run.status] && age > 1000 && (age > 5000 ||
      Object.keys(run.tasks).some(function (k) {
        var row = table.byId[k];
        return run.tasks[k][1] && row && !row.host;
      }));
    var ready = stale ? loadListing() : Promise.resolve();
    return ready.then(function () {
      if (!listing || Date.now() - timelineDrawn < 500) return;
      timelineDrawn = Date.now();
      timeline.selected = selected;
      timeline.draw(listing.tasks, run.tasks, Date.now() / 1000 + run.skew);
    });
  }

  function showView(name) {
    view = name;
    graphBox.hidden = name !== "graph";
    timelineBox.hidden = name !== "timeline";
    document.getElementById("view-graph").classList.toggle("active", name === "graph");
    document.getElementById("view-timeline").classList.toggle("active", name === "timeline");
    ["fit", "zoom-in", "zoom-out"].forEach(function (b) { document.getElementById(b).hidden = name !== "graph"; });
    document.getElementById("show-params").parentNode.hidden = name !== "graph";
    if (name !== "graph") document.getElementById("fold-groups").hidden = true;
    else document.getElementById("fold-groups").hidden = !Object.keys(expanded).length;
    if (name === "timeline") { timelineDrawn = 0; refreshTimeline(); } else graph.fit();
  }

  // -- side tabs ----------------------------------------------------------------------------------
  function showTab(name) {
    Array.prototype.forEach.call(document.querySelectorAll("#side-tabs button"), function (b) {
      b.classList.toggle("active", b.dataset.tab === name);
    });
    ["tasks", "details", "task"].forEach(function (t) {
      document.getElementById("tab-" + t).hidden = t !== name;
    });
  }

  function selectTask(id, reveal) {
    selected = id;
    graph.select(id, reveal);
    table.select(id);
    timeline.select(id);
    history.replaceState(null, "", "#task=" + id);
    var tab = document.getElementById("task-tab");
    tab.hidden = false;
    tab.textContent = "Task #" + id;
    showTab("task");
    loadTask(id);
  }

  function loadTask(id) {
    var box = document.getElementById("tab-task");
    return cov.api(api + "/tasks/" + id).then(function (t) {
      if (String(selected) === String(id)) cov.renderTask(box, t, { live: true });
    }).catch(function (err) {
      box.replaceChildren(cov.el("p", { class: "error-text", text: "Cannot load task " + id + ": " + err.message }));
    });
  }

  function loadDetails() {
    var box = document.getElementById("tab-details");
    return cov.api(api).then(function (d) {
      document.getElementById("run-title").textContent = d.lattice;
      cov.showInputs(document.getElementById("run-inputs"), d.inputs);
      cov.renderRunDetails(box, d, { live: true });
    }).catch(function (err) {
      box.replaceChildren(cov.el("p", { class: "error-text", text: "Cannot load the run: " + err.message }));
    });
  }

  // -- wiring -------------------------------------------------------------------------------------
  document.getElementById("side-tabs").addEventListener("click", function (ev) {
    var b = ev.target.closest("button");
    if (b) showTab(b.dataset.tab);
  });
  document.getElementById("tab-details").addEventListener("click", function (ev) {
    var a = ev.target.closest("a[data-task]");
    if (a) { ev.preventDefault(); selectTask(parseInt(a.dataset.task, 10), true); }
  });
  document.getElementById("fit").addEventListener("click", function () { graph.fit(); });
  document.getElementById("zoom-in").addEventListener("click", function () { graph.zoomBy(1.25); });
  document.getElementById("zoom-out").addEventListener("click", function () { graph.zoomBy(0.8); });
  document.getElementById("fold-groups").addEventListener("click", function () {
    expanded = {};
    loadGraph(false);
  });
  document.getElementById("show-params").addEventListener("change", function (ev) {
    showParams = ev.target.checked;
    loadGraph(false);
  });
  document.getElementById("task-status").addEventListener("change", function (ev) {
    table.status = ev.target.value; table.page = 1; table.render();
  });
  document.getElementById("task-search").addEventListener("input", function (ev) {
    table.q = ev.target.value.trim(); table.page = 1; table.render();
  });
  document.getElementById("view-graph").addEventListener("click", function () { showView("graph"); });
  document.getElementById("view-timeline").addEventListener("click", function () { showView("timeline"); });
  document.getElementById("cancel-btn").addEventListener("click", function () {
    if (!confirm("Cancel run " + runId + "? Running tasks are stopped.")) return;
    cov.api(api + "/cancel", { method: "POST" }).then(function (r) {
      document.getElementById("run-times").textContent = r.message;
      poll();
    }).catch(function (err) { alert("Cancel failed: " + err.message); });
  });
  window.addEventListener("resize", function () {
    if (view === "graph") graph.fit(); else { timelineDrawn = 0; refreshTimeline(); }
  });

  poll().then(function () {
    return Promise.all([loadGraph(false), loadListing(), loadDetails()]);
  }).then(function () {
    var m = /task=(\d+)/.exec(location.hash);
    if (m) selectTask(parseInt(m[1], 10), true);
  });
  tickTimer = setInterval(function () { if (!cov.TERMINAL[run.status]) tick(); }, 1000);
})();
