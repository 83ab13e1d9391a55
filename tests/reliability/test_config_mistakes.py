"""Config and executor mistakes are one ``Error:`` line at dispatch, in ``cov config`` and at
runner start; nothing is dispatched (docs/reliability.md, "Config and executor mistakes").

They used to be accepted by dispatch; the runner then died at start, and ``--wait`` never
returned.
"""
from __future__ import annotations

import subprocess
import sys

import pytest

from tests.cli.test_cli import assert_one_line_error
from tests.conftest import REPO
from tests.reliability.test_bad_input import OK, nothing_written, script

BASE = "runner:\n  idle_timeout: 3\n  rescan_interval: 0.5\n  heartbeat_interval: 1\n"

MISTAKES = {
    "workers-not-a-number": (BASE + "  workers: many\n",
                             "runner.workers must be a positive whole number (found 'many')"),
    "idle-timeout-not-a-number": (BASE.replace("idle_timeout: 3", "idle_timeout: soon"),
                                  "runner.idle_timeout must be a number of seconds"),
    "misspelt-runner-key": (BASE + "  idle_timout: 5\n",
                            "unknown key 'runner.idle_timout' (did you mean "
                            "'runner.idle_timeout'?)"),
    "misspelt-top-key": (BASE + "executor:\n  x: {type: local}\n",
                         "unknown key 'executor' (did you mean 'executors'?)"),
    "runner-not-a-mapping": ("runner: fast\n", "'runner' must be a mapping"),
    "executor-module-missing": (BASE + "executors:\n  hpc: {type: 'no_such_module_xyz:Backend'}\n",
                                "names module 'no_such_module_xyz', which cannot be imported"),
    "executor-type-misspelt": (BASE + "executors:\n  box: {type: sshh, hostname: h}\n",
                               "no backend for executor type 'sshh' (did you mean 'ssh'?)"),
    "executor-field-wrong-type": (BASE + "executors:\n  local: {type: local, retries: lots}\n",
                                  "executors.local.retries must be a whole number"),
    "executor-not-a-mapping": (BASE + "executors:\n  box: 5\n", "executors.box must be a mapping"),
    # the built-in slurm executor, changed: checked (as shipped it is not: see below)
    "slurm-executor-resource": (BASE + "executors:\n  slurm: {mem: lots}\n",
                                "executors.slurm: Slurm executor parameter 'mem' must be a size"),
}


@pytest.mark.parametrize("kind", sorted(MISTAKES))
def test_a_config_mistake_is_one_line_everywhere(kind, cov_home, run_cov, tmp_path):
    text, message = MISTAKES[kind]
    (tmp_path / "config.yaml").write_text(text)
    dispatched = run_cov("dispatch", "--wait", str(script(tmp_path, OK)), timeout=60)
    assert_one_line_error(dispatched, 1, message)
    assert nothing_written(cov_home)
    assert not (cov_home / ".runners").exists()  # no runner was started to die
    assert_one_line_error(run_cov("config"), 1, message, "fix it there")
    runner = subprocess.run([sys.executable, "-m", "runner", "--home", str(cov_home)],
                            capture_output=True, text=True, timeout=60, cwd=str(REPO))
    assert runner.returncode == 1 and "Traceback" not in runner.stderr, runner.stderr
    last = runner.stderr.strip().splitlines()[-1]  # the runner's log line: why it exited
    assert "exited on an error: config file " in last and message in last, runner.stderr


def test_an_executor_object_with_a_wrong_typed_field(run_cov, tmp_path, cov_home):
    body = OK.replace("@ct.electron\ndef g", "@ct.electron(executor=ct.executor.LocalExecutor("
                      "retries='twice'))\ndef g")
    assert "retries='twice'" in body
    proc = run_cov("dispatch", "--wait", str(script(tmp_path, body)), timeout=60)
    assert_one_line_error(proc, 1, "retries must be a whole number (found 'twice')")
    assert nothing_written(cov_home)


def test_a_valid_config_passes(cov_home, run_cov, tmp_path):
    (tmp_path / "config.yaml").write_text(
        BASE + "  workers: 2\nhome: null\nexecutors:\n  box: {type: ssh, hostname: h, port: 22,"
        " prelude: [module load x]}\n  q: {type: slurm, options: {partition: short}}\n")
    assert run_cov("config").returncode == 0
    proc = run_cov("dispatch", "--wait", "-q", str(script(tmp_path, OK)))
    assert proc.returncode == 0 and proc.stdout.split()[-1] == "2", proc.stderr


def test_the_built_in_executors_pass_their_own_checks():
    """check_config skips an executor left as shipped (checking the Slurm one imports the Slurm
    backend, at every dispatch): each must pass the check it skips."""
    from runner.config import DEFAULTS, executor_problem

    shipped = DEFAULTS["executors"]
    assert sorted(shipped) == ["dask", "local", "slurm", "ssh"]
    assert {name: executor_problem(name, config) for name, config in shipped.items()} == \
        {name: "" for name in shipped}
