"""The shape of the code: who may import whom, no import circles, one owner of the layout.

Reads the product packages with ``ast`` (nothing of the project is imported), counting
function-level imports as well as top-level ones.
"""
from __future__ import annotations

import ast
import importlib.util
import sys
import sysconfig
from pathlib import Path
from typing import Dict, List, Set

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("covalent_cli", "runner", "webui")
# Only this module may spell a run directory's (or a home's) file names.
LAYOUT_OWNERS = {"runner/layout.py": "every name of a runs home and of a run directory"}
# Whole names, and the beginnings of names (a string, or an f-string starting with one).
LAYOUT_NAMES = {
    # a runs home
    ".runners", "spawn.lock", "runner.log", "last-failure", ".unreadable", "runner-job",
    "runner-job.sh", ".result-cache",
    # a run directory
    "manifest.yaml", "tasks.pkl", "events.jsonl", "run.lock", "cancel.json", "results", "logs",
    "result.pkl", "report.html", "env.json", "sources.json", "secrets", "executors.json",
    "snapshot.json", "pulled-from.json",
    # the Slurm backend's and an SSH attempt's files ("slurm" and "ssh" are executor types too)
    "slurm/bundles", "slurm/jobs", "bundles", "jobs", "worker.py", "bundle.pkl", "outcome.pkl",
    "stdout.log", "stderr.log", "launch.log",
    # the Slurm pilot mode's ("running", "stop" ... are too common a word to hunt for)
    "slurm/pilot/queue", "slurm/pilot/blocks", "pilot_pool.py", "block.json", "started.json",
}
# Words of LAYOUT_NAMES that a module spells for another meaning: file -> those words.
NOT_LAYOUT = {"covalent_cli/cli/main.py": {"logs"}}  # the `cov logs` command's name
# (``<file>.tmp-<pid>-<random>``, an atomic write's temporary name, is runner/fs.py's, not these)
LAYOUT_PREFIXES = {".tmp-", ".rm-", ".capture-", ".submit-", "runner-job-"}
# Paths written into shell text by hand (docstrings aside).
LAYOUT_PATH_PARTS = ("results/", "logs/", "slurm/", "bundles/", ".runners/", "/worker.py",
                     "/bundle.pkl", "/launch.log", "/pid")
WEBUI_IMPORTERS = {"covalent_cli/cli/ui_cmd.py"}  # `cov ui` and `cov report`
WORKER_ALLOWED = {"cloudpickle"}
# What the worker imports of ours, and they import: shipped beside it (worker.SHIPPED_WITH).
WORKER_SHIPPED = {"runner.outcome", "runner.worker_common", "runner.worker_transfers",
                  "runner.worker_task"}
# The local pool's modules: not shipped (the pool runs where cov is), but run in an interpreter
# that may have only cloudpickle (a run dispatched from another virtualenv).
WORKER_POOL = {"runner.worker_pool", "runner.worker_capture", "runner.layout",
               "runner.worker_pack", "runner.outcome_pack", "runner.worker_replies"}
# Shipped beside the worker too (worker.SHIPPED_BESIDE): a Slurm pilot block's pool and the pool
# modules it uses on its node (its workers pack outcomes and logs, format 2.0).
SHIPPED_BESIDE = {"runner.layout", "runner.outcome_pack", "runner.worker_pack",
                  "runner.worker_capture", "runner.pilot_packs", "runner.pilot_pool"}
# Stdlib only: the codec and the layout are imported by everything.
STDLIB_ONLY = {"runner.outcome", "runner.layout", "runner.worker_common", "runner.outcome_pack"}


def _modules() -> Dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()
TREES = {name: ast.parse(path.read_text(), str(path)) for name, path in MODULES.items()}


def _imports(name: str) -> Set[str]:
    """Every module ``name`` imports (anywhere in it), resolved to a module where it is ours."""
    package = name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(TREES[name]):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            for alias in node.names:  # `from pkg import module` imports that module
                out.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
    return out


def _ours(target: str) -> str:
    """The longest module of ours that ``target`` names ("" if none)."""
    while target and target not in MODULES:
        target = target.rpartition(".")[0]
    return target


def _top(target: str) -> str:
    return target.split(".")[0]


def test_layers():
    bad = []
    for name, path in MODULES.items():
        rel = str(path.relative_to(ROOT))
        for target in _imports(name):
            if name.startswith("runner") and _top(target) in ("covalent_cli", "webui"):
                bad.append(f"{rel} imports {target} (the runner is below the SDK and the UI)")
            if name.startswith("webui") and _top(target) == "covalent_cli":
                bad.append(f"{rel} imports {target} (the UI reads runs through runner only)")
            if _top(target) == "webui" and not name.startswith("webui") and \
                    rel not in WEBUI_IMPORTERS:
                bad.append(f"{rel} imports {target} (only {', '.join(WEBUI_IMPORTERS)} may)")
    assert not bad, "\n".join(bad)


def _stdlib(name: str) -> bool:
    names = getattr(sys, "stdlib_module_names", None)  # Python >= 3.10
    if names is not None:
        return name in names
    spec = importlib.util.find_spec(name)
    origin = (spec.origin if spec else None) or ""
    return origin in ("built-in", "frozen") or (
        origin.startswith(sysconfig.get_paths()["stdlib"]) and "site-packages" not in origin)


def _bare(target: str) -> str:
    """``target`` as a shipped module's bare import means it ("" if it is not one)."""
    return f"runner.{target}" if f"runner.{target}" in \
        WORKER_SHIPPED | SHIPPED_BESIDE | {"runner.worker"} else ""


def test_worker_imports_only_the_stdlib_and_cloudpickle():
    shipped = WORKER_SHIPPED | SHIPPED_BESIDE | {"runner.worker"}
    for name in sorted(WORKER_SHIPPED | WORKER_POOL | SHIPPED_BESIDE | {"runner.worker"}):
        imports = _imports(name)
        ours = {_ours(t) for t in imports if _ours(t)}
        if name in shipped:
            bare = {_bare(t) for t in imports} - {""}
            allowed_ours = WORKER_SHIPPED if name in WORKER_SHIPPED | {"runner.worker"} \
                else shipped
            assert ours <= allowed_ours, f"{name} imports {sorted(ours - allowed_ours)}: " \
                "it is shipped, so what it imports of ours must be shipped too (SHIPPED_WITH)"
            assert ours == bare, f"{name} imports {sorted(ours ^ bare)} one way only: a " \
                "shipped module imports each of ours twice, from runner (in the package) and " \
                "bare (beside worker.py on a host without cov)"
        else:
            bare = set()
            assert ours <= WORKER_SHIPPED | WORKER_POOL, \
                f"{name} imports {sorted(ours - WORKER_SHIPPED - WORKER_POOL)}: the pool " \
                "imports only the worker's modules"
        allowed = set() if name in STDLIB_ONLY else WORKER_ALLOWED
        odd = sorted(t for t in imports if not _ours(t) and not _stdlib(_top(t))
                     and _top(t) not in allowed and f"runner.{t}" not in bare)
        assert not odd, f"{name} imports {odd}: it runs where only Python " \
            f"{'' if name in STDLIB_ONLY else 'and cloudpickle '}may be"


def test_the_worker_ships_what_it_imports():
    tree = TREES["runner.worker"]
    shipped = next(ast.literal_eval(node.value) for node in ast.walk(tree)
                   if isinstance(node, ast.Assign) and
                   any(isinstance(t, ast.Name) and t.id == "SHIPPED_WITH" for t in node.targets))
    assert {f"runner.{name}" for name in shipped} == WORKER_SHIPPED
    beside = next(ast.literal_eval(node.value) for node in ast.walk(tree)
                  if isinstance(node, ast.Assign) and
                  any(isinstance(t, ast.Name) and t.id == "SHIPPED_BESIDE" for t in node.targets))
    assert {f"runner.{name}" for name in beside} == SHIPPED_BESIDE
    for i, name in enumerate(beside):  # each after what it imports (a copier's order)
        later = {_ours(t) for t in _imports(f"runner.{name}")} & \
            {f"runner.{n}" for n in beside[i:]}
        assert not later, f"SHIPPED_BESIDE lists {name} before {sorted(later)}, which it imports"
    needed, todo = set(), ["runner.worker"]
    while todo:  # what worker.py imports of ours, and they import, and so on
        for target in {_ours(t) for t in _imports(todo.pop())} - needed - {""}:
            needed.add(target)
            todo.append(target)
    assert needed == WORKER_SHIPPED, f"the worker needs {sorted(needed)}"
    for i, name in enumerate(shipped):  # each after what it imports (a copier's order)
        later = {_ours(t) for t in _imports(f"runner.{name}")} & \
            {f"runner.{n}" for n in shipped[i:]}
        assert not later, f"SHIPPED_WITH lists {name} before {sorted(later)}, which it imports"


def test_no_import_circles():
    graph = {name: sorted({_ours(t) for t in _imports(name)} - {"", name}) for name in MODULES}
    circles: List[str] = []
    state: Dict[str, int] = {}  # 1: on the path, 2: done
    path: List[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        path.append(name)
        for target in graph[name]:
            if state.get(target) == 1:
                circles.append(" -> ".join(path[path.index(target):] + [target]))
            elif target not in state:
                visit(target)
        path.pop()
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)
    assert not circles, "import circles:\n" + "\n".join(circles)


def test_layout_names_are_spelled_only_by_their_owner():
    bad = []
    for name, path in MODULES.items():
        rel = str(path.relative_to(ROOT))
        if rel in LAYOUT_OWNERS:
            continue
        inner = {id(part) for node in ast.walk(TREES[name]) if isinstance(node, ast.JoinedStr)
                 for part in node.values}  # an f-string's pieces: only its start names a file
        docs = {id(node.value) for node in ast.walk(TREES[name])
                if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)}
        for node in ast.walk(TREES[name]):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and \
                    id(node) not in docs and any(p in node.value for p in LAYOUT_PATH_PARTS):
                bad.append(f"{rel}:{node.lineno} writes a path of the layout by hand: "
                           f"{node.value[:60]!r} (render it from {' or '.join(LAYOUT_OWNERS)})")
        for node in ast.walk(TREES[name]):
            text = None
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and \
                    id(node) not in inner:
                text = node.value
            elif isinstance(node, ast.JoinedStr) and node.values and \
                    isinstance(node.values[0], ast.Constant):
                text = str(node.values[0].value)  # an f-string: what it starts with
            if text is not None and text not in NOT_LAYOUT.get(rel, ()) and (
                    text in LAYOUT_NAMES or any(text.startswith(p) for p in LAYOUT_PREFIXES)):
                bad.append(f"{rel}:{node.lineno} spells {text!r} (ask "
                           f"{' or '.join(LAYOUT_OWNERS)})")
    assert not bad, "\n".join(bad)
