"""``import covalent`` wherever the user runs Python, in an environment where cov is installed
(``pip install .`` and ``pip install -e .``) and real Covalent is not: ``python script.py``,
``python -c``, ``pytest``; never shadowing a real Covalent."""
from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path

import pytest

from tests.compat.conftest import Env

SCRIPT = textwrap.dedent('''
    import sys
    import covalent as ct
    import covalent.executor
    from covalent.executor import LocalExecutor
    from covalent.executor.base import BaseExecutor
    import covalent._results_manager.results_manager as rm
    from covalent._results_manager.result import Result
    from covalent._dispatcher_plugins.local import LocalDispatcher
    from covalent._shared_files.config import get_config
    from covalent._workflow.depsbash import DepsBash

    @ct.electron
    def add(a, b):
        return a + b

    @ct.lattice
    def wf(a, b):
        return add(a, add(a, b))

    assert ct.__name__ == "covalent_cli" and covalent.executor is ct.executor
    assert issubclass(LocalExecutor, BaseExecutor) and DepsBash is ct.DepsBash
    dispatch_id = ct.dispatch(wf)(1, 2)
    result = rm.get_result(dispatch_id, wait=True)
    assert isinstance(result, Result) and result.status == Result.COMPLETED, result.error
    print(dispatch_id, result.result)
''')


def _home_env(tmp_path: Path) -> dict:
    home = tmp_path / "home"
    config = tmp_path / "config.yaml"
    config.write_text("runner:\n  idle_timeout: 3\n  rescan_interval: 0.5\n")
    return {"COV_HOME": str(home), "COV_CONFIG": str(config)}


def _stop_runners(env: Env, cov_env: dict, tmp_path: Path) -> None:
    env.run("-m", "covalent_cli.cli", "runner", "stop", cwd=tmp_path, env=cov_env)


def test_python_script_gets_covs_sdk_and_the_same_runs_home(installed: Env, tmp_path):
    cov_env = _home_env(tmp_path)
    script = tmp_path / "user_script.py"
    script.write_text(SCRIPT)
    try:
        proc = installed.run(str(script), cwd=tmp_path, env=cov_env)
        assert proc.returncode == 0, proc.stderr
        dispatch_id, value = proc.stdout.split()
        assert value == "4"
        # the run is in the same home `cov` reads, served by the same runner
        listed = installed.run("cov", "runs", "--json", cwd=tmp_path, env=cov_env, python=False)
        assert dispatch_id in listed.stdout, listed.stderr
        shown = installed.run("cov", "result", dispatch_id, cwd=tmp_path, env=cov_env,
                              python=False)
        assert shown.returncode == 0 and shown.stdout.strip() == "4", shown.stderr
        config = installed.run("cov", "config", "--json", cwd=tmp_path, env=cov_env,
                               python=False)
        assert json.loads(config.stdout)["covalent"] == \
            "cov's SDK (covalent_cli) via cov's import hook"
    finally:
        _stop_runners(installed, cov_env, tmp_path)


def test_python_c_and_pytest_get_covs_sdk(installed: Env, tmp_path):
    cov_env = _home_env(tmp_path)
    (tmp_path / "covalent").mkdir()  # a data folder of that name is no Covalent: cov's all the same
    try:
        proc = installed.run("-c", "import covalent as ct, covalent.executor as e; "
                             "print(ct.__name__, e.__name__, ct.dispatch.__module__)",
                             cwd=tmp_path, env=cov_env)
        assert proc.stdout.split() == ["covalent_cli", "covalent_cli.executor",
                                       "covalent_cli.dispatch"], proc.stderr
        test_file = tmp_path / "test_user_workflow.py"
        test_file.write_text(textwrap.dedent('''
            import covalent as ct

            @ct.electron
            def double(x):
                return 2 * x

            @ct.lattice
            def wf(x):
                return double(x)

            def test_dispatch():
                result = ct.dispatch_sync(wf)(21)
                assert result.result == 42, result.error
        '''))
        proc = installed.run("-m", "pytest", "-q", "-p", "no:cacheprovider", str(test_file),
                             cwd=tmp_path, env=cov_env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "1 passed" in proc.stdout
    finally:
        _stop_runners(installed, cov_env, tmp_path)


def _fake_covalent(root: Path) -> Path:
    package = root / "covalent"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text('__version__ = "0.240.0"\nREAL = True\n')
    (package / "executor.py").write_text("REAL_EXECUTOR = True\n")
    return root


@pytest.mark.parametrize("where", ["pythonpath", "site-packages"])
def test_a_real_covalent_always_wins(installed: Env, tmp_path, where):
    cov_env = _home_env(tmp_path)
    if where == "pythonpath":
        cov_env["PYTHONPATH"] = str(_fake_covalent(tmp_path / "fake"))
    else:  # installed next to cov, in the same site-packages
        _fake_covalent(tmp_path / "fake")
        (installed.site_packages / "covalent").symlink_to(tmp_path / "fake" / "covalent")
    try:
        proc = installed.run("-c", "import covalent, covalent.executor; "
                             "print(covalent.REAL, covalent.executor.REAL_EXECUTOR)",
                             cwd=tmp_path, env=cov_env)
        assert proc.stdout.split() == ["True", "True"], proc.stderr
        config = installed.run("cov", "config", "--json", cwd=tmp_path, env=cov_env,
                               python=False)
        assert json.loads(config.stdout)["covalent"].startswith("real Covalent at "), \
            config.stdout + config.stderr
        # cov dispatch is asked for cov by name: there `covalent` is cov's SDK all the same
        script = tmp_path / "s.py"
        script.write_text("import covalent as ct\nassert ct.__name__ == 'covalent_cli'\n"
                          "wf = ct.lattice(lambda: 1)\n")
        proc = installed.run("cov", "dispatch", str(script), "-q", "--wait", cwd=tmp_path,
                             env=cov_env, python=False)
        assert proc.returncode == 0 and proc.stdout.split()[-1] == "1", proc.stderr
    finally:
        if where == "site-packages":
            (installed.site_packages / "covalent").unlink()
        _stop_runners(installed, cov_env, tmp_path)


def test_installs_ship_the_hook_and_only_it(installed: Env):
    pth = installed.site_packages / "cov-covalent.pth"
    assert pth.is_file()
    assert pth.read_text().startswith("import ")  # site.py runs only lines starting so
    assert not (installed.site_packages / "covalent").exists()  # never a `covalent` package


def test_without_the_hook_covalent_is_not_importable(tmp_path):
    """Where cov-covalent.pth is not processed (here: ``python -S``, no site-packages .pth),
    ``import covalent`` fails outside `cov dispatch`, and `cov config`'s line says so."""
    import subprocess

    repo = str(Path(__file__).parents[2])
    env = {**os.environ, "PYTHONPATH": repo}
    proc = subprocess.run([sys.executable, "-S", "-c", "import covalent"], capture_output=True,
                          text=True, cwd=str(tmp_path), env=env)
    assert "No module named 'covalent'" in proc.stderr
    proc = subprocess.run([sys.executable, "-S", "-c",
                           "import _cov_import_hook as h; print(h.describe())"],
                          capture_output=True, text=True, cwd=str(tmp_path), env=env)
    assert proc.stdout.startswith("only inside `cov dispatch`: cov-covalent.pth is not "
                                  "installed"), proc.stderr
