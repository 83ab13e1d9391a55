"""``import covalent`` finds cov's SDK (``covalent_cli``) where no real Covalent is installed.

Loaded at every interpreter start by ``cov-covalent.pth`` (installed next to it in
site-packages), so it is small, standard library only, and imports nothing of cov until a
program actually imports ``covalent``.

Rules:

* ``covalent`` itself is ours only when no other finder (the normal path finder, an editable
  install's finder, ...) finds a real ``covalent``: a real Covalent anywhere on ``sys.path``
  always wins, whatever the order of ``.pth`` files.
* ``covalent.X.Y`` is ``covalent_cli.X.Y`` (the same module object, not a copy), but only
  while ``covalent`` is ours. The finder sits at the front of ``sys.meta_path`` for this: the
  path finder would otherwise load ``covalent_cli/X.py`` a second time under the name
  ``covalent.X`` (through ``covalent.__path__``), giving two copies of every class.
* A few of Covalent's own module paths that are not cov's layout (``covalent.executor.base``)
  are mapped in ``ALIASES``.

``cov dispatch`` (``install(force=True)``) maps ``covalent`` to cov even where a real Covalent
is installed: there the user asked for cov.
"""
from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys

MYPY = False
if MYPY:  # typing costs milliseconds at every interpreter start: only for the type checker
    from types import ModuleType
    from typing import Any, Optional, Sequence
    from importlib.abc import Loader as _LoaderBase
else:
    _LoaderBase = object  # importlib.abc is slower to import; loaders are duck-typed

NAME = "covalent"
TARGET = "covalent_cli"
# Covalent's module paths whose module in cov has another name.
ALIASES = {
    "covalent.executor.base": "covalent_cli.executor",
    "covalent.executor.executor_plugins": "covalent_cli.executor",
    "covalent.executor.executor_plugins.local": "covalent_cli.executor",
    "covalent.executor.executor_plugins.dask": "covalent_cli.executor",
}
# Names in ALIASES that have children there (must look like packages).
_PARENTS = {name.rpartition(".")[0] for name in ALIASES}


class _AliasLoader(_LoaderBase):
    """Loads a name as an already importable module of cov (the same object)."""

    def __init__(self, target: str, package: bool) -> None:
        self.target = target
        self.package = package
        self.own_spec = None  # type: Any

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(self.target)
        if self.package and not hasattr(module, "__path__"):
            module.__path__ = []  # children come from ALIASES
        self.own_spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run (the module was imported under its own name); but the import system
        has just set ``__spec__`` to the alias's: give the module its own back."""
        module.__spec__ = self.own_spec


class CovalentFinder:
    """The meta path finder described in the module docstring."""

    def __init__(self, force: bool = False) -> None:
        self.force = force
        self._looking = False

    def find_spec(self, fullname: str, path: Optional[Sequence[str]] = None,
                  target: Any = None) -> Optional[importlib.machinery.ModuleSpec]:
        if fullname != NAME and not fullname.startswith(NAME + "."):
            return None  # the cost for every other import: one comparison
        if self._looking:
            return None
        if fullname == NAME:
            if not self.force and self._other_finder_has_it():
                return None
            return importlib.machinery.ModuleSpec(NAME, _AliasLoader(TARGET, True),
                                                  is_package=True)
        parent = sys.modules.get(NAME)
        if getattr(parent, "__name__", None) != TARGET:
            return None  # a real Covalent: its own submodules
        wanted = ALIASES.get(fullname, TARGET + fullname[len(NAME):])
        try:
            found = importlib.util.find_spec(wanted)
        except (ImportError, ValueError):
            found = None
        if found is None:
            return None  # ModuleNotFoundError: No module named 'covalent.X'
        package = found.submodule_search_locations is not None or fullname in _PARENTS
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(wanted, package),
                                              is_package=package)

    def _other_finder_has_it(self) -> bool:
        self._looking = True
        try:
            for finder in sys.meta_path:
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                try:
                    spec = finder.find_spec(NAME, None)
                except Exception:  # noqa: BLE001 - a broken finder does not hide ours
                    continue
                # A bare directory named covalent (a namespace package, no origin) is not a
                # Covalent install: a data folder in the current directory must not hide cov.
                if spec is not None and spec.origin not in (None, "namespace"):
                    return True
            return False
        finally:
            self._looking = False


def installed() -> Optional[CovalentFinder]:
    """The finder in ``sys.meta_path``, if any."""
    for finder in sys.meta_path:
        if isinstance(finder, CovalentFinder) or type(finder).__name__ == "CovalentFinder":
            return finder  # type: ignore[return-value]
    return None


def install(force: bool = False) -> CovalentFinder:
    """Put the finder at the front of ``sys.meta_path`` (once); ``force``: see the module doc."""
    finder = installed()
    if finder is None:
        finder = CovalentFinder(force)
        sys.meta_path.insert(0, finder)
    if force:
        finder.force = True
    return finder


def describe() -> str:
    """What ``import covalent`` gives in this interpreter, for ``cov config``."""
    module = sys.modules.get(NAME)
    if module is not None and getattr(module, "__name__", None) == TARGET:
        return "cov's SDK (covalent_cli) via cov's import hook"
    if module is not None:
        return f"real Covalent {getattr(module, '__version__', '?')} at " \
               f"{getattr(module, '__file__', '?')}"
    spec = importlib.util.find_spec(NAME)  # finds, does not import
    if spec is not None and isinstance(spec.loader, _AliasLoader):
        return "cov's SDK (covalent_cli) via cov's import hook"
    if spec is not None:
        where = spec.origin or next(iter(spec.submodule_search_locations or []), "?")
        return f"real Covalent at {where} (cov's SDK: `import covalent_cli`, or `cov dispatch`)"
    return ("only inside `cov dispatch`: cov-covalent.pth is not installed in this environment "
            "(reinstall cov with pip)")
