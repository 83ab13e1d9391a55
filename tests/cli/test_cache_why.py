"""``cov status RUN NODE --why`` where the task's name is shared by several nodes (a task
called in a loop)."""
from __future__ import annotations

import json
from pathlib import Path

from tests.cli.test_cli import assert_one_line_error, script

LOOP = """
    import covalent as ct

    @ct.electron(cache=True)
    def square(x):
        return x * x

    @ct.lattice
    def flow(xs=(1, 2, 3)):
        return [square(x) for x in xs]
"""


def _squares(run_cov, run_id: str) -> list:
    doc = json.loads(run_cov("status", run_id, "--json").stdout)
    return sorted(t["id"] for t in doc["tasks"] if t["name"] == "square")


def test_why_with_a_repeated_task_name_asks_for_an_id_and_explains_that_node(
        run_cov, tmp_path: Path, cov_home: Path) -> None:
    path = script(tmp_path, LOOP)
    first = run_cov("dispatch", str(path), "-q", "--wait")
    assert first.returncode == 0, first.stderr
    second = run_cov("dispatch", str(path), "-q", "--wait", "-a", "xs=[1, 2, 4]")
    assert second.returncode == 0, second.stderr
    first_id, second_id = first.stdout.split()[0], second.stdout.split()[0]
    ids = _squares(run_cov, second_id)
    assert len(ids) == 3

    by_name = run_cov("status", second_id, "square", "--why")
    assert_one_line_error(by_name, by_name.returncode, "3 nodes", "'square'",
                          ", ".join(map(str, ids)))
    assert by_name.returncode == 6  # not found: ambiguous, as for a run id

    # The first two came from the cache; the third ran, compared with the same call of the
    # first run (not with a sibling the second run has just taken from the cache).
    for node in ids[:2]:
        hit = run_cov("status", second_id, str(node), "--why")
        assert f"cached from {first_id}/{node}" in hit.stdout, hit.stdout
    miss = run_cov("status", second_id, str(ids[2]), "--why")
    assert miss.returncode == 0, miss.stderr
    assert miss.stdout.strip() == (f"square #{ids[2]}: ran: input changed (x) "
                                   f"(nearest entry: {first_id}/{ids[2]})")
