"""Every example in workflows/ dispatches as it is and gives its documented result."""
from __future__ import annotations

import pytest

from tests.conftest import WORKFLOWS

EXPECTED = {
    "hello.py": ([], 0, "{'text': 'HELLO, WORLD!', 'letters': 10}"),
    "map_reduce.py": (["-a", "n=10"], 0, "285"),
    "printing_sweep.py": (["-a", "n=10"], 0, "45"),
    "failing.py": ([], 3, None),
    "sublattice_loop.py": (["-a", "start=100"], 0, "6"),
    "deps_hooks.py": ([], 0, "21"),
    "file_transfer.py": ([], 0, "{'text': 'HELLO FROM A FILE', 'copied_out': True}"),
    "notebook.ipynb": ([], 0, "30"),
}


def test_every_example_is_covered():
    found = [p.name for p in WORKFLOWS.iterdir() if p.suffix in (".py", ".ipynb")]
    assert sorted(found) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_dispatches_as_is(run_cov, name):
    args, code, printed = EXPECTED[name]
    proc = run_cov("dispatch", str(WORKFLOWS / name), *args, "--wait", "-q")
    assert proc.returncode == code, proc.stderr
    if printed is not None:
        assert proc.stdout.strip().splitlines()[-1] == printed
