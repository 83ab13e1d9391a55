"""``dispatch``: a lattice and its inputs become a run directory, and a runner is made sure of.

The graph is built client-side (the lattice body runs once), every function and value is pickled
now (an unpicklable one fails here, naming the task, before anything runs), and the run
directory is created whole under a temporary name. Then ``ensure_running`` starts a runner in the
background if no live one serves the home.
"""
from __future__ import annotations

import getpass
import hashlib
import io
import json
import os
import pickle
import platform
import socket
import sys
import types
import uuid
from collections import ChainMap
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import cloudpickle

from covalent_cli import executor as executor_mod
from covalent_cli.deps import hooks_to_plain
from covalent_cli.errors import DispatchError, UserError
from covalent_cli.graph import Graph, GraphNode
from covalent_cli.lattice import DEFAULT_EXECUTOR, Lattice
from runner import backends
from runner.config import ConfigError, check_config, executor_problem, get_value, runs_home
from runner.manifest import LOCAL_ONLY_KINDS, PARAMETER, Edge, Manifest, NodeSpec
from runner.redact import has_mask, split_secrets, unmask
from runner.rundir import RunDir
from runner.state import Event

# Dispatch ids made by this process, newest last (``cov dispatch`` reports a script's own).
DISPATCHED: List[str] = []
_FAST_TYPES = (int, float, str, bytes, bool, type(None))


def dispatch(lattice: Lattice, dispatcher_addr: Optional[str] = None, *,
             disable_run: bool = False) -> Callable[..., str]:
    """``dispatch(lattice)(*args, **kwargs)`` creates a run and returns its id at once."""
    if not isinstance(lattice, Lattice):
        raise TypeError(f"dispatch() takes a lattice (a function decorated with @ct.lattice), "
                        f"not {type(lattice).__name__}")

    def submit(*args: Any, **kwargs: Any) -> str:
        run = create_run(lattice, args, kwargs)
        if not disable_run:
            start_runner(run.path.parent)
        return run.dispatch_id

    return submit


def dispatch_sync(lattice: Lattice, dispatcher_addr: Optional[str] = None) -> Callable[..., Any]:
    """``dispatch_sync(lattice)(*args, **kwargs)`` dispatches and waits; returns the Result."""
    from covalent_cli.result import get_result

    def submit(*args: Any, **kwargs: Any) -> Any:
        return get_result(dispatch(lattice)(*args, **kwargs), wait=True)

    return submit


def start_runner(home: Path) -> None:
    from runner.daemon import ensure_running

    ensure_running(home)


def create_run(lattice: Lattice, args: Sequence[Any], kwargs: Dict[str, Any], *,
               home: Optional[Path] = None, parent: Optional[Dict[str, Any]] = None,
               root_dispatch_id: Optional[str] = None,
               replacements: Optional[Dict[str, Any]] = None,
               reuse_from: Optional[RunDir] = None,
               dispatch_id: Optional[str] = None,
               secrets_from: Optional[RunDir] = None) -> RunDir:
    """Build the graph, pickle everything, and create the run directory (``dispatch_id``: a
    given id, for a run created again by a re-run task; if it exists it is returned as is;
    ``secrets_from``: a redispatched run, whose executors' secrets are taken over)."""
    check_config()  # a config mistake is one line now, not a runner dying later
    # Exceptions of the lattice body propagate unchanged, as from Covalent's dispatch.
    graph = lattice.build_graph(*args, replacements=replacements, **kwargs)
    dispatch_id = dispatch_id or str(uuid.uuid4())
    _pickle_local_modules_by_value(_source_file(lattice))
    packer = _Packer()
    executors = _ExecutorTable(secrets_from)
    nodes = [_node_spec(node, graph, lattice, packer, executors) for node in graph.nodes]
    packer.add_named("workflow", lattice, "the lattice function")
    packer.add_named("inputs", {"args": list(args), "kwargs": dict(kwargs)}, "the lattice inputs")
    home = home or _home()
    manifest = Manifest(
        dispatch_id=dispatch_id,
        root_dispatch_id=root_dispatch_id or dispatch_id,
        parent=parent,
        lattice_name=lattice.__name__,
        doc=(lattice.__doc__ or "").strip(),
        source_file=_source_file(lattice),
        nodes=nodes,
        output_node=graph.output_node,
        executors=executors.table,
        cwd=os.getcwd(),
        sys_path=_user_sys_path(lattice),
        created=datetime.now(timezone.utc).isoformat(),
        host=socket.gethostname(),
        user=_user(),
        versions=_versions(),
        inputs={"args": [_short_repr(a) for a in args],
                "kwargs": {k: _short_repr(v) for k, v in kwargs.items()}},
        blobs=packer.named,
    )
    events: List[Event] = []
    results: List[Tuple[int, Path]] = []
    if reuse_from is not None:
        from covalent_cli.redispatch import reusable_results

        events, results = reusable_results(reuse_from, manifest, packer.data())
    try:
        run = RunDir.create(home, manifest, packer.data(), events=events, results=results,
                            secret_values=executors.secrets, env=_environment())
    except PermissionError:
        raise UserError(f"cannot write runs home {home}: permission denied",
                        "set COV_HOME to a writable directory") from None
    except OSError as exc:
        raise UserError(f"cannot create the run in {home}: {exc.strerror or exc}",
                        "free space or set COV_HOME elsewhere") from None
    DISPATCHED.append(dispatch_id)
    return run


def _environment() -> bytes:
    """What the run's tasks run with: this interpreter and these environment variables (after a
    ``module load``, in another virtualenv...), not the ones the runner happened to start with.
    The file is the user's alone (0600) and never shown: it may hold secrets."""
    return json.dumps({"python": sys.executable, "environ": dict(os.environ)}).encode()


def _home() -> Path:
    try:
        return runs_home()
    except ConfigError as exc:
        raise UserError(str(exc)) from None


class _Packer:
    """Concatenated pickles (``tasks.pkl``); each function is pickled once per run."""

    def __init__(self) -> None:
        self.chunks: List[bytes] = []
        self.size = 0
        self.by_owner: Dict[int, Tuple[int, int]] = {}
        self.named: Dict[str, Tuple[int, int]] = {}
        self._keep: List[Any] = []  # owners stay alive so their ids stay unique
        self._fingerprints: Dict[Any, str] = {}

    def add(self, data: bytes) -> Tuple[int, int]:
        blob = (self.size, len(data))
        self.chunks.append(data)
        self.size += len(data)
        return blob

    def add_value(self, value: Any, what: str) -> Tuple[int, int]:
        return self.add(_dumps(value, what))

    def add_named(self, name: str, value: Any, what: str) -> None:
        self.named[name] = self.add_value(value, what)

    def add_function(self, owner: Any, make: Callable[[], Dict[str, Any]], what: str) -> Tuple[int, int]:
        key = id(owner)
        blob = self.by_owner.get(key)
        if blob is None:
            blob = self.by_owner[key] = self.add_value(make(), what)
            self._keep.append(owner)
        return blob

    def fingerprint(self, owner: Any, function: Any, hooks: Dict[str, Any]) -> str:
        key = ("fp", id(owner))
        found = self._fingerprints.get(key)
        if found is None:
            found = self._fingerprints[key] = code_fingerprint(function, hooks)
        return found

    def data(self) -> bytes:
        if len(self.chunks) > 1:
            self.chunks = [b"".join(self.chunks)]
        return self.chunks[0] if self.chunks else b""


def _code_reduce_keeping_filename(code: types.CodeType) -> Any:
    """cloudpickle >= 3.1 writes ``<dynamic-code>`` as every by-value function's file name;
    keep the real one so that a task's traceback names the user's file and line."""
    assert _CLOUDPICKLE_CODE_REDUCE is not None  # registered only when cloudpickle has it
    constructor, args = _CLOUDPICKLE_CODE_REDUCE(code)
    return constructor, tuple(code.co_filename if a == "<dynamic-code>" else a for a in args)


_CLOUDPICKLE_CODE_REDUCE = getattr(getattr(cloudpickle, "cloudpickle", None), "_code_reduce", None)


class _Pickler(cloudpickle.Pickler):
    if _CLOUDPICKLE_CODE_REDUCE is not None:
        dispatch_table = ChainMap({types.CodeType: _code_reduce_keeping_filename},
                                  cloudpickle.Pickler.dispatch_table)


def _dumps(value: Any, what: str) -> bytes:
    try:
        if type(value) in _FAST_TYPES:
            return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        buffer = io.BytesIO()
        _Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(value)
        return buffer.getvalue()
    except RecursionError:
        raise DispatchError(f"cannot pickle {what}{': ' if what else ''}it is nested too deeply "
                            "(RecursionError)") from None
    except Exception as exc:  # noqa: BLE001 - pickling raises all sorts
        raise DispatchError(f"cannot pickle {what}{': ' if what else ''}{type(exc).__name__}: {exc}",
                            "tasks and their arguments must be picklable with cloudpickle") from None


def _node_spec(node: GraphNode, graph: Graph, lattice: Lattice, packer: _Packer,
               executors: "_ExecutorTable") -> NodeSpec:
    spec = NodeSpec(id=node.id, name=node.name, kind=node.kind,
                    parents=[Edge(e.parent, e.param, e.type, e.index) for e in node.parents],
                    waits=list(node.waits))
    if node.kind == PARAMETER:
        try:
            spec.blob = packer.add_value(node.value, "")
        except DispatchError as exc:  # name the task only now: finding it costs a graph scan
            raise DispatchError(str(exc).replace("cannot pickle ", "cannot pickle the argument "
                                                 f"{_consumer_name(node.id, graph)}", 1),
                                exc.hint) from None
        spec.value_repr = node.name[len(":parameter:"):]
        return spec
    chosen = node.executor if node.executor is not None else (
        lattice.executor if lattice.executor is not None else DEFAULT_EXECUTOR)
    if node.kind in LOCAL_ONLY_KINDS:
        chosen = chosen if _type_of(chosen) == "local" else DEFAULT_EXECUTOR
    spec.executor, run_with = executors.key(chosen, node.name)
    bash, pip, before, after = node.hooks or (None, None, None, None)
    hooks = hooks_to_plain(bash or lattice.deps_bash, pip or lattice.deps_pip,
                           before if before is not None else lattice.call_before,
                           after if after is not None else lattice.call_after)

    def make() -> Dict[str, Any]:
        blob: Dict[str, Any] = {"fn": node.function, "name": node.name}
        if hooks:
            blob["hooks"] = hooks
        if run_with is not None:
            blob["run_with"] = run_with
        return blob

    owner = node.owner if node.owner is not None else node.function
    spec.fingerprint = packer.fingerprint(owner, node.function, hooks)
    spec.blob = packer.add_function((owner, spec.executor) if run_with else owner, make,
                                    f"task '{node.name}' (node {node.id})")
    return spec


def code_fingerprint(function: Any, hooks: Dict[str, Any]) -> str:
    """A hash of what a task would do: its code (nested code too), names, constants and
    defaults, and its hooks' commands. Equal fingerprints let redispatch reuse a result."""
    digest = hashlib.sha256()

    def add_code(code: types.CodeType) -> None:
        digest.update(code.co_code)
        digest.update(repr((code.co_name, code.co_names, code.co_varnames)).encode())
        for const in code.co_consts:
            if isinstance(const, types.CodeType):
                add_code(const)
            else:
                digest.update(repr(const).encode())

    target = getattr(function, "workflow_function", function)
    code = getattr(target, "__code__", None)
    if code is not None:
        add_code(code)
        digest.update(repr(getattr(target, "__defaults__", None)).encode())
    digest.update(f"{getattr(target, '__module__', '')}.{getattr(target, '__qualname__', '')}".encode())
    plain = {k: v for k, v in hooks.items() if k in ("bash", "pip")}
    plain["calls"] = [getattr(c["fn"], "__qualname__", "") for k in ("call_before", "call_after")
                      for c in hooks.get(k, ())]
    digest.update(repr(plain).encode())
    return digest.hexdigest()[:16]


def _consumer_name(param_id: int, graph: Graph) -> str:
    """``'x' of task 'f' (node 3)`` for the node a parameter feeds (its first consumer)."""
    for node in graph.nodes[param_id + 1:] + graph.nodes[:param_id]:
        for edge in node.parents:
            if edge.parent == param_id:
                return f"'{edge.param}' of task '{node.name}' (node {node.id})"
    return f"node {param_id}"


def _type_of(executor: Any) -> str:
    if isinstance(executor, str):
        name = executor_mod.NAME_ALIASES.get(executor, executor)
        configured = get_value(f"executors.{name}")
        return str(configured.get("type", name)) if isinstance(configured, dict) else name
    return getattr(executor, "short_name", "local")


class _ExecutorTable:
    """The manifest's ``executors`` table: each distinct executor once, by a short key, with
    its secret fields masked; their values go to ``secrets`` (the run's 0600 file). A redispatch
    takes the secrets of the old run's executors back (its pickled executors are masked)."""

    def __init__(self, reuse_from: Optional[RunDir] = None) -> None:
        self.table: Dict[str, Dict[str, Any]] = {}
        self.secrets: Dict[str, Dict[str, Any]] = {}
        self._full: Dict[str, Dict[str, Any]] = {}
        self._by_name: Dict[str, Tuple[str, Any]] = {}
        self._old = reuse_from

    def key(self, executor: Any, task: str) -> Tuple[str, Any]:
        if isinstance(executor, str):
            found = self._by_name.get(executor)
            if found is None:
                found = self._by_name[executor] = (self._add_named(executor, task), None)
            return found
        if isinstance(executor, executor_mod.BaseExecutor) and type(executor).__module__ != \
                executor_mod.__name__:
            # A user's Covalent-style executor: its run() is called in a local pool worker.
            secret = sorted(split_secrets(vars(executor))[1])
            if secret:
                raise DispatchError(
                    f"custom executor {type(executor).__name__} of task '{task}' has secret "
                    f"field(s) {', '.join(secret)}: it would be stored in the run directory",
                    "read the secret inside run() (from the environment or a file)")
            return self._add(f"{type(executor).__name__}", {"type": "local",
                             "custom": type(executor).__qualname__}), executor.run
        if isinstance(executor, executor_mod.BaseExecutor):
            config = executor.to_config()
            self._check_type(config["type"], task)
            return self._add(config["type"], config), None
        raise DispatchError(f"task '{task}' has an executor of type {type(executor).__name__}; "
                            "use a name such as 'local' or an object from ct.executor")

    def _add_named(self, name: str, task: str) -> str:
        canonical = executor_mod.NAME_ALIASES.get(name, name)
        configured = get_value(f"executors.{canonical}")
        if not isinstance(configured, dict):
            known = sorted(set(get_value("executors", {}) or {}) | set(executor_mod.NAME_ALIASES))
            raise DispatchError(
                f"unknown executor '{name}' (task '{task}'); known: {', '.join(known)}",
                "define it under 'executors:' in the cov config file")
        config = {"type": canonical, **configured}
        self._check_type(str(config["type"]), task)
        return self._add(name, config, exact=True)

    def _check_type(self, type_name: str, task: str) -> None:
        if not backends.is_known(type_name):
            raise DispatchError(f"executor type '{type_name}' of task '{task}' has no backend; "
                                f"known types: {', '.join(backends.known_types())}",
                                "register a backend class by 'module:Class' or an entry point")

    def _add(self, stem: str, config: Dict[str, Any], exact: bool = False) -> str:
        problem = executor_problem(stem, config)
        if problem:  # the runner would fail the task (or itself) on it later
            raise DispatchError(problem, "fix the executor's arguments or its config entry")
        masked, secrets = split_secrets(config)
        if self._old is not None and has_mask(secrets):
            secrets = self._inherited(masked, secrets)
        full = unmask(masked, secrets)
        for key, existing in self._full.items():
            if existing == full and (key == stem or not exact):
                return key
        key, n = stem, 1
        while key in self.table:
            n += 1
            key = f"{stem}-{n}"
        self.table[key], self._full[key] = masked, full
        if secrets:
            self.secrets[key] = secrets
        return key

    def _inherited(self, masked: Dict[str, Any], secrets: Dict[str, Any]) -> Dict[str, Any]:
        """A redispatched executor's masked values, from the old run's same executor."""
        assert self._old is not None
        for key, old in self._old.manifest.executors.items():
            if old == masked:
                return self._old.executor_secrets(key) or secrets
        return secrets


def _source_file(lattice: Lattice) -> Optional[str]:
    code = getattr(lattice.workflow_function, "__code__", None)
    if code is None or code.co_filename.startswith("<"):
        return None
    return os.path.abspath(code.co_filename)


_OUR_PACKAGES = ("covalent_cli", "runner", "webui", "covalent")
_BY_VALUE: set = set()


def _pickle_local_modules_by_value(source_file: Optional[str]) -> None:
    """Modules imported from the script's own directory travel by value, like the script's
    functions: a worker or a remote host then needs none of the user's files."""
    if not source_file:
        return
    root = os.path.dirname(source_file) + os.sep
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if not path or name in _BY_VALUE or name == "__main__" or \
                name.split(".")[0] in _OUR_PACKAGES:
            continue
        path = os.path.abspath(path)
        if path.startswith(root) and "site-packages" not in path:
            try:
                cloudpickle.register_pickle_by_value(module)
                _BY_VALUE.add(name)
            except (ValueError, TypeError):
                pass


def _user_sys_path(lattice: Lattice) -> List[str]:
    """The script's directory: tasks importing the user's own modules find them there."""
    source = _source_file(lattice)
    return [os.path.dirname(source)] if source else []


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry in some containers
        return str(os.getuid())


def _versions() -> Dict[str, str]:
    from covalent_cli import __version__

    return {"cov": __version__, "python": platform.python_version(),
            "cloudpickle": cloudpickle.__version__}


def _short_repr(value: Any, limit: int = 200) -> str:
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[:limit] + "..."
