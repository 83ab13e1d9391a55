"""Runs on another machine, driven from this one: ``cov dispatch --on HOST``, ``cov ... --on
HOST``, ``cov pull HOST RUN``.

A run is built here (no runner starts here), then its directory travels to the host's runs
home in one SSH exec as a tar stream, unpacked under a ``.tmp-`` name (which no reader lists)
and moved into place by one ``mv`` only once the stream ended whole: a connection dropped
mid-way leaves the remote run whole or absent. A runner is then started (or reused) there by
the host's own cov, with the host's configured home and executors. Every step reuses the
pooled connection of ``runner.ssh`` (ssh_config aliases, ProxyJump, ProxyCommand).

``cov pull`` copies a remote run directory back over SFTP, skipping files whose size and
mtime already match; every file is written under a temporary name and renamed, and a run
pulled for the first time is assembled under a ``.tmp-`` name and renamed into the home.
"""
from __future__ import annotations

import io
import json
import os
import shlex
import stat
import sys
import tarfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple

import paramiko

from runner.fs import DIR_MODE
from runner.layout import ENV, TMP_PREFIX
from runner.ssh import PythonSetup, SSHError, SSHHost

# One remote Python round trip: its version, whether cov imports, and the runs home there.
_PROBE = (
    "import json, sys\n"
    "out = {'python': list(sys.version_info[:3]), 'executable': sys.executable}\n"
    "try:\n"
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


@dataclass(frozen=True)
class RemoteCov:
    """cov on a host: the host's pooled connection and how to start its Python."""

    host: SSHHost
    setup: PythonSetup
    name: str  # as the user wrote it, for messages

    def cov_line(self, args: Sequence[str]) -> str:
        """The shell line running the host's ``cov ARGS`` (every word quoted)."""
        return self.setup.command(["-m", CLI_MODULE, *args])

    def probe(self) -> str:
        """The host's runs home, after checking that cov imports there under a Python of this
        minor version; else RemoteRunError naming what to do."""
        return self.setup_there().home

    def setup_there(self) -> HostSetup:
        """``probe``, with the host's config file: a run for the host is built with it, so that
        executor names mean what they mean there."""
        result = self.host.run(self.setup.command(["-c", _PROBE]), retry=True)
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
        if "missing" in data:
            raise RemoteRunError(
                f"cov is not installed for {data.get('executable')} on {self.name} "
                f"({data['missing']}); install it there (`{data.get('executable')} -m pip "
                f"install --user cov`) or set python_path of executor {self.name} to a Python "
                f"that has it", self.name)
        if "config_error" in data:
            raise RemoteRunError(f"cov on {self.name}: {data['config_error']}", self.name)
        return HostSetup(str(data["home"]), str(data.get("config") or ""))

    def start_runner(self, home: str) -> None:
        """Start a runner for the host's ``home`` unless a live one serves it."""
        result = self.host.run(self.setup.command(["-c", _START, home]), retry=True)
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


# -- pull -----------------------------------------------------------------------------------------
def pull(remote: RemoteCov, remote_home: str, dispatch_id: str, local_home: Path
         ) -> Tuple[Path, int]:
    """Copy the host's run into ``local_home`` (only files that changed); returns the local
    run directory and how many files were copied."""
    source = f"{remote_home.rstrip('/')}/{dispatch_id}"
    final = local_home / dispatch_id
    local_home.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    first = not final.exists()
    dest = local_home / f"{TMP_PREFIX}pull-{dispatch_id}.{uuid.uuid4().hex[:8]}" if first \
        else final
    copied = 0
    try:
        with remote.host.sftp() as sftp:
            try:
                sftp.stat(source)
            except FileNotFoundError:
                raise RemoteRunError(f"no run {dispatch_id} in {remote_home} on {remote.name}; "
                                     f"list them: cov runs --on {remote.name}",
                                     remote.name) from None
            files = sorted(_walk(sftp, source, ""), key=_events_last)
            for rel, attr in files:
                if _copy_if_changed(sftp, f"{source}/{rel}", dest / rel, attr):
                    copied += 1
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise RemoteRunError(f"pulling {dispatch_id} from {remote.name} failed: {exc}; run "
                             f"cov pull again (it copies only what is missing)",
                             remote.name) from None
    if first:
        dest.mkdir(exist_ok=True)
        try:
            os.rename(dest, final)
        except OSError:  # another pull got there first: its copy is as good
            _remove_tree(dest)
    return final, copied


def _events_last(item: Tuple[str, paramiko.SFTPAttributes]) -> Tuple[int, str]:
    # The journal says what finished; copying it last means a reader never sees a task
    # reported done whose result file has not arrived yet.
    return (1 if item[0].startswith("events") else 0, item[0])


def _walk(sftp: paramiko.SFTPClient, root: str, rel: str
          ) -> Iterator[Tuple[str, paramiko.SFTPAttributes]]:
    for attr in sftp.listdir_attr(f"{root}/{rel}" if rel else root):
        name = f"{rel}/{attr.filename}" if rel else attr.filename
        mode = attr.st_mode or 0
        if stat.S_ISDIR(mode):
            yield from _walk(sftp, root, name)
        elif stat.S_ISREG(mode) and ".tmp" not in attr.filename:
            yield name, attr


def _copy_if_changed(sftp: paramiko.SFTPClient, remote: str, local: Path,
                     attr: paramiko.SFTPAttributes) -> bool:
    try:
        have = local.stat()
        if have.st_size == attr.st_size and int(have.st_mtime) == int(attr.st_mtime or 0):
            return False
    except FileNotFoundError:
        pass
    local.parent.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    tmp = local.with_name(f"{local.name}.tmp-pull-{os.getpid()}")
    try:
        sftp.get(remote, str(tmp))
        os.chmod(tmp, stat.S_IMODE(attr.st_mode or 0o600))
        os.utime(tmp, (attr.st_atime or 0, attr.st_mtime or 0))
        os.replace(tmp, local)
    finally:
        if tmp.exists():
            tmp.unlink()
    return True


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def dispatched_ids(stdout: str) -> Tuple[List[str], str]:
    """The dispatch ids of a ``cov dispatch --json`` output (its last JSON line), and what
    else was printed before it (the script's own prints)."""
    lines = stdout.splitlines()
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].startswith("{"):
            data = json.loads(lines[i])
            return [str(d) for d in data.get("dispatch_ids", [])], "\n".join(lines[:i])
    return [], stdout
