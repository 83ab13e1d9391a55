"""The result cache across runs: `@ct.electron(cache=True)` / `cov dispatch --cache` take an
equal earlier task's result instead of running it; `cov cache ls/clear`; `cov status --why`."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.cli.test_cli import script
from tests.conftest import REPO

# Each task appends its name (and argument) to a side-effect file: what ran is what it says.
CACHED = """
    import os
    import covalent as ct

    LOG = os.environ["CACHE_LOG"]

    def note(text):
        with open(LOG, "a") as f:
            f.write(text + "\\n")

    @ct.electron(cache=True)
    def square(x):
        note(f"square{x}")
        return x * x

    @ct.electron(cache=True)
    def total(values, scale):
        note("total")
        return sum(values) * scale

    @ct.electron
    def label(value):
        note("label")
        return f"total={value}"

    @ct.lattice
    def flow(n=3, scale=1):
        return label(total([square(i) for i in range(n)], scale))
"""


def _ran(log: Path) -> list:
    lines = log.read_text().split() if log.exists() else []
    log.write_text("")
    return sorted(lines)


def _events(home: Path, run_id: str) -> list:
    return [json.loads(line) for line in (home / run_id / "events.jsonl").read_text().splitlines()]


def _cached(home: Path, run_id: str) -> dict:
    """Node -> RUN/NODE for the run's tasks the cache gave (the list nodes feeding a cached
    task are cached with it: left out here)."""
    names = {n["id"]: n["name"] for n in json.loads(
        subprocess.run([sys.executable, "-m", "covalent_cli.cli", "status", run_id, "--json",
                        "--all"], capture_output=True, text=True, cwd=str(REPO)).stdout)["tasks"]}
    return {e["node"]: e["cached_from"] for e in _events(home, run_id)
            if e.get("cached_from") and not names[e["node"]].startswith(":")}


def _tasks(entries: list) -> list:
    return sorted(e["name"] for e in entries if not e["name"].startswith(":"))


def _dispatch(run_cov, path: Path, env: dict, *args: str):
    proc = run_cov("dispatch", str(path), "-q", "--wait", *args, env=env)
    assert proc.returncode == 0, proc.stderr
    run_id, result = proc.stdout.strip().splitlines()
    return run_id, result


def test_unchanged_rerun_runs_nothing_cached_and_a_changed_input_reruns_downstream(
        run_cov, tmp_path, cov_home):
    log = tmp_path / "ran.log"
    env = {"CACHE_LOG": str(log)}
    path = script(tmp_path, CACHED)
    first, result = _dispatch(run_cov, path, env)
    assert result == "'total=5'"
    assert _ran(log) == ["label", "square0", "square1", "square2", "total"]
    assert _cached(cov_home, first) == {}

    second, again = _dispatch(run_cov, path, env)
    assert again == result
    assert _ran(log) == ["label"]  # only the task without cache=True ran
    cached = _cached(cov_home, second)
    assert len(cached) == 4 and all(v.startswith(first + "/") for v in cached.values())
    status = json.loads(run_cov("status", second, "--json").stdout)
    assert all(t["status"] == "COMPLETED" for t in status["tasks"])

    # scale changes: total and what follows rerun, the squares hit
    third, changed = _dispatch(run_cov, path, env, "-a", "scale=2")
    assert changed == "'total=10'"
    assert _ran(log) == ["label", "total"]
    why = run_cov("status", third, "total", "--why")
    assert why.returncode == 0, why.stderr
    assert "input changed (scale)" in why.stdout, why.stdout
    square = next(t["id"] for t in json.loads(run_cov("status", third, "--json").stdout)["tasks"]
                  if t["name"] == "square")
    hit = run_cov("status", third, str(square), "--why")
    assert "cached from " + first in hit.stdout, hit.stdout

    # n changes: the new square(3) runs, so does total (its list input changed)
    fourth, bigger = _dispatch(run_cov, path, env, "-a", "n=4")
    assert bigger == "'total=14'"
    assert _ran(log) == ["label", "square3", "total"]
    why = run_cov("status", fourth, "total", "--why")
    assert "input changed (values)" in why.stdout, why.stdout


def test_dispatch_cache_flag_caches_every_task(run_cov, tmp_path, cov_home):
    log = tmp_path / "ran.log"
    env = {"CACHE_LOG": str(log)}
    path = script(tmp_path, CACHED.replace("@ct.electron(cache=True)", "@ct.electron"))
    _dispatch(run_cov, path, env)
    _dispatch(run_cov, path, env)
    assert _ran(log) == ["label", "label", "square0", "square0", "square1", "square1",
                         "square2", "square2", "total", "total"]  # no cache: all ran twice
    first, _ = _dispatch(run_cov, path, env, "--cache")
    assert len(_ran(log)) == 5
    second, result = _dispatch(run_cov, path, env, "--cache")
    assert result == "'total=5'" and _ran(log) == []
    assert len(_cached(cov_home, second)) == 5


def test_cache_ls_clear_and_max_size_eviction(run_cov, tmp_path, cov_home):
    log = tmp_path / "ran.log"
    env = {"CACHE_LOG": str(log)}
    path = script(tmp_path, CACHED)
    _dispatch(run_cov, path, env)
    listed = json.loads(run_cov("cache", "ls", "--json").stdout)
    assert _tasks(listed["entries"]) == ["square"] * 3 + ["total"]
    assert len(listed["entries"]) == 5  # and the list feeding total
    assert all(e["size"] > 0 and "/" in e["from"] for e in listed["entries"])
    text = run_cov("cache", "ls").stdout
    assert "square" in text and "total" in text

    cleared = run_cov("cache", "clear")
    assert cleared.returncode == 0 and "Removed 5 cache entries" in cleared.stdout
    assert json.loads(run_cov("cache", "ls", "--json").stdout)["entries"] == []
    _dispatch(run_cov, path, env)
    assert len(_ran(log)) == 10  # first run's 5 + this run's 5: nothing was cached

    # A bound below two entries' size: the runner evicts least recently used ones.
    size = max(e["size"] for e in json.loads(run_cov("cache", "ls", "--json").stdout)["entries"])
    config = tmp_path / "config.yaml"  # the cov_home fixture's, which the next runner reads
    config.write_text(config.read_text() + f"cache:\n  max_size: {size * 2}\n")
    assert run_cov("runner", "stop").returncode == 0
    run_cov("cache", "clear")
    _dispatch(run_cov, path, env)
    left = json.loads(run_cov("cache", "ls", "--json").stdout)["entries"]
    assert 1 <= len(left) <= 2 and sum(e["size"] for e in left) <= size * 2
    bad = run_cov("cache", "clear", "--older-than", "soon")
    assert bad.returncode != 0 and "--older-than" in bad.stderr


def test_a_torn_cache_entry_is_ignored(run_cov, tmp_path, cov_home):
    log = tmp_path / "ran.log"
    env = {"CACHE_LOG": str(log)}
    path = script(tmp_path, CACHED)
    _dispatch(run_cov, path, env)
    _ran(log)
    entries = json.loads(run_cov("cache", "ls", "--json").stdout)["entries"]
    for entry in entries:  # every result cut in half, as a crash mid-copy would leave it
        result = cov_home / ".result-cache" / entry["key"][:2] / (entry["key"] + ".pkl")
        data = result.read_bytes()
        result.unlink()  # a new inode: the run's own result file stays whole
        result.write_bytes(data[:len(data) // 2])
    second, result = _dispatch(run_cov, path, env)
    assert result == "'total=5'"
    assert _ran(log) == ["label", "square0", "square1", "square2", "total"]
    assert _cached(cov_home, second) == {}


def test_two_concurrent_runs_of_a_cached_workflow_are_correct(run_cov, tmp_path, cov_home):
    log = tmp_path / "ran.log"
    env = {"CACHE_LOG": str(log)}
    path = script(tmp_path, CACHED.replace("n=3", "n=20"))
    import os
    procs = [subprocess.Popen([sys.executable, "-m", "covalent_cli.cli", "dispatch", str(path),
                               "-q", "--wait"], cwd=str(REPO), text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env={**os.environ, **env}) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    expected = "'total=" + str(sum(i * i for i in range(20))) + "'"
    for proc, (out, err) in zip(procs, outs):
        assert proc.returncode == 0, err
        assert out.strip().splitlines()[1] == expected
    entries = json.loads(run_cov("cache", "ls", "--json").stdout)["entries"]
    assert _tasks(entries) == ["square"] * 20 + ["total"]
    third, result = _dispatch(run_cov, path, env)
    _ran(log)
    assert result == expected and len(_cached(cov_home, third)) == 21
