/* The run's timeline (Gantt): one row per worker — a local pool worker (host and pid), else a
   host — each task a bar from its start to its end (to now while it runs), tasks that overlap
   on one row stacked in lanes. Drawn from /api/runs/<id>/tasks (where each task ran) and the
   run's states ([status, started, ended] by id); a click on a bar calls options.onSelect(id). */
"use strict";

var cov = window.cov || (window.cov = {});

cov.Timeline = function (container, options) {
  this.container = container;
  this.onSelect = (options && options.onSelect) || function () {};
  this.selected = null;
  var self = this;
  container.addEventListener("click", function (ev) {
    var bar = ev.target.closest && ev.target.closest(".bar[data-id]");
    if (bar) self.onSelect(parseInt(bar.getAttribute("data-id"), 10));
  });
};

/* The row a task ran on: local pool workers by pid (each runs many tasks one after the other);
   remote tasks by host (their pids or job ids are one per task). */
cov.Timeline.rowOf = function (t) {
  if (!t.host) return null;
  return t.host + ((t.backend === "local" || !t.backend) && t.pid ? " · pid " + t.pid : "");
};

cov.Timeline.prototype.draw = function (tasks, states, now) {
  var esc = cov.esc, rows = {}, order = [], t0 = Infinity, t1 = -Infinity;
  tasks.forEach(function (t) {
    var s = states[t.id] || [t.status, t.started, t.ended];
    if (!s[1]) return;
    var key = cov.Timeline.rowOf(t) || "(where unknown)";
    if (!rows[key]) { rows[key] = []; order.push(key); }
    var end = s[2] || now;
    rows[key].push({ id: t.id, name: t.name, status: s[0], start: s[1], end: Math.max(end, s[1]) });
    t0 = Math.min(t0, s[1]); t1 = Math.max(t1, end);
  });
  if (!order.length) {
    this.container.replaceChildren(cov.el("p", { class: "muted pad", text: "No task has started yet." }));
    return;
  }
  order.sort(function (a, b) {
    return Math.min.apply(null, rows[a].map(function (x) { return x.start; })) -
      Math.min.apply(null, rows[b].map(function (x) { return x.start; }));
  });
  var label = 190, width = Math.max(this.container.clientWidth - 16, 500), plot = width - label - 12;
  var span = Math.max(t1 - t0, 0.001), LANE = 16, GAP = 8, AXIS = 24;
  function x(t) { return label + (t - t0) / span * plot; }
  var parts = [], y = AXIS, self = this;
  order.forEach(function (key) {
    // Greedy lanes: a bar goes to the first lane free at its start.
    var bars = rows[key].sort(function (a, b) { return a.start - b.start; }), lanes = [];
    bars.forEach(function (b) {
      var lane = 0;
      while (lane < lanes.length && lanes[lane] > b.start + 1e-6) lane++;
      lanes[lane] = b.end;
      b.lane = lane;
    });
    var h = lanes.length * LANE + 4;
    parts.push('<g class="trow" data-row="' + esc(key) + '"><rect class="row-bg" x="0" y="' + y +
      '" width="' + width + '" height="' + h + '"/><text class="row-label" x="6" y="' + (y + 13) +
      '">' + esc(key.length > 28 ? key.slice(0, 27) + "…" : key) + " (" + bars.length + ")</text>");
    bars.forEach(function (b) {
      var bx = x(b.start), bw = Math.max(x(b.end) - bx, 1.5);
      parts.push('<rect class="bar st-' + esc(b.status) + (String(b.id) === String(self.selected) ?
        " selected" : "") + '" data-id="' + esc(b.id) + '" x="' + bx.toFixed(1) + '" y="' +
        (y + 3 + b.lane * LANE) + '" width="' + bw.toFixed(1) + '" height="' + (LANE - 4) +
        '"><title>#' + esc(b.id) + " " + esc(b.name) + " · " + esc(b.status) + " · " +
        esc(cov.duration(b.end - b.start)) + "</title></rect>");
    });
    parts.push("</g>");
    y += h + GAP;
  });
  var axis = ['<g class="axis">'];
  for (var i = 0; i <= 5; i++) {
    var tx = label + plot * i / 5;
    axis.push('<line x1="' + tx + '" x2="' + tx + '" y1="16" y2="' + y + '"/><text x="' + (tx + 2) +
      '" y="12"' + (i === 5 ? ' text-anchor="end"' : "") + ">+" + esc(cov.duration(span * i / 5)) +
      "</text>");
  }
  axis.push("</g>");
  this.container.innerHTML = '<svg xmlns="http://www.w3.org/2000/svg" width="' + width +
    '" height="' + y + '">' + axis.join("") + parts.join("") + "</svg>";
};

cov.Timeline.prototype.select = function (id) {
  this.selected = id;
  Array.prototype.forEach.call(this.container.querySelectorAll(".bar"), function (b) {
    b.classList.toggle("selected", b.getAttribute("data-id") === String(id));
  });
};
