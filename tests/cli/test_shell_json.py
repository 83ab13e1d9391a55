"""cov in shell scripts, part 1: one JSON schema (``schema`` field, epoch-second times, reprs
marked), ``dispatch --json --wait`` as one document, YAML 1.2 ``-a`` values (issue #12, 4)."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

from tests.cli.test_cli import assert_one_line_error
from tests.conftest import WORKFLOWS

ECHO = """
    import covalent as ct

    @ct.electron
    def describe(values):
        return {k: [type(v).__name__, repr(v)] for k, v in values.items()}

    @ct.lattice
    def echo(**values):
        return describe(values)
"""

ODD = """
    import covalent as ct

    @ct.electron
    def odd():
        return {"nan": float("nan"), "set": {1, 2}, "pair": (1, 2), "ok": [1, "a", None],
                "keys": {(1, 2): "tuple key"}}

    @ct.lattice
    def odd_result():
        return odd()
"""


def _script(tmp_path: Path, body: str, name: str) -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return str(path)


def test_dispatch_json_wait_is_one_json_document(run_cov):
    """Before: the ids as JSON, then the result's repr on a line of its own (`| jq` failed)."""
    proc = run_cov("dispatch", str(WORKFLOWS / "hello.py"), "--json", "--wait")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)  # the whole of stdout
    assert doc["schema"] == 1 and list(doc)[0] == "schema"
    (run_id,) = doc["dispatch_ids"]
    assert doc["runs"] == [{"dispatch_id": run_id, "status": "COMPLETED",
                               "result": {"text": "HELLO, WORLD!", "letters": 10},
                               "error": None}]
    assert "run directory" not in proc.stderr  # --json stays clean: no hints

    failed = run_cov("dispatch", str(WORKFLOWS / "failing.py"), "--json", "--wait")
    assert failed.returncode == 3
    doc = json.loads(failed.stdout)
    assert doc["runs"][0]["status"] == "FAILED"
    assert "2: divide" in doc["runs"][0]["error"]


def test_every_json_document_has_the_schema_and_epoch_times(run_cov, cov_home):
    """Before: `runs --json` was a bare list, `created` ISO text next to epoch `started`."""
    proc = run_cov("dispatch", str(WORKFLOWS / "map_reduce.py"), "-a", "n=3", "--json")
    run_id = json.loads(proc.stdout)["dispatch_ids"][0]
    assert json.loads(proc.stdout)["schema"] == 1
    assert run_cov("wait", run_id, "-q").returncode == 0
    docs = {args: json.loads(run_cov(*args).stdout) for args in [
        ("runs", "--json"), ("status", run_id, "--json"), ("result", run_id, "--json"),
        ("config", "--json")]}
    for args, doc in docs.items():
        assert isinstance(doc, dict) and list(doc)[0] == "schema" and doc["schema"] == 1, args
    row = docs[("runs", "--json")]["runs"][0]
    status = docs[("status", run_id, "--json")]
    for summary in (row, status):
        assert all(isinstance(summary[k], float) for k in ("created", "started", "ended"))
        assert summary["created"] <= summary["started"] <= summary["ended"]
    assert all(isinstance(t["started"], float) for t in status["tasks"])
    assert docs[("result", run_id, "--json")]["result"] == 0 + 1 + 4

    # The web API's rows are the same read model through the same encoder.
    from runner.json_view import dumps
    from webui import views
    from webui.live import RunCache

    api = json.loads(dumps(views.runs_listing(RunCache(cov_home))))
    assert api["schema"] == 1
    api_row = api["runs"][0]
    assert set(api_row) - {"children"} == set(row)
    assert api_row["created"] == row["created"] and api_row["inputs"] == row["inputs"]


def test_values_json_cannot_hold_are_marked_as_reprs(run_cov, tmp_path):
    """Before: a result JSON could not hold became one string, NaN was printed as `NaN`
    (not JSON)."""
    script = _script(tmp_path, ODD, "odd.py")
    proc = run_cov("dispatch", script, "--json", "--wait")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)["runs"][0]["result"]
    assert result == {"nan": {"repr": "nan"}, "set": {"repr": "{1, 2}"}, "pair": [1, 2],
                      "ok": [1, "a", None], "keys": {"repr": "{(1, 2): 'tuple key'}"}}
    again = json.loads(run_cov("result", "latest", "--json").stdout)["result"]
    assert again == result


def test_arguments_are_yaml_1_2(run_cov, tmp_path):
    """Before (YAML 1.1): NO was False, 007 was 7, 1e3 text, 0o7 text, 2026-01-31 a date."""
    script = _script(tmp_path, ECHO, "echo.py")
    pairs = {"no": "NO", "yes": "yes", "zip": "007", "octal": "0o17", "hexa": "0x1F",
             "sci": "1e3", "tilde": "~", "null": "null", "date": "2026-01-31", "time": "12:30",
             "under": "1_000", "true": "true", "int": "-42", "float": "2.50", "list": "[1, b]",
             "text": "*.txt", "inf": "-.inf"}
    args = [x for k, v in pairs.items() for x in ("-a", f"{k}={v}")]
    proc = run_cov("dispatch", script, *args, "--json", "--wait")
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)["runs"][0]["result"]
    assert got == {
        "no": ["str", "'NO'"], "yes": ["str", "'yes'"], "zip": ["str", "'007'"],
        "octal": ["int", "15"], "hexa": ["int", "31"], "sci": ["float", "1000.0"],
        "tilde": ["NoneType", "None"], "null": ["NoneType", "None"],
        "date": ["str", "'2026-01-31'"], "time": ["str", "'12:30'"],
        "under": ["str", "'1_000'"], "true": ["bool", "True"], "int": ["int", "-42"],
        "float": ["float", "2.5"], "list": ["list", "[1, 'b']"], "text": ["str", "'*.txt'"],
        "inf": ["float", "-inf"]}


def test_a_malformed_flow_value_is_an_error_naming_the_argument(run_cov, tmp_path):
    """Before: `-a xs=[1,2` silently became the text '[1,2'."""
    script = _script(tmp_path, ECHO, "echo.py")
    for value in ("[1,2", "{a: 1", '"open'):
        proc = run_cov("dispatch", script, "-a", "ok=1", "-a", f"xs={value}")
        assert_one_line_error(proc, 1, f"-a xs={value} is not valid YAML")
    assert run_cov("runs", "-q").stdout == ""  # nothing was dispatched
