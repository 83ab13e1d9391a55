"""One run's fault never stops another run (docs/reliability.md, "Damaged run directories").

Each case puts a damaged run beside a good one in the same home and starts a real runner: the
good run completes, the runner exits cleanly, and the damaged run is UNREADABLE with its reason
for every reader: `cov runs` (one UNREADABLE row), `cov status/logs/result/cancel` (one Error
line, exit 8), `cov report` (one Error line) and the UI's runs list. No traceback anywhere.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable, Dict

import pytest

from tests.cli.test_cli import assert_one_line_error
from tests.conftest import REPO
from tests.reliability.test_bad_input import OK, script


SPREAD_OVER_WORKERS = True
"""``templates`` (two dispatched runs, a second to make) is only copied from: under pytest-xdist
the 29 tests spread over the workers (tests/infra/parallel.py): on one, they were the longest
part of the parallel run."""


def _dispatch(home: Path, root: Path, name: str) -> Path:
    env = {**os.environ, "COV_HOME": str(home), "COV_NO_RUNNER": "1",
           "COV_CONFIG": str(root / "none.yaml")}
    proc = subprocess.run([sys.executable, "-m", "covalent_cli.cli", "dispatch", "-q",
                           str(script(root, OK, name))], capture_output=True, text=True,
                          env=env, cwd=str(REPO))
    assert proc.returncode == 0, proc.stderr
    return home / proc.stdout.strip()


@pytest.fixture(scope="module")
def templates(tmp_path_factory) -> Dict[str, Path]:
    """Two dispatched runs no runner has touched: one to damage, one to stay good."""
    root = tmp_path_factory.mktemp("templates")
    home = root / "home"
    return {"victim": _dispatch(home, root, "a.py"), "good": _dispatch(home, root, "b.py")}


def _edit_manifest(old: str, new: str) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        text = (run / "manifest.yaml").read_text()
        assert old in text, old
        (run / "manifest.yaml").write_text(text.replace(old, new, 1))
    return damage


def _event(line: bytes) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        with open(run / "events.jsonl", "ab") as f:
            f.write(line + b"\n")
    return damage


def _file(name: str, data: bytes) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        (run / name).write_bytes(data)
    return damage


def _events_dir(run: Path) -> None:
    (run / "events.jsonl").unlink(missing_ok=True)
    (run / "events.jsonl").mkdir()


def _binary_manifest(run: Path) -> None:
    (run / "manifest.yaml").write_bytes(b"\x00\xff\xfe" + os.urandom(2000))


# kind -> (damage, a fragment of the reason every reader gives)
DAMAGE = {
    "event-not-an-object": (_event(b"[1, 2, 3]"), "not an event object"),
    "event-number": (_event(b"42"), "not an event object"),
    "event-node-is-text": (_event(b'{"t": 1, "ev": "claim", "node": "zero", "attempt": 1}'),
                           "node='zero'"),
    "event-status-is-a-number": (_event(b'{"t": 1, "ev": "end", "node": 0, "status": 5}'),
                                 "status=5"),
    "event-unknown-status": (_event(b'{"t": 1, "ev": "run", "status": "BOGUS"}'),
                             "unknown status"),
    "event-handle-is-a-list": (_event(b'{"t": 1, "ev": "handle", "node": 0, "handle": [1]}'),
                               "handle=[1]"),
    "event-time-is-text": (_event(b'{"t": "noon", "ev": "run", "status": "RUNNING"}'),
                           "non-numeric time"),
    "events-is-a-directory": (_events_dir, "cannot read"),
    "cancel-is-a-list": (_file("cancel.json", b"[1]"), "not a cancel request"),
    "cancel-nodes-are-text": (_file("cancel.json", b'{"all": false, "nodes": ["x"]}'),
                              "not a cancel request"),
    "node-blob-short": (_edit_manifest('"blob": [', '"blob": [0], "old": ['), "'blob'"),
    "lattice-is-text": (_edit_manifest("lattice:\n", "lattice: x\nold_lattice:\n"),
                        "'lattice' must be a mapping"),
    "binary-manifest": (_binary_manifest, "manifest.yaml"),
    "empty-manifest": (_file("manifest.yaml", b""), "manifest.yaml"),
    "executor-retries-is-text": (_edit_manifest("type: local\n", "type: local\n    retries: many\n"),
                                 "retries='many'"),
    "executors-is-a-list": (_edit_manifest("executors:\n", "executors: [1]\nold_executors:\n"),
                            "'executors' must be a mapping"),
    "unknown-node-kind": (_edit_manifest('"kind": "electron"', '"kind": "mystery"'),
                          "unknown kind"),
    "edge-to-missing-node": (_edit_manifest('"parents": [{"node": 0', '"parents": [{"node": 99'),
                             "node 99"),
    "output-node-missing": (_edit_manifest("output_node: 3", "output_node: 99"),
                            "output_node 99"),
    "newer-format": (_edit_manifest("format_version: '2.0'", "format_version: '9.0'"),
                     "newer than this cov reads"),
    "node-line-is-a-list": (_edit_manifest('  - {"id": 0', '  - [0]\n  - {"id": 0'),
                            "manifest"),
    "dispatch-id-is-a-number": (_edit_manifest("dispatch_id: ", "dispatch_id: 5\nold_id: "),
                                "'dispatch_id' must be text"),
}


def _runner(home: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runner", "--home", str(home),
                           "--idle-timeout", "0.5"], capture_output=True, text=True,
                          timeout=180, cwd=str(REPO), env={**os.environ, "PYTHONPATH": str(REPO)})


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_a_damaged_run_costs_only_itself(kind, templates, cov_home, run_cov):
    damage, reason = DAMAGE[kind]
    cov_home.mkdir(parents=True, exist_ok=True)
    victim = cov_home / templates["victim"].name
    good = cov_home / templates["good"].name
    shutil.copytree(templates["victim"], victim)
    shutil.copytree(templates["good"], good)
    damage(victim)

    runner = _runner(cov_home)
    assert runner.returncode == 0, runner.stderr
    assert "Traceback" not in runner.stderr, runner.stderr
    assert runner.stderr.count(f"run {victim.name} is unreadable") == 1, runner.stderr
    assert json.loads(run_cov("result", good.name, "--json").stdout)["result"] == 2

    listing = run_cov("runs", "--json")
    assert listing.returncode == 0, listing.stderr
    rows = {r["dispatch_id"]: r for r in json.loads(listing.stdout)["runs"]}
    assert rows[good.name]["status"] == "COMPLETED"
    assert rows[victim.name]["status"] == "UNREADABLE" and reason in rows[victim.name]["error"]
    table = run_cov("runs")
    assert table.returncode == 0 and "UNREADABLE" in table.stdout, table.stderr

    for command in (["status", victim.name], ["status", victim.name, "--json"],
                    ["logs", victim.name], ["result", victim.name], ["cancel", victim.name],
                    ["wait", victim.name, "--timeout", "1"]):
        assert_one_line_error(run_cov(*command), 8, reason)
    report = run_cov("report", victim.name)
    assert_one_line_error(report, 8, reason)

    from webui import views
    from webui.live import RunCache

    ui_rows = {r["dispatch_id"]: r for r in views.runs_listing(RunCache(cov_home))["runs"]}
    assert ui_rows[victim.name]["status"] == "UNREADABLE"
    assert ui_rows[good.name]["status"] == "COMPLETED"


def test_enough_kinds_of_damage():
    assert len(DAMAGE) >= 15


def test_an_unquoted_created_timestamp_is_read_not_fatal(templates, cov_home, run_cov):
    """A hand-edited ``created: 2024-01-01 10:00:00`` is a datetime to YAML; listings sorted
    it against text and failed for every run."""
    cov_home.mkdir(parents=True, exist_ok=True)
    victim = cov_home / templates["victim"].name
    good = cov_home / templates["good"].name
    shutil.copytree(templates["victim"], victim)
    shutil.copytree(templates["good"], good)
    text = (victim / "manifest.yaml").read_text()
    start = text.index("created: ")
    end = text.index("\n", start)
    (victim / "manifest.yaml").write_text(text[:start] + "created: 2024-01-01 10:00:00" +
                                          text[end:])
    assert _runner(cov_home).returncode == 0
    rows = {r["dispatch_id"]: r for r in json.loads(run_cov("runs", "--json").stdout)["runs"]}
    assert rows[victim.name]["status"] == rows[good.name]["status"] == "COMPLETED"
    assert rows[victim.name]["created"] == 1704103200.0  # 2024-01-01 10:00:00 UTC

    from webui import views
    from webui.live import RunCache

    assert views.runs_listing(RunCache(cov_home))["total"] == 2


def test_an_event_naming_a_node_the_manifest_lacks(templates, cov_home, run_cov):
    """Events of nodes the manifest does not have are ignored by readers and the runner."""
    cov_home.mkdir(parents=True, exist_ok=True)
    victim = cov_home / templates["victim"].name
    good = cov_home / templates["good"].name
    shutil.copytree(templates["victim"], victim)
    shutil.copytree(templates["good"], good)
    _event(b'{"t": 1, "ev": "end", "node": 999, "status": "COMPLETED"}')(victim)
    runner = _runner(cov_home)
    assert runner.returncode == 0 and "Traceback" not in runner.stderr, runner.stderr
    assert run_cov("wait", good.name, "-q").returncode == 0
    assert json.loads(run_cov("result", victim.name, "--json").stdout)["result"] == 2


def test_a_hostile_outcome_header_of_an_orphaned_claim(templates, cov_home, run_cov):
    """A dead runner's claim whose result file has a header of the wrong shape: the runner
    reads it to adopt the claim, sets the run aside, and serves the other."""
    cov_home.mkdir(parents=True, exist_ok=True)
    victim = cov_home / templates["victim"].name
    good = cov_home / templates["good"].name
    shutil.copytree(templates["victim"], victim)
    shutil.copytree(templates["good"], good)
    _event(b'{"t": 1, "ev": "claim", "node": 0, "attempt": 1, "runner": "gone:1:1"}')(victim)
    (victim / "results" / "0.pkl").write_bytes(b'{"ok": "yes", "attempt": 1, "len": 0}\n')
    runner = _runner(cov_home)
    assert runner.returncode == 0 and "Traceback" not in runner.stderr, runner.stderr
    assert "results/0.pkl: the outcome header has ok='yes'" in runner.stderr
    assert run_cov("wait", good.name, "-q").returncode == 0


@pytest.mark.parametrize("name", ["bad name!", "r\u00fcn", "a;b", "x" * 300])
def test_run_directory_names_outside_the_id_alphabet(name, templates, cov_home, run_cov):
    """A run directory renamed by hand: listings include it, report gives one line."""
    if len(name.encode()) > 255:
        name = name[:200]
    cov_home.mkdir(parents=True, exist_ok=True)
    shutil.copytree(templates["good"], cov_home / name)
    listing = run_cov("runs", "--json")
    assert listing.returncode == 0, listing.stderr
    assert str(cov_home / name) in {r["path"] for r in json.loads(listing.stdout)["runs"]}
    report = run_cov("report", name)
    if report.returncode != 0:
        assert_one_line_error(report, report.returncode, name[:20])
    assert "Traceback" not in report.stderr
