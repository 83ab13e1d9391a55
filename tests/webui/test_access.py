"""Only the UI's owner gets in: another account on the machine, a page of another site, or a
request whose body cannot be read is refused.

The other account is real: ``nobody``, through ``runuser``, with ``curl`` against a real
``cov ui`` listening on 127.0.0.1, the address every account of a login node shares.
"""
from __future__ import annotations

import http.client
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest

from runner.rundir import RunDir
from tests.conftest import REPO
from tests.infra.fixtures import require_root
from tests.webui.conftest import TOKEN
from tests.webui.test_cli_and_layout import _start_ui, _stop


def _as_nobody(*curl_args: str) -> subprocess.CompletedProcess:
    require_root("acting as the account nobody")
    if shutil.which("runuser") is None:
        pytest.skip("needs runuser (util-linux) and root")
    return subprocess.run(["runuser", "-u", "nobody", "--", "curl", "-s", "-o", "/dev/null",
                           "-w", "%{http_code}", "--max-time", "20", *curl_args],
                          capture_output=True, text=True, timeout=60)


def test_another_local_account_cannot_list_read_or_cancel(ui_home, tmp_path):
    flag = tmp_path / "release"
    run = ui_home.dispatch_gated(flag)
    proc, url, lines = _start_ui(ui_home)  # the defaults: 127.0.0.1, a generated token
    try:
        assert "?token=" in url
        base = url.split("?")[0].rstrip("/")
        for path in ("/", "/api/runs", f"/api/runs/{run}", f"/api/runs/{run}/tasks/0",
                     f"/run/{run}/files/manifest.yaml", f"/api/runs/{run}/files/tasks.pkl"):
            done = _as_nobody(base + path)
            assert done.stdout == "403", (path, done.stdout, done.stderr)
        done = _as_nobody("-X", "POST", "-H", "X-Cov-Request: 1", "-H",
                          "Content-Type: application/json", "-d", "{}", f"{base}/api/runs/{run}/cancel")
        assert done.stdout == "403"
        assert RunDir(ui_home.home / run).cancel_request() is None
        # guessing is no way in either
        assert _as_nobody(f"{base}/api/runs?token=guess").stdout == "403"
        # the owner, with the printed URL, gets in
        assert _as_nobody(url.replace("/?", "/api/runs?")).stdout == "200"
    finally:
        flag.touch()
        _stop(proc)


def test_the_tokenised_url_sets_a_strict_cookie_and_leaves_the_address_bar(ui_home):
    from webui.app import create_app
    from tests.webui.conftest import call

    app = create_app(ui_home.home, token=TOKEN)
    status, headers, _ = call(app, "/", query=f"token={TOKEN}", token=None)
    assert status == 303 and headers["Location"] == "/"
    cookie = headers["Set-Cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
    assert call(app, "/", headers={"Cookie": headers["Set-Cookie"].split(";")[0]},
                token=None)[0] == 200
    status, headers, _ = call(app, "//evil.example/x", query=f"token={TOKEN}", token=None)
    assert status == 303 and headers["Location"] == "/evil.example/x"  # not another site


def test_no_token_is_an_explicit_choice_with_a_warning(ui_home):
    import urllib.request

    proc, url, lines = _start_ui(ui_home, "--no-token")
    try:
        assert "token" not in url
        with urllib.request.urlopen(url + "api/runs", timeout=10) as resp:
            assert resp.status == 200
    finally:
        code, out, err = _stop(proc)
    assert "Warning: no token: every account on this machine" in "".join(lines) + out


def _post(base: str, path: str, body: bytes, headers: dict) -> tuple:
    url = urlparse(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=20)
    try:
        conn.request("POST", path, body=body, headers={"X-Cov-Token": TOKEN, **headers})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


BAD_BODIES = [
    # curl -d nodes=1: the form encoding curl uses by default
    (b"nodes=1", {"Content-Type": "application/x-www-form-urlencoded"}),
    (b'{"nodes": [1', {"Content-Type": "application/json"}),
    (b'{"nodes": [1]}', {"Content-Type": "text/plain"}),
    (b'{"nodes": [1]}', {}),
    (b"", {"Content-Type": "application/json"}),
    (b'[1]', {"Content-Type": "application/json"}),
    (b'{"nodes": ["x"]}', {"Content-Type": "application/json"}),
    (b'{"nodes": [true]}', {"Content-Type": "application/json"}),
    (b'{"nodes": []}', {"Content-Type": "application/json"}),
    (b'{"node": [1]}', {"Content-Type": "application/json"}),
    (b'{"nodes": [' + b"1, " * 40000 + b'1]}', {"Content-Type": "application/json"}),
]


def test_a_cancel_body_that_cannot_be_read_is_a_400_not_cancel_everything(served, ui_home,
                                                                         tmp_path):
    flag = tmp_path / "release"
    run = ui_home.dispatch_gated(flag)
    try:
        for body, headers in BAD_BODIES:
            status, answer = _post(served, f"/api/runs/{run}/cancel", body,
                                   {"X-Cov-Request": "1", **headers})
            assert status == 400, (body[:40], headers, answer)
            assert "error" in json.loads(answer)
            assert RunDir(ui_home.home / run).cancel_request() is None, body[:40]
        # a page of another site cannot post, even with the header and the cookie
        status, _ = _post(served, f"/api/runs/{run}/cancel", b'{"nodes": [1]}',
                          {"X-Cov-Request": "1", "Content-Type": "application/json",
                           "Origin": "http://evil.example"})
        assert status == 403
        assert RunDir(ui_home.home / run).cancel_request() is None
        # what the page itself sends works
        status, _ = _post(served, f"/api/runs/{run}/cancel", b'{"nodes": [1]}',
                          {"X-Cov-Request": "1", "Content-Type": "application/json",
                           "Origin": served})
        assert status == 200
        assert RunDir(ui_home.home / run).cancel_request()["nodes"] == [1]
        assert not RunDir(ui_home.home / run).cancel_request()["all"]
    finally:
        flag.touch()


MODES_SCRIPT = '''
import covalent_cli as ct


@ct.electron
def talk(x):
    import sys
    print("secret stdout", x)
    print("secret stderr", x, file=sys.stderr)
    return {"secret": x}


@ct.lattice
def wf(x="input-secret"):
    return talk(x)


print(ct.dispatch_sync(wf)().dispatch_id)
'''


@pytest.fixture
def open_dir():
    """A directory every account can traverse (pytest's own temp dirs are 0700, which would
    hide a home's modes from the test)."""
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="cov-modes-"))
    os.chmod(base, 0o755)
    yield base
    from runner.daemon import stop_runners

    stop_runners(base / "home", timeout=10)
    shutil.rmtree(base, ignore_errors=True)


def test_runs_are_readable_by_their_owner_only(open_dir):
    home, config = open_dir / "home", open_dir / "config.yaml"
    config.write_text("runner:\n  idle_timeout: 3\n  rescan_interval: 0.5\n")
    script = open_dir / "wf.py"
    script.write_text(MODES_SCRIPT)
    env = {**os.environ, "COV_HOME": str(home), "COV_CONFIG": str(config),
           "PYTHONPATH": str(REPO)}
    env.pop("COV_NO_RUNNER", None)
    done = subprocess.run([sys.executable, str(script)], cwd=str(open_dir), env=env,
                          capture_output=True, text=True, timeout=120,
                          preexec_fn=lambda: os.umask(0o022))  # the usual permissive umask
    assert done.returncode == 0, done.stderr
    run = home / done.stdout.strip().splitlines()[-1]
    assert (run / "logs").is_dir() and list((run / "logs").iterdir())
    loose = []
    # Everything in the home but the empty lock files and the runners' directory (whose
    # log and heartbeats hold no run data; the 0700 home shuts them in as well).
    for path in [home, *home.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        if mode & 0o077 and path.name not in ("run.lock", ".runners") and \
                path.parent != home / ".runners":
            loose.append(f"{path.relative_to(open_dir)} {mode:04o}")
    assert not loose, loose
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE(run.stat().st_mode) == 0o700
    require_root("acting as the account nobody")
    for path in (home, run / "results" / "0.pkl", run / "logs", run / "tasks.pkl"):
        refused = subprocess.run(["runuser", "-u", "nobody", "--", "cat", str(path)],
                                 capture_output=True, text=True, timeout=30)
        assert refused.returncode != 0 and "Permission denied" in refused.stderr, path


def test_a_home_others_can_write_to_is_warned_about(open_dir):
    home = open_dir / "home"
    home.mkdir(mode=0o700)
    os.chmod(home, 0o777)
    env = {**os.environ, "COV_HOME": str(home), "PYTHONPATH": str(REPO),
           "COV_CONFIG": str(open_dir / "none.yaml")}
    done = subprocess.run([sys.executable, "-m", "covalent_cli.cli", "runs"], env=env,
                          cwd=str(REPO), capture_output=True, text=True, timeout=60)
    assert f"Warning: the runs home {home} is writable by every account" in done.stderr
    os.chmod(home, 0o700)
    done = subprocess.run([sys.executable, "-m", "covalent_cli.cli", "runs"], env=env,
                          cwd=str(REPO), capture_output=True, text=True, timeout=60)
    assert "Warning" not in done.stderr
