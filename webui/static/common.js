/* Helpers shared by the pages (and inlined into report.html). No dependencies. */
"use strict";

var cov = window.cov || (window.cov = {});

cov.STATUSES = ["NEW_OBJECT", "RUNNING", "COMPLETED", "FAILED", "CANCELLED"];
cov.TERMINAL = { COMPLETED: 1, FAILED: 1, CANCELLED: 1 };

/* The JSON the server put in <script type="application/json" id="page-data">. */
cov.pageData = function (id) {
  var node = document.getElementById(id || "page-data");
  return node ? JSON.parse(node.textContent) : {};
};

/* GET (or POST with a JSON body) and parse the JSON answer; rejects with the error text.
   options.load: a load request (it unpickles, so it needs the X-Cov-Request header, which
   another site's page cannot send). */
cov.api = function (path, options) {
  options = options || {};
  var init = { credentials: "same-origin", headers: { "Accept": "application/json" } };
  if (options.load) init.headers["X-Cov-Request"] = "1";
  if (options.method) {
    init.method = options.method;
    init.headers["X-Cov-Request"] = "1";
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(options.body || {});
  }
  return fetch(path, init).then(function (r) {
    return r.json().catch(function () { return {}; }).then(function (data) {
      if (!r.ok) throw new Error(data.error || (r.status + " " + r.statusText));
      return data;
    });
  });
};

/* el("td", {class: "x", onclick: f}, [child, "text"]) */
cov.el = function (tag, attrs, children) {
  var node = document.createElement(tag);
  if (attrs) {
    Object.keys(attrs).forEach(function (k) {
      var v = attrs[k];
      if (v === null || v === undefined || v === false) return;
      if (k.slice(0, 2) === "on") node.addEventListener(k.slice(2), v);
      else if (k === "text") node.textContent = v;
      else node.setAttribute(k, v === true ? "" : v);
    });
  }
  (children || []).forEach(function (c) {
    if (c === null || c === undefined) return;
    node.appendChild(typeof c === "string" || typeof c === "number" ?
      document.createTextNode(String(c)) : c);
  });
  return node;
};

cov.esc = function (s) {
  return String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;");
};

cov.pad = function (n) { return (n < 10 ? "0" : "") + n; };

cov.time = function (t) {
  if (!t) return "-";
  var d = new Date(t * 1000);
  return d.getFullYear() + "-" + cov.pad(d.getMonth() + 1) + "-" + cov.pad(d.getDate()) + " " +
    cov.pad(d.getHours()) + ":" + cov.pad(d.getMinutes()) + ":" + cov.pad(d.getSeconds());
};

/* The same as runner.query.format_seconds. */
cov.duration = function (s) {
  if (s === null || s === undefined) return "-";
  if (s < 1) return Math.round(s * 1000) + "ms";
  if (s < 120) return s.toFixed(1) + "s";
  var m = Math.floor(s / 60), sec = Math.floor(s % 60), h = Math.floor(m / 60);
  m = m % 60;
  return h ? h + "h" + cov.pad(m) + "m" : m + "m" + cov.pad(sec) + "s";
};

/* What people read for a status: never NEW_OBJECT (runner.query.shown_status). */
cov.LABELS = { NEW_OBJECT: "PENDING", NOT_RUN: "NOT RUN" };
cov.pill = function (status) {
  return cov.el("span", { class: "pill st-" + status, text: cov.LABELS[status] || status });
};

cov.progress = function (done, total, failed) {
  var box = cov.el("span", { class: "progress" }, [
    cov.el("span", { class: "bar" }, [cov.el("span", { class: "fill" }), cov.el("span", { class: "fail" })]),
    cov.el("span", { class: "text" })]);
  cov.setProgress(box, done, total, failed);
  return box;
};

cov.pre = function (text, cls) {
  var empty = text === null || text === undefined || text === "";
  return cov.el("pre", { class: "code " + (cls || "") + (empty ? " empty" : ""),
                         text: empty ? "(empty)" : text });
};

cov.humanSize = function (n) {
  if (n === null || n === undefined) return "-";
  var units = ["B", "KiB", "MiB", "GiB"], i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return i ? n.toFixed(1) + " " + units[i] : n + " B";
};

/* A progress bar (.progress holding .bar > .fill + .fail, and .text): the completed share green,
   the failed share red after it. */
cov.setProgress = function (box, done, total, failed) {
  var pct = function (n) { return (total ? Math.min(100, 100 * n / total) : 0).toFixed(2) + "%"; };
  box.querySelector(".fill").style.width = pct(done);
  var fail = box.querySelector(".fail");
  if (fail) fail.style.width = pct(failed || 0);
  box.querySelector(".text").textContent = done + " of " + total + " tasks" +
    (failed ? " · " + failed + " failed" : "");
};

/* The run's inputs in one line for its header: `n=200 · scale=2.0` (reprs cut to 40). */
cov.showInputs = function (box, inputs) {
  if (!box) return;
  var parts = [];
  ((inputs || {}).args || []).forEach(function (a) { parts.push(String(a)); });
  Object.keys((inputs || {}).kwargs || {}).forEach(function (k) {
    parts.push(k + "=" + inputs.kwargs[k]);
  });
  parts = parts.map(function (p) { return p.length > 40 ? p.slice(0, 39) + "…" : p; });
  box.textContent = parts.join(" · ");
  box.title = "the run's inputs: " + parts.join(", ");
};
