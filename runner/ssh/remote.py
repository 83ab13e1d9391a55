"""What a remote host needs to run cov tasks: a Python, ``worker.py``, and cloudpickle.

The remote needs no cov: ``prepare`` copies ``runner/worker.py`` (stdlib + cloudpickle only) and
the stdlib-only modules it imports (``worker.shipped_files``) into
``<remote_cache>/lib/worker-<hash>/``, the hash being that of them all. cloudpickle pickles code by value, so a task can
only be loaded by the same Python minor version and the same cloudpickle version as pickled
it. The first is checked (a different minor version fails before any task is sent, unless
``ignore_versions``). For the second, cov ships its own cloudpickle (pure Python, one zip file
on the remote ``PYTHONPATH``) when the host's is missing or differs, unless
``ship_cloudpickle=False``.

How Python is started (``PythonSetup``): ``python_path`` (default ``python3``; may hold
arguments), after the ``prelude`` lines (e.g. ``module load python/3.11``) and a ``conda_env``
activation. Without prelude or conda env the line runs under ``/bin/sh``; with them under
``bash -l`` (a login shell, so that ``module`` and ``conda`` are defined, as on a terminal).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shlex
import sys
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Dict, List, Optional, Sequence, Tuple

from runner.layout import SSH_LIB
from runner.ssh.connection import SSHError, SSHHost
from runner.ssh.task_server import SERVER_FILE

DEFAULT_PYTHON = "python3"
DEFAULT_CACHE = ".cache/cov"

_PROBE = (
    "import json, os, socket, sys\n"
    "try:\n"
    "    import cloudpickle; cp = cloudpickle.__version__\n"
    "except Exception:\n"
    "    cp = None\n"
    "print(json.dumps({'python': list(sys.version_info[:3]), 'executable': sys.executable,"
    " 'cloudpickle': cp, 'home': os.path.expanduser('~'), 'host': socket.gethostname()}))\n"
)


class VersionMismatch(SSHError):
    """Tasks pickled here cannot be loaded by the remote Python."""


@dataclass(frozen=True)
class PythonSetup:
    """How to start Python on the host."""

    python: str = DEFAULT_PYTHON
    prelude: Tuple[str, ...] = ()
    conda_env: str = ""

    @classmethod
    def from_executor(cls, config: Dict[str, Any]) -> "PythonSetup":
        prelude = config.get("prelude") or ()
        if isinstance(prelude, str):
            prelude = tuple(line for line in prelude.splitlines() if line.strip())
        return cls(python=str(config.get("python_path") or DEFAULT_PYTHON),
                   prelude=tuple(str(p) for p in prelude),
                   conda_env=str(config.get("conda_env") or ""))

    def command(self, args: Sequence[str], pythonpath: str = "", unbuffered: bool = False) -> str:
        """A shell line running ``python ARGS`` after the prelude (an argv: usable after
        ``setsid`` or ``exec``)."""
        q = shlex.quote
        lines = list(self.prelude)
        if self.conda_env:  # every value single-quoted: never inside double quotes
            message = q(f"cov: cannot activate conda env {self.conda_env}")
            lines.append(f'eval "$(conda shell.bash hook 2>/dev/null)" && conda activate '
                         f'{q(self.conda_env)} || {{ echo {message} >&2; exit 97; }}')
        if pythonpath:
            lines.append(f'PYTHONPATH={q(pythonpath)}${{PYTHONPATH:+:$PYTHONPATH}}; '
                         f'export PYTHONPATH')
        if unbuffered:  # a task's prints and its children's output stay in order
            lines.append("PYTHONUNBUFFERED=1; export PYTHONUNBUFFERED")
        python = " ".join(q(w) for w in shlex.split(self.python))
        lines.append(f"exec {python} " + " ".join(q(a) for a in args))
        shell = "bash -l -c" if (self.prelude or self.conda_env) else "/bin/sh -c"
        return f"{shell} {q(chr(10).join(lines))}"


@dataclass
class VersionReport:
    """The remote Python as ``probe`` found it."""

    python: Tuple[int, int, int]
    executable: str
    cloudpickle: Optional[str]
    home: str
    hostname: str

    @property
    def python_text(self) -> str:
        return ".".join(map(str, self.python))


@dataclass
class RemoteEnv:
    """A prepared host: paths there, and the line that runs ``worker.py``."""

    host: SSHHost
    setup: PythonSetup
    report: VersionReport
    cache: str  # absolute
    worker: str  # absolute path of worker.py there
    pythonpath: str = ""  # the shipped cloudpickle zip, if used

    def abspath(self, path: str) -> str:
        """A remote path made absolute (relative to the remote home; ``~/`` expanded)."""
        if path.startswith("~/") or path == "~":
            path = path[2:]
        return os.path.normpath(path if path.startswith("/") else
                                os.path.join(self.report.home, path))

    def worker_command(self, bundle: str, outcome: str, stdout: str, stderr: str) -> str:
        """The shell line (an argv) that runs one task bundle."""
        return self.setup.command([self.worker, bundle, outcome, stdout, stderr], self.pythonpath,
                                  unbuffered=True)

    @property
    def server(self) -> str:
        """The persistent worker's file there, beside ``worker.py``."""
        return f"{os.path.dirname(self.worker)}/{SERVER_FILE}"

    def server_command(self, heartbeat: float, tick: float) -> str:
        """The shell line that runs the persistent worker (``runner.ssh.worker_server``)."""
        return self.setup.command([self.server, f"{heartbeat:g}", f"{tick:g}"], self.pythonpath,
                                  unbuffered=True)


def _local_python() -> Tuple[int, int, int]:
    return tuple(sys.version_info[:3])  # type: ignore[return-value]


def _local_cloudpickle() -> str:
    import cloudpickle

    return str(cloudpickle.__version__)


def probe(host: SSHHost, setup: PythonSetup, timeout: float = 60.0, pre: str = "") -> Tuple[
        VersionReport, str]:
    """Run Python on the host and report its versions (writes nothing unless ``pre``, a shell
    line run first, does). Returns the report and ``pre``'s output."""
    command = setup.command(["-c", _PROBE])
    result = host.run(f"{pre} {command}" if pre else command, timeout=timeout, retry=True)
    lines = result.stdout.decode("utf-8", "replace").splitlines()
    found = [line for line in lines if line.startswith("{")]
    if result.exit_code != 0 or not found:
        detail = (result.error_text or result.text)[-400:]
        raise SSHError(f"cannot run Python on {host.label} with `{setup.python}` (exit "
                       f"{result.exit_code}): {detail or 'no output'}; set the executor's "
                       f"python_path (or prelude, e.g. 'module load python')", host.label)
    data = json.loads(found[-1])
    report = VersionReport(python=tuple(data["python"]), executable=data.get("executable", ""),
                           cloudpickle=data.get("cloudpickle"), home=data.get("home", ""),
                           hostname=data.get("host", ""))
    return report, "\n".join(line for line in lines if not line.startswith("{"))


def compare_versions(report: VersionReport, ship_cloudpickle: bool = True
                     ) -> List[Tuple[str, str, str]]:
    """Rows ``(what, level, message)``, level ``ok``, ``warn`` or ``error``."""
    rows = []
    here = _local_python()
    there = report.python
    local_text = ".".join(map(str, here))
    if tuple(there[:2]) != tuple(here[:2]):
        rows.append(("python", "error",
                     f"{report.python_text} there, {local_text} here: tasks pickled by Python "
                     f"{here[0]}.{here[1]} cannot be loaded by {there[0]}.{there[1]} (cloudpickle "
                     f"pickles code by value). Set python_path to a Python {here[0]}.{here[1]} on "
                     f"the host (or load one in prelude, e.g. 'module load python/{here[0]}."
                     f"{here[1]}'), or run cov under Python {there[0]}.{there[1]}"))
    else:
        rows.append(("python", "ok", f"{report.python_text} there ({report.executable}), "
                                     f"{local_text} here"))
    local_cp = _local_cloudpickle()
    if report.cloudpickle == local_cp:
        rows.append(("cloudpickle", "ok", f"{local_cp} there and here"))
    elif ship_cloudpickle:
        there_cp = report.cloudpickle or "not installed"
        rows.append(("cloudpickle", "ok", f"{there_cp} there, {local_cp} here: cov ships its "
                                          f"own copy ({local_cp}) to the host's cache"))
    elif report.cloudpickle is None:
        rows.append(("cloudpickle", "error",
                     f"not installed there ({local_cp} here): install it with `{report.executable}"
                     f" -m pip install --user cloudpickle=={local_cp}`, or allow "
                     f"ship_cloudpickle"))
    else:
        rows.append(("cloudpickle", "error",
                     f"{report.cloudpickle} there, {local_cp} here: pickles may not load across "
                     f"versions; install cloudpickle=={local_cp} there, or allow "
                     f"ship_cloudpickle"))
    return rows


@lru_cache(maxsize=None)
def _worker_files() -> Tuple[Dict[str, bytes], str]:
    """The worker's files (``worker.shipped_files``, with the persistent worker's server
    before ``worker.py``) and the directory name they go to, one per version of them."""
    from runner import worker

    shipped = worker.shipped_files()
    names = list(shipped)  # worker.py stays last: its presence says the others are there
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), SERVER_FILE), "rb") as f:
        server = f.read()
    files = {name: shipped[name] for name in names[:-1]}
    files[SERVER_FILE] = server
    files[names[-1]] = shipped[names[-1]]
    digest = hashlib.sha256()
    for name, data in files.items():
        digest.update(b"%s\0%d\0" % (name.encode(), len(data)) + data)
    return files, f"worker-{digest.hexdigest()[:12]}"


@lru_cache(maxsize=None)
def _cloudpickle_zip() -> Tuple[bytes, str]:
    """The local cloudpickle package as a zip (zipimport puts it on sys.path as is), with
    unchecked-hash .pyc files: zipimport cannot cache bytecode, and compiling cloudpickle costs
    ~40 ms per task. A Python of another minor version ignores them and compiles the source."""
    import importlib.util
    import marshal

    import cloudpickle

    root = os.path.dirname(cloudpickle.__file__)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        for name in sorted(os.listdir(root)):
            if not name.endswith(".py"):
                continue
            with open(os.path.join(root, name), "rb") as f:
                source = f.read()
            code = compile(source, f"cloudpickle/{name}", "exec", dont_inherit=True)
            pyc = bytearray(importlib.util.MAGIC_NUMBER)
            pyc += (1).to_bytes(4, "little")  # flags: hash-based, unchecked
            pyc += importlib.util.source_hash(source)
            pyc += marshal.dumps(code)
            for arcname, data in ((name, source), (name[:-3] + ".pyc", bytes(pyc))):
                info = zipfile.ZipInfo(f"cloudpickle/{arcname}", date_time=(2000, 1, 1, 0, 0, 0))
                z.writestr(info, data)
    data = buffer.getvalue()
    digest = hashlib.sha256(data).hexdigest()[:8]
    return data, f"cloudpickle-{cloudpickle.__version__}-{digest}.zip"


def prepare(host: SSHHost, setup: PythonSetup, cache: str = DEFAULT_CACHE,
            ship_cloudpickle: bool = True, ignore_versions: bool = False) -> RemoteEnv:
    """Make the host ready to run bundles: check versions, upload what is missing.
    Costs one round trip when the files are already there. Raises ``VersionMismatch``."""
    q = shlex.quote
    worker_files, worker_dir = _worker_files()
    zip_data, zip_name = _cloudpickle_zip()
    lib = f"{cache.rstrip('/')}/{SSH_LIB}"
    lib_shell = f'"$HOME"/{q(lib[2:])}' if lib.startswith("~/") else q(lib)
    worker_name = f"{worker_dir}/{list(worker_files)[-1]}"  # worker.py: written last
    pre = (f"mkdir -p {lib_shell} && cd {lib_shell} && {{ test -f {q(worker_name)} && "
           f"echo have-worker; test -f {q(zip_name)} && echo have-zip; }};")
    report, said = probe(host, setup, pre=pre)
    env = RemoteEnv(host=host, setup=setup, report=report, cache="", worker="")
    env.cache = env.abspath(cache)
    lib_abs = f"{env.cache}/{SSH_LIB}"
    env.worker = f"{lib_abs}/{worker_name}"
    rows = compare_versions(report, ship_cloudpickle)
    errors = [message for what, level, message in rows if level == "error"]
    if errors and not ignore_versions:
        raise VersionMismatch(f"{host.label}: " + "; ".join(errors), host.label)
    if "have-worker" not in said:
        for name, data in worker_files.items():  # in order: worker.py, checked for, last
            host.put_bytes(data, f"{lib_abs}/{worker_dir}/{name}")
    if ship_cloudpickle and report.cloudpickle != _local_cloudpickle():
        env.pythonpath = f"{lib_abs}/{zip_name}"
        if "have-zip" not in said:
            host.put_bytes(zip_data, env.pythonpath)
    return env


__all__ = ["DEFAULT_CACHE", "DEFAULT_PYTHON", "PythonSetup", "RemoteEnv", "VersionMismatch",
           "VersionReport", "compare_versions", "prepare", "probe"]
