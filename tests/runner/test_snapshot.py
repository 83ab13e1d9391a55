"""A finished run's snapshot (runner/derived.py): written by the runner, used by readers only
for the very files it was made from, and never able to change or break what they read."""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any, Dict

import covalent_cli as ct
from runner import derived
from runner.layout import RUNNER_LOG, RUNNERS, SNAPSHOT
from runner.manifest import Manifest
from runner.rundir import RunDir
from runner.state import RunState, TaskState, fold


@ct.electron
def inc(x):
    return x + 1


@ct.electron
def boom(x):
    raise ValueError(f"bad value {x}")


@ct.electron
def total(xs):
    return sum(xs)


@ct.lattice
def mixed(n):
    values = [inc(i) for i in range(n)]
    return total(values + [boom(n)])


def _finished_run(cov_home: Path, n: int = 6) -> RunDir:
    """A finished run (one task failed, one never ran), once its runner wrote the snapshot."""
    result = ct.dispatch_sync(mixed)(n)
    assert str(result.status) == "FAILED"
    run = RunDir(cov_home / result.dispatch_id)
    deadline = time.monotonic() + 30
    while not run.snapshot_path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # the runner writes it as it retires the run, after the run's end event
    assert run.snapshot_path.exists(), "the runner wrote no snapshot"
    return run


def _parsed(run: RunDir) -> "tuple[Manifest, RunState]":
    """What a reader without the snapshot reads: the manifest parsed, the whole log folded."""
    manifest = Manifest.from_yaml(run.manifest_path.read_text())
    events = [json.loads(line) for line in run.events_path.read_bytes().splitlines()]
    return manifest, fold(events)


def _status_json(run_cov: Any, dispatch_id: str, *home: str) -> Dict[str, Any]:
    done = run_cov(*home, "status", dispatch_id, "--json", "--all")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return json.loads(done.stdout)


def _without_path(doc: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in doc.items() if k != "path"}


def test_the_runner_writes_a_snapshot_equal_to_the_parse_and_the_fold(cov_home):
    run = _finished_run(cov_home)
    manifest, state = _parsed(run)
    reader = RunDir(run.path)
    assert reader.manifest == manifest
    assert reader.state() == state
    assert reader.began_from_snapshot, "the state was not taken from the snapshot"
    failed = [t for t in state.tasks.values() if t.status == "FAILED"]
    assert failed and failed[0].exception and "bad value" in failed[0].exception


def test_status_json_is_the_same_with_and_without_the_snapshot(cov_home, run_cov):
    run = _finished_run(cov_home)
    other_home = cov_home.parent / "copied"  # where no runner serves (it would add one)
    copy = other_home / run.dispatch_id
    shutil.copytree(run.path, copy)
    (copy / SNAPSHOT).unlink()
    with_snapshot = _status_json(run_cov, run.dispatch_id)
    without = _status_json(run_cov, run.dispatch_id, "--home", str(other_home))
    assert without["tasks"] and with_snapshot["tasks"] == without["tasks"]
    assert _without_path(with_snapshot) == _without_path(without)
    assert not (copy / SNAPSHOT).exists(), "a reader wrote a snapshot"


def test_events_appended_after_the_snapshot_are_folded_on_top(cov_home):
    run = _finished_run(cov_home)
    node = next(n.id for n in run.manifest.nodes if n.name == "inc")
    with open(run.events_path, "a") as f:
        f.write(json.dumps({"t": 5.0, "ev": "end", "node": node, "attempt": 1,
                            "status": "COMPLETED", "start": 1.0, "end": 4.0}) + "\n")
    reader = RunDir(run.path)
    state = reader.state()
    assert reader.began_from_snapshot  # began from the snapshot ...
    assert state.tasks[node].ended == 4.0  # ... and folded the new event on top
    assert state == _parsed(run)[1]


def test_a_rewritten_event_log_is_folded_whole(cov_home):
    run = _finished_run(cov_home)
    data = run.events_path.read_bytes()
    run.events_path.write_bytes(data.replace(b'"status": "FAILED"', b'"status": "CANCELLED"'))
    reader = RunDir(run.path)
    state = reader.state()
    assert not reader.began_from_snapshot, "a snapshot of other bytes was used"
    assert str(state.status) == "CANCELLED" and state == _parsed(run)[1]


def test_an_edited_manifest_is_parsed_not_taken_from_the_snapshot(cov_home):
    run = _finished_run(cov_home)
    text = run.manifest_path.read_text()
    run.manifest_path.write_text(text.replace('"name": "inc"', '"name": "cni"', 1))
    manifest = RunDir(run.path).manifest
    assert manifest.nodes[0].name == "cni"
    assert manifest == _parsed(run)[0]


def _damaged(data: bytes) -> Dict[str, bytes]:
    """The snapshot's bytes damaged in ways a disk, a copy or a person could."""
    body, _, trailer = data.rstrip(b"\n").rpartition(b"\n")
    head = json.loads(trailer)
    # well-formed and with a digest that matches, but of other shapes: written by a bug
    short = json.loads(body)
    short["nodes"]["name"] = short["nodes"]["name"][:-1]
    short["tasks"]["status"] = {"values": ["NO_SUCH_STATUS"], "index": [0]}
    short_body = json.dumps(short).encode()
    short_head = {**head, "body": derived.body_digest(short_body)}
    unplaced = json.loads(body)
    unplaced["packed"]["at"][0] += 1  # columns one location short
    unplaced_body = json.dumps(unplaced).encode()
    unplaced_head = {**head, "body": derived.body_digest(unplaced_body)}
    return {
        "empty": b"",
        "cut short": data[: len(data) // 2],
        "cut before its trailer": body,
        "not JSON": b"\x00\xff garbage\n" * 10,
        "a flipped byte": body.replace(b'"inc"', b'"ind"', 1) + b"\n" + trailer + b"\n",
        "of other code": body + b"\n" + json.dumps({**head, "code": "0" * 32}).encode(),
        "of another version": body + b"\n" + json.dumps({**head, "snapshot": 99}).encode(),
        "inconsistent columns": short_body + b"\n" + json.dumps(short_head).encode(),
        "inconsistent pack locations": unplaced_body + b"\n" +
        json.dumps(unplaced_head).encode(),
    }


def test_a_damaged_snapshot_never_changes_or_breaks_status(cov_home, run_cov):
    run = _finished_run(cov_home)
    manifest, state = _parsed(run)
    expected = _status_json(run_cov, run.dispatch_id)
    good = run.snapshot_path.read_bytes()
    for what, data in _damaged(good).items():
        run.snapshot_path.write_bytes(data)
        reader = RunDir(run.path)
        assert reader.manifest == manifest, what
        assert reader.state() == state, what
        assert _status_json(run_cov, run.dispatch_id) == expected, what
    run.snapshot_path.unlink()
    run.snapshot_path.mkdir()  # not even a file
    assert RunDir(run.path).state() == state
    run.snapshot_path.rmdir()
    elsewhere = cov_home.parent / "elsewhere.json"
    elsewhere.write_bytes(good)
    run.snapshot_path.symlink_to(elsewhere)  # a symlink is never followed out of a run
    reader = RunDir(run.path)
    assert reader.state() == state and not reader.began_from_snapshot


def test_a_run_dir_the_runner_cannot_write_a_snapshot_in_still_completes(cov_home, run_cov,
                                                                          monkeypatch):
    """The snapshot is a cache: failing to write it costs the run nothing."""
    monkeypatch.setenv("COV_NO_RUNNER", "1")
    dispatch_id = ct.dispatch(mixed)(3)
    monkeypatch.delenv("COV_NO_RUNNER")
    run = RunDir(cov_home / dispatch_id)
    run.snapshot_path.mkdir()  # the rename onto it fails, as on a directory it may not write
    result = ct.get_result(dispatch_id, wait=True)
    assert str(result.status) == "FAILED"
    log = cov_home / RUNNERS / RUNNER_LOG
    deadline = time.monotonic() + 30
    while "no snapshot written" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert f"run {dispatch_id}: no snapshot written" in log.read_text()
    assert _status_json(run_cov, dispatch_id)["status"] == "FAILED"


def test_a_column_keeps_the_types_of_its_values():
    """1, 1.0 and True are equal dict keys; a table of a column must not make one the other."""
    column = [1, 1.0, True, 1, None, 1, 1.0, "1"]
    assert [(type(v), v) for v in derived.decode_column(derived.encode_column(column), 8)] == \
        [(type(v), v) for v in column]
    repeated = ["vm", "vm", None, "vm", "vm", "vm"]
    encoded = derived.encode_column(repeated)
    assert isinstance(encoded, dict) and derived.decode_column(encoded, 6) == repeated
    assert derived.decode_column(derived.encode_column([None] * 5), 5) == [None] * 5
    handles = [{"pid": 1}, {"pid": 1}, None]
    assert derived.decode_column(derived.encode_column(handles), 3) == handles


def test_a_state_begun_from_a_snapshot_is_written_again_as_the_same_snapshot(cov_home):
    """A runner that takes a run over from its snapshot (a live run's, after a restart) can
    still snapshot it: the prefix is hashed as it is checked, and the new snapshot stands for
    the same bytes as the parse and the fold would."""
    run = _finished_run(cov_home)
    manifest, state = _parsed(run)
    reader = RunDir(run.path)
    begun = reader.state()
    assert reader.events_identity() == (run.events_path.stat().st_size,
                                        derived.body_digest(run.events_path.read_bytes()))
    assert derived.write(reader, reader.manifest, begun) is True
    again = RunDir(run.path)
    assert again.manifest == manifest and again.state() == state
    assert derived.load(again.open_file, SNAPSHOT) is not None


def test_the_snapshot_says_where_the_packed_outcomes_are(cov_home):
    """A reader of the snapshot finds a node's packed outcome without reading the log for it,
    and finds what a reader of the log finds."""
    run = _finished_run(cov_home)
    copy = cov_home.parent / "copied" / run.dispatch_id
    shutil.copytree(run.path, copy)
    (copy / SNAPSHOT).unlink()
    reader, plain = RunDir(run.path), RunDir(copy)
    reader.state()
    index = reader.packed_index()
    assert index is not None and index.offset == run.events_path.stat().st_size
    tasks = [n.id for n in reader.manifest.nodes if n.kind == "electron"]
    assert any(reader.outcome_location(n, refresh=False) for n in tasks), "nothing was packed"
    for node in tasks:
        assert reader.outcome_location(node, refresh=False) == plain.outcome_location(node)
        assert reader.read_outcome(node, payload=True) == plain.read_outcome(node, payload=True)


def test_a_snapshot_that_stands_for_what_was_read_is_current(cov_home):
    """A runner that finds a finished run with its snapshot does not write it again; one
    that folded events on top of it does."""
    run = _finished_run(cov_home)
    reader = RunDir(run.path)
    reader.manifest  # noqa: B018
    reader.state()
    assert reader.snapshot_is_current()
    node = next(n.id for n in run.manifest.nodes if n.name == "inc")
    with open(run.events_path, "a") as f:
        f.write(json.dumps({"t": 5.0, "ev": "pending", "node": node, "attempt": 1}) + "\n")
    reader.state()
    assert not reader.snapshot_is_current()
    copy = cov_home.parent / "copied" / run.dispatch_id
    shutil.copytree(run.path, copy)
    (copy / SNAPSHOT).unlink()
    plain = RunDir(copy)
    plain.manifest  # noqa: B018
    plain.state()
    assert not plain.snapshot_is_current()
