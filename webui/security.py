"""What the UI lets in: run and node ids, paths inside a run directory, the access token,
request origins and the cancel request's body.

Every refusal of a path looks the same as a missing file (404): a probe cannot tell "outside the
home" from "not there". Paths are checked after ``realpath``, so a symlink inside a run directory
that points elsewhere is refused too.
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import os
import re
from pathlib import Path
from typing import Any, List, Optional
from urllib.parse import urlsplit

from runner.rundir import MANIFEST, SECRETS

RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
MAX_NODE = 10 ** 9
MAX_BODY = 64 * 1024  # bytes of a cancel request's body

def valid_run_id(value: str) -> bool:
    """A dispatch id: a UUID or another word of letters, digits, ``_`` and ``-``."""
    return bool(RUN_ID.match(value or ""))


def parse_node(value: str) -> Optional[int]:
    """A node id from a URL (plain decimal digits), or None."""
    if not value or not value.isdigit() or len(value) > 9:
        return None
    node = int(value)
    return node if node < MAX_NODE else None


def inside(root: Path, relative: str) -> Optional[Path]:
    """``root/relative`` resolved, if it exists and stays inside ``root`` (itself resolved);
    None for anything else: absolute paths, ``..``, NUL bytes, symlinks leading out."""
    if relative is None or "\x00" in relative or "\\" in relative:
        return None
    if relative.startswith("/") or os.path.isabs(relative):
        return None
    relative = relative.rstrip("/")
    if any(part == ".." for part in relative.split("/")):
        return None
    try:
        real_root = os.path.realpath(root)
        target = os.path.realpath(os.path.join(real_root, relative))
    except (OSError, ValueError):
        return None
    if target != real_root and not target.startswith(real_root + os.sep):
        return None
    if os.path.relpath(target, real_root).split(os.sep)[0] == SECRETS and \
            os.path.isfile(os.path.join(real_root, MANIFEST)):
        return None  # a run's secrets (0600) are never shown
    if not os.path.exists(target):
        return None
    return Path(target)


def run_path(home: Path, run_id: str) -> Optional[Path]:
    """The resolved directory of run ``run_id`` under ``home``, or None (bad id, missing, or a
    symlink out of the home)."""
    if not valid_run_id(run_id):
        return None
    path = inside(home, run_id)
    if path is None or not (path / MANIFEST).is_file():
        return None
    return path


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_allowed(host_header: str, bound: str) -> bool:
    """Without a token only loopback names may be asked for, which defeats DNS rebinding (a web
    page whose name is re-pointed to 127.0.0.1 sends its own name as ``Host``)."""
    if not host_header:
        return True
    if host_header.startswith("["):
        name = host_header[1:host_header.find("]")]
    else:
        name = host_header.split(":")[0]
    return name in ("localhost", bound.strip("[]")) or is_loopback(name)


def same_origin(origin: Optional[str], host_header: str) -> bool:
    """True if a request's ``Origin`` (sent by browsers on every POST) is this server, or
    absent (curl, scripts). A page of another origin cannot forge it."""
    if origin is None:
        return True
    try:
        parts = urlsplit(origin)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc) and \
        parts.netloc.lower() == host_header.lower()


def cancel_targets(content_type: str, length: Optional[int], body: Any) -> Optional[List[int]]:
    """The nodes a cancel request names (None: the whole run), from its JSON body.

    The body must be a JSON object (``{}`` or ``{"nodes": [ids]}``) sent as
    ``application/json``: anything else raises ValueError (a 400), so a request whose body
    cannot be read never turns into "cancel the whole run".
    """
    if (content_type or "").split(";")[0].strip().lower() != "application/json":
        raise ValueError("send the body as application/json: {} or {\"nodes\": [ids]}")
    if length is None or length < 0 or length > MAX_BODY:
        raise ValueError(f"the body must have a Content-Length of at most {MAX_BODY} bytes")
    try:
        data = json.loads(body.read(MAX_BODY + 1) or b"")
    except (ValueError, UnicodeDecodeError):
        raise ValueError("the body is not JSON: send {} or {\"nodes\": [ids]}") from None
    if not isinstance(data, dict) or set(data) - {"nodes"}:
        raise ValueError("the body must be {} or {\"nodes\": [ids]}")
    raw = data.get("nodes")
    if raw is None:
        return None
    raw = raw if isinstance(raw, list) else [raw]
    nodes = [parse_node(str(n)) if isinstance(n, (int, str)) and not isinstance(n, bool)
             else None for n in raw]
    if not nodes or any(n is None for n in nodes):
        raise ValueError("nodes must be a list of node ids")
    return nodes  # type: ignore[return-value]


class Token:
    """The UI's access token: checked on every request (in constant time), from the query
    (``?token=``, then kept in a cookie), the cookie, or an ``X-Cov-Token`` header."""

    def __init__(self, value: str) -> None:
        self.value = value
        # One cookie name per token, so two UIs on one host (different ports) do not clash.
        self.cookie = "cov_token_" + hashlib.sha256(value.encode()).hexdigest()[:10]

    def matches(self, candidate: Optional[str]) -> bool:
        return bool(candidate) and hmac.compare_digest(str(candidate).encode(), self.value.encode())

    def set_cookie(self, target: Any) -> None:
        """Keep the token in the browser: HttpOnly (no script reads it), SameSite=Strict (no
        other site's page or link sends it), for the whole UI, until the browser closes."""
        target.set_cookie(self.cookie, self.value, httponly=True, samesite="strict", path="/")
