"""Notebooks: executed in a real Jupyter kernel (``jupyter nbconvert --execute``) where cov is
installed, and run by ``cov dispatch notebook.ipynb`` like a script."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List

from tests.compat.conftest import Env
from tests.compat.test_import_hook import _home_env, _stop_runners
from tests.conftest import WORKFLOWS


def _notebook(path: Path, cells: List[str]) -> Path:
    path.write_text(json.dumps({
        "cells": [{"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
                   "source": source} for source in cells]
        + [{"cell_type": "markdown", "metadata": {}, "source": "# not code\nprint('no')"}],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                    "language": "python"}},
        "nbformat": 4, "nbformat_minor": 4}))
    return path


def _outputs(notebook: Path) -> List[str]:
    """Every stream output text of an executed notebook, cell by cell."""
    data = json.loads(notebook.read_text())
    return ["".join("".join(o.get("text", "")) for o in cell.get("outputs", ()))
            for cell in data["cells"] if cell["cell_type"] == "code"]


def test_jupyter_kernel_dispatches_with_import_covalent(installed_envs: Dict[str, Env],
                                                       tmp_path):
    env = installed_envs["wheel"]
    cov_env = _home_env(tmp_path)
    out = tmp_path / "executed.ipynb"
    try:
        proc = env.run("-m", "nbconvert", "--to", "notebook", "--execute",
                       str(WORKFLOWS / "notebook.ipynb"), "--output", str(out),
                       cwd=tmp_path, env=cov_env, timeout=240)
        assert proc.returncode == 0, proc.stderr
        texts = _outputs(out)
        assert "COMPLETED 30" in "".join(texts), texts
        # the kernel was this env's Python, and the run is where `cov` looks
        check = _notebook(tmp_path / "where.ipynb", [
            "import sys, covalent as ct\nprint(sys.prefix)\nprint(ct.__name__)\n"
            "print(ct.get_result('latest').dispatch_id)"])
        proc = env.run("-m", "nbconvert", "--to", "notebook", "--execute", str(check),
                       "--output", str(tmp_path / "where-out.ipynb"), cwd=tmp_path, env=cov_env,
                       timeout=240)
        assert proc.returncode == 0, proc.stderr
        prefix, name, latest = _outputs(tmp_path / "where-out.ipynb")[0].split()
        assert Path(prefix) == env.root and name == "covalent_cli"
        runs = env.run("cov", "runs", "-q", cwd=tmp_path, env=cov_env, python=False)
        assert runs.stdout.split() == [latest], runs.stderr
    finally:
        _stop_runners(env, cov_env, tmp_path)


def test_cov_dispatch_runs_a_notebooks_code_cells_in_order(run_cov, tmp_path):
    nb = _notebook(tmp_path / "nb.ipynb", [
        "%matplotlib inline\nimport covalent as ct\nsteps = ['cell1']",
        "%%bash\necho this cell is bash",
        ["@ct.electron\n", "def inc(x):\n", "    return x + 1\n", "\n",
         "if True:\n", "    !echo shell\n", "steps.append('cell3')\n"],
        "@ct.lattice\ndef wf(x):\n    return inc(inc(x))\nsteps.append('cell4')\n"
        "assert steps == ['cell1', 'cell3', 'cell4'], steps",
    ])
    proc = run_cov("dispatch", str(nb), "-a", "x=1", "--wait", "-q")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[-1] == "3"
    assert f"cov: {nb} cell 1, line 1: skipped IPython magic `%matplotlib inline`" in proc.stderr
    assert f"cov: {nb} cell 2, line 1: skipped cell magic: the whole cell `%%bash`" \
        in proc.stderr
    assert f"cov: {nb} cell 3, line 6: skipped shell command `!echo shell`" in proc.stderr


def test_notebook_dispatching_on_its_own_and_errors_name_the_cell(run_cov, tmp_path):
    nb = _notebook(tmp_path / "self.ipynb", [
        "import covalent as ct\nwf = ct.lattice(ct.electron(lambda: 'hi'))",
        "print(ct.get_result(ct.dispatch(wf)(), wait=True).result)"])
    proc = run_cov("dispatch", str(nb), "--wait", "-q")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[0] == "hi" and proc.stdout.split()[-1] == "'hi'"

    bad = _notebook(tmp_path / "bad.ipynb", ["x = 1", "\n\nraise ValueError('boom')"])
    proc = run_cov("dispatch", str(bad))
    assert proc.returncode == 7
    assert f"{bad} raised ValueError: boom at {bad} cell 2, line 3" in proc.stderr

    broken = _notebook(tmp_path / "syntax.ipynb", ["x = 1", "def f(:\n    pass"])
    proc = run_cov("dispatch", str(broken))
    assert proc.returncode == 7
    assert f"Error: {broken}: cell 2, line 1: syntax error" in proc.stderr

    not_nb = tmp_path / "plain.ipynb"
    not_nb.write_text("print('I am not JSON')")
    proc = run_cov("dispatch", str(not_nb))
    assert proc.returncode == 7 and f"{not_nb} is not a Jupyter notebook" in proc.stderr
    assert "Traceback" not in proc.stderr
