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

/* A button that asks the server to unpickle something (trusting the run) and shows it. */
function loadButton(label, url, show) {
  var button = cov.el("button", { class: "button load", type: "button", text: label,
    title: "Unpickles it in the UI process, which runs the run's code: only for runs you trust" });
  button.addEventListener("click", function () {
    button.disabled = true;
    cov.api(url, { load: true }).then(show).catch(function (err) {
      button.replaceWith(cov.el("p", { class: "error-text", text: "Cannot load: " + err.message }));
    });
  });
  return button;
}

/* A VALUE: a preview (recorded when the task finished, or the repr recorded at dispatch) with
   a "Load value" button when loadUrl is given, or a value the server loaded. */
function valueBlock(value, what, loadUrl) {
  var box = cov.el("div", { class: "value " + (what || "") });
  if (!value) { box.appendChild(cov.pre(null)); return box; }
  var notes = [];
  if (value.preview) notes.push("preview");
  if (value.type) notes.push(value.type);
  if (value.size !== null && value.size !== undefined)
    notes.push("pickle " + (value.size_text || cov.humanSize(value.size)));
  if (value.truncated)
    notes.push("repr truncated" + (value.length ? " (" + value.length + " characters)" : ""));
  if (notes.length) box.appendChild(cov.el("div", { class: "size-note", text: notes.join(" · ") }));
  box.appendChild(cov.pre(value.repr, "wrap " + (what || "")));
  if (value.preview && loadUrl) box.appendChild(loadButton("Load value", loadUrl, function (v) {
    box.replaceWith(valueBlock(v, what, null));
  }));
  return box;
}

/* A function's source: as captured at dispatch (the code that ran); for a run made before cov
   captured it, a note, and in the live UI the file as it is now, loaded on request (that
   unpickles the function). */
function sourceBlock(title, src, loadUrl) {
  var box = cov.el("div", { class: "source-box" });
  function show(s, heading) {
    box.replaceChildren(cov.el("h3", { text: heading + (s.file ? " · " + s.file +
      (s.line ? ":" + s.line : "") : "") }),
      s.text ? cov.pre(s.text, "source") :
        cov.el("p", { class: "muted", text: "Source not available: " + s.error }));
  }
  if (src && src.text) {
    show(src, title + " (as dispatched)");
  } else if (src && src.captured === false) {
    box.replaceChildren(cov.el("h3", { text: title }),
      cov.el("p", { class: "muted not-captured", text: src.error }));
    if (loadUrl) box.appendChild(loadButton("Load the file as it is now", loadUrl, function (s) {
      show(s, title + " (its file now, which may differ from what ran)");
    }));
  } else if (src) {
    show(src, title);
  } else if (loadUrl) {
    box.replaceChildren(cov.el("h3", { text: title }),
      loadButton("Load source", loadUrl, function (s) { show(s, title); }));
  } else {
    return null;
  }
  return box;
}

// "cached from RUN/NODE": the run and node whose result the result cache gave this task.
function cachedFrom(source, options) {
  var cut = source.lastIndexOf("/");
  var run = cut > 0 ? source.slice(0, cut) : source, node = cut > 0 ? source.slice(cut + 1) : "";
  var label = run + (node ? " #" + node : "");
  return cov.el("span", { class: "cached-from" }, ["cached from ",
    options.live ? cov.el("a", { class: "mono", href: "/run/" + encodeURIComponent(run) +
      (node ? "#task=" + encodeURIComponent(node) : ""), text: label }) :
      cov.el("code", { text: label })]);
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
  return options.live ? cov.el("a", { class: "mono", href: "/run/" + encodeURIComponent(id), text: id }) :
    cov.el("code", { text: id });
};

cov.renderTask = function (box, t, options) {
  options = options || { live: true };
  var base = "/run/" + encodeURIComponent(t.dispatch_id) + "/files/";
  var api = "/api/runs/" + encodeURIComponent(t.dispatch_id) + "/tasks/" + encodeURIComponent(t.id);
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
    t.cached_from ? ["Cached", cachedFrom(t.cached_from, options)] :
    t.reused ? ["Reused", t.reused_from ? cov.el("span", { class: "reused-from" }, ["result of ",
      options.live ? cov.el("a", { class: "mono", href: "/run/" + encodeURIComponent(t.reused_from) +
        "#task=" + encodeURIComponent(t.id), text: t.reused_from + " #" + t.id }) :
        cov.el("code", { text: t.reused_from + " #" + t.id })]) :
      "from the redispatched run"] : null,
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
    parts.push(t.result ? valueBlock(t.result, "", options.live ? api + "/value" : null) :
      cov.el("p", { class: "muted",
      text: t.status === "COMPLETED" ? "(no value)" : "Not available: the task is " +
        (cov.LABELS[t.status] || t.status).toLowerCase() + "." }));
  }
  if (t.stdout !== undefined) {
    parts.push(logBlock(t.stdout, "stdout", options.live ? base + "logs/" + t.id + ".out" : null));
    parts.push(logBlock(t.stderr, "stderr", options.live ? base + "logs/" + t.id + ".err" : null));
  }
  var source = sourceBlock("Source", t.source,
    options.live && t.source_loadable ? api + "/source" : null);
  if (source) parts.push(source);
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
    ["Created", cov.time(d.created)],
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
  var runApi = "/api/runs/" + encodeURIComponent(d.dispatch_id);
  parts.push(d.result ? valueBlock(d.result, "result", options.live ? runApi + "/value" : null) :
    cov.el("p", { class: "muted", text: "Not available: the run is " + d.status + "." }));
  if (d.children && d.children.length) {
    parts.push(cov.el("h3", { text: "Sublattice runs" }));
    parts.push(cov.el("ul", {}, d.children.map(function (c) {
      return cov.el("li", {}, ["#" + c.node + " " + c.name + ": ", cov.runLink(c.dispatch_id, options),
        " ", c.status ? cov.pill(c.status) : null]);
    })));
  }
  var source = sourceBlock("Workflow source", d.source, options.live ? runApi + "/source" : null);
  if (source) {
    source.classList.add("workflow-source");
    parts.push(source);
  }
  parts.push(cov.el("h3", { text: "Executors" }));
  parts.push(cov.pre(JSON.stringify(d.executors || {}, null, 2)));
  parts.push(cov.el("h3", { text: "Manifest" }));
  parts.push(cov.pre(d.manifest_yaml, "manifest"));
  box.replaceChildren.apply(box, parts);
};
