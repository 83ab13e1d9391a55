"""What the UI lets in: run and node ids, paths inside a run directory, the access token.

Every refusal of a path looks the same as a missing file (404): a probe cannot tell "outside the
home" from "not there". Paths are checked after ``realpath``, so a symlink inside a run directory
that points elsewhere is refused too.
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import re
from pathlib import Path
from typing import Optional

RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
MAX_NODE = 10 ** 9

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
    if not os.path.exists(target):
        return None
    return Path(target)


def run_path(home: Path, run_id: str) -> Optional[Path]:
    """The resolved directory of run ``run_id`` under ``home``, or None (bad id, missing, or a
    symlink out of the home)."""
    if not valid_run_id(run_id):
        return None
    path = inside(home, run_id)
    if path is None or not (path / "manifest.yaml").is_file():
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


class Token:
    """The access token of a UI that needs one: checked on every request, from the query
    (``?token=``, then kept in a cookie) or the cookie."""

    def __init__(self, value: str) -> None:
        self.value = value
        # One cookie name per token, so two UIs on one host (different ports) do not clash.
        self.cookie = "cov_token_" + hashlib.sha256(value.encode()).hexdigest()[:10]

    def matches(self, candidate: Optional[str]) -> bool:
        return bool(candidate) and hmac.compare_digest(str(candidate).encode(), self.value.encode())
