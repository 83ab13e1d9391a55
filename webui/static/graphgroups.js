/* Group nodes of the task graph (see webui/groups.py): a wide fan-out of one function drawn
   as one box with a status bar of its members, or expanded into a grid of one cell per member
   (a bitmap for large groups). Methods of cov.Graph; loaded after graph.js. */
"use strict";

(function () {
  var num = cov.Graph.num, cut = cov.Graph.cut;

  /* A group node: collapsed, a box `name ×count` with a status bar of its members; expanded, a
     frame with a title (click: collapse) and one small cell per member (click: its task). */
  cov.Graph.prototype._groupMarkup = function (n, x, y) {
    var esc = cov.esc, self = this, parts = [];
    n.members.forEach(function (m) { self.groupOf[m] = n; });
    var title = esc(n.name) + " ×" + num(n.count);
    if (!n.expanded) {
      parts.push('<g class="node group ' + esc(this._groupClass(n)) + '" data-group="' + esc(n.id) +
        '" transform="translate(' + x + "," + y + ')"><title>' + title + " (#" + esc(n.members[0]) +
        "…): click to show every task</title>" + '<rect class="stack" x="6" y="6" width="' +
        num(n.w) + '" height="' + num(n.h) + '" rx="7"/><rect class="box" width="' + num(n.w) +
        '" height="' + num(n.h) + '" rx="7"/>' + '<text class="nm" x="9" y="18">' +
        esc(cut(n.name, 18)) + " ×" + num(n.count) + "</text>" + '<text class="meta" x="9" y="34">' +
        esc(cut(n.executor_type || n.executor || n.member_kind, 14)) + " · ⊕ expand</text>" +
        '<g class="gbar" data-group="' + esc(n.id) + '" transform="translate(9,' + num(n.h - 17) +
        ')"></g></g>');
      return parts.join("");
    }
    parts.push('<g class="group-frame" transform="translate(' + x + "," + y + ')">' +
      '<rect class="frame" width="' + num(n.w) + '" height="' + num(n.h) + '" rx="9"/>' +
      '<g class="gtitle" data-collapse="' + esc(n.id) + '"><title>click to collapse</title>' +
      '<text class="nm" x="10" y="19">' + title + " · ⊖ collapse</text></g>" +
      '<g class="gbar" data-group="' + esc(n.id) + '" transform="translate(' +
      num(Math.min(n.w - 130, 260)) + ',10)"></g>');
    if (n.members.length > cov.Graph.CELL_ELEMENTS) {
      // One bitmap and one hit area, not an element per cell: thousands of elements make every
      // frame of a pan slow (70 ms, against 17 ms for the bitmap, at 5,000 cells in Chromium).
      // A click finds its cell from its position.
      parts.push('<g class="cells many" data-group="' + esc(n.id) + '"></g>' +
        '<rect class="cellhit" data-cells="' + esc(n.id) + '" x="4" y="' + num(n.head) +
        '" width="' + num(n.cols * n.cell_w) + '" height="' +
        num(Math.ceil(n.members.length / Math.max(1, n.cols)) * n.cell_h) + '"/>' +
        '<rect class="cellsel" width="0" height="0"/></g>');
      return parts.join("");
    }
    parts.push('<g class="cells">');
    var labels = [];
    n.members.forEach(function (m, i) {
      var c = self._cellAt(n, i);
      parts.push('<rect class="' + esc(self._cellClass(m)) + '" data-id="' + esc(m) + '" x="' + c[0] +
        '" y="' + c[1] + '" width="' + c[2] + '" height="' + c[3] + '" rx="3"/>');
      labels.push('<text x="' + (c[0] + 5) + '" y="' + (c[1] + c[3] - 5) + '">#' + esc(m) + "</text>");
    });
    parts.push('</g><g class="clabels">' + labels.join("") + "</g></g>");
    return parts.join("");
  };

  cov.Graph.CELL_ELEMENTS = 400;  // above this many members, cells are drawn as one bitmap

  /* [x, y, w, h] of member i's cell inside its expanded group. */
  cov.Graph.prototype._cellAt = function (n, i) {
    var cw = num(n.cell_w), ch = num(n.cell_h), cols = Math.max(1, num(n.cols));
    return [4 + (i % cols) * cw, num(n.head) + Math.floor(i / cols) * ch, cw - 4, ch - 4];
  };

  /* The cells of a large expanded group: one bitmap (a canvas, drawn again when a member's status
     changes), shown as one <image>: a frame of a pan then costs one blit, not thousands of
     shapes. */
  cov.Graph.CELL_PX = 0.5;  // canvas pixels per layout unit
  cov.Graph.prototype._drawCellImage = function (n) {
    var g = this.svg && this.svg.querySelector('.cells.many[data-group="' + cssId(n.id) + '"]');
    if (!g) return;
    var px = cov.Graph.CELL_PX, cols = Math.max(1, num(n.cols));
    var rows = Math.ceil(n.members.length / cols);
    var canvas = document.createElement("canvas");
    canvas.width = Math.ceil((cols * num(n.cell_w) + 8) * px);
    canvas.height = Math.ceil((rows * num(n.cell_h) + 4) * px);
    var ctx = canvas.getContext("2d"), css = getComputedStyle(document.documentElement);
    var colour = {}, self = this;
    function of(s) {
      var key = { STARTING: "pending", NEW_OBJECT: "pending", DISPATCHING: "running",
                  QUEUED: "running", NOT_RUN: "cancelled" }[s] ||
        String(s).toLowerCase();
      if (!colour[s]) colour[s] = [css.getPropertyValue("--" + key).trim() || "#d9891c",
                                   css.getPropertyValue("--" + key + "-bg").trim() || "#fdf3e4"];
      return colour[s];
    }
    n.members.forEach(function (m, i) {
      var c = self._cellAt(n, i), col = of(self.status[m] || "NEW_OBJECT");
      var x = c[0] * px, y = (c[1] - num(n.head)) * px, w = c[2] * px, h = c[3] * px;
      ctx.fillStyle = col[0];
      ctx.fillRect(x, y, w, h);
      ctx.fillStyle = col[1];
      ctx.fillRect(x + 1.5, y + 1.5, w - 3, h - 3);
    });
    var image = document.createElementNS(this.NS, "image");
    image.setAttribute("class", "cellimg");
    image.setAttribute("x", 0);
    image.setAttribute("y", num(n.head));
    image.setAttribute("width", canvas.width / px);
    image.setAttribute("height", canvas.height / px);
    image.setAttribute("preserveAspectRatio", "none");
    image.setAttribute("href", canvas.toDataURL("image/png"));
    g.replaceChildren(image);
    g.setAttribute("data-drawn", n.members.length);
    this._markSelectedCell();
  };

  /* The selection outline of a cell drawn in a bitmap. */
  cov.Graph.prototype._markSelectedCell = function () {
    Array.prototype.forEach.call(this.svg.querySelectorAll(".cellsel"), function (r) {
      r.setAttribute("width", 0); r.setAttribute("height", 0);
    });
    var n = this.groupOf[this.selected];
    if (!n || !n.expanded || n.members.length <= cov.Graph.CELL_ELEMENTS) return;
    var i = n.members.indexOf(this.selected), c = this._cellAt(n, i);
    var hit = this.svg.querySelector('.cellhit[data-cells="' + cssId(n.id) + '"]');
    var sel = hit && hit.parentNode.querySelector(".cellsel");
    if (!sel) return;
    sel.setAttribute("x", c[0] - 2); sel.setAttribute("y", c[1] - 2);
    sel.setAttribute("width", c[2] + 4); sel.setAttribute("height", c[3] + 4);
  };

  /* The member under a click on a large group's cells. */
  cov.Graph.prototype._cellFromEvent = function (hit, ev) {
    var n = this.layout.nodes.find(function (m) { return m.id === hit.getAttribute("data-cells"); });
    if (!n) return null;
    var pt = this.svg.createSVGPoint();
    pt.x = ev.clientX; pt.y = ev.clientY;
    var local = pt.matrixTransform(hit.parentNode.getScreenCTM().inverse());
    var col = Math.floor((local.x - 4) / n.cell_w), row = Math.floor((local.y - n.head) / n.cell_h);
    if (col < 0 || col >= n.cols || row < 0) return null;
    var m = n.members[row * n.cols + col];
    return m === undefined ? null : m;
  };

  function cssId(id) { return String(id).replace(/[^A-Za-z0-9_-]/g, ""); }

  cov.Graph.prototype._cellClass = function (id) {
    return "cell st-" + (this.status[id] || "NEW_OBJECT") +
      (String(this.selected) === String(id) ? " selected" : "");
  };

  /* A group's colour: failed if one member failed, running if one runs, completed if all did. */
  cov.Graph.prototype._groupClass = function (n) {
    var c = this._counts(n), total = n.members.length;
    var st = c.FAILED ? "FAILED" : (c.RUNNING || c.DISPATCHING) ? "RUNNING" :
      c.COMPLETED === total ? "COMPLETED" : c.CANCELLED === total ? "CANCELLED" :
      c.NOT_RUN === total ? "NOT_RUN" : c.QUEUED ? "QUEUED" :
      c.COMPLETED ? "RUNNING" : "NEW_OBJECT";
    return "st-" + st;
  };

  cov.Graph.prototype._counts = function (n) {
    var c = {}, status = this.status;
    n.members.forEach(function (m) {
      var s = status[m] || "NEW_OBJECT";
      c[s] = (c[s] || 0) + 1;
    });
    return c;
  };

  cov.Graph.BAR_ORDER = ["COMPLETED", "FAILED", "CANCELLED", "NOT_RUN", "RUNNING", "DISPATCHING",
                         "QUEUED"];

  /* The status bar of a group: one segment per status, as wide as its share of the members. */
  cov.Graph.prototype._drawBar = function (n) {
    var bar = this.bars[n.id];
    if (!bar) return;
    var width = n.expanded ? 120 : num(n.w) - 18, c = this._counts(n), total = n.members.length;
    var x = 0, parts = ['<rect class="seg bg" width="' + width + '" height="7" rx="3"/>'];
    var tip = [];
    cov.Graph.BAR_ORDER.forEach(function (s) {
      if (!c[s]) return;
      var w = width * c[s] / total;
      parts.push('<rect class="seg st-' + s + '" x="' + x.toFixed(2) + '" width="' + w.toFixed(2) +
        '" height="7"/>');
      x += w;
    });
    Object.keys(c).forEach(function (s) { tip.push(c[s] + " " + s); });
    parts.push("<title>" + cov.esc(tip.join(", ")) + "</title>");
    bar.innerHTML = parts.join("");
    bar.setAttribute("data-counts", JSON.stringify(c));
    if (!n.expanded) {
      var g = bar.parentNode;
      g.setAttribute("class", "node group " + this._groupClass(n));
    }
  };
})();
