"""``import covalent_cli`` is cheap: the public names load on first use (module ``__getattr__``).

Behaviour, not timing: a fresh interpreter shows which modules an import brought in.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
HEAVY = ["yaml", "cloudpickle", "filelock", "fabric", "paramiko", "bottle", "watchdog",
         "runner.rundir", "covalent_cli.dispatch"]


def _run(code: str) -> str:
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, check=True).stdout


def test_import_covalent_cli_loads_none_of_the_heavy_modules() -> None:
    out = _run("import sys, json, covalent_cli\n"
               f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))")
    assert json.loads(out) == []


def test_public_names_are_the_objects_even_after_their_submodules_are_imported() -> None:
    # covalent_cli.dispatch/lattice/electron/status are also submodule names: importing the
    # submodule must not replace the public function (or class) on the package.
    out = _run(
        "import covalent_cli as ct\n"
        "import covalent_cli.dispatch, covalent_cli.lattice, covalent_cli.electron, "
        "covalent_cli.status, covalent_cli.redispatch\n"
        "print(callable(ct.dispatch) and not hasattr(ct.dispatch, '__path__'), "
        "ct.dispatch.__module__, ct.lattice.__module__, ct.electron.__module__, "
        "ct.status.COMPLETED, ct.redispatch.__module__)")
    assert out.split() == ["True", "covalent_cli.dispatch", "covalent_cli.lattice",
                           "covalent_cli.electron", "COMPLETED", "covalent_cli.redispatch"]


def test_every_public_name_resolves_and_a_lattice_can_dispatch_first_thing() -> None:
    out = _run(
        "import covalent_cli as ct\n"
        "from covalent_cli import *\n"
        "missing = [n for n in ct.__all__ if not hasattr(ct, n)]\n"
        "@ct.lattice\n"
        "def f():\n    return 1\n"
        "print(missing, hasattr(f, 'dispatch'), hasattr(f, 'dispatch_sync'), "
        "ct.executor.LocalExecutor.__name__, sorted(set(ct.__all__) - set(dir(ct))))")
    assert out.split() == ["[]", "True", "True", "LocalExecutor", "[]"]


def test_an_unknown_name_is_an_attribute_error() -> None:
    out = _run("import covalent_cli as ct\n"
               "try:\n    ct.no_such_name\nexcept AttributeError as e:\n    print(e)")
    assert "has no attribute 'no_such_name'" in out


def test_a_function_using_the_package_pickles_by_reference() -> None:
    out = _run("import pickle, cloudpickle, covalent_cli as ct\n"
               "f = lambda: ct.status.COMPLETED\n"
               "g = pickle.loads(cloudpickle.dumps(f))\n"
               "print(g(), pickle.loads(pickle.dumps(ct)) is ct)")
    assert out.split() == ["COMPLETED", "True"]
