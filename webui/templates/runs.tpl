% rebase('base.tpl', title=title, home=home, scripts=['common.js', 'runs.js'], styles=['run.css'])
<script type="application/json" id="page-data">{{!data}}</script>
<section class="runs">
  <div class="toolbar">
    <h1>Runs</h1>
    <div class="tabs" id="status-tabs" role="tablist">
      <button data-status="ALL" class="active">All <span class="count"></span></button>
      <button data-status="RUNNING">Running <span class="count"></span></button>
      <button data-status="COMPLETED">Completed <span class="count"></span></button>
      <button data-status="FAILED">Failed <span class="count"></span></button>
      <button data-status="CANCELLED">Cancelled <span class="count"></span></button>
    </div>
    <input id="search" type="search" placeholder="Search id, lattice, name or tag" autocomplete="off">
  </div>
  <table class="grid" id="runs-table">
    <thead><tr>
      <th>Dispatch ID</th><th>Lattice · name · tags</th><th>Status</th><th>Progress</th>
      <th>Started</th><th>Ended</th><th>Runtime</th>
    </tr></thead>
    <tbody id="runs-body"><tr><td colspan="7" class="muted">Loading…</td></tr></tbody>
  </table>
  <div class="pager" id="pager"></div>
</section>
