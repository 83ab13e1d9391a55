"""The dispatching process reads its own run back without parsing the manifest it wrote, and
gets the same Result as any other reader; a manifest file that is not the one it wrote is read
from disk."""
from __future__ import annotations

import os

import covalent_cli as ct
from covalent_cli import own_runs
from runner import rundir
from runner.rundir import RunDir


@ct.electron
def add(x, y=2):
    return x + y


@ct.electron
def total(xs):
    return sum(xs)


@ct.lattice
def workflow(a, b=3):
    return total([add(a, y=b), add(a), add(1, 2)])


def _parses(monkeypatch):
    """Counts the manifests read from the run directory: parsed from manifest.yaml, or taken
    from a finished run's snapshot.json made from those very bytes."""
    calls = []
    real_read, real_from_snapshot = rundir.read_manifest, rundir.derived.manifest_from

    def reading(f):
        calls.append(1)
        return real_read(f)

    def from_snapshot(snap, f):
        found = real_from_snapshot(snap, f)
        if found is not None:
            calls.append(1)
        return found

    monkeypatch.setattr(rundir, "read_manifest", reading)
    monkeypatch.setattr(rundir.derived, "manifest_from", from_snapshot)
    return calls


def _answers(result):
    return (result.status, result.result, result.dispatch_id,
            [(n["node_name"], n["status"], n["output"] and n["output"].get_deserialized())
             for n in result.get_all_node_results()])


def test_own_run_read_back_without_a_parse_and_same_answers(cov_home, monkeypatch):
    dispatch_id = ct.dispatch(workflow)(1, b=5)
    calls = _parses(monkeypatch)
    mine = ct.get_result(dispatch_id, wait=True)
    assert calls == []  # the manifest this process wrote, not parsed again
    assert mine.result == 12
    own_runs._OWN.clear()  # another process's view: the manifest parsed from the file
    theirs = ct.get_result(dispatch_id)
    assert calls == [1]
    assert _answers(mine) == _answers(theirs)
    assert mine._manifest == theirs._manifest


def test_a_rewritten_manifest_file_is_read_from_disk(cov_home, monkeypatch):
    dispatch_id = ct.dispatch(workflow)(1)
    ct.get_result(dispatch_id, wait=True)
    run = RunDir(cov_home / dispatch_id)
    text = run.manifest_path.read_bytes()
    tmp = run.manifest_path.with_name("manifest.edit")
    tmp.write_bytes(text.replace(b"name: workflow", b"name: renamed", 1))
    os.replace(tmp, run.manifest_path)  # a new inode: not the file this process wrote
    calls = _parses(monkeypatch)
    result = ct.get_result(dispatch_id)
    assert calls == [1]
    assert result._manifest.lattice_name == "renamed"


def test_only_the_last_few_runs_are_kept(cov_home):
    ids = [ct.dispatch(workflow)(i) for i in range(own_runs.KEEP + 2)]
    assert list(own_runs._OWN) == ids[-own_runs.KEEP:]
    for i, dispatch_id in enumerate(ids):  # the forgotten ones are read from disk
        assert ct.get_result(dispatch_id, wait=True).result == 2 * i + 8
