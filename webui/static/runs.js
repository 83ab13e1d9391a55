/* The runs page: /api/runs with the status tab, the search and the page in the URL's query;
   refreshed every 2 s while a shown run is unfinished. Sublattice runs nest under their parent. */
"use strict";

(function () {
  var params = new URLSearchParams(location.search);
  var view = { status: params.get("status") || "ALL", q: params.get("q") || "",
               page: parseInt(params.get("page") || "1", 10) || 1 };
  var expanded = {};
  var timer = null, searchTimer = null;

  var tabs = document.getElementById("status-tabs");
  var search = document.getElementById("search");
  var body = document.getElementById("runs-body");
  var pager = document.getElementById("pager");
  search.value = view.q;

  function syncUrl() {
    var p = new URLSearchParams();
    if (view.status !== "ALL") p.set("status", view.status);
    if (view.q) p.set("q", view.q);
    if (view.page > 1) p.set("page", view.page);
    var qs = p.toString();
    history.replaceState(null, "", location.pathname + (qs ? "?" + qs : ""));
  }

  function load() {
    clearTimeout(timer);
    var p = new URLSearchParams({ status: view.status, q: view.q, page: view.page });
    return cov.api("/api/runs?" + p).then(render).catch(function (err) {
      body.replaceChildren(cov.el("tr", {}, [cov.el("td", { colspan: 7, class: "error-text",
        text: "Cannot load the runs: " + err.message })]));
      timer = setTimeout(load, 5000);
    });
  }

  function anyRunning(rows) {
    return rows.some(function (r) {
      return !cov.TERMINAL[r.status] && r.status !== "UNREADABLE" || anyRunning(r.children || []);
    });
  }

  function render(data) {
    Array.prototype.forEach.call(tabs.querySelectorAll("button"), function (b) {
      b.classList.toggle("active", b.dataset.status === view.status);
      var n = data.counts[b.dataset.status] || 0;
      b.querySelector(".count").textContent = n ? "(" + n + ")" : "";
    });
    var rows = [];
    data.runs.forEach(function (run) { addRows(rows, run, 0, data.now); });
    if (!rows.length) {
      rows.push(cov.el("tr", {}, [cov.el("td", { colspan: 7, class: "muted",
        text: data.total === 0 && !view.q && view.status === "ALL" ?
          "No runs under " + data.home + " yet: dispatch one with `cov dispatch`." :
          "No run matches." })]));
    }
    body.replaceChildren.apply(body, rows);
    view.page = data.page;
    pager.replaceChildren(
      cov.el("button", { disabled: data.page <= 1, onclick: function () { go(data.page - 1); },
                         text: "‹ Newer" }),
      cov.el("span", { class: "muted", text: "page " + data.page + " of " + data.pages +
                       " · " + data.total + " runs" }),
      cov.el("button", { disabled: data.page >= data.pages,
                         onclick: function () { go(data.page + 1); }, text: "Older ›" }));
    if (anyRunning(data.runs)) timer = setTimeout(load, 2000);
  }

  function addRows(rows, run, depth, now) {
    var kids = run.children || [];
    var id = run.dispatch_id;
    var toggle = kids.length ? cov.el("span", { class: "toggle", title: kids.length +
      " sublattice run(s)", text: expanded[id] ? "▾" : "▸", onclick: function (ev) {
        ev.preventDefault(); expanded[id] = !expanded[id]; load(); } }) :
      cov.el("span", { class: "toggle" });
    var started = run.started, ended = run.ended;
    var runtime = started ? ((ended || now) - started) : null;
    var tr = cov.el("tr", { class: depth ? "child" : null, "data-id": id }, [
      cov.el("td", {}, [toggle, cov.el("a", { class: "mono", href: "/run/" + id, text: id })]),
      cov.el("td", {}, labelCells(run, depth)),
      cov.el("td", {}, [cov.pill(run.status)]),
      cov.el("td", {}, [cov.progress(run.done, run.total, run.failed_count)]),
      cov.el("td", { text: cov.time(started) }),
      cov.el("td", { text: ended ? cov.time(ended) : "-" }),
      cov.el("td", { class: "num", text: cov.duration(runtime) })]);
    if (depth) tr.style.setProperty("--depth", depth);
    if (run.status === "UNREADABLE") tr.title = run.error || "";
    rows.push(tr);
    if (expanded[id] || (view.q && kids.length && kids.some(function (k) { return matches(k); }))) {
      kids.forEach(function (k) { addRows(rows, k, depth + 1, now); });
    }
  }

  // The lattice, and the run's --name and --tag labels given at dispatch (as `cov runs` shows).
  function labelCells(run, depth) {
    var parts = [document.createTextNode(run.lattice +
      (depth && run.parent ? "  (node " + run.parent.node + ")" : ""))];
    if (run.name) parts.push(cov.el("span", { class: "run-name", text: run.name }));
    (run.tags || []).forEach(function (t) { parts.push(cov.el("span", { class: "tag", text: t })); });
    return parts;
  }

  function matches(run) {  // as the server's search (webui/views.py _matches)
    var q = view.q.toLowerCase();
    var labels = [run.dispatch_id, run.lattice, run.name || ""].concat(run.tags || []);
    return labels.some(function (l) { return String(l).toLowerCase().indexOf(q) >= 0; }) ||
      (run.children || []).some(matches);
  }

  function go(page) { view.page = page; syncUrl(); load(); }

  tabs.addEventListener("click", function (ev) {
    var b = ev.target.closest("button");
    if (!b) return;
    view.status = b.dataset.status; view.page = 1; syncUrl(); load();
  });
  search.addEventListener("input", function () {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(function () { view.q = search.value.trim(); view.page = 1; syncUrl(); load(); }, 200);
  });
  load();
})();
