% rebase('base.tpl', title=title, home=home)
<section class="card">
  <h1>Configuration</h1>
  <p class="muted">The effective configuration: defaults merged with the config file. Secret
  values are shown as <code>***</code>. Change it with <code>cov config</code>.</p>
  <table class="kv">
    <tr><th>Config file</th><td><code>{{config['path']}}</code></td></tr>
    <tr><th>Runs home</th><td><code>{{config['home']}}</code></td></tr>
  </table>
  % if config['error']:
  <p class="error-text">{{config['error']}}</p>
  % end
  <pre class="code" id="config-yaml">{{config_yaml}}</pre>
</section>
