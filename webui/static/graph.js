/* The task graph as SVG, drawn from the server's layout (/api/runs/<id>/graph: node centres and
   sizes, edge polylines, label positions). Pan by dragging, zoom with the wheel or the buttons;
   a click on a node calls options.onSelect(id). setStatus() recolours one node in place, so a
   live refresh touches only the nodes that changed. Used by the run page and by report.html. */
"use strict";

var cov = window.cov || (window.cov = {});

cov.Graph = function (container, options) {
  this.container = container;
  this.onSelect = (options && options.onSelect) || function () {};
  this.k = 1; this.tx = 0; this.ty = 0;
  this.nodes = {};     // id -> <g>
  this.kinds = {};     // id -> kind
  this.status = {};    // id -> status
  this.selected = null;
  this.layout = null;
  this._bind();
};

cov.Graph.prototype.NS = "http://www.w3.org/2000/svg";

/* A coordinate: a finite number, else 0 (never text that could end the attribute). */
function num(v) {
  v = Number(v);
  return isFinite(v) ? v : 0;
}

function cut(text, n) {
  text = String(text === null || text === undefined ? "" : text);
  return text.length > n ? text.slice(0, n - 1) + "…" : text;
}

cov.Graph.prototype.draw = function (layout) {
  this.layout = layout;
  // Every value from the layout is escaped, numbers included: a run directory may come from
  // someone else, and its manifest can hold anything in any field.
  var esc = cov.esc, parts = [];
  parts.push('<svg xmlns="http://www.w3.org/2000/svg" class="dag"><defs>' +
    '<marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" ' +
    'orient="auto"><path d="M0,0 L10,5 L0,10 z"/></marker></defs><g class="viewport">');
  parts.push('<g class="edges">');
  layout.edges.forEach(function (e) {
    var d = "M" + e.points.map(function (p) { return num(p[0]) + "," + num(p[1]); }).join(" L");
    parts.push('<path class="edge' + (e.wait ? " wait" : "") + '" d="' + d +
      '" marker-end="url(#arrow)" data-source="' + esc(e.source) + '" data-target="' +
      esc(e.target) + '"/>');
  });
  parts.push('</g><g class="elabels">');
  layout.edges.forEach(function (e) {
    if (!e.params.length) return;
    parts.push('<text class="elabel" x="' + num(e.label_at[0] + 4) + '" y="' + num(e.label_at[1]) +
      '">' + esc(cut(e.params.join(", "), 24)) + "</text>");
  });
  parts.push('</g><g class="nodes">');
  var self = this;
  layout.nodes.forEach(function (n) {
    var x = num(n.x - n.w / 2), y = num(n.y - n.h / 2);
    self.kinds[n.id] = n.kind;
    parts.push('<g class="' + esc(self._classes(n.id)) + '" data-id="' + esc(n.id) +
      '" transform="translate(' + x + "," + y + ')"><title>' + esc(n.name) + " (#" + esc(n.id) +
      ")</title>" + '<rect width="' + num(n.w) + '" height="' + num(n.h) + '" rx="7"/>');
    if (n.kind === "parameter") {
      parts.push('<text x="8" y="17">' + esc(cut(n.value !== null && n.value !== undefined ?
        n.value : n.name, 15)) + "</text>");
    } else {
      parts.push('<text class="nm" x="9" y="18">' + esc(cut(n.name, 22)) + "</text>" +
        '<text class="meta" x="9" y="35">#' + esc(n.id) + " · " +
        esc(cut(n.executor_type || n.executor || n.kind, 16)) + "</text>");
    }
    parts.push("</g>");
  });
  parts.push("</g></g></svg>");
  this.container.innerHTML = parts.join("");
  this.svg = this.container.querySelector("svg");
  this.viewport = this.svg.querySelector(".viewport");
  this.nodes = {};
  Array.prototype.forEach.call(this.svg.querySelectorAll(".node"), function (g) {
    self.nodes[g.getAttribute("data-id")] = g;
  });
  if (this.selected !== null) this.select(this.selected, false);
  this.fit();
};

cov.Graph.prototype._classes = function (id) {
  var kind = this.kinds[id];
  var status = kind === "parameter" ? "COMPLETED" : (this.status[id] || "NEW_OBJECT");
  return "node st-" + status + " kind-" + kind + (String(this.selected) === String(id) ? " selected" : "");
};

/* Record a node's status; recolour it if it is drawn. */
cov.Graph.prototype.setStatus = function (id, status) {
  if (this.status[id] === status) return;
  this.status[id] = status;
  var g = this.nodes[id];
  if (g) g.setAttribute("class", this._classes(id));
};

cov.Graph.prototype.select = function (id, reveal) {
  var old = this.selected;
  this.selected = id;
  if (old !== null && this.nodes[old]) this.nodes[old].setAttribute("class", this._classes(old));
  var g = id !== null ? this.nodes[id] : null;
  if (!g) return;
  g.setAttribute("class", this._classes(id));
  if (reveal) this.reveal(id);
};

/* Pan so that node id is in view (centred if it was outside). */
cov.Graph.prototype.reveal = function (id) {
  var n = (this.layout.nodes || []).find(function (m) { return String(m.id) === String(id); });
  if (!n || !n.w) return;
  var r = this.container.getBoundingClientRect();
  var sx = n.x * this.k + this.tx, sy = n.y * this.k + this.ty;
  if (sx < 0 || sy < 0 || sx > r.width || sy > r.height) {
    if (this.k < 0.6) this.k = 0.8;
    this.tx = r.width / 2 - n.x * this.k;
    this.ty = r.height / 2 - n.y * this.k;
    this._apply();
  }
};

cov.Graph.prototype.fit = function () {
  if (!this.layout || !this.svg) return;
  var r = this.container.getBoundingClientRect();
  var w = Math.max(this.layout.width, 1), h = Math.max(this.layout.height, 1);
  var k = Math.min(r.width / w, r.height / h, 1.4) * 0.96;
  if (!isFinite(k) || k <= 0) k = 1;
  // A very wide graph would shrink to nothing: keep it readable, start at its top left.
  if (k < 0.08) { this.k = 0.5; this.tx = 10; this.ty = 10; this._apply(); return; }
  this.k = k;
  this.tx = (r.width - w * k) / 2;
  this.ty = Math.max((r.height - h * k) / 2, 4);
  this._apply();
};

cov.Graph.prototype.zoomBy = function (factor, cx, cy) {
  var r = this.container.getBoundingClientRect();
  if (cx === undefined) { cx = r.width / 2; cy = r.height / 2; }
  var k = Math.min(Math.max(this.k * factor, 0.02), 4);
  this.tx = cx - (cx - this.tx) * (k / this.k);
  this.ty = cy - (cy - this.ty) * (k / this.k);
  this.k = k;
  this._apply();
};

cov.Graph.prototype._apply = function () {
  if (!this.viewport) return;
  this.viewport.setAttribute("transform",
    "translate(" + this.tx.toFixed(1) + "," + this.ty.toFixed(1) + ") scale(" + this.k.toFixed(4) + ")");
  this.svg.classList.toggle("far", this.k < 0.35);
};

cov.Graph.prototype._bind = function () {
  var self = this, c = this.container, drag = null;
  c.addEventListener("mousedown", function (ev) {
    if (ev.button !== 0) return;
    drag = { x: ev.clientX, y: ev.clientY, tx: self.tx, ty: self.ty, moved: false };
    c.classList.add("dragging");
  });
  window.addEventListener("mousemove", function (ev) {
    if (!drag) return;
    var dx = ev.clientX - drag.x, dy = ev.clientY - drag.y;
    if (Math.abs(dx) + Math.abs(dy) > 3) drag.moved = true;
    self.tx = drag.tx + dx; self.ty = drag.ty + dy;
    self._apply();
  });
  window.addEventListener("mouseup", function () {
    c.classList.remove("dragging");
    setTimeout(function () { drag = null; }, 0);
  });
  c.addEventListener("click", function (ev) {
    if (drag && drag.moved) return;
    var g = ev.target.closest && ev.target.closest(".node");
    if (g) self.onSelect(parseInt(g.getAttribute("data-id"), 10));
  });
  c.addEventListener("wheel", function (ev) {
    ev.preventDefault();
    var r = c.getBoundingClientRect();
    self.zoomBy(Math.exp(-ev.deltaY * 0.0015), ev.clientX - r.left, ev.clientY - r.top);
  }, { passive: false });
};
