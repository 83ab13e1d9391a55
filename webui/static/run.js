/* The run page: graph + task table + run details + task view, kept live by ONE request per
   refresh: GET /api/runs/<id>/state?since=<version> answers only the tasks that changed. */
"use strict";

(function () {
  var page = cov.pageData();
  var runId = page.dispatch_id;
  var api = "/api/runs/" + encodeURIComponent(runId);
  var graphBox = document.getElementById("graph");
  var graph = new cov.Graph(graphBox, { onSelect: function (id) { selectTask(id, false); } });

  var run = { version: 0, status: null, tasks: {}, skew: 0 };  // tasks: id -> [status, start, end]
  var nodes = [], nodeById = {};
  var table = { page: 1, per: 200, status: "", q: "", rows: {} };
  var selected = null, showParams = false, pollTimer = null, tickTimer = null;

  // -- header -------------------------------------------------------------------------------------
  function renderHead(s) {
    var pill = document.getElementById("run-status");
    pill.className = "pill st-" + s.status;
    pill.textContent = s.status;
    var prog = document.getElementById("run-progress");
    prog.querySelector(".fill").style.width = (s.total ? Math.round(100 * s.done / s.total) : 0) + "%";
    prog.querySelector(".text").textContent = s.done + " of " + s.total + " tasks";
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
    if (!cov.TERMINAL[run.status]) pollTimer = setTimeout(poll, nodes.length > 3000 ? 2000 : 1000);
  }

  function applyState(s) {
    var ended = run.status !== null && !cov.TERMINAL[run.status] && !!cov.TERMINAL[s.status];
    if (s.full) run.tasks = {};
    var changed = Object.keys(s.tasks);
    changed.forEach(function (k) {
      run.tasks[k] = s.tasks[k];
      graph.setStatus(k, s.tasks[k][0]);
      updateRow(k);
    });
    run.version = s.version; run.status = s.status;
    run.started = s.started; run.ended = s.ended; run.skew = s.now - Date.now() / 1000;
    renderHead(s);
    if (table.status && changed.length) renderTable();
    if (selected !== null && changed.indexOf(String(selected)) >= 0) loadTask(selected);
    if (ended) loadDetails();  // the result or the error is known now
  }

  // -- graph --------------------------------------------------------------------------------------
  function loadGraph(force) {
    var q = "?parameters=" + (showParams ? 1 : 0) + (force ? "&force=1" : "");
    if (force) graphBox.replaceChildren(cov.el("p", { class: "muted pad", text: "Laying out the graph…" }));
    return cov.api(api + "/graph" + q).then(function (g) {
      nodes = g.nodes.filter(function (n) { return n.kind !== "parameter"; });
      nodeById = {};
      nodes.forEach(function (n) { nodeById[n.id] = n; });
      Object.keys(run.tasks).forEach(function (k) { graph.status[k] = run.tasks[k][0]; });
      if (g.laid_out) {
        graph.draw(g);
      } else {
        graphBox.replaceChildren(cov.el("div", { class: "pad" }, [
          cov.el("p", { class: "muted", text: "Not drawn: " + g.reason + ". The task table lists every task." }),
          cov.el("button", { text: "Draw it anyway", onclick: function () { loadGraph(true); } })]));
      }
      renderTable();
    }).catch(function (err) {
      graphBox.replaceChildren(cov.el("p", { class: "error-text pad", text: "Cannot load the graph: " + err.message }));
    });
  }

  // -- task table ---------------------------------------------------------------------------------
  function statusOf(id) {
    var t = run.tasks[id];
    return t ? t[0] : "NEW_OBJECT";
  }

  function rowCells(n) {
    var t = run.tasks[n.id] || [];
    var runtime = t[1] ? ((t[2] || (Date.now() / 1000 + run.skew)) - t[1]) : null;
    return [cov.el("td", { class: "num", text: n.id }), cov.el("td", { text: n.name }),
      cov.el("td", {}, [cov.pill(statusOf(n.id))]),
      cov.el("td", { text: n.executor_type || n.executor || "-" }),
      cov.el("td", { text: t[1] ? cov.time(t[1]).slice(11) : "-" }),
      cov.el("td", { class: "num", text: cov.duration(runtime) })];
  }

  function renderTable() {
    var q = table.q.toLowerCase();
    var shown = nodes.filter(function (n) {
      if (table.status && statusOf(n.id) !== table.status) return false;
      return !q || String(n.id) === q || n.name.toLowerCase().indexOf(q) >= 0;
    });
    var pages = Math.max(1, Math.ceil(shown.length / table.per));
    table.page = Math.min(table.page, pages);
    var slice = shown.slice((table.page - 1) * table.per, table.page * table.per);
    table.rows = {};
    var trs = slice.map(function (n) {
      var tr = cov.el("tr", { class: "clickable" + (String(n.id) === String(selected) ? " selected" : ""),
        "data-id": n.id, onclick: function () { selectTask(n.id, true); } }, rowCells(n));
      table.rows[n.id] = tr;
      return tr;
    });
    var tbody = document.querySelector("#task-table tbody");
    tbody.replaceChildren.apply(tbody, trs);
    document.getElementById("task-count").textContent = shown.length + " of " + nodes.length;
    var pager = document.getElementById("task-pager");
    pager.replaceChildren();
    if (pages > 1) {
      pager.append(
        cov.el("button", { disabled: table.page <= 1, text: "‹", onclick: function () { table.page--; renderTable(); } }),
        cov.el("span", { class: "muted", text: "page " + table.page + " of " + pages }),
        cov.el("button", { disabled: table.page >= pages, text: "›", onclick: function () { table.page++; renderTable(); } }));
    }
  }

  function updateRow(id) {
    var tr = table.rows[id], n = nodeById[id];
    if (tr && n) tr.replaceChildren.apply(tr, rowCells(n));
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
    Object.keys(table.rows).forEach(function (k) {
      table.rows[k].classList.toggle("selected", String(k) === String(id));
    });
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
      if (String(selected) !== String(id)) return;
      cov.renderTask(box, t, { live: true });
      tailLogs(box, t);
    }).catch(function (err) {
      box.replaceChildren(cov.el("p", { class: "error-text", text: "Cannot load task " + id + ": " + err.message }));
    });
  }

  // -- live log tail: while the shown task runs, its stdout/stderr grow in place -------------------
  var tail = { timer: null, id: null };
  var TAIL_CHARS = 256 * 1024;  // the end shown, as the server's first answer

  function tailLogs(box, t) {
    clearTimeout(tail.timer);
    tail = { timer: null, id: t.id, offsets: {}, text: {} };
    if (cov.TERMINAL[t.status] || t.stdout === undefined) return;
    ["stdout", "stderr"].forEach(function (s) {
      tail.offsets[s] = t[s] ? t[s].size : 0;
      tail.text[s] = t[s] ? t[s].text : "";
    });
    var mine = tail;
    function step() {
      if (tail !== mine || String(selected) !== String(mine.id)) return;
      var url = api + "/tasks/" + mine.id + "/logs?stdout=" + mine.offsets.stdout +
        "&stderr=" + mine.offsets.stderr;
      cov.api(url).then(function (r) {
        if (tail !== mine) return;
        ["stdout", "stderr"].forEach(function (s) {
          var c = r[s];
          if (!c || c.refused) return;
          var text = (c.restarted || c.skipped) ? c.text : mine.text[s] + c.text;
          mine.offsets[s] = c.end;
          if (text === mine.text[s]) return;
          mine.text[s] = text.length > TAIL_CHARS ? text.slice(text.length - TAIL_CHARS) : text;
          var pre = box.querySelector("pre." + s);
          if (!pre) return;
          var atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
          pre.textContent = mine.text[s];
          pre.classList.remove("empty");
          var head = pre.previousElementSibling;  // "stdout · 14 B": the size as it grows
          if (head && head.firstChild && head.firstChild.nodeType === 3)
            head.firstChild.nodeValue = s + " · " + cov.humanSize(c.size) + " ";
          if (atEnd) pre.scrollTop = pre.scrollHeight;
        });
      }).catch(function () {}).then(function () {
        if (tail === mine && !cov.TERMINAL[statusOf(mine.id)]) mine.timer = setTimeout(step, 1000);
      });
    }
    mine.timer = setTimeout(step, 500);
  }

  function loadDetails() {
    var box = document.getElementById("tab-details");
    return cov.api(api).then(function (d) {
      document.getElementById("run-title").textContent = d.lattice;
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
  document.getElementById("show-params").addEventListener("change", function (ev) {
    showParams = ev.target.checked;
    loadGraph(false);
  });
  document.getElementById("task-status").addEventListener("change", function (ev) {
    table.status = ev.target.value; table.page = 1; renderTable();
  });
  document.getElementById("task-search").addEventListener("input", function (ev) {
    table.q = ev.target.value.trim(); table.page = 1; renderTable();
  });
  document.getElementById("cancel-btn").addEventListener("click", function () {
    if (!confirm("Cancel run " + runId + "? Running tasks are stopped.")) return;
    cov.api(api + "/cancel", { method: "POST" }).then(function (r) {
      document.getElementById("run-times").textContent = r.message;
      poll();
    }).catch(function (err) { alert("Cancel failed: " + err.message); });
  });
  window.addEventListener("resize", function () { graph.fit(); });

  poll().then(function () {
    return Promise.all([loadGraph(false), loadDetails()]);
  }).then(function () {
    var m = /task=(\d+)/.exec(location.hash);
    if (m) selectTask(parseInt(m[1], 10), true);
  });
  tickTimer = setInterval(function () { if (!cov.TERMINAL[run.status]) tick(); }, 1000);
})();
