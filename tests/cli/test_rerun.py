"""The edit-rerun loop from the shell: `cov redispatch --script` reruns only what changed,
`--dry-run` says what would rerun and why, `cov dispatch --dry-run` writes nothing."""
from __future__ import annotations

import json
import re
from pathlib import Path

from tests.cli.test_cli import assert_one_line_error, script
from tests.conftest import WORKFLOWS

# Each task appends its name to a side-effect file: what ran is what the file says.
PIPELINE = """
    import os
    import covalent as ct

    LOG = os.environ["RERUN_LOG"]

    def note(name):
        with open(LOG, "a") as f:
            f.write(name + "\\n")

    @ct.electron
    def load(n):
        note("load")
        return list(range(n))

    @ct.electron
    def inc(x):
        note("inc")
        return x + 1

    @ct.electron
    def fetch(marker):
        note("fetch")
        if not os.path.exists(marker):
            raise RuntimeError("marker missing")
        return 100

    @ct.electron
    def divide(values):
        note("divide")
        return sum(values) / 0

    @ct.electron
    def report(total, extra):
        note("report")
        return f"total={total} extra={extra}"

    @ct.lattice
    def pipeline(n=3, marker="marker"):
        data = load(n)
        return report(divide([inc(i) for i in range(n)]), fetch(marker)), data
"""


def _ran(log: Path) -> list:
    lines = log.read_text().split() if log.exists() else []
    log.write_text("")
    return sorted(lines)


def _runs(run_cov) -> list:
    return run_cov("runs", "-q").stdout.split()


def _why(dry_run_stdout: str) -> dict:
    """{node id or xN: (task, reasons)} from the table `cov redispatch --dry-run` prints."""
    rows = {}
    for line in dry_run_stdout.splitlines():
        m = re.match(r"\s+(\d+|x\d+)\s+(\S+)\s+(.+)$", line)  # x3: a group of 3
        if m:
            rows[m.group(1)] = (m.group(2), m.group(3))
    return rows


def test_edit_then_redispatch_script_reruns_the_fixed_task_and_downstream_only(run_cov,
                                                                              tmp_path):
    log = tmp_path / "ran.log"
    env = {"RERUN_LOG": str(log)}
    path = script(tmp_path, PIPELINE)
    marker = tmp_path / "marker"
    first = run_cov("dispatch", str(path), "-a", f"marker={marker}", "-q", "--wait", env=env)
    assert first.returncode == 3, first.stderr  # divide and fetch failed
    first_id = first.stdout.split()[0]
    assert _ran(log) == ["divide", "fetch", "inc", "inc", "inc", "load"]
    old_status = json.loads(run_cov("status", first_id, "--json", "--all").stdout)

    # The user fixes divide and creates the marker fetch needs (its code is unchanged).
    path.write_text(path.read_text().replace("sum(values) / 0", "sum(values) / 2"))
    marker.write_text("")

    dry = run_cov("redispatch", first_id, "--script", str(path), "--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr
    why = _why(dry.stdout)
    assert {name for name, _ in why.values()} == {"divide", "fetch", "report"}, dry.stdout
    reasons = {name: text for name, text in why.values()}
    assert reasons["divide"] == "code changed"
    assert reasons["fetch"] == "failed before"
    assert reasons["report"].startswith("upstream reran (")
    assert "divide #" in reasons["report"] and "fetch #" in reasons["report"]
    assert "reused: inc x3, load" in dry.stdout
    plan = json.loads(run_cov("redispatch", first_id, "--script", str(path), "--dry-run",
                              "--json", env=env).stdout)  # the same plan, for scripts
    assert plan["schema"] == 1 and plan["dry_run"] is True and plan["from"] == first_id
    assert {r["name"]: r["reasons"] for r in plan["rerun"]}["divide"] == ["code changed"]
    assert sorted(r["name"] for r in plan["reused"]) == ["inc", "inc", "inc", "load"]
    assert _runs(run_cov) == [first_id] and _ran(log) == []  # nothing written, nothing ran

    again = run_cov("redispatch", first_id, "--script", str(path), "-q", "--wait", env=env)
    assert again.returncode == 0, again.stderr
    new_id, result = again.stdout.strip().splitlines()
    assert result == "['total=3.0 extra=100', [0, 1, 2]]"
    assert _ran(log) == ["divide", "fetch", "report"]  # load and inc did not run again
    names = {t["id"]: t["name"] for t in old_status["tasks"]}
    events = [json.loads(line) for line in
              (tmp_path / "home" / new_id / "events.jsonl").read_text().splitlines()]
    reused = {e["node"]: e for e in events if e.get("reused")}
    assert sorted(names[n] for n in reused if names[n] in PIPELINE) == ["inc"] * 3 + ["load"]

    # A new argument: load's input changed and two new inc tasks appear (one line); the rest
    # is reused.
    more = run_cov("redispatch", new_id, "--script", str(path), "-a", "n=5", "--dry-run",
                   env=env)
    rows = {name: text for name, text in _why(more.stdout).values()}
    assert rows["load"] == "input changed (n)", more.stdout
    assert rows["inc"].startswith("new task  (nodes ") and "upstream reran (inc #" in rows["divide"]
    assert "x2" in _why(more.stdout)
    assert "fetch" not in rows and "reused: inc x3, fetch" in more.stdout


def test_redispatch_reuse_without_script_says_the_stored_code_runs(run_cov, tmp_path):
    log = tmp_path / "ran.log"
    env = {"RERUN_LOG": str(log)}
    path = script(tmp_path, PIPELINE)
    first = run_cov("dispatch", str(path), "-q", "--wait", env=env)
    first_id = first.stdout.split()[0]
    path.write_text(path.read_text().replace("sum(values) / 0", "sum(values) / 2"))
    proc = run_cov("redispatch", first_id, "--reuse", "--dry-run", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "stored in run" in proc.stderr and f"--script {path}" in proc.stderr
    assert "divide" in proc.stdout and "code changed" not in proc.stdout  # the old code again
    assert "failed before" in proc.stdout


def test_run_from_an_older_cov_without_fingerprints_reruns_everything(run_cov, tmp_path):
    path = script(tmp_path, PIPELINE)
    env = {"RERUN_LOG": str(tmp_path / "ran.log")}
    first_id = run_cov("dispatch", str(path), "-q", "--wait", env=env).stdout.split()[0]
    manifest = tmp_path / "home" / first_id / "manifest.yaml"
    manifest.write_text(re.sub(r', "fp": "[^"]*"', "", manifest.read_text()))
    proc = run_cov("redispatch", first_id, "--script", str(path), "--dry-run", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "code fingerprint unknown" in _why(proc.stdout)["0"][1]  # load, node 0
    assert "reused:" not in proc.stdout


def test_dispatch_dry_run_prints_counts_and_writes_no_run(run_cov, tmp_path):
    proc = run_cov("dispatch", str(WORKFLOWS / "map_reduce.py"), "-a", "n=7", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"^\s+7\s+square\s+local$", proc.stdout, re.M), proc.stdout
    assert re.search(r"^\s+1\s+add_all\s+local$", proc.stdout, re.M), proc.stdout
    assert "8 task(s)" in proc.stdout
    home = tmp_path / "home"
    assert not home.exists() or not [p for p in home.iterdir() if not p.name.startswith(".")]
    plan = json.loads(run_cov("dispatch", str(WORKFLOWS / "map_reduce.py"), "--dry-run",
                              "--json").stdout)
    assert plan["dispatches"][0]["by_function"][0] == {"function": "square",
                                                        "executor": "local", "tasks": 20}
    assert _runs(run_cov) == []


def test_dispatch_dry_run_of_a_script_that_dispatches_itself(run_cov, tmp_path):
    path = script(tmp_path, """
        import covalent as ct

        @ct.electron
        def one(x):
            return x

        @ct.lattice
        def wf(k=2):
            return [one(i) for i in range(k)]

        if __name__ == "__main__":
            a = ct.dispatch(wf)(3)
            b = ct.dispatch(wf)(k=5)
            print("script says", ct.get_result(a, wait=True).result)
    """)
    proc = run_cov("dispatch", str(path), "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "Dispatch 1 of 2: wf(3): 3 task(s)" in proc.stdout
    assert "Dispatch 2 of 2: wf(k=5): 5 task(s)" in proc.stdout
    assert "waited for the result of its dispatch 1" in proc.stdout and "wf.py:15" in proc.stdout
    assert "script says" not in proc.stdout
    assert _runs(run_cov) == []


def test_script_style_dispatch_given_args_fails_before_creating_a_run(run_cov, tmp_path):
    path = script(tmp_path, """
        import covalent as ct

        @ct.electron
        def one():
            return 1

        @ct.lattice
        def wf():
            return one()

        if __name__ == "__main__":
            ct.dispatch(wf)()
    """)
    proc = run_cov("dispatch", str(path), "-a", "k=3")
    assert_one_line_error(proc, 1, "dispatched on its own (lattice 'wf' at ", "wf.py:13)",
                          "-a cannot apply to it, so nothing was dispatched")
    home = tmp_path / "home"
    assert not home.exists() or not [p for p in home.iterdir() if not p.name.startswith(".")]


def test_redispatch_with_an_unknown_argument_is_exit_7_without_our_frames(run_cov):
    run_id = run_cov("dispatch", str(WORKFLOWS / "map_reduce.py"), "-a", "n=2", "-q",
                     "--wait").stdout.split()[0]
    proc = run_cov("redispatch", run_id, "-a", "typo=3")
    assert_one_line_error(proc, 7, "unexpected keyword argument 'typo'", "map_reduce takes (n=")
    assert len(proc.stderr.strip().splitlines()) <= 2, proc.stderr
    assert _runs(run_cov) == [run_id]
    # -a overrides one argument and keeps the others (here: the only one)
    new = run_cov("redispatch", run_id, "-a", "n=3", "-q").stdout.strip()
    assert run_cov("wait", new, "-q").returncode == 0
    assert json.loads(run_cov("result", new, "--json").stdout)["result"] == 5


def test_redispatch_script_without_the_runs_lattice_is_one_line(run_cov, tmp_path):
    run_id = run_cov("dispatch", str(WORKFLOWS / "hello.py"), "-q").stdout.strip()
    other = script(tmp_path, """
        import covalent as ct

        @ct.lattice
        def something_else():
            return 1
    """)
    proc = run_cov("redispatch", run_id, "--script", str(other))
    assert_one_line_error(proc, 1, "has no lattice named", "found: something_else")
    broken = script(tmp_path, "def broken(:\n", name="broken.py")
    assert_one_line_error(run_cov("redispatch", run_id, "--script", str(broken)), 7,
                          "syntax error")
    assert _runs(run_cov) == [run_id]


def test_redispatch_script_that_dispatches_at_top_level_writes_only_the_redispatch(run_cov,
                                                                                   tmp_path):
    path = script(tmp_path, """
        import covalent as ct

        @ct.electron
        def one(x):
            return x

        @ct.lattice
        def wf(k=2):
            return [one(i) for i in range(k)]

        run_id = ct.dispatch(wf)(3)
        print(ct.get_result(run_id, wait=True).result)
    """)
    first = run_cov("dispatch", str(path), "-q").stdout.split()[-1]
    assert run_cov("wait", first, "-q").returncode == 0
    proc = run_cov("redispatch", first, "--script", str(path), "-q", "--wait")
    assert proc.returncode == 0, proc.stderr
    new_id, result = proc.stdout.split("\n")[:2]
    assert result == "[0, 1, 2]" and sorted(_runs(run_cov)) == sorted([first, new_id])
    proc = run_cov("redispatch", first, "--script", str(path), "--dry-run")
    assert "dispatched 1 run(s) on its own while loading; they were not run" in proc.stderr
    assert "0 task(s) would rerun, 3 would be reused" in proc.stdout


def test_redispatch_keeps_the_runs_name_and_tags_unless_given(run_cov, tmp_path):
    """A rerun of a labelled run is found by the same `cov runs --name/--tag` filter."""
    hello = str(WORKFLOWS / "hello.py")
    first = run_cov("dispatch", hello, "-q", "--wait", "--name", "sweep-7", "--tag", "paper")
    assert first.returncode == 0, first.stderr
    first_id = first.stdout.split()[0]
    again = run_cov("redispatch", first_id, "-q", "--wait")
    assert again.returncode == 0, again.stderr
    renamed = run_cov("redispatch", first_id, "-q", "--name", "sweep-8", "--tag", "draft")
    assert renamed.returncode == 0, renamed.stderr
    listed = json.loads(run_cov("runs", "--tag", "paper", "--json").stdout)
    assert {r["name"] for r in listed["runs"]} == {"sweep-7"} and len(listed["runs"]) == 2
    [new] = json.loads(run_cov("runs", "--name", "sweep-8", "--json").stdout)["runs"]
    assert new["tags"] == ["draft"] and new["dispatch_id"] == renamed.stdout.split()[0]
    bad = run_cov("redispatch", first_id, "--name", " ")
    assert_one_line_error(bad, 1, "--name")
