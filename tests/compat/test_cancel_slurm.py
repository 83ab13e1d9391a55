"""Cancel reaches a sublattice's Slurm jobs: the child run's job is scancelled.

Uses the session's real single-node Slurm; run under ``flock /tmp/cov-slurm-tests.lock``
like tests/backends/test_slurm.py, whose helpers and ``slurm_home`` fixture it shares.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from tests.backends.test_slurm import _handles, _squeue, _until
from tests.infra.executors import dispatch_script


def test_cancel_of_the_parent_scancels_the_childs_job(slurm_home: Path, run_cov: Callable,
                                                     tmp_path: Path) -> None:
    run_id = dispatch_script(run_cov, tmp_path, """
        @ct.electron(executor="cluster")
        def sleepy():
            time.sleep(300)

        _inner = ct.lattice(sleepy)

        @ct.lattice
        def outer():
            return ct.electron(_inner)()
        """)

    def child_id():
        status = json.loads(run_cov("status", run_id, "--json").stdout)
        return next((t["child"] for t in status["tasks"] if t.get("child")), None)

    child = _until(child_id, what="the child run")
    job = _until(lambda: _handles(slurm_home, child).get(0), what="the child's job")[0]
    _until(lambda: _squeue(job).get(job) == "RUNNING", what="the job to run")
    assert run_cov("cancel", run_id).returncode == 0
    for run in (run_id, child):
        assert run_cov("wait", run, "--timeout", "30", "-q").returncode == 4  # CANCELLED
    _until(lambda: _squeue(job).get(job) == "CANCELLED", timeout=15, what="the scancel")
