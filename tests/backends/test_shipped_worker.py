"""The worker as SSH hosts and Slurm nodes get it: ``worker.shipped_files()`` in a directory of
their own, run by a Python that cannot import cov (``python -I``: no PYTHONPATH, no cwd)."""
from __future__ import annotations

import pickle
import subprocess
import sys

import cloudpickle

from runner import layout, outcome, worker

# A task pickled by value (its module cannot be imported): it reports which modules it sees.
_SOURCE = """
def task():
    import sys
    import outcome  # the user's own module of that name, not cov's
    return outcome.MARK, sorted(m for m in ("runner", *SHIPPED) if m in sys.modules)
"""


def _task():
    namespace = {"__name__": "cov_test_not_importable",
                 "SHIPPED": [name for name in worker.SHIPPED_WITH if name != "outcome"]}
    exec(_SOURCE, namespace)
    return namespace["task"]


def test_the_shipped_worker_runs_a_task_without_cov(tmp_path):
    shipped = tmp_path / "lib"
    shipped.mkdir()
    files = worker.shipped_files()
    assert list(files)[-1] == layout.WORKER  # written last: its presence means all are there
    assert set(files) == {layout.WORKER, *(f"{name}.py" for name in worker.SHIPPED_WITH),
                          *(f"{name}.py" for name in worker.SHIPPED_BESIDE)}
    assert {"outcome.py", "worker_task.py", layout.POOL} <= set(files)
    for name, data in files.items():
        (shipped / name).write_bytes(data)
    user = tmp_path / "user"
    user.mkdir()
    (user / "outcome.py").write_text("MARK = 'the user outcome'\n")
    bundle = tmp_path / "bundle.pkl"
    bundle.write_bytes(pickle.dumps({
        "fn": cloudpickle.dumps({"fn": _task(), "name": "task"}), "inputs": [],
        "cwd": str(tmp_path), "sys_path": [str(user)], "context": {"node": 0}}))
    result = tmp_path / "0.pkl"
    proc = subprocess.run(
        [sys.executable, "-I", str(shipped / layout.WORKER), str(bundle), str(result),
         str(tmp_path / "0.out"), str(tmp_path / "0.err")],
        cwd="/", capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    header = outcome.read_outcome_header(str(result))
    assert header is not None and header.get("ok"), (tmp_path / "0.err").read_text()
    payload = outcome.read_outcome_payload(str(result))
    assert payload is not None
    # cov's own modules are neither importable by the task nor in its sys.modules
    assert pickle.loads(payload) == ("the user outcome", [])
