% rebase('base.tpl', title=title)
<section class="card error-page">
  <h1>{{title}}</h1>
  <p>{{message}}</p>
  <p><a href="/">Back to the runs</a></p>
</section>
