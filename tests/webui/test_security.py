"""Nothing outside the runs home is ever served: every escape gets the 404 a missing file gets.

These go through the real server (a thread on 127.0.0.1) with ``http.client``, which sends the
path byte for byte: the percent-decoding and path handling are the server's and Bottle's own.
"""
from __future__ import annotations

import http.client
import os
import shutil
from typing import Tuple
from urllib.parse import urlparse

import pytest

from tests.webui.conftest import TOKEN

SECRET = "top-secret-outside-the-home"


def fetch(base: str, path: str) -> Tuple[int, str, bytes]:
    url = urlparse(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    try:
        conn.putrequest("GET", path, skip_accept_encoding=True)
        conn.putheader("X-Cov-Token", TOKEN)
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type", ""), resp.read()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def traps(ui_home):
    """Secrets beside the home and symlinks leading to them from inside a run and the home."""
    outside = ui_home.root / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "secret.txt").write_text(SECRET)
    (ui_home.root / "secret.txt").write_text(SECRET)
    run = ui_home.run_dir("failing")
    os.symlink(outside / "secret.txt", run / "leak.txt")
    os.symlink(outside, run / "leakdir")
    # a whole run directory that lives outside the home, linked into it
    foreign = ui_home.root / "foreign-run"
    shutil.copytree(run, foreign, symlinks=True)
    (foreign / "secret.txt").write_text(SECRET)
    os.symlink(foreign, ui_home.home / "linked-run")
    yield run.name
    for link in (run / "leak.txt", run / "leakdir", ui_home.home / "linked-run"):
        link.unlink()


ESCAPES = [
    "/run/{run}/files/../../secret.txt",
    "/run/{run}/files/../../../secret.txt",
    "/run/{run}/files/%2e%2e/%2e%2e/secret.txt",
    "/run/{run}/files/%2E%2E%2F%2E%2E%2Fsecret.txt",
    "/run/{run}/files/..%2f..%2fsecret.txt",
    "/run/{run}/files/%252e%252e/%252e%252e/secret.txt",
    "/run/{run}/files//etc/passwd",
    "/run/{run}/files/%2Fetc%2Fpasswd",
    "/run/{run}/files/leak.txt",
    "/run/{run}/files/leak.txt?download=1",
    "/run/{run}/files/leakdir/",
    "/run/{run}/files/leakdir/secret.txt",
    "/run/linked-run/files/secret.txt",
    "/run/linked-run",
    "/api/runs/linked-run",
    "/run/..%2F..%2Fsecret.txt",
    "/run/%2e%2e/files/secret.txt",
    "/run/../secret.txt",
    "/api/runs/{run}/files/../../secret.txt",
    "/api/runs/{run}/files/%2e%2e/%2e%2e/secret.txt",
    "/api/runs/{run}/files/leak.txt",
    "/static/../app.py",
    "/static/%2e%2e/app.py",
    "/static/..%2fapp.py",
]


@pytest.mark.parametrize("path", ESCAPES)
def test_escapes_look_like_missing_files(served, traps, path):
    api = path.startswith("/api/")
    missing = fetch(served, f"/api/runs/{traps}/files/missing.txt" if api
                    else f"/run/{traps}/files/missing.txt")
    status, ctype, body = fetch(served, path.format(run=traps))
    assert status == 404
    assert SECRET.encode() not in body and b"root:" not in body
    assert (status, ctype, body) == missing


@pytest.mark.parametrize("run_id", ["..", ".runners", "a.b", "x" * 200, "%00", "-x"])
def test_bad_run_ids(served, run_id):
    for path in (f"/run/{run_id}", f"/api/runs/{run_id}", f"/api/runs/{run_id}/state"):
        assert fetch(served, path)[0] == 404, path


@pytest.mark.parametrize("node", ["-1", "1e3", "0x1", "99999999999", "%201", "1.0", "+1"])
def test_bad_node_ids(served, ui_home, node):
    assert fetch(served, f"/api/runs/{ui_home.ids['failing']}/tasks/{node}")[0] == 404


def test_listing_hides_links_leading_out(served, traps):
    status, _, body = fetch(served, f"/run/{traps}/files/")
    assert status == 200
    assert b"manifest.yaml" in body and b"leak.txt" not in body and b"leakdir" not in body
    status, _, body = fetch(served, "/api/runs")
    assert b"linked-run" not in body


@pytest.mark.parametrize("name", ["results/0.pkl", "tasks.pkl", "results/0.pkl?download=1",
                                  "tasks.pkl?download=1"])
def test_pickles_are_never_served_raw(served, ui_home, name):
    status, ctype, body = fetch(served, f"/run/{ui_home.ids['failing']}/files/{name}")
    assert status == 200 and ctype.startswith("text/html")
    assert b"\x80" not in body  # the pickle protocol marker: no raw pickle bytes


def test_outcome_packs_are_never_served_raw(served, ui_home):
    """Format 2.0's ``results/pack-*.bin`` hold pickles: shown as a list of records."""
    run = ui_home.ids["failing"]
    packs = [p.name for p in (ui_home.home / run / "results").iterdir()
             if p.name.startswith("pack-")]
    assert packs
    for query in ("", "?download=1"):
        status, ctype, body = fetch(served, f"/run/{run}/files/results/{packs[0]}{query}")
        assert status == 200 and ctype.startswith("text/html")
        assert b"\x80" not in body and b"packs small outcomes" in body


def test_text_download_is_an_attachment(served, ui_home):
    url = urlparse(served)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    conn.request("GET", f"/run/{ui_home.ids['failing']}/files/manifest.yaml?download=1",
                 headers={"X-Cov-Token": TOKEN})
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    assert resp.status == 200
    assert resp.getheader("Content-Disposition") == 'attachment; filename="manifest.yaml"'
    assert resp.getheader("Content-Type") == "application/octet-stream"
    assert ui_home.ids["failing"].encode() in body
