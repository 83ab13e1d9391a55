"""Fixtures for the web UI: a home with real finished runs, the app, and the app served.

The runs are made once per session by real dispatches (a script run with ``python``, as a user
would), because every UI test only reads them; tests that need a run of their own (a live or a
cancelled one) dispatch it into the same home.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Tuple
from wsgiref.util import setup_testing_defaults

import pytest

from tests.conftest import REPO

TOKEN = "test-token-0123456789"
"""The token of the ``app`` and ``served`` fixtures (a UI always has one unless --no-token)."""

RUNS_SCRIPT = '''
import json
import covalent_cli as ct


@ct.electron
def ok(x):
    print("ok got", x)
    return x + 1


@ct.electron
def divide(a, b):
    print("dividing", a, "by", b)
    return a / b


@ct.electron
def combine(a, b):
    return a + b


@ct.lattice
def failing(x=1):
    """divide() raises ZeroDivisionError; ok() still completes."""
    return combine(ok(x), divide(x, 0))


@ct.electron
def halve(x):
    return x // 2


@ct.electron
@ct.lattice
def inner(x):
    return halve(x)


@ct.lattice
def nested(x=40):
    """Runs inner() as a sublattice: a child run under this one."""
    return inner(halve(x))


@ct.electron
def big(n):
    return list(range(n))


@ct.lattice
def bigvalue(n=100000):
    return big(n)


ids = {}
for name, wf in [("failing", failing), ("nested", nested), ("bigvalue", bigvalue)]:
    ids[name] = ct.dispatch_sync(wf)().dispatch_id
print(json.dumps(ids))
'''

GATED_SCRIPT = '''
import sys
import covalent_cli as ct


@ct.electron
def wait_for(path):
    """Runs until the test creates ``path`` (60 s at most)."""
    import os, time
    deadline = time.time() + 60
    while not os.path.exists(path):
        if time.time() > deadline:
            raise TimeoutError(path)
        time.sleep(0.05)
    return "released"


@ct.electron
def after(x):
    return x.upper()


@ct.lattice
def gated(path):
    return after(wait_for(path))


print(ct.dispatch(gated)(sys.argv[1]))
'''


@dataclass
class UIHome:
    """A runs home with finished runs: ``ids`` maps failing/nested/bigvalue to dispatch ids."""

    root: Path
    home: Path
    config: Path
    ids: Dict[str, str]

    @property
    def env(self) -> Dict[str, str]:
        env = {**os.environ, "COV_HOME": str(self.home), "COV_CONFIG": str(self.config),
               "PYTHONPATH": str(REPO)}
        env.pop("COV_NO_RUNNER", None)
        return env

    def run_script(self, text: str, *args: str, name: str = "script.py") -> str:
        """Run a workflow script with ``python`` in this home; returns its stdout."""
        script = self.root / name
        script.write_text(textwrap.dedent(text))
        proc = subprocess.run([sys.executable, str(script), *args], cwd=str(self.root),
                              env=self.env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    def dispatch_gated(self, flag: Path) -> str:
        """Dispatch (without waiting) a run whose first task waits for ``flag`` to exist."""
        return self.run_script(GATED_SCRIPT, str(flag), name="gated.py").strip().splitlines()[-1]

    def run_dir(self, name: str) -> Path:
        return self.home / self.ids[name]


@pytest.fixture(scope="session")
def ui_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UIHome]:
    """Three finished real runs (one failed, one with a sublattice child run, one with a large
    result) in a home of their own; runners stopped at the end, leaks fail the session."""
    root = tmp_path_factory.mktemp("webui")
    home = root / "home"
    config = root / "config.yaml"
    config.write_text("runner:\n  idle_timeout: 3\n  rescan_interval: 0.5\n"
                      "  heartbeat_interval: 1\n")
    made = UIHome(root, home, config, {})
    made.ids = json.loads(made.run_script(RUNS_SCRIPT, name="make_runs.py").strip().splitlines()[-1])
    yield made
    from runner.daemon import stop_runners
    from runner.liveness import pid_alive, read_runners

    stop_runners(home, timeout=10)
    leaked = [r for r in read_runners(home) if r.get("host") and pid_alive(int(r["pid"]))]
    assert not leaked, f"runner processes left behind: {leaked}"


@pytest.fixture(scope="session")
def app(ui_home: UIHome) -> Any:
    """The Bottle app over ``ui_home``, with the token ``TOKEN`` (``call`` sends it)."""
    from webui.app import create_app

    return create_app(ui_home.home, token=TOKEN)


@pytest.fixture(scope="session")
def served(ui_home: UIHome) -> Iterator[str]:
    """The app (token ``TOKEN``) served on 127.0.0.1 (a free port) in a thread; yields its base
    URL. ``chromium_page`` holds the token's cookie for it."""
    from webui.app import create_app
    from webui.server import make

    server = make(create_app(ui_home.home, token=TOKEN), "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def chromium_page(chromium_page: Any, served: str) -> Any:
    """The infrastructure's page, logged in to ``served``: it visited the tokenised URL, as a
    user opens the URL ``cov ui`` prints, and holds the cookie that visit set."""
    chromium_page.set_default_timeout(45_000)  # a loaded 2-core machine: wait generously
    chromium_page.goto(f"{served}/?token={TOKEN}")
    chromium_page.wait_for_url(f"{served}/")
    return chromium_page


def call(app: Any, path: str, method: str = "GET", query: str = "",
         headers: Optional[Dict[str, str]] = None, body: bytes = b"",
         token: Optional[str] = TOKEN) -> Tuple[int, Dict[str, str], bytes]:
    """One request straight through the WSGI app: (status, headers, body). ``path`` is what a
    server puts in PATH_INFO (already percent-decoded). ``token`` goes in ``X-Cov-Token``
    (None: no credentials)."""
    import io

    env: Dict[str, Any] = {}
    setup_testing_defaults(env)
    env.update(PATH_INFO=path, QUERY_STRING=query, REQUEST_METHOD=method,
               CONTENT_LENGTH=str(len(body)), HTTP_HOST="127.0.0.1:8765")
    env["wsgi.input"] = io.BytesIO(body)
    if token is not None:
        env["HTTP_X_COV_TOKEN"] = token
    for name, value in (headers or {}).items():
        key = name.upper().replace("-", "_")
        env[key if key in ("CONTENT_TYPE",) else "HTTP_" + key] = value
    seen: Dict[str, Any] = {}

    def start_response(status: str, head: list, exc_info: Any = None) -> None:
        seen["status"] = int(status.split()[0])
        seen["headers"] = {}
        for k, v in head:
            seen["headers"][k] = seen["headers"][k] + "\n" + v if k in seen["headers"] else v

    data = b"".join(app(env, start_response))
    return seen["status"], seen["headers"], data


def get_json(app: Any, path: str, query: str = "") -> Any:
    status, headers, data = call(app, path, query=query)
    assert status == 200, (path, status, data[:300])
    assert headers["Content-Type"].startswith("application/json")
    return json.loads(data)


def load_json(app: Any, path: str) -> Any:
    """A load request (it unpickles): refused without the X-Cov-Request header, then its JSON."""
    status, _, data = call(app, path)
    assert status == 400 and b"X-Cov-Request" in data, (path, status, data[:300])
    status, headers, data = call(app, path, headers={"X-Cov-Request": "1"})
    assert status == 200, (path, status, data[:300])
    return json.loads(data)
