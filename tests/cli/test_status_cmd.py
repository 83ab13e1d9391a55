"""`cov status` and `cov result` tell the truth and fit a terminal: where each task runs, counts
per status, tasks an upstream failure kept from running, the task that failed inside a
sublattice, one node in full (`cov status RUN NODE`, `cov result RUN NODE`)."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

from tests.conftest import WORKFLOWS

FAILING = '''
import covalent as ct

@ct.electron
def load_the_input_dataset_with_a_long_name(n):
    return list(range(n))

@ct.electron
def divide(xs, by):
    return [x / by for x in xs]

@ct.electron
def summarize(xs):
    return {"n": len(xs)}

@ct.lattice
def wf(n=3):
    data = load_the_input_dataset_with_a_long_name(n)
    return summarize(divide(data, by=0))
'''

NESTED = '''
import covalent as ct

@ct.electron
def ok(x):
    return x

@ct.electron
def divide(x):
    return x / 0

@ct.electron
@ct.lattice
def inner(x):
    return divide(ok(x))

@ct.lattice
def outer(x=1):
    return ok(inner(x))
'''


def _script(tmp_path: Path, body: str) -> str:
    path = tmp_path / "wf.py"
    path.write_text(textwrap.dedent(body))
    return str(path)


def _dispatched(run_cov, *args: str) -> str:
    proc = run_cov("dispatch", "-q", "--wait", *args)
    assert proc.returncode in (0, 3), proc.stderr
    return proc.stdout.strip().splitlines()[0]


def test_hello_counts_its_three_tasks_and_all_shows_the_reshaping_nodes(run_cov):
    """Before: "4/4 tasks" for three electrons (the node putting the result together)."""
    run_id = _dispatched(run_cov, str(WORKFLOWS / "hello.py"))
    out = run_cov("status", run_id).stdout
    assert "tasks    3: 3 completed" in out, out
    assert "NEW_OBJECT" not in out and ":postprocess:" not in out
    assert f"run      {run_id[:8]}  hello" in out  # the short id
    table = out.split("\n\n", 1)[1].splitlines()
    assert table[0].split() == ["ID", "NAME", "STATUS", "WHERE", "RUNTIME", "NOTE"]
    assert [line.split()[1] for line in table[1:]] == ["greet", "shout", "count"]
    assert all(":" in line.split()[3] for line in table[1:])  # host:pid
    every = run_cov("status", run_id, "--all").stdout
    assert ":parameter:" in every and ":postprocess:" in every
    data = json.loads(run_cov("status", run_id, "--json").stdout)
    assert data["counts"] == {"COMPLETED": 3} and len(data["tasks"]) == 3
    assert all(t["pid"] and t["host"] and t["started"] >= t["claimed"] for t in data["tasks"])


def test_failed_upstream_is_not_run_and_the_table_fits_80_columns(run_cov, tmp_path):
    run_id = _dispatched(run_cov, _script(tmp_path, FAILING))
    proc = run_cov("status", run_id)
    out = proc.stdout
    assert all(len(line) <= 80 for line in out.splitlines()), out
    assert "tasks    3: 1 completed, 1 failed, 1 not run" in out, out
    summarize = next(line for line in out.splitlines() if "summarize" in line)
    assert "NOT RUN" in summarize and "not run: node" in out and "failed" in out
    assert "PENDING" not in out and "NEW_OBJECT" not in out
    assert "ZeroDivisionError: division by zero" in out
    data = json.loads(run_cov("status", run_id, "--json").stdout)
    tasks = {t["name"]: t for t in data["tasks"]}
    divide = tasks["divide"]["id"]
    assert tasks["summarize"]["shown"] == "NOT_RUN"
    assert tasks["summarize"]["not_run"] == {"node": divide, "name": "divide", "status": "FAILED"}
    assert f"not run: node {divide} failed" in out
    only = run_cov("status", run_id, "--status", "not-run,failed").stdout.split("\n\n", 1)[1]
    assert [line.split()[1] for line in only.splitlines()[1:] if line[:1] != " " or
            line.split()[0].isdigit()] == ["divide", "summarize"]
    failed = json.loads(run_cov("status", run_id, "--json", "--status", "FAILED").stdout)
    assert [t["name"] for t in failed["tasks"]] == ["divide"]
    bad = run_cov("status", run_id, "--status", "broken")
    assert bad.returncode == 1 and bad.stderr.strip().splitlines()[-1].startswith("Error: ")
    assert "not-run" in bad.stderr


def test_one_node_in_full_by_id_or_name_with_json(run_cov, tmp_path):
    run_id = _dispatched(run_cov, _script(tmp_path, FAILING))
    data = json.loads(run_cov("status", run_id, "--json").stdout)
    ids = {t["name"]: t["id"] for t in data["tasks"]}
    proc = run_cov("status", run_id, "divide")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.startswith(f"node     {ids['divide']} divide")
    assert f"node {ids['load_the_input_dataset_with_a_long_name']} load_the_input" in out
    assert "literal" in out and "ZeroDivisionError" in out and "logs" in out
    detail = json.loads(run_cov("status", run_id, str(ids["divide"]), "--json").stdout)
    assert detail["status"] == "FAILED" and detail["pid"] and detail["host"]
    sources = {i["param"]: i for i in detail["inputs"]}
    assert sources["xs"]["source"] == "node"
    assert sources["xs"]["value"]["repr"] == "[0, 1, 2]"
    assert sources["xs"]["value"]["type"] == "list" and sources["xs"]["value"]["size"] > 0
    assert sources["by"]["source"] == "literal" and sources["by"]["value"]["repr"] == "0"
    assert [f["stream"] for f in detail["log_files"]] == ["stdout", "stderr"]
    assert detail["log_files"][1]["size"] > 0
    assert detail["started"] >= detail["claimed"] and detail["runtime"] is not None

    loaded = ids["load_the_input_dataset_with_a_long_name"]
    value = run_cov("result", run_id, str(loaded))
    assert value.returncode == 0 and value.stdout.strip() == "[0, 1, 2]"
    as_json = json.loads(run_cov("result", run_id, str(loaded), "--json").stdout)
    assert as_json["result"] == [0, 1, 2] and as_json["type"] == "list" and as_json["size"] > 0
    assert run_cov("result", run_id, "divide").returncode == 3  # it failed: no value
    nothing = json.loads(run_cov("result", run_id, "summarize", "--json").stdout)
    assert nothing["shown"] == "NOT_RUN" and nothing["result"] is None
    for bad in ("99", "nosuchtask"):
        proc = run_cov("status", run_id, bad)
        assert proc.returncode == 6 and proc.stderr.startswith("Error: "), proc.stderr


def test_a_sublattice_failure_names_the_inner_task(run_cov, tmp_path):
    """Before: the note was cut at the error's first line ("... The following tasks failed:")
    and `cov dispatch --wait` named only the sublattice node."""
    proc = run_cov("dispatch", "-q", "--wait", _script(tmp_path, NESTED))
    assert proc.returncode == 3
    assert "2: divide: ZeroDivisionError: division by zero" in proc.stderr, proc.stderr
    run_id = proc.stdout.split()[0]
    out = run_cov("status", run_id).stdout
    assert "node 2 divide failed: ZeroDivisionError: division by zero" in out, out
    assert all(len(line) <= 80 for line in out.splitlines()), out
    data = json.loads(run_cov("status", run_id, "--json").stdout)
    sub = next(t for t in data["tasks"] if t["kind"] == "sublattice")
    assert [(f["node"], f["name"]) for f in sub["failed_inside"]] == [(2, "divide")]
