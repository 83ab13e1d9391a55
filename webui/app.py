"""``create_app(home, token)``: the Bottle application, its routes and its guards.

Pages are small HTML shells filled by the JavaScript in ``static/`` from the JSON API; the file
browser and the config page are rendered here. The API is documented in docs/webui.md.

Guards, on every request: the token (query ``?token=`` once, which sets an HttpOnly,
SameSite=Strict cookie and redirects to the clean URL; then the cookie, or an ``X-Cov-Token``
header), unless the app was made without one; on loopback, a ``Host`` that names this machine
(no DNS rebinding). Responses carry a strict Content-Security-Policy (scripts only from
``/static``), ``nosniff`` and no referrer. The requests that change anything or unpickle
(``POST /api/runs/<id>/cancel``, the ``load`` endpoints) also need the ``X-Cov-Request`` header,
which a cross-site form or link cannot send, and an ``Origin``, when sent, that is this server.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Callable, Dict, FrozenSet, Optional
from urllib.parse import urlencode

import bottle
from bottle import HTTPResponse, request, response

from runner import daemon, json_view
from runner.config import ConfigError, config_path, load_config
from runner.manifest import ManifestError
from runner.redact import mask_secrets
from runner.rundir import RunDir, RunDirError

from webui import files as files_mod
from webui import listing, security, views
from webui.live import LiveRun, RunCache
from webui.logs import task_logs

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
TEMPLATES = [str(HERE / "templates")]

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
NOT_FOUND = "Not found."


def render(template: str, **values: Any) -> str:
    return bottle.template(template, template_lookup=TEMPLATES, **values)


def page_json(data: Any) -> str:
    """JSON safe to put inside a ``<script type="application/json">`` element."""
    return json.dumps(data, default=str).replace("<", "\\u003c").replace(">", "\\u003e") \
        .replace("&", "\\u0026")


def json_response(data: Any, status: int = 200) -> HTTPResponse:
    """``data`` as the CLI's ``--json`` prints it (``runner.json_view``: a ``schema`` field,
    epoch-second times, values JSON cannot hold marked as reprs)."""
    return HTTPResponse(json_view.dumps(data), status=status,
                        headers={"Content-Type": "application/json; charset=utf-8",
                                 "Cache-Control": "no-store"})


def create_app(home: os.PathLike | str, token: Optional[str] = None,
               host: str = "127.0.0.1") -> bottle.Bottle:
    """A new WSGI application serving the runs under ``home``.

    ``token``: every request must carry it (``?token=`` once, then the cookie); None only when
    the user chose ``--no-token`` (then any local account can use the UI). ``host``: the
    address it is bound to, accepted as a ``Host`` header besides the loopback names.
    """
    app = bottle.Bottle()
    cache = RunCache(Path(home).expanduser().absolute())
    guard = security.Token(token) if token else None
    app.config["cov.home"] = str(cache.home)
    app.config["cov.cache"] = cache

    def api_request() -> bool:
        return request.path.startswith("/api/")

    def not_found() -> HTTPResponse:
        if api_request():
            return json_response({"error": NOT_FOUND}, 404)
        return HTTPResponse(render("error.tpl", title="Not found", message=NOT_FOUND,
                                   token=bool(guard)), status=404,
                            headers={"Content-Type": "text/html; charset=utf-8"})

    def unreadable_runs(callback: Any) -> Any:
        """A plugin: a run directory that cannot be read (a corrupted manifest, a newer format)
        is a 500 saying so, not a traceback."""
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return callback(*args, **kwargs)
            except (RunDirError, ManifestError) as exc:
                if api_request():
                    return json_response({"error": f"cannot read the run: {exc}"}, 500)
                return HTTPResponse(render("error.tpl", title="Unreadable run", message=str(exc),
                                           token=bool(guard)), status=500,
                                    headers={"Content-Type": "text/html; charset=utf-8"})
        return wrapper

    app.install(unreadable_runs)

    def live_or_404(run_id: str, heavy: bool = False) -> LiveRun:
        live = cache.open(run_id) if heavy else cache.get(run_id)
        if live is None:
            raise not_found()
        return live

    # -- guards ---------------------------------------------------------------------------------
    @app.hook("before_request")
    def check_access() -> None:
        if security.is_loopback(host) and \
                not security.host_allowed(request.get_header("Host", ""), host):
            # DNS rebinding: a web page whose name is re-pointed to 127.0.0.1 sends its own name.
            raise HTTPResponse("Forbidden: unexpected Host header.", status=403,
                               headers={"Content-Type": "text/plain"})
        if request.method not in ("GET", "HEAD") and not security.same_origin(
                request.get_header("Origin"), request.get_header("Host", "")):
            raise json_response({"error": "cross-origin request refused"}, 403)
        if guard is None:
            return
        given = request.query.get("token")
        if given is not None and guard.matches(given):
            if request.method == "GET" and not api_request():
                # Drop the token from the address bar (and from history and bookmarks).
                rest = [(k, v) for k, v in request.query.allitems() if k != "token"]
                redirect = HTTPResponse(status=303)
                # One leading slash: "//host/..." would send the browser to another site.
                redirect.set_header("Location", "/" + request.path.lstrip("/") +
                                    ("?" + urlencode(rest) if rest else ""))
                guard.set_cookie(redirect)
                raise redirect
            guard.set_cookie(response)
            return
        if guard.matches(request.get_cookie(guard.cookie)) or \
                guard.matches(request.get_header("X-Cov-Token")):
            return
        if api_request():
            raise json_response({"error": "a token is required: open the URL cov ui printed"},
                                403)
        raise HTTPResponse(render("error.tpl", title="Token required", token=True,
                                  message="This UI needs its token: open the URL that "
                                          "`cov ui` printed (it ends in ?token=...)."),
                           status=403, headers={"Content-Type": "text/html; charset=utf-8"})

    @app.hook("after_request")
    def security_headers() -> None:
        response.set_header("X-Content-Type-Options", "nosniff")
        response.set_header("Referrer-Policy", "no-referrer")
        response.set_header("X-Frame-Options", "DENY")
        response.set_header("Content-Security-Policy", CSP)

    @app.error(404)
    def error404(_: Any) -> str:
        response.set_header("X-Content-Type-Options", "nosniff")
        if api_request():
            response.content_type = "application/json; charset=utf-8"
            return json.dumps({"error": NOT_FOUND})
        response.content_type = "text/html; charset=utf-8"
        return render("error.tpl", title="Not found", message=NOT_FOUND, token=bool(guard))

    @app.error(405)
    def error405(_: Any) -> str:
        response.content_type = "application/json; charset=utf-8"
        return json.dumps({"error": "method not allowed"})

    # -- pages ----------------------------------------------------------------------------------
    @app.get("/")
    def runs_page() -> str:
        return render("runs.tpl", title="Runs", home=str(cache.home),
                      data=page_json({"home": str(cache.home)}))

    @app.get("/run/<run_id>")
    def run_page(run_id: str) -> str:
        live = live_or_404(run_id)
        summary = views.run_row(live)
        return render("run.tpl", title=f"{summary['lattice']} {run_id[:8]}", run=summary,
                      data=page_json({"dispatch_id": run_id, "token": bool(guard)}))

    @app.get("/run/<run_id>/files")
    @app.get("/run/<run_id>/files/")
    @app.get("/run/<run_id>/files/<rel:path>")
    def files_page(run_id: str, rel: str = "") -> Any:
        live = live_or_404(run_id, heavy=True)
        path, rel = located(live, rel)
        try:
            kind = files_mod.kind_of(live.data, rel, path)
            if request.query.get("download") and kind in ("text", "binary"):
                return files_mod.download(live.data, rel)
            crumbs = _crumbs(rel)
            common = dict(title=f"{rel or 'files'} · {run_id[:8]}", run_id=run_id, rel=rel,
                          crumbs=crumbs, kind=kind, name=path.name)
            content = file_content(live, rel, path, kind)
            if kind == "pickle":
                content["header"] = files_mod.header_json(content["pickle"]["header"])
            return render("files.tpl", **content, **common)
        except OSError:  # gone, unreadable, or leading out of the run (OutsideRunError)
            raise not_found() from None

    def file_content(live: LiveRun, rel: str, path: Path, kind: str) -> Dict[str, Any]:
        """What the page and the API show of a file, by its kind: one of ``entries`` (a
        directory), ``text``, ``pickle`` (a header and a preview) or ``size`` (binary)."""
        if kind == "dir":
            return {"entries": files_mod.listing(live.path, path)}
        if kind == "text":
            return {"text": files_mod.text_of(live.data, rel)}
        if kind == "pickle":
            return {"pickle": files_mod.pickle_view(live, rel)}
        return {"size": files_mod.size_of(live.data, rel)}

    def located(live: LiveRun, rel: str) -> Any:
        """(resolved path, clean relative path) of a file of the run, or a 404."""
        path = security.inside(live.path, rel) if rel else live.path
        if path is None:  # a packed outcome (format 2.0) is shown under its 1.0 name too
            path = files_mod.packed_outcome_path(live, rel)
        if path is None:
            raise not_found()
        return path, rel.strip("/")

    @app.get("/config")
    def config_page() -> str:
        import yaml

        config = views_config()
        return render("config.tpl", title="Config", home=str(cache.home),
                      config_yaml=yaml.safe_dump(config["config"], sort_keys=False),
                      config=config)

    @app.get("/static/<name:path>")
    def static(name: str) -> Any:
        path = security.inside(STATIC, name)
        if path is None or not path.is_file():
            raise not_found()
        return bottle.static_file(os.path.relpath(path, STATIC), root=str(STATIC))

    # -- API ------------------------------------------------------------------------------------
    @app.get("/api/runs")
    def api_runs() -> HTTPResponse:
        q = request.query
        return json_response(views.runs_listing(
            cache, status=q.get("status"), query=q.getunicode("q") or "",
            page=_int(q.get("page"), 1), per_page=_int(q.get("per_page"), views.PER_PAGE)))

    @app.get("/api/runs/<run_id>")
    def api_run(run_id: str) -> HTTPResponse:
        return json_response(views.run_detail(cache, live_or_404(run_id, heavy=True)))

    # -- loading: unpickles what the run holds, i.e. runs its code; only on an explicit request
    def loading(run_id: str) -> LiveRun:
        if request.get_header("X-Cov-Request") is None:
            raise json_response({"error": "loading unpickles the run's data, which runs its "
                                          "code: send the X-Cov-Request header"}, 400)
        return live_or_404(run_id, heavy=True)

    @app.get("/api/runs/<run_id>/source")
    def api_source(run_id: str) -> HTTPResponse:
        return json_response(views.load_run_source(loading(run_id)))

    @app.get("/api/runs/<run_id>/value")
    def api_value(run_id: str) -> HTTPResponse:
        return json_response(views.load_value(loading(run_id)))

    def task_loaded(run_id: str, node: str, load: Callable[[LiveRun, int], Any]) -> HTTPResponse:
        """``load(run, node)`` as JSON; a 404 for a node that is no number or not there."""
        node_id = security.parse_node(node)
        found = load(loading(run_id), node_id) if node_id is not None else None
        if found is None:
            raise not_found()
        return json_response(found)

    @app.get("/api/runs/<run_id>/tasks/<node>/value")
    def api_task_value(run_id: str, node: str) -> HTTPResponse:
        return task_loaded(run_id, node, views.load_value)

    @app.get("/api/runs/<run_id>/tasks/<node>/source")
    def api_task_source(run_id: str, node: str) -> HTTPResponse:
        return task_loaded(run_id, node, views.load_task_source)

    @app.get("/api/runs/<run_id>/state")
    def api_state(run_id: str) -> HTTPResponse:
        since = request.query.get("since")
        return json_response(views.run_state(live_or_404(run_id),
                                             _int(since, 0) if since is not None else None))

    @app.get("/api/runs/<run_id>/graph")
    def api_graph(run_id: str) -> HTTPResponse:
        live = live_or_404(run_id, heavy=True)
        graph = live.layout(parameters=_flag(request.query.get("parameters")),
                            force=_flag(request.query.get("force")),
                            expand=_groups(request.query.get("expand")))
        return json_response(graph)

    @app.get("/api/runs/<run_id>/tasks")
    def api_tasks(run_id: str) -> HTTPResponse:
        return json_response(listing.task_listing(live_or_404(run_id, heavy=True)))

    @app.get("/api/runs/<run_id>/tasks/<node>")
    def api_task(run_id: str, node: str) -> HTTPResponse:
        node_id = security.parse_node(node)
        live = live_or_404(run_id, heavy=True)
        detail = views.task_detail(cache, live, node_id) if node_id is not None else None
        if detail is None:
            raise not_found()
        return json_response(detail)

    @app.get("/api/runs/<run_id>/tasks/<node>/logs")
    def api_task_logs(run_id: str, node: str) -> HTTPResponse:
        """What the task's stdout/stderr gained past ``?stdout=N&stderr=M`` (the live tail)."""
        node_id = security.parse_node(node)
        live = live_or_404(run_id, heavy=True)
        if node_id is None or not 0 <= node_id < len(live.manifest.nodes):
            raise not_found()
        offsets = {s: _int(request.query.get(s), -1) for s in ("stdout", "stderr")}
        return json_response(task_logs(live.data, node_id, offsets))

    @app.get("/api/runs/<run_id>/files")
    @app.get("/api/runs/<run_id>/files/<rel:path>")
    def api_files(run_id: str, rel: str = "") -> HTTPResponse:
        live = live_or_404(run_id, heavy=True)
        path, rel = located(live, rel)
        try:
            kind = files_mod.kind_of(live.data, rel, path)
            out: Dict[str, Any] = {"path": rel, "kind": kind}
            content = file_content(live, rel, path, kind)
            # The API gives a text's and a pickle's fields at the top level.
            out.update(content[kind] if kind in ("text", "pickle") else content)
        except OSError:  # gone, unreadable, or leading out of the run (OutsideRunError)
            raise not_found() from None
        return json_response(out)

    @app.get("/api/config")
    def api_config() -> HTTPResponse:
        return json_response(views_config())

    @app.post("/api/runs/<run_id>/cancel")
    def api_cancel(run_id: str) -> HTTPResponse:
        if request.get_header("X-Cov-Request") is None:
            return json_response({"error": "send the X-Cov-Request header"}, 400)
        live = live_or_404(run_id)
        try:
            nodes = security.cancel_targets(request.content_type, request.content_length,
                                            request.body)
        except ValueError as exc:
            return json_response({"error": str(exc)}, 400)
        # As ct.cancel: the request, and a runner if none serves the home (a request nobody
        # carries out would never end the run).
        return json_response({"message": daemon.request_cancel(RunDir(live.path), nodes)})

    def views_config() -> Dict[str, Any]:
        try:
            config, error = load_config(), None
        except ConfigError as exc:
            config, error = {}, str(exc)
        return {"path": str(config_path()), "home": str(cache.home),
                "config": mask_secrets(config), "error": error}

    return app


def _int(value: Optional[str], default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def _groups(value: Optional[str]) -> FrozenSet[str]:
    """The group ids of ``?expand=g3,g17`` (anything else in it ignored)."""
    return frozenset(g for g in (value or "").split(",")[:100] if re.fullmatch(r"g\d{1,9}", g))


def _flag(value: Optional[str]) -> bool:
    return (value or "").lower() in ("1", "true", "yes", "on")


def _crumbs(rel: str) -> list:
    """[(name, path)] for each directory above and including ``rel``."""
    out = []
    parts = [p for p in rel.split("/") if p]
    for i, part in enumerate(parts):
        out.append((part, "/".join(parts[: i + 1])))
    return out
