"""The cov CLI as a shell user drives it: output, --json, -q, exit codes, one-line errors."""
from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest

from tests.conftest import WORKFLOWS


def script(tmp_path: Path, body: str, name: str = "wf.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


def assert_one_line_error(proc, code: int, *fragments: str) -> None:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: "), proc.stderr
    for fragment in fragments:
        assert fragment in last, (fragment, last)
    assert "cov/" not in proc.stderr and "covalent_cli/" not in proc.stderr  # none of our frames


def test_dispatch_hello_wait_prints_result_and_exits_0(run_cov):
    proc = run_cov("dispatch", str(WORKFLOWS / "hello.py"), "--wait", "-q")
    assert proc.returncode == 0, proc.stderr
    run_id, result = proc.stdout.strip().splitlines()
    assert len(run_id) == 36
    assert result == "{'text': 'HELLO, WORLD!', 'letters': 10}"


def test_dispatch_with_args_then_status_result_runs_json(run_cov):
    proc = run_cov("dispatch", str(WORKFLOWS / "map_reduce.py"), "-a", "n=5", "-q")
    assert proc.returncode == 0, proc.stderr
    run_id = proc.stdout.strip()
    assert run_cov("wait", run_id[:8], "-q").returncode == 0
    result = run_cov("result", run_id, "--json")
    assert json.loads(result.stdout)["result"] == 30
    status = json.loads(run_cov("status", "latest", "--json").stdout)
    # its 6 tasks (5 squares and add_all): cov status counts no reshaping nodes
    assert status["status"] == "COMPLETED" and status["done"] == status["total"] == 6
    assert {t["name"] for t in status["tasks"]} >= {"square", "add_all"}
    runs = json.loads(run_cov("runs", "--json").stdout)["runs"]
    assert [r["dispatch_id"] for r in runs] == [run_id]
    assert run_cov("runs", "-q").stdout.split() == [run_id]


def test_failing_workflow_exit_codes_status_and_logs(run_cov):
    proc = run_cov("dispatch", str(WORKFLOWS / "failing.py"), "--wait", "-q")
    assert proc.returncode == 3
    assert "The following tasks failed:\n2: divide" in proc.stderr
    assert run_cov("result", "latest").returncode == 3
    assert run_cov("wait", "latest", "-q").returncode == 3
    logs = run_cov("logs", "latest", "2")
    assert "ZeroDivisionError" in logs.stdout and "failing.py" in logs.stdout  # one stream
    table = run_cov("status", "latest").stdout
    assert "divide" in table and "FAILED" in table and "ZeroDivisionError" in table
    assert run_cov("runs", "--status", "failed", "-q").stdout.strip()


def test_script_that_dispatches_itself_is_reported_not_redispatched(run_cov, tmp_path):
    path = script(tmp_path, """
        import covalent as ct

        @ct.electron
        def one():
            return 1

        @ct.lattice
        def wf():
            return one()

        if __name__ == "__main__":
            dispatch_id = ct.dispatch(wf)()
            print("script says", ct.get_result(dispatch_id, wait=True).result)
    """)
    proc = run_cov("dispatch", str(path), "--json")
    assert proc.returncode == 0, proc.stderr
    ids = json.loads(proc.stdout.split("\n", 1)[1])["dispatch_ids"]
    assert proc.stdout.startswith("script says 1")
    assert len(ids) == 1 and run_cov("runs", "-q").stdout.split() == ids


def test_cancel_and_redispatch_from_the_cli(run_cov, tmp_path):
    path = script(tmp_path, """
        import time
        import covalent as ct

        @ct.electron
        def slow():
            time.sleep(60)

        @ct.lattice
        def wf():
            return slow()
    """)
    run_id = run_cov("dispatch", str(path), "-q").stdout.strip()
    assert run_cov("wait", run_id, "--timeout", "0.5", "-q").returncode == 5
    proc = run_cov("cancel", run_id)
    assert proc.returncode == 0 and "Cancellation requested" in proc.stdout
    assert run_cov("wait", run_id, "--timeout", "30", "-q").returncode == 4
    new = run_cov("redispatch", run_id, "-q")
    assert new.returncode == 0 and len(new.stdout.strip()) == 36
    run_cov("cancel", new.stdout.strip())
    assert run_cov("wait", new.stdout.strip(), "--timeout", "30", "-q").returncode == 4
    assert run_cov("rm", run_id).returncode == 0
    assert run_id not in run_cov("runs", "-q").stdout


# -- bad input: one clear line, a documented exit code, nothing half-written -----------------
@pytest.mark.parametrize("body, code, fragment", [
    ("def broken(:\n", 7, "syntax error"),
    ("import not_a_module_anywhere\n", 7, "No module named 'not_a_module_anywhere'"),
    ("raise RuntimeError('boom at load')\n", 7, "boom at load"),
    ("import covalent as ct\nx = 1\n", 1, "defines no lattice"),
    ("import covalent as ct\n@ct.lattice\ndef a():\n    pass\n@ct.lattice\ndef b():\n    pass\n",
     1, "several lattices"),
], ids=["syntax", "import", "raises", "no-lattice", "several"])
def test_bad_scripts(run_cov, tmp_path, body, code, fragment):
    proc = run_cov("dispatch", str(script(tmp_path, body)))
    assert_one_line_error(proc, code, fragment)
    assert not (tmp_path / "home").exists() or not [
        p for p in (tmp_path / "home").iterdir() if not p.name.startswith(".")]


def test_import_error_shows_the_users_traceback(run_cov, tmp_path):
    proc = run_cov("dispatch", str(script(tmp_path, "import os\nimport not_a_module_anywhere\n")))
    assert "wf.py\", line 2" in proc.stderr


def test_missing_script(run_cov, tmp_path):
    assert_one_line_error(run_cov("dispatch", str(tmp_path / "nope.py")), 1, "script not found")


def test_not_a_python_file(run_cov, tmp_path):
    binary = tmp_path / "data.bin"
    binary.write_bytes(b"\x00\x01\x02binary")
    assert_one_line_error(run_cov("dispatch", str(binary)), 7, "not a Python script")


LATTICE = """
import threading
import covalent as ct

@ct.electron
def task(x=1):
    return x

@ct.lattice
def wf(x=1):
    return task(x)
"""


def test_bad_arg_without_equals(run_cov, tmp_path):
    proc = run_cov("dispatch", str(script(tmp_path, LATTICE)), "-a", "x")
    assert_one_line_error(proc, 1, "bad --arg 'x'")


def test_wrong_arity_argument(run_cov, tmp_path):
    proc = run_cov("dispatch", str(script(tmp_path, LATTICE)), "-a", "y=2")
    assert_one_line_error(proc, 7, "unexpected keyword argument 'y'")


def test_unpicklable_argument_names_the_task(run_cov, tmp_path):
    body = LATTICE.replace("return task(x)", "return task(threading.Lock())")
    proc = run_cov("dispatch", str(script(tmp_path, body)))
    assert_one_line_error(proc, 1, "cannot pickle", "'x' of task 'task'")


def test_unknown_executor_fails_at_dispatch(run_cov, tmp_path):
    body = LATTICE.replace("@ct.electron\n", "@ct.electron(executor='gpu-cluster')\n")
    proc = run_cov("dispatch", str(script(tmp_path, body)))
    assert_one_line_error(proc, 1, "unknown executor 'gpu-cluster'")


def test_invalid_config_yaml(run_cov, tmp_path):
    (tmp_path / "config.yaml").write_text("runner: [unclosed\n")
    proc = run_cov("dispatch", str(script(tmp_path, LATTICE)))
    assert_one_line_error(proc, 1, "not valid YAML")


@pytest.mark.parametrize("command", [("runs",), ("status", "latest")])
def test_home_in_config_not_a_path(run_cov, cov_home, command, monkeypatch):
    (cov_home.parent / "config.yaml").write_text("home: [1]\n")
    monkeypatch.setenv("COV_CONFIG", str(cov_home.parent / "config.yaml"))
    monkeypatch.delenv("COV_HOME")
    assert_one_line_error(run_cov(*command), 1, "'home' must be a directory path (found [1])")


@pytest.mark.parametrize("run_id, fragment", [("0000", "no run matches"),
                                              ("../etc", "malformed run id")])
def test_unknown_and_malformed_run_ids(run_cov, run_id, fragment):
    assert_one_line_error(run_cov("status", run_id), 6, fragment)


def test_ambiguous_run_id(run_cov, cov_home):
    for name in ("abc1", "abc2"):
        (cov_home / name).mkdir(parents=True)
        (cov_home / name / "manifest.yaml").write_text("format_version: '1.0'\n")
    assert_one_line_error(run_cov("status", "abc"), 6, "ambiguous")


def test_newer_format_and_corrupted_manifest(run_cov, tmp_path, cov_home):
    run_id = run_cov("dispatch", str(script(tmp_path, LATTICE)), "--wait", "-q").stdout.split()[0]
    manifest = cov_home / run_id / "manifest.yaml"
    text = manifest.read_text()
    manifest.write_text(text.replace("format_version: '2.0'", "format_version: '9.0'"))
    assert_one_line_error(run_cov("status", run_id), 8, "newer than this cov")
    manifest.write_text(text[: len(text) // 3])
    assert_one_line_error(run_cov("result", run_id), 8, run_id)


def test_unwritable_home(run_cov, tmp_path):
    home = tmp_path / "ro"
    home.mkdir()
    home.chmod(0o500)
    if os.access(home, os.W_OK):  # root ignores permission bits: use a path under a file
        home = tmp_path / "a-file" / "home"
        (tmp_path / "a-file").write_text("")
    proc = run_cov("dispatch", str(script(tmp_path, LATTICE)), env={"COV_HOME": str(home)})
    assert_one_line_error(proc, 1, "cannot")
