"""Serving the app: a threaded WSGI server from the standard library, loopback by default.

Threads, so that laying out a big graph or reading a large log does not stall the one-second
state refreshes of other tabs. On a non-loopback address a token is required (``serve``
generates one), and the URL printed carries it, as Jupyter's does.
"""
from __future__ import annotations

import secrets
import socket
import socketserver
import sys
from pathlib import Path
from typing import Callable, Optional, Tuple
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from webui.security import is_loopback


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    """No line per request on stderr (the UI polls every second)."""

    def log_request(self, code: object = "-", size: object = "-") -> None:
        pass


def make(app: Callable, host: str = "127.0.0.1", port: int = 0) -> WSGIServer:
    """A bound server (``port=0``: any free port); call ``serve_forever`` on it."""
    server_class = _Server6 if ":" in host else _Server
    return make_server(host.strip("[]"), port, app, server_class=server_class,
                       handler_class=_QuietHandler)


def url_of(server: WSGIServer, host: str, token: Optional[str]) -> str:
    port = server.server_address[1]
    shown = f"[{host.strip('[]')}]" if ":" in host else host
    return f"http://{shown}:{port}/" + (f"?token={token}" if token else "")


def prepare(home: Path, host: str, port: Optional[int], token: Optional[str],
            no_token: bool = False) -> Tuple[WSGIServer, str, Optional[str]]:
    """The app and its bound server; ``port=None`` tries 8765 and the next 20 ports. A token
    is generated unless one is given or ``no_token``."""
    from webui.app import create_app

    if no_token:
        token = None
    elif not token:
        token = secrets.token_urlsafe(24)
    app = create_app(home, token=token, host=host)
    candidates = [port] if port is not None else list(range(8765, 8786))
    last: Optional[OSError] = None
    for candidate in candidates:
        try:
            server = make(app, host, candidate)
            return server, url_of(server, host, token), token
        except OSError as exc:  # port in use: try the next one
            last = exc
    assert last is not None
    raise last


def serve(home: Path, host: str = "127.0.0.1", port: Optional[int] = None,
          token: Optional[str] = None, echo: Callable[[str], None] = print,
          no_token: bool = False) -> None:
    """Serve until Ctrl-C."""
    server, url, token = prepare(home, host, port, token, no_token)
    echo(f"cov ui: serving the runs in {home}")
    if token is None:
        echo("Warning: no token: every account on this machine (and, off loopback, anyone "
             "who can reach it) can read these runs and cancel them.")
    echo(f"    {url}")
    if is_loopback(host):
        echo(f"From another machine: ssh -L {server.server_address[1]}:localhost:"
             f"{server.server_address[1]} <this host>, then open the URL above.")
    echo("Press Ctrl-C to stop.")
    sys.stdout.flush()
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        echo("Stopped.")
    finally:
        server.server_close()
