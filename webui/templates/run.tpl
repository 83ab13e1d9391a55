% rebase('base.tpl', title=title, body_class='run-page', scripts=['common.js', 'graph.js', 'graphgroups.js', 'timeline.js', 'tasktable.js', 'taskview.js', 'run.js'], styles=['run.css'])
<script type="application/json" id="page-data">{{!data}}</script>
<section class="run-head">
  <a class="back" href="/">← Runs</a>
  <h1 id="run-title">{{run['lattice']}}</h1>
  <span class="pill st-{{run['status']}}" id="run-status">{{run['status']}}</span>
  <span class="progress" id="run-progress"><span class="bar"><span class="fill"></span><span class="fail"></span></span><span class="text">{{run['done']}} of {{run['total']}} tasks</span></span>
  <span class="muted" id="run-times"></span>
  <span class="mono run-inputs" id="run-inputs" title="the run's inputs"></span>
  <span class="spacer"></span>
  <code class="id" title="dispatch id">{{run['dispatch_id']}}</code>
  <a class="button" id="files-link" href="/run/{{run['dispatch_id']}}/files/">Files</a>
  <button class="button danger" id="cancel-btn" hidden>Cancel run</button>
</section>
<section class="run-body">
  <div class="graph-pane">
    <div class="graph-tools">
      <span class="view-switch"><button id="view-graph" class="active" title="The task graph">Graph</button><button id="view-timeline" title="When each task ran, by worker">Timeline</button></span>
      <button id="fit" title="Fit the graph">Fit</button>
      <button id="zoom-in" title="Zoom in">+</button>
      <button id="zoom-out" title="Zoom out">−</button>
      <button id="fold-groups" title="Fold every expanded group" hidden>Fold groups</button>
      <label><input type="checkbox" id="show-params"> parameters</label>
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
    <div id="graph" class="graph"><p class="muted pad">Laying out the graph…</p></div>
  </div>
  <div class="side-pane">
    <div class="tabs" id="side-tabs">
      <button data-tab="tasks" class="active">Tasks</button>
      <button data-tab="details">Run details</button>
      <button data-tab="task" id="task-tab" hidden>Task</button>
    </div>
    <div class="tab-body" id="tab-tasks">
      <div class="table-tools">
        <select id="task-status">
          <option value="">all statuses</option>
          <option value="NEW_OBJECT">PENDING</option><option>QUEUED</option><option>RUNNING</option>
          <option>COMPLETED</option><option>FAILED</option><option>CANCELLED</option>
          <option value="NOT_RUN">NOT RUN</option>
        </select>
        <input id="task-search" type="search" placeholder="Filter by name or id">
        <span class="muted" id="task-count"></span>
      </div>
      <table class="grid compact" id="task-table">
        <thead><tr><th>#</th><th>Name</th><th>Status</th><th>Executor</th><th>Started</th><th>Runtime</th></tr></thead>
        <tbody></tbody>
      </table>
      <div class="pager" id="task-pager"></div>
    </div>
    <div class="tab-body" id="tab-details" hidden></div>
    <div class="tab-body" id="tab-task" hidden></div>
  </div>
</section>
