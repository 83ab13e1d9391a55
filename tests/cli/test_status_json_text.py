"""`cov status --json` makes its task rows a column at a time (runner/query_json.py): the text
must be byte for byte what the encoder makes of `task_rows`' dicts, for every kind of node,
edge and status, with every option, and a value JSON cannot hold still goes the general way."""
from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path
from typing import Any, List, Optional

import pytest

from runner.json_view import dumps
from runner.query import task_rows
from runner.query_json import FIELDS, NotPlain, task_table
from runner.rundir import RunDir

WORKFLOW = '''
import covalent as ct

@ct.electron
def square(x, scale=1):
    return x * x * scale

@ct.electron
def pair(xs, named):
    return [sum(xs), named["a"]]

@ct.electron
def boom(x):
    raise ValueError(f"no good: {x!r} \\u00e9 \\"quoted\\" 100%")

@ct.electron
def after(x):
    return x

@ct.electron
def first():
    return 1

@ct.electron
def second():
    return 2

@ct.electron
@ct.lattice
def inner(x):
    return boom(square(x))

@ct.lattice
def wf(n=3, label="%s caf\\u00e9"):
    values = [square(i, scale=2) for i in range(n)]
    total = pair(values, {"a": values[0], "b": label})
    one = first()
    two = second()
    ct.wait(two, [one])
    failed = boom(total)
    return after(failed), after(inner(n)), two, total[0]
'''

OPTIONS = [(False, False, None), (True, True, None), (False, False, ["FAILED", "NOT_RUN"]),
           (True, True, ["COMPLETED"]), (False, False, ["RUNNING"])]


@pytest.fixture
def mixed_run(tmp_path: Path, run_cov: Any, cov_home: Path) -> RunDir:
    """A failed run: parameters, collections, kwargs, a dict, indexed edges, waits, a
    failure, tasks it kept from running, a sublattice that failed inside."""
    script = tmp_path / "wf.py"
    script.write_text(textwrap.dedent(WORKFLOW))
    done = run_cov("dispatch", "-q", "--wait", str(script))
    assert done.returncode == 3, done.stderr
    return RunDir(cov_home / done.stdout.split()[0])


def _expected(run: RunDir, parameters: bool, reshaping: bool,
              wanted: Optional[List[str]]) -> str:
    rows = task_rows(run, include_parameters=parameters, include_reshaping=reshaping)
    return json.dumps([r for r in rows if wanted is None or r["shown"] in wanted])


def test_the_rows_are_spelled_as_the_encoder_spells_task_rows(mixed_run: RunDir):
    run = RunDir(mixed_run.path)
    rows = task_rows(run, include_parameters=True, include_reshaping=True)
    seen = {r["shown"] for r in rows}
    assert {"COMPLETED", "FAILED", "NOT_RUN"} <= seen, seen
    assert any(r["failed_inside"] for r in rows) and any(r["waits"] for r in rows)
    assert any(p.get("index") is not None for r in rows for p in r["parents"])
    assert any(p["type"] == "kwarg" for r in rows for p in r["parents"])
    for parameters, reshaping, wanted in OPTIONS:
        table = task_table(run, parameters, reshaping, wanted)
        assert table.json == _expected(run, parameters, reshaping, wanted), \
            (parameters, reshaping, wanted)
        every = task_rows(run, include_parameters=parameters, include_reshaping=reshaping)
        tasks = [r for r in every if r["kind"] != "parameter"]
        assert table.total == len(tasks)
        assert table.done == sum(1 for r in tasks if r["status"] == "COMPLETED")
        assert list(table.counts.items()) == list(
            {s: n for s, n in _counts(every).items()}.items())
    assert list(json.loads(task_table(run).json)[0]) == list(FIELDS)


def _counts(rows: List[dict]) -> dict:
    from runner.query import status_counts
    return status_counts(rows)


def test_status_json_prints_the_general_encoding(mixed_run: RunDir, run_cov: Any):
    """The whole document as the encoder would print the parsed document again (its
    canonical form), with the rows of task_rows."""
    for args, (parameters, reshaping, wanted) in [((), OPTIONS[0]), (("--all",), OPTIONS[1]),
                                                  (("--status", "failed,not-run"), OPTIONS[2])]:
        out = run_cov("status", mixed_run.dispatch_id, "--json", *args)
        assert out.returncode == 0, out.stderr
        text = out.stdout.rstrip("\n")
        document = json.loads(text)
        assert dumps(document) == text
        assert json.dumps(document["tasks"]) == _expected(RunDir(mixed_run.path), parameters,
                                                         reshaping, wanted)


def test_a_time_json_cannot_hold_takes_the_general_path(mixed_run: RunDir, run_cov: Any,
                                                        tmp_path: Path):
    """A log whose times are not finite (written by hand or by damage) still prints, the
    value marked as the encoder marks it."""
    home = tmp_path / "copy"
    copy = home / mixed_run.dispatch_id
    shutil.copytree(mixed_run.path, copy)
    node = next(n.id for n in RunDir(copy).manifest.nodes if n.name == "after")
    with open(copy / "events.jsonl", "a") as f:
        f.write('{"t": NaN, "ev": "pending", "node": %d, "attempt": 1, "reason": "x"}\n' % node)
        f.write('{"t": 1.0, "ev": "end", "node": %d, "attempt": 1, "status": "CANCELLED", '
                '"start": Infinity, "end": 2.0}\n' % node)
    with pytest.raises(NotPlain):
        task_table(RunDir(copy))
    out = run_cov("status", mixed_run.dispatch_id, "--json", "--home", str(home))
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    row = next(r for r in json.loads(out.stdout)["tasks"] if r["id"] == node)
    assert row["started"] == {"repr": "inf"} and row["status"] == "CANCELLED"
