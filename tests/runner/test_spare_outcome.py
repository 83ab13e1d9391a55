"""A pool worker writes an outcome into an empty file it made ahead while idle: the outcome is
as whole as one written from scratch, and no spare file is left in a run once it is over."""
from __future__ import annotations

import json
import os

import covalent_cli as ct
from runner import layout
from runner.daemon import stop_runners
from runner.outcome import make_temporary, read_outcome_file, write_outcome
from runner.rundir import RunDir


@ct.electron
def inc(x):
    return x + 1


@ct.lattice
def chain(n):
    x = 0
    for _ in range(n):
        x = inc(x)  # one task at a time: the worker waits, idle, between them
    return x


def test_an_outcome_written_into_a_spare_file_is_whole_and_the_spare_is_gone(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    spare = make_temporary(str(results / "next"))
    write_outcome(str(results / "3.pkl"), {"ok": True, "start": 1.0, "end": 2.0}, b"payload",
                  spare)
    assert sorted(os.listdir(results)) == ["3.pkl"]  # renamed into place, no temporary left
    with open(results / "3.pkl", "rb") as f:
        header, payload = read_outcome_file(f, payload=True)
    assert header is not None and header["ok"] and header["len"] == 7
    assert payload == b"payload"


def test_a_run_leaves_only_its_outcomes_in_results(cov_home):
    dispatch_id = ct.dispatch(chain)(30)
    result = ct.get_result(dispatch_id, wait=True)
    assert result.result == 30
    assert [result.get_node_result(n)["output"].get_deserialized()
            for n in range(len(result._nodes)) if result._nodes[n].kind != "parameter"][-1] == 30
    stop_runners(cov_home, timeout=10)  # the workers stop with it: their spare files go too
    names = set(os.listdir(cov_home / dispatch_id / layout.RESULTS))
    # format 2.0: the small outcomes are in the workers' packs (no spare file is made for them)
    assert names and all(layout.is_pack_name(n, layout.OUTCOME_PACK_SUFFIX) for n in names)
    executed = [n.id for n in result._manifest.nodes if n.kind != "parameter"]
    run = RunDir(cov_home / dispatch_id)
    assert all(run.read_outcome(n)[0] is not None for n in executed)
    events = (cov_home / dispatch_id / layout.EVENTS).read_text().splitlines()
    assert sum(json.loads(e).get("ev") == "end" for e in events) == len(executed)


def test_a_format_1_0_run_leaves_only_its_outcomes_in_results(cov_home, monkeypatch):
    """A 1.0 run (an older cov's dispatch) keeps per-node files, and the spare file goes."""
    from runner.manifest import Manifest

    monkeypatch.setattr(Manifest, "__init__", _with_version(Manifest.__init__, "1.0"))
    dispatch_id = ct.dispatch(chain)(30)
    result = ct.get_result(dispatch_id, wait=True)
    assert result.result == 30
    stop_runners(cov_home, timeout=10)  # the workers stop with it: their spare files go too
    names = set(os.listdir(cov_home / dispatch_id / layout.RESULTS))
    expected = {layout.outcome_file(n.id) for n in result._manifest.nodes
                if n.kind != "parameter"}
    assert names == expected


def _with_version(init, version):
    def init_with_version(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.format_version = version
    return init_with_version
