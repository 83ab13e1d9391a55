"""Code fingerprints: what changes a task's fingerprint (and so reruns it on a redispatch)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from covalent_cli.fingerprint import FP_VERSION, code_fingerprint

REPO = Path(__file__).resolve().parents[2]


def _fp_of(source: str, seed: str, name: str = "task") -> str:
    """The fingerprint of ``name`` defined by ``source``, computed in a fresh interpreter
    (another process, another hash seed: as a redispatch computes it)."""
    program = textwrap.dedent(f"""
        import sys
        from covalent_cli.fingerprint import code_fingerprint
        ns = {{}}
        exec(compile({textwrap.dedent(source)!r}, "/tmp/user_script.py", "exec"), ns)
        print(code_fingerprint(ns[{name!r}], {{}}))
    """)
    out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                         env={**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(REPO)},
                         check=True)
    return out.stdout.strip()


BASE = """
    SCALE = 2
    def helper(x):
        return x * SCALE
    def task(x, names=("a", "b")):
        # a comment
        return helper(x) if x in {"a", "b", "c"} else len(names)
"""


def test_equal_code_gives_equal_fingerprints_across_processes_and_hash_seeds():
    first = _fp_of(BASE, seed="1")
    assert first.startswith(FP_VERSION) and len(first) == len(FP_VERSION) + 16
    assert _fp_of(BASE, seed="2") == first  # the set constant's order follows the seed
    assert _fp_of(BASE.replace("# a comment", "# another comment\n"), seed="3") == first


def _fp_here(source: str, hooks: dict = None, executor: dict = None) -> str:
    namespace: dict = {}
    exec(compile(textwrap.dedent(source), "/tmp/user_script.py", "exec"), namespace)
    return code_fingerprint(namespace["task"], hooks or {}, executor)


def test_code_helpers_constants_defaults_hooks_and_executor_change_it():
    base = _fp_here(BASE)
    changed = {
        "body": BASE.replace('else len(names)', 'else len(names) + 1'),
        "helper": BASE.replace("return x * SCALE", "return x * SCALE + 1"),
        "global constant": BASE.replace("SCALE = 2", "SCALE = 3"),
        "default": BASE.replace('("a", "b")', '("a", "z")'),
    }
    for what, source in changed.items():
        assert _fp_here(source) != base, what
    assert _fp_here(BASE, hooks={"bash": ["echo hi"]}) != base
    assert _fp_here(BASE, executor={"type": "ssh", "hostname": "a"}) != \
        _fp_here(BASE, executor={"type": "ssh", "hostname": "b"})


def test_a_function_unpickled_from_a_run_keeps_its_fingerprint(tmp_path):
    """A redispatch of the stored code fingerprints the unpickled function: the same value as
    at dispatch, whatever the file on disk says now."""
    import cloudpickle

    namespace: dict = {}
    exec(compile(textwrap.dedent(BASE), str(tmp_path / "gone.py"), "exec"), namespace)
    task = namespace["task"]
    again = cloudpickle.loads(cloudpickle.dumps(task))
    assert code_fingerprint(again, {}) == code_fingerprint(task, {})
