/* The task table of the run page and report.html: filter by status and name, sort by any
   column (status, started, runtime, ...), one column per task parameter given a value at
   dispatch (the most used first), 200 rows a page. Rows come from /api/runs/<id>/tasks (or the
   report's copy); states from options.state(id) -> [status, started, ended], so a live
   refresh re-renders only the rows that changed (updateRow), unless the order depends on them. */
"use strict";

var cov = window.cov || (window.cov = {});

// Status sort order: what needs attention first.
cov.STATUS_RANK = { FAILED: 0, RUNNING: 1, DISPATCHING: 1, QUEUED: 2, STARTING: 2, NEW_OBJECT: 3,
                    CANCELLED: 4, NOT_RUN: 4, COMPLETED: 5 };
cov.MAX_PARAM_COLUMNS = 3;

cov.TaskTable = function (options) {
  this.o = options;
  this.tasks = []; this.byId = {}; this.params = [];
  this.page = 1; this.per = 200; this.status = ""; this.q = "";
  this.sort = { key: "id", dir: 1 };
  this.rows = {}; this.selected = null;
  var self = this;
  options.table.querySelector("thead").addEventListener("click", function (ev) {
    var th = ev.target.closest("th[data-sort]");
    if (!th) return;
    var key = th.getAttribute("data-sort");
    // Again on the same column: the other way; a new one: longest runtime first, else ascending.
    self.sort = { key: key, dir: self.sort.key === key ? -self.sort.dir : (key === "runtime" ? -1 : 1) };
    self.page = 1;
    self.render();
  });
};

cov.TaskTable.prototype.setTasks = function (listing) {
  var self = this;
  this.tasks = listing.tasks;
  this.byId = {};
  this.tasks.forEach(function (t) { self.byId[t.id] = t; });
  this.params = (listing.params || []).slice(0, cov.MAX_PARAM_COLUMNS);
  this._head();
  this.render();
};

cov.TaskTable.prototype._head = function () {
  var cols = [["id", "#"], ["name", "Name"], ["status", "Status"], ["start", "Started"],
    ["runtime", "Runtime"]];
  this.params.forEach(function (p) { cols.push(["param:" + p, p]); });
  cols.push(["executor", "Executor"]);
  var sort = this.sort;
  var tr = cov.el("tr", {}, cols.map(function (c) {
    var cls = "sortable" + (c[0].indexOf("param:") === 0 ? " param" : "") +
      (sort.key === c[0] ? (sort.dir > 0 ? " sorted-asc" : " sorted-desc") : "");
    return cov.el("th", { class: cls, "data-sort": c[0], title: "Sort by " + c[1], text: c[1] });
  }));
  var thead = this.o.table.querySelector("thead");
  thead.replaceChildren(tr);
};

cov.TaskTable.prototype._state = function (id) {
  return this.o.state(id) || ["NEW_OBJECT", null, null];
};

cov.TaskTable.prototype._runtime = function (t) {
  if (!t[1]) return null;
  return (t[2] || (Date.now() / 1000 + (this.o.skew ? this.o.skew() : 0))) - t[1];
};

cov.TaskTable.prototype._value = function (n, key) {
  var t = this._state(n.id);
  switch (key) {
    case "id": return n.id;
    case "name": return n.name.toLowerCase();
    case "status": var r = cov.STATUS_RANK[t[0]]; return r === undefined ? 2 : r;
    case "executor": return n.executor_type || n.executor || "";
    case "start": return t[1] || Infinity;
    case "runtime": var rt = this._runtime(t); return rt === null ? -1 : rt;
    default:
      var v = n.params[key.slice(6)];
      if (v === undefined || v === null) return null;
      var f = Number(v);
      return isFinite(f) && v !== "" ? f : v;
  }
};

cov.TaskTable.prototype.sortsByState = function () {
  return !!this.status || ["status", "start", "runtime"].indexOf(this.sort.key) >= 0;
};

cov.TaskTable.prototype.render = function () {
  var self = this, q = this.q.toLowerCase();
  var shown = this.tasks.filter(function (n) {
    if (self.status && self._state(n.id)[0] !== self.status) return false;
    return !q || String(n.id) === q || n.name.toLowerCase().indexOf(q) >= 0;
  });
  var key = this.sort.key, dir = this.sort.dir;
  var keyed = shown.map(function (n) { return [self._value(n, key), n.id, n]; });
  keyed.sort(function (a, b) {
    var x = a[0], y = b[0];
    if ((x === null) !== (y === null)) return x === null ? 1 : -1;  // no value: last, both ways
    if (typeof x !== typeof y) { x = String(x); y = String(y); }
    if (x < y) return -dir;
    if (x > y) return dir;
    return a[1] - b[1];
  });
  shown = keyed.map(function (k) { return k[2]; });
  this._head();
  var pages = Math.max(1, Math.ceil(shown.length / this.per));
  this.page = Math.min(this.page, pages);
  var slice = shown.slice((this.page - 1) * this.per, this.page * this.per);
  this.rows = {};
  var trs = slice.map(function (n) {
    var tr = cov.el("tr", { class: "clickable" + (String(n.id) === String(self.selected) ? " selected" : ""),
      "data-id": n.id, onclick: function () { self.o.onSelect(n.id); } }, self._cells(n));
    self.rows[n.id] = tr;
    return tr;
  });
  var tbody = this.o.table.querySelector("tbody");
  tbody.replaceChildren.apply(tbody, trs);
  if (this.o.count) this.o.count.textContent = shown.length + " of " + this.tasks.length;
  var pager = this.o.pager;
  if (!pager) return;
  pager.replaceChildren();
  if (pages > 1) {
    pager.append(
      cov.el("button", { disabled: this.page <= 1, text: "‹", onclick: function () { self.page--; self.render(); } }),
      cov.el("span", { class: "muted", text: "page " + this.page + " of " + pages }),
      cov.el("button", { disabled: this.page >= pages, text: "›", onclick: function () { self.page++; self.render(); } }));
  }
};

cov.TaskTable.prototype._cells = function (n) {
  var t = this._state(n.id);
  var cells = [cov.el("td", { class: "num", text: n.id }), cov.el("td", { text: n.name }),
    cov.el("td", {}, [cov.pill(t[0])]),
    cov.el("td", { text: t[1] ? cov.time(t[1]).slice(11) : "-" }),
    cov.el("td", { class: "num", text: cov.duration(this._runtime(t)) })];
  this.params.forEach(function (p) {
    var v = n.params[p];
    cells.push(cov.el("td", { class: "param", text: v === undefined || v === null ? "" : v,
                              title: v === undefined || v === null ? null : p + " = " + v }));
  });
  cells.push(cov.el("td", { text: n.executor_type || n.executor || "-" }));
  return cells;
};

cov.TaskTable.prototype.updateRow = function (id) {
  var tr = this.rows[id], n = this.byId[id];
  if (tr && n) tr.replaceChildren.apply(tr, this._cells(n));
};

cov.TaskTable.prototype.select = function (id) {
  var self = this;
  this.selected = id;
  Object.keys(this.rows).forEach(function (k) {
    self.rows[k].classList.toggle("selected", String(k) === String(id));
  });
};
