"""Runs on another machine, driven from this one: ``cov dispatch --on HOST``, ``cov ... --on
HOST``, ``cov pull HOST RUN``.

A run is built here (no runner starts here), then its directory travels to the host's runs
home in one SSH exec as a tar stream, unpacked under a ``.tmp-`` name (which no reader lists)
and moved into place by one ``mv`` only once the stream ended whole: a connection dropped
mid-way leaves the remote run whole or absent. A runner is then started (or reused) there by
the host's own cov, with the host's configured home and executors. Every step reuses the
pooled connection of ``runner.ssh`` (ssh_config aliases, ProxyJump, ProxyCommand).

``cov pull`` is ``runner.remote_pull``. A host without cov gets this machine's
(``runner.self_ship``).
"""
from __future__ import annotations

import io
import json
import shlex
import sys
import tarfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import paramiko

from runner.layout import ENV, TMP_PREFIX
from runner.ssh import PythonSetup, SSHError, SSHHost
from runner.ssh.remote import DEFAULT_CACHE

# One remote Python round trip: its version, whether cov imports (with a copy cov shipped
# there, argv[1], first on the path if it is there: self_ship), the dependencies' versions
# (argv[2:]), and the runs home and config file there.
_PROBE = (
    "import importlib, importlib.util, json, os, sys\n"
    "out = {'python': list(sys.version_info[:3]), 'executable': sys.executable}\n"
    "shipped = os.path.join(os.path.expanduser('~'), os.path.expanduser(sys.argv[1]))\n"
    "if os.path.isdir(shipped):\n"
    "    sys.path.insert(0, shipped)\n"
    "    out['shipped'] = shipped\n"
    "out['ssh'] = importlib.util.find_spec('paramiko') is not None\n"
    "try:\n"
    "    for name in sys.argv[2:]:\n"
    "        importlib.import_module(name)\n"
    "    from runner.config import config_path, runs_home\n"
    "    out['home'] = str(runs_home())\n"
    "    path = config_path()\n"
    "    out['config'] = path.read_text() if path.is_file() else ''\n"
    "except ImportError as exc:\n"
    "    out['missing'] = str(exc)\n"
    "except Exception as exc:\n"
    "    out['config_error'] = str(exc)\n"
    "print(json.dumps(out))\n"
)

_START = (
    "import sys\n"
    "from pathlib import Path\n"
    "from runner.daemon import ensure_running\n"
    "ensure_running(Path(sys.argv[1]))\n"
)

CLI_MODULE = "covalent_cli.cli"


class RemoteRunError(SSHError):
    """The host cannot take the run (no cov there, another Python, a dropped connection)."""


@dataclass(frozen=True)
class HostSetup:
    """What the host's cov is configured with: its runs home and config file's text."""

    home: str
    config: str


@dataclass
class RemoteCov:
    """cov on a host: the host's pooled connection and how to start its Python."""

    host: SSHHost
    setup: PythonSetup
    name: str  # as the user wrote it, for messages
    remote_cache: str = DEFAULT_CACHE  # where cov ships itself there (runner.self_ship)
    pythonpath: str = ""  # that shipped copy, once ``setup_there`` found or put it there

    def cov_line(self, args: Sequence[str]) -> str:
        """The shell line running the host's ``cov ARGS`` (every word quoted)."""
        return self.setup.command(["-m", CLI_MODULE, *args], self.pythonpath)

    def probe(self) -> str:
        """The host's runs home, after checking that cov imports there under a Python of this
        minor version (shipping it there if not); else RemoteRunError naming what to do."""
        return self.setup_there().home

    def setup_there(self, for_dispatch: bool = False) -> HostSetup:
        """``probe``, with the host's config file: a run for the host is built with it, so that
        executor names mean what they mean there. A host without cov gets this machine's
        (``runner.self_ship``), once per version of it. ``for_dispatch``: also refuse a
        shipped cov whose host config needs what cannot be shipped (fabric, for executors
        that open SSH connections there)."""
        data = self._probe()
        if "missing" in data and "shipped" not in data:
            self._ship_self()
            data = self._probe()
            if "missing" in data:
                raise RemoteRunError(
                    f"cov shipped to {self.name} does not import there with "
                    f"{data.get('executable')} ({data['missing']}); install cov there "
                    f"(`{data.get('executable')} -m pip install --user cov`)", self.name)
        self.pythonpath = str(data.get("shipped") or "")
        if "config_error" in data:
            raise RemoteRunError(f"cov on {self.name}: {data['config_error']}", self.name)
        config = str(data.get("config") or "")
        if for_dispatch and self.pythonpath and not data.get("ssh"):
            self._refuse_ssh_executors(config, str(data.get("executable")))
        return HostSetup(str(data["home"]), config)

    def _probe(self) -> Dict[str, Any]:
        from runner.self_ship import HOST_DEPENDENCIES, bundle_path

        args = ["-c", _PROBE, bundle_path(self.remote_cache), *HOST_DEPENDENCIES.values()]
        result = self.host.run(self.setup.command(args), retry=True)
        found = [line for line in result.text.splitlines() if line.startswith("{")]
        if result.exit_code != 0 or not found:
            lines = (result.error_text or result.text).splitlines() or ["no output"]
            detail = lines[-1][-300:]  # one line: the shell's or Python's last word
            raise RemoteRunError(f"cannot run `{self.setup.python}` on {self.name}: {detail}; "
                                 f"set python_path (or prelude) of an executor named "
                                 f"{self.name} in the config file", self.name)
        data = json.loads(found[-1])
        there = tuple(data["python"][:2])
        here = tuple(sys.version_info[:2])
        if there != here:
            raise RemoteRunError(
                f"{self.name} runs Python {there[0]}.{there[1]} ({data.get('executable')}), "
                f"this machine {here[0]}.{here[1]}: runs pickled here load only under the same "
                f"minor version; point python_path of executor {self.name} at a Python "
                f"{here[0]}.{here[1]} there", self.name)
        return dict(data)

    def _ship_self(self) -> None:
        """Copy this machine's cov into the user's cache there, whole or not at all."""
        from runner.self_ship import UNPACK, bundle_path, local_bundle

        line = self.setup.command(["-c", UNPACK, bundle_path(self.remote_cache)])
        try:
            result = self.host.run(line, input=local_bundle().tar(), timeout=None)
        except (paramiko.SSHException, EOFError, OSError, SSHError) as exc:
            raise RemoteRunError(f"the connection to {self.name} dropped while shipping cov "
                                 f"there ({type(exc).__name__}): nothing was left; try again",
                                 self.name) from None
        if not result.ok:
            detail = (result.error_text or result.text or f"exit {result.exit_code}")
            raise RemoteRunError(f"could not ship cov to {self.name}: "
                                 f"{detail.strip().splitlines()[-1][-300:]}", self.name)

    def _refuse_ssh_executors(self, config_text: str, python: str) -> None:
        import yaml

        from runner.self_ship import SSH_DISTRIBUTION, ssh_executors

        try:
            names = ssh_executors(yaml.safe_load(config_text) or {})
        except yaml.YAMLError:
            return  # the host's cov says what is wrong with it when it reads it
        if names:
            raise RemoteRunError(
                f"executor(s) {', '.join(names)} of {self.name}'s config open SSH connections "
                f"from there, which needs {SSH_DISTRIBUTION} (not shipped: it is compiled); "
                f"install it there (`{python} -m pip install --user {SSH_DISTRIBUTION}`)",
                self.name)

    def start_runner(self, home: str) -> None:
        """Start a runner for the host's ``home`` unless a live one serves it."""
        result = self.host.run(self.setup.command(["-c", _START, home], self.pythonpath),
                               retry=True)
        if not result.ok:
            raise RemoteRunError(f"cannot start a runner on {self.name}: "
                                 f"{(result.error_text or result.text)[-300:]}", self.name)


def ship(remote: RemoteCov, run_dir: Path, home: str) -> str:
    """Copy ``run_dir`` into the host's runs ``home``, whole or not at all; returns its path
    there. The recorded environment (``env.json``: this machine's interpreter and variables,
    which may hold secrets) stays behind: the host's runner runs tasks in its own."""
    q = shlex.quote
    dispatch_id = run_dir.name
    tmp = f"{TMP_PREFIX}ship-{dispatch_id}.{uuid.uuid4().hex[:8]}"
    target = f"{home.rstrip('/')}/{dispatch_id}"
    # tar exits non-zero on a truncated stream, so the mv runs only after a whole one.
    # A dropped earlier attempt of this run left its temp directory: it goes first.
    script = (f"set -e; umask 077; mkdir -p {q(home)}; cd {q(home)}; "
              f"rm -rf {q(TMP_PREFIX + 'ship-' + dispatch_id)}.*; mkdir {q(tmp)}; "
              f"tar -xf - -C {q(tmp)}; "
              f"if [ -e {q(dispatch_id)} ]; then rm -rf {q(tmp)}; "
              f"echo 'cov: run {dispatch_id} already there' >&2; exit 3; fi; "
              f"mv {q(tmp + '/' + dispatch_id)} {q(dispatch_id)}; rmdir {q(tmp)}")
    try:
        result = remote.host.run(f"/bin/sh -c {q(script)}", input=_tar(run_dir), timeout=None)
    except (paramiko.SSHException, EOFError, OSError) as exc:  # a drop while closing
        raise RemoteRunError(f"the connection to {remote.name} dropped while copying run "
                             f"{dispatch_id} ({type(exc).__name__}): nothing was left there; "
                             f"dispatch again", remote.name) from None
    except SSHError as exc:
        raise RemoteRunError(f"{exc}; run {dispatch_id} was not left there: dispatch again",
                             remote.name) from None
    if not result.ok:
        raise RemoteRunError(f"could not copy run {dispatch_id} to {remote.name}: "
                             f"{result.error_text[-300:] or f'exit {result.exit_code}'}",
                             remote.name)
    return target


def _tar(run_dir: Path) -> bytes:
    """The run directory as an uncompressed tar (runs are mostly pickles: little to gain)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(str(run_dir), arcname=run_dir.name,
                filter=lambda info: None if Path(info.name).name == ENV and
                info.name.count("/") == 1 else info)
    return buf.getvalue()


def dispatched_ids(stdout: str) -> Tuple[List[str], str]:
    """The dispatch ids of a ``cov dispatch --json`` output (its last JSON line), and what
    else was printed before it (the script's own prints)."""
    lines = stdout.splitlines()
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].startswith("{"):
            data = json.loads(lines[i])
            return [str(d) for d in data.get("dispatch_ids", [])], "\n".join(lines[:i])
    return [], stdout
