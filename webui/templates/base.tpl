<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{title}} · cov</title>
<link rel="stylesheet" href="/static/style.css">
% for sheet in get('styles', []):
<link rel="stylesheet" href="/static/{{sheet}}">
% end
<link rel="icon" href="data:,">
</head>
<body class="{{get('body_class', '')}}">
<header class="top">
  <a class="brand" href="/">cov</a>
  <nav>
    <a href="/">Runs</a>
    <a href="/config">Config</a>
  </nav>
  <span class="home" title="runs home">{{get('home', '')}}</span>
</header>
<main>
{{!base}}
</main>
% for script in get('scripts', []):
<script src="/static/{{script}}"></script>
% end
</body>
</html>
