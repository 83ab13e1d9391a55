% rebase('base.tpl', title=title)
<section class="card files">
  <div class="crumbs">
    <a href="/run/{{run_id}}">run {{run_id[:8]}}</a> /
    <a href="/run/{{run_id}}/files/">files</a>
    % for (part, path) in crumbs:
      / <a href="/run/{{run_id}}/files/{{path}}">{{part}}</a>
    % end
  </div>
  % if kind == 'dir':
  <table class="grid" id="file-list">
    <thead><tr><th>Name</th><th class="num">Size</th><th>Modified</th></tr></thead>
    <tbody>
    % if not entries:
      <tr><td colspan="3" class="muted">Empty directory.</td></tr>
    % end
    % for e in entries:
      <tr>
        <td><a class="{{'dir' if e['dir'] else 'file'}}" href="/run/{{run_id}}/files/{{e['path']}}">{{e['name']}}{{'/' if e['dir'] else ''}}</a></td>
        <td class="num">{{'' if e['dir'] else e['size_text']}}</td>
        <td class="time">{{e['mtime_text']}}</td>
      </tr>
    % end
    </tbody>
  </table>
  % elif kind == 'text':
  <div class="file-head">
    <span>{{name}} · {{text['size']}} bytes</span>
    <a href="?download=1">Download</a>
  </div>
  % if text['truncated']:
  <p class="muted">Showing the first {{len(text['text'].encode())}} bytes; download the file for the rest.</p>
  % end
  <pre class="code" id="file-text">{{text['text']}}</pre>
  % elif kind == 'pickle':
  <div class="file-head"><span>{{name}} · a pickle, shown as text (never served raw)</span></div>
  % if pickle.get('text'):
  <pre class="code" id="file-text">{{pickle['text']}}</pre>
  % end
  % if header:
  <h3>Outcome header</h3>
  <pre class="code" id="pickle-header">{{header}}</pre>
  % end
  % if pickle.get('value'):
  <h3>Value</h3>
  <p class="muted">{{pickle['value'].get('type') or ''}}
    · pickle {{pickle['value'].get('size_text', '')}}
    % if pickle['value'].get('truncated'):
    · repr truncated
    % end
  </p>
  <pre class="code" id="pickle-repr">{{pickle['value'].get('repr')}}</pre>
  % end
  % else:
  <div class="file-head"><span>{{name}} · binary, {{size}} bytes</span></div>
  <p><a class="button" id="download" href="?download=1">Download</a></p>
  % end
</section>
