"""Live output of Slurm tasks (login-node mode: the job writes into the run directory on the
shared filesystem): ``cov logs -f`` shows what a running job's task prints while it runs."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from tests.backends.test_slurm import _dispatch, slurm_home  # noqa: F401 - a fixture
from tests.live import Follower, check_live

PAUSE = 4.0


def test_follow_shows_a_running_slurm_task_as_it_prints(slurm_home: Path,  # noqa: F811
                                                         run_cov: Callable,
                                                         tmp_path: Path) -> None:
    run_id = _dispatch(run_cov, tmp_path, f"""
        import sys

        @ct.electron(executor="cluster")
        def talker(pause):
            print(f"first {{time.time():.3f}}", flush=True)
            print(f"warn {{time.time():.3f}}", file=sys.stderr, flush=True)
            time.sleep(pause)
            print(f"second {{time.time():.3f}}", flush=True)
            return "done"

        @ct.lattice
        def wf():
            return talker({PAUSE})
        """)
    delays = check_live(Follower(run_id, "0"), "0", PAUSE)
    print("slurm live-output delays (s):", delays)
    assert run_cov("result", run_id).stdout.strip() == "'done'"
