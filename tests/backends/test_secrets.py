"""Secrets on a shared login node: masked wherever shown, never in a file others can read, and
still the real value where it is used (an SSH login, a Slurm job's environment); hostile values
in shell text never run.

"Others can read" is checked on the real files: every file under the run directory, the runs
home and the remote side is walked, and one readable by group or others must not contain a
secret. Real sshd (``sshd_host``) and Slurm (``slurm_cluster``) run the tasks.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import stat
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterable, List

import pytest

from runner.redact import has_mask, is_secret, mask_secrets, split_secrets, unmask
from tests.infra.executors import SlurmLogin, add_to_config, dispatch_script, wait_status

REPO = Path(__file__).resolve().parents[2]


def _secret(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:12]}"


def _leaks(roots: Iterable[Path], secrets: Iterable[str]) -> List[str]:
    """Files holding a secret other than 0600 files in a 0700 ``secrets/`` directory. The modes
    of the directories above do not excuse a file: run directories are 0700 today, but a copy,
    an archive or a group-shared runs home is not."""
    found = []
    wanted = [s.encode() for s in secrets]
    for root in roots:
        for path in [root, *root.rglob("*")] if root.exists() else ():
            if path.is_symlink() or not path.is_file():
                continue
            if not any(s in path.read_bytes() for s in wanted):
                continue
            mode, parent = path.stat().st_mode, path.parent.stat().st_mode
            if path.parent.name != "secrets" or mode & 0o077 or parent & 0o077:
                found.append(f"{path} ({stat.filemode(mode)})")
    return found


# -- one rule, one masking function -------------------------------------------------------------
def test_one_rule_names_secrets_and_paths() -> None:
    for name in ("password", "passphrase", "api_key", "private_key", "pwd", "auth", "token",
                 "secret", "ssh_key_passphrase", "API_TOKEN", "AWS_SECRET_ACCESS_KEY",
                 "apiKey", "credentials", "auth_token", "key"):
        assert is_secret(name), name
    for name in ("ssh_key_file", "key_file", "cert_file", "password_file", "token_path",
                 "bashrc_path", "keepalive", "strict_host_key_checking", "known_hosts",
                 "username", "author", "PLAIN"):
        assert not is_secret(name), name
    assert mask_secrets({"a": {"api_key": "x", "key_file": "/k"}, "pwd": "", "l": [{"token": 1}]}
                        ) == {"a": {"api_key": "***", "key_file": "/k"}, "pwd": "",
                              "l": [{"token": "***"}]}
    config = {"hostname": "h", "password": "p", "variables": {"API_TOKEN": "t", "N": "1"}}
    masked, secrets = split_secrets(config)
    assert secrets == {"password": "p", "variables": {"API_TOKEN": "t"}}
    assert has_mask(masked) and not has_mask(config) and unmask(masked, secrets) == config


def test_repr_and_cov_config_mask_every_secret_field(run_cov: Callable, cov_home: Path) -> None:
    import covalent_cli as ct

    values = {name: _secret(name) for name in ("password", "passphrase", "api_key",
                                                "private_key", "pwd", "auth", "token")}
    text = repr(ct.executor.SSHExecutor(hostname="h", ssh_key_file="~/.ssh/id", **values))
    assert not [v for v in values.values() if v in text], text
    assert "password='***'" in text and "ssh_key_file='~/.ssh/id'" in text
    add_to_config("executors:\n  box:\n    type: ssh\n" + "".join(
        f"    {k}: {v}\n" for k, v in values.items()) + "    ssh_key_file: /keys/box\n")
    shown = run_cov("config")
    assert shown.returncode == 0, shown.stderr
    assert not [v for v in values.values() if v in shown.stdout], shown.stdout
    assert "/keys/box" in shown.stdout and "***" in shown.stdout
    from webui import app, views  # the UI's config page and run views use the same function
    from runner import redact

    assert views.mask_secrets is redact.mask_secrets
    assert "runner.redact import mask_secrets" in Path(app.__file__).read_text()


def test_dispatch_keeps_secrets_out_of_files_others_can_read(
        run_cov: Callable, cov_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
        ) -> None:
    """The manifest and tasks.pkl (the workflow with its executors) hold masks; the values are
    in ``secrets/executors.json`` only (0600 in a 0700 directory), which the UI never shows;
    a redispatch takes them over."""
    monkeypatch.setenv("COV_NO_RUNNER", "1")
    values = {name: _secret(name) for name in ("password", "passphrase", "api_key",
                                                "private_key", "pwd", "auth", "secret")}
    token = _secret("API_TOKEN")
    run_id = dispatch_script(run_cov, tmp_path, f"""
        box = ct.executor.SSHExecutor(hostname="nowhere", ssh_key_file="/keys/box",
                                      **{values!r})
        cluster = ct.executor.SlurmExecutor(variables={{"API_TOKEN": {token!r}, "PLAIN": "p"}})

        @ct.electron(executor=box)
        def a(x):
            return x

        @ct.electron(executor=cluster)
        def b(x):
            return x

        @ct.lattice
        def wf(x=1):
            return b(a(x))
        """)
    run = cov_home / run_id
    secrets = [*values.values(), token]
    assert _leaks([cov_home], secrets) == []
    planted = run / "logs" / "planted.txt"  # the check itself finds a copy, even a 0600 one
    planted.write_text(token)
    planted.chmod(0o600)
    assert _leaks([cov_home], secrets) == [f"{planted} (-rw-------)"]
    planted.unlink()
    manifest = (run / "manifest.yaml").read_text()
    assert "/keys/box" in manifest and "API_TOKEN: '***'" in manifest and "PLAIN: p" in manifest
    assert stat.S_IMODE((run / "secrets").stat().st_mode) == 0o700
    stored = run / "secrets" / "executors.json"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert all(s in stored.read_text() for s in secrets)

    from covalent_cli.redispatch import redispatch
    from webui import security

    assert security.inside(run, "secrets/executors.json") is None  # the UI's file browser
    assert security.inside(run, "manifest.yaml") is not None
    again = redispatch(run_id)()
    assert json.loads((cov_home / again / "secrets" / "executors.json").read_text()) == \
        json.loads(stored.read_text())
    assert _leaks([cov_home], secrets) == []


def test_custom_executor_with_a_secret_field_is_refused(run_cov: Callable, cov_home: Path,
                                                        tmp_path: Path) -> None:
    script = tmp_path / "custom.py"
    script.write_text(textwrap.dedent("""\
        import covalent as ct

        class Cloud(ct.executor.BaseExecutor):
            def run(self, function, args, kwargs, task_metadata):
                return function(*args, **kwargs)

        @ct.electron(executor=Cloud(api_key="k-123"))
        def f():
            return 1

        @ct.lattice
        def wf():
            return f()
        """))
    result = run_cov("dispatch", str(script), "-q")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "api_key" in result.stderr and "inside run()" in result.stderr, result.stderr


# -- SSH: a passphrase-protected key, and a hostile conda_env -------------------------------------
def test_ssh_passphrase_reaches_the_login_and_no_file(run_cov: Callable, cov_home: Path,
                                                      tmp_path: Path, sshd_host: Any) -> None:
    passphrase = _secret("pass phrase")
    key = tmp_path / "encrypted_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-f", str(key)],
                   check=True)
    with open(sshd_host.dir / "authorized_keys", "a") as f:  # accepted for covtest too
        f.write(key.with_suffix(".pub").read_text())
    pwned = Path(f"/tmp/pwned-{uuid.uuid4().hex[:8]}")
    run_id = dispatch_script(run_cov, tmp_path, f"""
        login = dict(hostname={sshd_host.name!r}, ssh_config={sshd_host.ssh_config!r},
                     ssh_key_file={str(key)!r}, passphrase={passphrase!r},
                     max_connection_attempts=1)

        @ct.electron(executor=ct.executor.SSHExecutor(**login))
        def there():
            import getpass
            return getpass.getuser()

        @ct.electron(executor=ct.executor.SSHExecutor(
            conda_env="$(touch {pwned})`touch {pwned}`", **login))
        def in_conda():
            return "never"

        @ct.lattice
        def wf():
            return [there(), in_conda()]
        """)
    status = wait_status(run_cov, run_id, timeout=90)
    tasks = {t["name"]: t for t in status["tasks"]}
    assert tasks["there"]["status"] == "COMPLETED", tasks["there"]
    assert tasks["in_conda"]["status"] == "FAILED"
    assert "cannot activate conda env $(touch" in tasks["in_conda"]["error"]
    assert not pwned.exists()
    assert _leaks([cov_home, Path(f"/home/{sshd_host.username}")], [passphrase]) == []


def test_ssh_password_reaches_the_login_and_no_file(run_cov: Callable, cov_home: Path,
                                                    tmp_path: Path, sshd_host: Any) -> None:
    """A second sshd (the fixture's config, with password logins) and a password set for the
    test user for the length of the test."""
    password = _secret("pw")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = (sshd_host.dir / "sshd_config").read_text()
    config = re.sub(r"(?m)^Port .*$", f"Port {port}", config)
    config = re.sub(r"(?m)^PidFile .*$", f"PidFile {tmp_path / 'sshd.pid'}", config)
    config = config.replace("PasswordAuthentication no", "PasswordAuthentication yes")
    (tmp_path / "sshd_config").write_text(config)
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} " + next(sshd_host.dir.glob("host_*.pub")).read_text())
    subprocess.run(["chpasswd"], input=f"{sshd_host.username}:{password}\n", text=True,
                   check=True)
    sshd = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(tmp_path / "sshd_config")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            with socket.socket() as client:
                if client.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.monotonic() < deadline, "the password sshd did not start"
            time.sleep(0.1)
        run_id = dispatch_script(run_cov, tmp_path, f"""
            @ct.electron(executor=ct.executor.SSHExecutor(
                hostname="127.0.0.1", port={port}, username={sshd_host.username!r},
                password={password!r}, ssh_config="none", known_hosts={str(known)!r},
                max_connection_attempts=1))
            def there():
                import getpass
                return getpass.getuser()

            @ct.lattice
            def wf():
                return there()
            """)
        status = wait_status(run_cov, run_id, timeout=90)
        assert status["status"] == "COMPLETED", status["tasks"]
        assert _leaks([cov_home, Path(f"/home/{sshd_host.username}")], [password]) == []
    finally:
        sshd.terminate()
        sshd.wait(timeout=10)
        subprocess.run(["usermod", "-p", "*", sshd_host.username], check=True)  # keys only


# -- Slurm: secret variables reach the job, through no readable file -----------------------------
def _slurm_secret_run(run_cov: Callable, tmp_path: Path, token: str, pwned: Path,
                      extra: str) -> str:
    return dispatch_script(run_cov, tmp_path, f"""
        common = dict(poll_freq=0.3, missing_grace=3, use_srun=False, cleanup=False, {extra})

        @ct.electron(executor=ct.executor.SlurmExecutor(
            variables={{"API_TOKEN": {token!r}, "PLAIN": "it's plain"}}, **common))
        def job_env():
            return [hashlib.sha256(os.environ["API_TOKEN"].encode()).hexdigest(),
                    os.environ["PLAIN"]]

        @ct.electron(executor=ct.executor.SlurmExecutor(
            conda_env="$(touch {pwned})`touch {pwned}`", **common))
        def in_conda():
            return "never"

        @ct.lattice
        def wf():
            return [job_env(), in_conda()]
        """)


def _check_slurm_secret_run(run_cov: Callable, run_id: str, token: str, pwned: Path,
                            roots: List[Path], scripts: Path) -> None:
    status = wait_status(run_cov, run_id, timeout=90)
    tasks = {t["name"]: t for t in status["tasks"]}
    assert tasks["job_env"]["status"] == "COMPLETED", tasks["job_env"]
    assert tasks["in_conda"]["status"] == "FAILED"
    assert not pwned.exists()
    import covalent_cli as ct

    node = ct.get_result(run_id).get_node_result(tasks["job_env"]["id"])
    assert node["output"].get_deserialized() == [hashlib.sha256(token.encode()).hexdigest(),
                                                 "it's plain"]
    assert _leaks(roots, [token]) == []
    texts = [p.read_text() for p in scripts.glob("*.sh")]
    assert texts and all(token not in t for t in texts)
    assert any("/secrets/slurm-" in t and "export PLAIN=" in t for t in texts)


def test_slurm_secret_variable_reaches_the_job_through_a_private_file(
        run_cov: Callable, cov_home: Path, tmp_path: Path, slurm_cluster: Any) -> None:
    token, pwned = _secret("token"), Path(f"/tmp/pwned-{uuid.uuid4().hex[:8]}")
    run_id = _slurm_secret_run(run_cov, tmp_path, token, pwned, "")
    run = cov_home / run_id
    _check_slurm_secret_run(run_cov, run_id, token, pwned, [cov_home], run / "slurm" / "jobs")
    (env_file,) = (run / "secrets").glob("slurm-*.env")
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600 and token in env_file.read_text()


def test_slurm_over_ssh_keeps_secrets_private_on_the_login_node(
        run_cov: Callable, cov_home: Path, tmp_path: Path, slurm_login: SlurmLogin,
        sshd_host: Any) -> None:
    user = sshd_host.username
    workdir = f"/home/{user}/cov-secrets-{uuid.uuid4().hex[:6]}"
    token, pwned = _secret("token"), Path(f"/tmp/pwned-{uuid.uuid4().hex[:8]}")
    run_id = _slurm_secret_run(run_cov, tmp_path, token, pwned,
                               slurm_login.executor_args(workdir))
    remote = Path(workdir) / ".cov" / run_id
    _check_slurm_secret_run(run_cov, run_id, token, pwned, [cov_home, Path(workdir)],
                            remote / "slurm" / "jobs")
    (secret_file,) = (remote / "secrets").glob("slurm-*.env")
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert secret_file.stat().st_uid == os.stat(f"/home/{user}").st_uid  # the job's user
