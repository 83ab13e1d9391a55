"""cov shipped by cov itself to a host that has none (``cov dispatch --on HOST`` and friends).

What travels: cov's own packages (``covalent_cli``, ``runner``, ``webui`` and the ``covalent``
import hook) as this machine has them installed (the imported packages' ``.py`` files and the
web UI's templates and static files, the installed layout, whatever the install's kind), and
the installed files of the dependencies the host's cov imports whatever it runs: click (its
CLI), PyYAML (config files), cloudpickle (tasks), watchdog (the runner's watch) and filelock
(run locks). They are pure Python, or work without their compiled part: PyYAML's C loader is
optional (it falls back to its Python one), watchdog's compiled part is macOS's FSEvents
observer. Compiled files are left out, so a copy made on macOS serves a Linux host. fabric
(paramiko: cryptography, bcrypt, PyNaCl) is compiled and not shipped: the host needs it only
when its own config runs tasks over SSH, and then it must be installed there.

Where: ``<remote_cache>/lib/cov-<version>-<hash>/`` (``remote_cache`` of the host's executor
entry, default ``~/.cache/cov``), the hash being that of every shipped file, so a changed cov
(or dependency) ships anew and an unchanged one is reused. The directory is the user's only
(0700) and appears whole or not at all: one tar stream over one SSH exec, unpacked by the
host's Python into a ``.tmp-`` directory beside it and renamed once the stream's last member,
a completion marker, has arrived.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, List, Optional, Tuple

from runner.fs import FILE_MODE
from runner.layout import SHIPPED_COV_COMPLETE, SHIPPED_COV_PREFIX, SSH_LIB, TMP_PREFIX
from runner.tar_stream import tar_files

SHIPPED_PACKAGES = ("covalent_cli", "runner", "webui")
SHIPPED_MODULES = ("_cov_import_hook",)
# The web UI's package data (pyproject's package-data): shipped whole.
_PACKAGE_DATA = {"webui": ("templates", "static")}
# Distribution -> the module the host's cov imports of it.
HOST_DEPENDENCIES = {"click": "click", "pyyaml": "yaml", "cloudpickle": "cloudpickle",
                     "watchdog": "watchdog", "filelock": "filelock"}
_COMPILED = (".so", ".pyd", ".dylib")
# Needed on the host only by executors that open SSH connections themselves.
SSH_DISTRIBUTION, SSH_MODULE = "fabric", "paramiko"


@dataclass(frozen=True)
class Bundle:
    """What is shipped: the directory's name there and its files (path there, bytes)."""

    name: str
    files: Tuple[Tuple[str, bytes], ...]

    def tar(self) -> bytes:
        """The files as one uncompressed tar, the completion marker last."""
        return tar_files((*self.files, (SHIPPED_COV_COMPLETE, self.name.encode())),
                         mode=FILE_MODE, mtime=0)


def _cov_version() -> str:
    try:
        return importlib.metadata.version("cov")
    except importlib.metadata.PackageNotFoundError:
        return "0"


def _package_files(package: str) -> List[Tuple[str, Path]]:
    spec = importlib.util.find_spec(package)  # found, not imported (the web UI is not cheap)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"cov's package {package} is not installed here")
    root = Path(list(spec.submodule_search_locations)[0]).resolve()
    data_dirs = _PACKAGE_DATA.get(package, ())
    found = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if not path.is_file() or "__pycache__" in rel.parts:
            continue
        if path.suffix == ".py" or path.name == "py.typed" or (
                len(rel.parts) > 1 and rel.parts[0] in data_dirs):
            found.append((f"{package}/{rel.as_posix()}", path))
    return found


def _distribution_files(distribution: str) -> List[Tuple[str, Path]]:
    """An installed distribution's files under its site directory (its metadata included,
    for ``importlib.metadata`` there), compiled ones and caches left out."""
    dist = importlib.metadata.distribution(distribution)
    found = []
    for file in dist.files or []:
        if file.parts[0] == ".." or "__pycache__" in file.parts or \
                str(file).endswith(_COMPILED) or file.name in ("RECORD", "INSTALLER"):
            continue  # scripts outside site-packages; caches are rebuilt there
        source = Path(str(dist.locate_file(file)))
        if source.is_file():
            found.append((file.as_posix(), source))
    return found


@lru_cache(maxsize=None)
def local_bundle() -> Bundle:
    """cov and its host dependencies as installed here, named by version and content."""
    version = _cov_version()
    sources: List[Tuple[str, Path]] = []
    for package in SHIPPED_PACKAGES:
        sources.extend(_package_files(package))
    for module in SHIPPED_MODULES:
        spec = importlib.util.find_spec(module)
        if spec is not None and spec.origin:
            sources.append((f"{module}.py", Path(spec.origin)))
    for distribution in HOST_DEPENDENCIES:
        sources.extend(_distribution_files(distribution))
    files: List[Tuple[str, bytes]] = [(rel, path.read_bytes()) for rel, path in sources]
    # cov's own metadata: ``cov --version`` there reads it.
    files.append((f"cov-{version}.dist-info/METADATA",
                  f"Metadata-Version: 2.1\nName: cov\nVersion: {version}\n".encode()))
    digest = hashlib.sha256()
    for rel, data in files:
        digest.update(b"%s\0%d\0" % (rel.encode(), len(data)) + data)
    return Bundle(f"{SHIPPED_COV_PREFIX}{version}-{digest.hexdigest()[:12]}", tuple(files))


def bundle_path(remote_cache: str, bundle: Optional[Bundle] = None) -> str:
    """Where the bundle goes there, as the host's Python resolves it (``~`` and relative
    paths from the user's home): see ``resolve_there``."""
    name = (bundle or local_bundle()).name
    return f"{remote_cache.rstrip('/')}/{SSH_LIB}/{name}"


# Run there by the host's Python, stdlib only: argv[1] the bundle's path, stdin its tar.
UNPACK = f"""
import os, shutil, sys, tarfile, tempfile, time
path = os.path.expanduser(sys.argv[1])
path = os.path.join(os.path.expanduser('~'), path) if not os.path.isabs(path) else path
lib, name = os.path.split(path)
os.makedirs(lib, mode=0o700, exist_ok=True)
if os.path.isdir(path):  # shipped meanwhile by another dispatch: as good
    sys.stdin.buffer.read()
    sys.exit(0)
prefix = {TMP_PREFIX!r} + name + '.'
for entry in os.listdir(lib):  # dropped ships' leftovers, once surely not in progress
    old = os.path.join(lib, entry)
    try:
        if entry.startswith(prefix) and time.time() - os.stat(old).st_mtime > 3600:
            shutil.rmtree(old, ignore_errors=True)
    except OSError:
        pass
os.umask(0o077)
tmp = tempfile.mkdtemp(prefix=prefix, dir=lib)
try:
    whole = False
    with tarfile.open(fileobj=sys.stdin.buffer, mode='r|') as tar:
        for member in tar:
            parts = member.name.split('/')
            if not member.isfile() or member.name.startswith('/') or '..' in parts:
                sys.exit('cov: unexpected member in the shipped copy: ' + member.name)
            if member.name == {SHIPPED_COV_COMPLETE!r}:
                whole = True
                continue
            target = os.path.join(tmp, *parts)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with tar.extractfile(member) as src, open(target, 'wb') as dst:
                shutil.copyfileobj(src, dst)
    if not whole:
        sys.exit('cov: the shipped copy arrived incomplete')
    try:
        os.rename(tmp, path)
    except OSError:
        if not os.path.isdir(path):
            raise
finally:
    shutil.rmtree(tmp, ignore_errors=True)
"""


def ssh_executors(config: Any) -> List[str]:
    """The names of a config's executors that open SSH connections themselves (type ssh, or
    Slurm reached through SSH): they need fabric where the config is used."""
    executors = config.get("executors") if isinstance(config, dict) else None
    if not isinstance(executors, dict):
        return []
    return [str(name) for name, entry in executors.items() if isinstance(entry, dict) and (
        entry.get("type", name) == "ssh" or
        (entry.get("type", name) == "slurm" and entry.get("address")))]


__all__ = ["Bundle", "HOST_DEPENDENCIES", "SHIPPED_PACKAGES", "SSH_DISTRIBUTION", "UNPACK",
           "bundle_path", "local_bundle", "ssh_executors"]
