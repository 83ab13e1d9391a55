<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{{csp}}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{title}} · cov</title>
<style>
{{!css}}
</style>
</head>
<body class="run-page report">
<header class="top">
  <span class="brand">cov</span>
  <span>report of run <code>{{run['dispatch_id']}}</code></span>
  <span class="home">generated {{generated}} from {{run['path']}}</span>
</header>
<main>
<script type="application/json" id="report-data">{{!data}}</script>
<section class="run-head">
  <h1 id="run-title">{{run['lattice']}}</h1>
  <span class="pill st-{{run['status']}}" id="run-status">{{run['status']}}</span>
  <span class="progress" id="run-progress"><span class="bar"><span class="fill"></span><span class="fail"></span></span><span class="text">{{run['done']}} of {{run['total']}} tasks</span></span>
  <span class="muted" id="run-times"></span>
  <span class="mono run-inputs" id="run-inputs" title="the run's inputs"></span>
</section>
<section class="run-body">
  <div class="graph-pane">
    <div class="graph-tools">
      <span class="view-switch"><button id="view-graph" class="active" title="The task graph">Graph</button><button id="view-timeline" title="When each task ran, by worker">Timeline</button></span>
      <button id="fit" title="Fit the graph">Fit</button>
      <button id="zoom-in" title="Zoom in">+</button>
      <button id="zoom-out" title="Zoom out">−</button>
      <span class="legend">
        <span class="dot st-NEW_OBJECT"></span>pending
        <span class="dot st-RUNNING"></span>running
        <span class="dot st-COMPLETED"></span>completed
        <span class="dot st-FAILED"></span>failed
        <span class="dot st-CANCELLED"></span>cancelled
        <span class="dot st-NOT_RUN"></span>not run
      </span>
    </div>
    <div id="timeline" class="graph timeline" hidden></div>
    <div id="graph" class="graph"></div>
  </div>
  <div class="side-pane">
    <div class="tabs" id="side-tabs">
      <button data-tab="tasks" class="active">Tasks</button>
      <button data-tab="details">Run details</button>
      <button data-tab="task" id="task-tab" hidden>Task</button>
    </div>
    <div class="tab-body" id="tab-tasks">
      <table class="grid compact" id="task-table">
        <thead><tr><th>#</th><th>Name</th><th>Status</th><th>Executor</th><th>Started</th><th>Runtime</th></tr></thead>
        <tbody></tbody>
      </table>
    </div>
    <div class="tab-body" id="tab-details" hidden></div>
    <div class="tab-body" id="tab-task" hidden></div>
  </div>
</section>
</main>
% for script in scripts:
<script>
{{!script}}
</script>
% end
</body>
</html>
