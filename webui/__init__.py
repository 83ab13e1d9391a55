"""cov's web UI: a Bottle app that reads run directories and nothing else.

``create_app(home, token=None)`` builds the WSGI application (``webui.app``); ``cov ui`` serves
it (``webui.server``) and ``cov report`` writes a static page from the same views
(``webui.report``). Module map: ``security`` (ids, paths, token), ``live`` (runs read
incrementally), ``views`` (the JSON of the API), ``values`` (reprs, logs, sources), ``layout``
(the graph's coordinates, by grandalf), ``files`` (the file browser).
"""
from webui.app import create_app

__all__ = ["create_app"]
