/* The task graph as SVG, drawn from the server's layout (/api/runs/<id>/graph: node centres and
   sizes, edge polylines, label positions). Pan by dragging, zoom with the wheel or the buttons;
   a click on a node calls options.onSelect(id), a click on a group node (a wide fan-out of one
   function, `simulate ×200`) options.onExpand(groupId), on an expanded group's title
   options.onCollapse(groupId). setStatus() recolours one node (or one cell of an expanded
   group, and its group's status bar) in place, so a live refresh touches only what changed.
   Used by the run page and by report.html. */
"use strict";

var cov = window.cov || (window.cov = {});

cov.Graph = function (container, options) {
  this.container = container;
  this.onSelect = (options && options.onSelect) || function () {};
  this.onExpand = (options && options.onExpand) || function () {};
  this.onCollapse = (options && options.onCollapse) || function () {};
  this.groupOf = {};   // member id -> group node (layout data)
  this.bars = {};      // group id -> <g> of its status bar
  this._dirty = {};    // group ids whose bar is to be redrawn
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

cov.Graph.num = num;
cov.Graph.cut = cut;

cov.Graph.prototype.draw = function (layout) {
  this.layout = layout;
  // Every value from the layout is escaped, numbers included: a run directory may come from
  // someone else, and its manifest can hold anything in any field.
  var esc = cov.esc, parts = [], self = this;
  this.groupOf = {};
  parts.push('<svg xmlns="http://www.w3.org/2000/svg" class="dag"><defs>' +
    '<marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" ' +
    'orient="auto"><path d="M0,0 L10,5 L0,10 z"/></marker></defs><g class="viewport">');
  parts.push('<g class="edges">');
  layout.edges.forEach(function (e) {
    var d = "M" + e.points.map(function (p) { return num(p[0]) + "," + num(p[1]); }).join(" L");
    parts.push('<path class="edge' + (e.wait ? " wait" : "") + (e.count > 1 ? " many" : "") +
      '" d="' + d + '" marker-end="url(#arrow)" data-source="' + esc(e.source) +
      '" data-target="' + esc(e.target) + '"/>');
  });
  parts.push('</g><g class="elabels">');
  layout.edges.forEach(function (e) {
    var label = cut(e.params.join(", "), 24) + (e.count > 1 ? " ×" + num(e.count) : "");
    if (!label) return;
    parts.push('<text class="elabel" x="' + num(e.label_at[0] + 4) + '" y="' + num(e.label_at[1]) +
      '">' + esc(label) + "</text>");
  });
  parts.push('</g><g class="nodes">');
  layout.nodes.forEach(function (n) {
    var x = num(n.x - n.w / 2), y = num(n.y - n.h / 2);
    self.kinds[n.id] = n.kind;
    if (n.kind === "group") { parts.push(self._groupMarkup(n, x, y)); return; }
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
  this.bars = {};
  Array.prototype.forEach.call(this.svg.querySelectorAll(".node, .cell"), function (g) {
    self.nodes[g.getAttribute("data-id")] = g;
  });
  Array.prototype.forEach.call(this.svg.querySelectorAll(".gbar"), function (g) {
    self.bars[g.getAttribute("data-group")] = g;
  });
  layout.nodes.forEach(function (n) {
    if (n.kind !== "group") return;
    self._drawBar(n);
    if (n.expanded && n.members.length > cov.Graph.CELL_ELEMENTS) self._drawCellImage(n);
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
  var g = this.nodes[id], group = this.groupOf[id];
  if (g) g.setAttribute("class", group ? this._cellClass(id) : this._classes(id));
  if (group && !this._dirty[group.id]) {
    // Bars are redrawn once per frame however many members changed.
    this._dirty[group.id] = group;
    var self = this;
    if (!this._barTimer) this._barTimer = requestAnimationFrame(function () {
      self._barTimer = null;
      var dirty = self._dirty;
      self._dirty = {};
      Object.keys(dirty).forEach(function (k) {
        var n = dirty[k];
        self._drawBar(n);
        if (n.expanded && n.members.length > cov.Graph.CELL_ELEMENTS) self._drawCellImage(n);
      });
    });
  }
};

cov.Graph.prototype.select = function (id, reveal) {
  var old = this.selected, self = this;
  this.selected = id;
  function restyle(k) {
    if (k !== null && self.nodes[k])
      self.nodes[k].setAttribute("class", self.groupOf[k] ? self._cellClass(k) : self._classes(k));
  }
  restyle(old);
  if (this.svg) this._markSelectedCell();
  var g = id !== null ? this.nodes[id] : null;
  if (!g && !this.groupOf[id]) return;
  restyle(id);
  if (reveal) this.reveal(id);
};

/* Pan so that node id is in view (centred if it was outside). */
cov.Graph.prototype.reveal = function (id) {
  var n = (this.layout.nodes || []).find(function (m) { return String(m.id) === String(id); });
  var group = this.groupOf[id], x, y;
  n = n || group;
  if (!n || !n.w) return;
  x = n.x; y = n.y;
  if (group && group.expanded) {  // its cell, not the middle of its group
    var c = this._cellAt(group, group.members.indexOf(id));
    x = group.x - group.w / 2 + c[0] + c[2] / 2;
    y = group.y - group.h / 2 + c[1] + c[3] / 2;
  }
  var r = this.container.getBoundingClientRect();
  var sx = x * this.k + this.tx, sy = y * this.k + this.ty;
  if (sx < 0 || sy < 0 || sx > r.width || sy > r.height) {
    if (this.k < 0.6) this.k = 0.8;
    this.tx = r.width / 2 - x * this.k;
    this.ty = r.height / 2 - y * this.k;
    this._apply();
  }
};

cov.Graph.prototype.fit = function () {
  if (!this.layout || !this.svg) return;
  var r = this.container.getBoundingClientRect();
  var w = Math.max(this.layout.width, 1), h = Math.max(this.layout.height, 1);
  // The whole graph, however small that makes it (wide fan-outs are groups, so it stays
  // readable at real sizes); never larger than 1.4.
  var k = Math.min(r.width / w, r.height / h, 1.4) * 0.96;
  if (!isFinite(k) || k <= 0) k = 1;
  this.k = k;
  this.tx = (r.width - w * k) / 2;
  this.ty = Math.max((r.height - h * k) / 2, 4);
  this._apply();
};

cov.Graph.prototype.zoomBy = function (factor, cx, cy) {
  var r = this.container.getBoundingClientRect();
  if (cx === undefined) { cx = r.width / 2; cy = r.height / 2; }
  var k = Math.min(Math.max(this.k * factor, 0.002), 4);
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

/* While the user drags or zooms, the drawing is simplified (no text, no cell outlines): a frame
   then costs a fraction of a full one at thousands of cells. It is whole again 150 ms after. */
cov.Graph.prototype._moving = function () {
  var svg = this.svg;
  if (!svg) return;
  if (!svg.classList.contains("moving")) svg.classList.add("moving");
  clearTimeout(this._still);
  this._still = setTimeout(function () { svg.classList.remove("moving"); }, 150);
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
    self._moving();
    self._apply();
  });
  window.addEventListener("mouseup", function () {
    c.classList.remove("dragging");
    setTimeout(function () { drag = null; }, 0);
  });
  c.addEventListener("click", function (ev) {
    if (drag && drag.moved) return;
    var t = ev.target.closest ? ev.target : null;
    if (!t) return;
    var g = t.closest("[data-collapse]");
    if (g) { self.onCollapse(g.getAttribute("data-collapse")); return; }
    g = t.closest(".cellhit");
    if (g) {
      var m = self._cellFromEvent(g, ev);
      if (m !== null) self.onSelect(m);
      return;
    }
    g = t.closest(".node.group");
    if (g) { self.onExpand(g.getAttribute("data-group")); return; }
    g = t.closest(".node, .cell");
    if (g) self.onSelect(parseInt(g.getAttribute("data-id"), 10));
  });
  c.addEventListener("wheel", function (ev) {
    ev.preventDefault();
    var r = c.getBoundingClientRect();
    self._moving();
    self.zoomBy(Math.exp(-ev.deltaY * 0.0015), ev.clientX - r.left, ev.clientY - r.top);
  }, { passive: false });
};
