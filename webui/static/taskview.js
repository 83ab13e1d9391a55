/* The task view and the run details, rendered from /api/runs/<id>/tasks/<n> and /api/runs/<id>
   (or from the same data inlined in report.html, where options.live is false: no links to the
   server). */
"use strict";

var cov = window.cov || (window.cov = {});

function kv(rows) {
  return cov.el("table", { class: "kv" }, rows.filter(Boolean).map(function (r) {
    return cov.el("tr", {}, [cov.el("th", { text: r[0] }),
      r[1] instanceof Node ? cov.el("td", {}, [r[1]]) : cov.el("td", { text: r[1] === null ||
        r[1] === undefined || r[1] === "" ? "-" : String(r[1]) })]);
  }));
}

function valueBlock(value, what) {
  if (!value) return cov.pre(null);
  var notes = [];
  if (value.type) notes.push(value.type);
  if (value.size !== null && value.size !== undefined)
    notes.push("pickle " + (value.size_text || cov.humanSize(value.size)));
  if (value.truncated)
    notes.push("repr truncated" + (value.length ? " (" + value.length + " characters)" : ""));
  var frag = document.createDocumentFragment();
  if (notes.length) frag.appendChild(cov.el("div", { class: "size-note", text: notes.join(" · ") }));
  frag.appendChild(cov.pre(value.repr, "wrap " + (what || "")));
  return frag;
}

function logBlock(log, label, link) {
  var frag = document.createDocumentFragment();
  var head = [label];
  if (log && log.size) head.push(cov.humanSize(log.size));
  if (log && log.truncated) head.push("showing the end");
  var h = cov.el("h3", { text: head.join(" · ") + " " });
  if (link && log && log.size) h.appendChild(cov.el("a", { href: link, text: "open file" }));
  frag.appendChild(h);
  frag.appendChild(cov.pre(log ? log.text : "", label.toLowerCase()));
  return frag;
}

cov.runLink = function (id, options) {
  if (!id) return null;
  return options.live ? cov.el("a", { class: "mono", href: "/run/" + id, text: id }) :
    cov.el("code", { text: id });
};

cov.renderTask = function (box, t, options) {
  options = options || { live: true };
  var base = "/run/" + t.dispatch_id + "/files/";
  var parts = [];
  parts.push(cov.el("div", { class: "task-head" }, [
    cov.el("h2", { text: t.name + "  #" + t.id }), cov.pill(t.status),
    cov.el("span", { class: "muted", text: t.kind })]));
  var exec = t.executor ? t.executor + (t.executor_config && t.executor_config.type &&
    t.executor_config.type !== t.executor ? " (" + t.executor_config.type + ")" : "") : "-";
  parts.push(kv([
    ["Executor", exec],
    t.executor_config && Object.keys(t.executor_config).length > 1 ?
      ["Executor settings", JSON.stringify(t.executor_config)] : null,
    ["Host", t.host ? t.host + (t.pid ? " (pid " + t.pid + ")" : "") : "-"],
    t.job_id ? ["Job id", t.job_id] : null,
    ["Started", cov.time(t.started)],
    ["Ended", cov.time(t.ended)],
    ["Runtime", cov.duration(t.runtime !== undefined ? t.runtime :
      (t.started && !t.ended && t.now ? t.now - t.started : null))],
    t.attempt > 1 ? ["Attempt", t.attempt] : null,
    t.reused ? ["Reused", "from the redispatched run"] : null,
    t.child ? ["Sublattice run", cov.el("span", {}, [cov.runLink(t.child.dispatch_id, options),
      " ", t.child.status ? cov.pill(t.child.status) : null])] : null,
  ]));
  if (t.error) {
    parts.push(cov.el("h3", { text: "Error (cov)" }));
    parts.push(cov.pre(t.error, "wrap traceback"));
  }
  if (t.traceback) {
    parts.push(cov.el("h3", { text: "Traceback" }));
    parts.push(cov.pre(t.traceback, "traceback"));
  } else if (t.exception) {
    parts.push(cov.el("h3", { text: "Exception" }));
    parts.push(cov.pre(t.exception, "traceback"));
  }
  if (t.inputs && t.inputs.length) {
    parts.push(cov.el("h3", { text: "Inputs" + (t.inputs_total > t.inputs.length ?
      " (the first " + t.inputs.length + " of " + t.inputs_total + ")" : "") }));
    parts.push(cov.el("table", { class: "grid compact inputs" }, [
      cov.el("thead", {}, [cov.el("tr", {}, [cov.el("th", { text: "Parameter" }),
        cov.el("th", { text: "From" }), cov.el("th", { text: "Value" })])]),
      cov.el("tbody", {}, t.inputs.map(function (i) {
        var from = i.kind === "parameter" ? "value" : "#" + i.node + " " + i.name;
        var val = i.value ? (i.value.repr !== null && i.value.repr !== undefined ? i.value.repr : "") +
          (i.value.truncated ? " …" : "") : "(not computed yet)";
        return cov.el("tr", {}, [cov.el("td", { class: "mono", text: i.param }),
          cov.el("td", { text: from }),
          cov.el("td", { class: "mono", text: val.length > 300 ? val.slice(0, 300) + " …" : val,
                         title: i.value && i.value.size_text ? "pickle " + i.value.size_text : null })]);
      }))]));
  }
  if (t.kind !== "parameter" || t.result) {
    parts.push(cov.el("h3", { text: t.kind === "parameter" ? "Value" : "Result" }));
    parts.push(t.result ? valueBlock(t.result) : cov.el("p", { class: "muted",
      text: t.status === "COMPLETED" ? "(no value)" : "Not available: the task is " + t.status + "." }));
  }
  if (t.stdout !== undefined) {
    parts.push(logBlock(t.stdout, "stdout", options.live ? base + "logs/" + t.id + ".out" : null));
    parts.push(logBlock(t.stderr, "stderr", options.live ? base + "logs/" + t.id + ".err" : null));
  }
  if (t.source) {
    parts.push(cov.el("h3", { text: "Source" + (t.source.file ? " · " + t.source.file + ":" +
      t.source.line : "") }));
    parts.push(t.source.text ? cov.pre(t.source.text, "source") :
      cov.el("p", { class: "muted", text: "Source not available: " + t.source.error }));
  }
  if (t.consumers && t.consumers.length) {
    parts.push(cov.el("h3", { text: "Used by" }));
    parts.push(cov.el("p", {}, t.consumers.map(function (c) {
      return cov.el("span", { class: "mono", text: "#" + c.id + " " + c.name + " (" +
        c.params.join(", ") + ")  " });
    })));
  }
  box.replaceChildren.apply(box, parts);
};

cov.renderRunDetails = function (box, d, options) {
  options = options || { live: true };
  var parts = [];
  if (d.doc) parts.push(cov.el("p", { class: "doc", text: d.doc }));
  parts.push(kv([
    ["Dispatch id", cov.el("code", { text: d.dispatch_id })],
    ["Lattice", d.lattice],
    ["Status", cov.pill(d.status)],
    ["Tasks", d.done + " of " + d.total + " completed"],
    ["Created", d.created],
    ["Started", cov.time(d.started)],
    ["Ended", cov.time(d.ended)],
    ["Runtime", cov.duration(d.runtime)],
    ["Directory", cov.el("code", { text: d.path })],
    d.parent ? ["Parent run", cov.el("span", {}, [cov.runLink(d.parent.dispatch_id, options),
      " node " + d.parent.node + " "])] : null,
  ]));
  if (d.error) {
    parts.push(cov.el("h3", { text: "Error" }));
    parts.push(cov.pre(d.error, "wrap traceback"));
  }
  if (d.failed && d.failed.length) {
    parts.push(cov.el("h3", { text: "Failed tasks" }));
    parts.push(cov.el("ul", { class: "failed" }, d.failed.map(function (f) {
      return cov.el("li", {}, [cov.el("a", { href: "#task=" + f.id, "data-task": f.id,
        text: "#" + f.id + " " + f.name }), ": " + (f.exception || f.error || "")]);
    })));
  }
  parts.push(cov.el("h3", { text: "Inputs" }));
  var inputs = d.inputs || {};
  var rows = (inputs.args || []).map(function (a, i) { return ["arg " + i, a]; });
  Object.keys(inputs.kwargs || {}).forEach(function (k) { rows.push([k, inputs.kwargs[k]]); });
  parts.push(rows.length ? kv(rows) : cov.el("p", { class: "muted", text: "(none)" }));
  parts.push(cov.el("h3", { text: "Result" }));
  parts.push(d.result ? valueBlock(d.result, "result") : cov.el("p", { class: "muted",
    text: "Not available: the run is " + d.status + "." }));
  if (d.children && d.children.length) {
    parts.push(cov.el("h3", { text: "Sublattice runs" }));
    parts.push(cov.el("ul", {}, d.children.map(function (c) {
      return cov.el("li", {}, ["#" + c.node + " " + c.name + ": ", cov.runLink(c.dispatch_id, options),
        " ", c.status ? cov.pill(c.status) : null]);
    })));
  }
  var sourceBox = cov.el("div", { class: "workflow-source" });
  parts.push(sourceBox);
  function showSource(src) {
    sourceBox.replaceChildren(
      cov.el("h3", { text: "Workflow source" + (src.file ? " · " + src.file : "") }),
      src.text ? cov.pre(src.text, "source") :
        cov.el("p", { class: "muted", text: "Source not available: " + src.error }));
  }
  if (d.source) showSource(d.source);
  else if (options.live) cov.api("/api/runs/" + encodeURIComponent(d.dispatch_id) + "/source")
    .then(showSource).catch(function () {});
  parts.push(cov.el("h3", { text: "Executors" }));
  parts.push(cov.pre(JSON.stringify(d.executors || {}, null, 2)));
  parts.push(cov.el("h3", { text: "Manifest" }));
  parts.push(cov.pre(d.manifest_yaml, "manifest"));
  box.replaceChildren.apply(box, parts);
};
