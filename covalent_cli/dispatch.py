"""``dispatch``: a lattice and its inputs become a run directory, and a runner is made sure of.

The graph is built client-side (the lattice body runs once), every function and value is pickled
now (an unpicklable one fails here, naming the task, before anything runs), and the run
directory is created whole under a temporary name. Then ``ensure_running`` starts a runner in the
background if no live one serves the home.
"""
from __future__ import annotations

import getpass
import json
import os
import platform
import socket
import sys
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import cloudpickle

from covalent_cli import executor as executor_mod
from covalent_cli.deps import hooks_to_plain
from covalent_cli.errors import DispatchError, UserError
from covalent_cli.executor_table import ExecutorTable, executor_type
from covalent_cli.graph import Graph, GraphNode
from covalent_cli.lattice import DEFAULT_EXECUTOR, Lattice
from covalent_cli.pack import Packer, pickle_local_modules_by_value
from covalent_cli import own_runs
# (re-exported: the dispatch's hooks and runner starts, in a module of their own)
from covalent_cli.runner_start import (INTERCEPT, RUNNER_STARTERS, start_runner,  # noqa: F401
                                       start_runner_early)
from covalent_cli.result import get_result
from covalent_cli.sources import Sources, capture
from covalent_cli.version import VERSION
from runner.config import ConfigError, check_config, runs_home
from runner.cache import CACHED_RESHAPING
from runner.manifest import (ELECTRON, LOCAL_ONLY_KINDS, PARAMETER, SUBLATTICE, Edge, Manifest,
                             NodeSpec)
from runner.rundir import RunDir
from runner.state import Event
from runner.worker_common import CURRENT_TASK, ChildRun

# What an older run's results to take over: given the new manifest and pack, the events and
# result files to copy (``redispatch.reusable_results``).
Reuse = Callable[[Manifest, bytes], Tuple[List[Event], List[Tuple[int, Union[Path, bytes]]]]]

# Dispatch ids made by this process, newest last (``cov dispatch`` reports a script's own).
DISPATCHED: List[str] = []
# The name and tags of the top-level runs this process dispatches: `cov dispatch --name/--tag`
# sets them, so the runs a script dispatches itself get them too.
LABELS: Dict[str, Any] = {"name": None, "tags": ()}
# `cov dispatch --cache`: every task of the runs this process dispatches uses the result cache.
CACHE_ALL: Dict[str, bool] = {"on": False}


BUILD_FOR_HOST = "COV_BUILD_FOR_HOST"  # set by ``cov dispatch --on``: see the manifest's cwd


def dispatch(lattice: Lattice, dispatcher_addr: Optional[str] = None, *,
             disable_run: bool = False) -> Callable[..., str]:
    """``dispatch(lattice)(*args, **kwargs)`` creates a run and returns its id at once."""
    if not isinstance(lattice, Lattice):
        raise TypeError(f"dispatch() takes a lattice (a function decorated with @ct.lattice), "
                        f"not {type(lattice).__name__}")

    def submit(*args: Any, **kwargs: Any) -> str:
        if not disable_run:
            start_runner_early()
        run = create_run(lattice, args, kwargs)
        if not disable_run:
            start_runner(run.path.parent)
        return run.dispatch_id

    return submit


def dispatch_sync(lattice: Lattice, dispatcher_addr: Optional[str] = None) -> Callable[..., Any]:
    """``dispatch_sync(lattice)(*args, **kwargs)`` dispatches and waits; returns the Result."""
    def submit(*args: Any, **kwargs: Any) -> Any:
        return get_result(dispatch(lattice)(*args, **kwargs), wait=True)

    return submit


def _lattice_dispatch(self: Lattice, *args: Any, **kwargs: Any) -> str:
    """Deprecated in Covalent; ``ct.dispatch(lattice)(...)``."""
    return dispatch(self)(*args, **kwargs)


def _lattice_dispatch_sync(self: Lattice, *args: Any, **kwargs: Any) -> Any:
    """Deprecated in Covalent; ``ct.dispatch_sync(lattice)(...)``."""
    return dispatch_sync(self)(*args, **kwargs)


# Bound here, not in lattice.py, so that the graph layer never imports dispatch (no circle).
Lattice.dispatch = _lattice_dispatch  # type: ignore[attr-defined]
Lattice.dispatch_sync = _lattice_dispatch_sync  # type: ignore[attr-defined]


@dataclass
class PreparedRun:
    """A run as ``create_run`` would write it: the graph built, everything pickled."""

    lattice: Lattice
    args: Tuple[Any, ...]
    kwargs: Dict[str, Any]
    manifest: Manifest
    pack: bytes
    secrets: Dict[str, Dict[str, Any]]
    sources: bytes  # the tasks' source text (``Sources.to_json()``): the UI's Source panel


def prepare_run(lattice: Lattice, args: Sequence[Any], kwargs: Dict[str, Any], *,
                parent: Optional[Dict[str, Any]] = None,
                root_dispatch_id: Optional[str] = None,
                replacements: Optional[Dict[str, Any]] = None,
                dispatch_id: Optional[str] = None,
                secrets_from: Optional[RunDir] = None,
                name: Optional[str] = None, tags: Sequence[str] = ()) -> PreparedRun:
    """Build the graph and pickle everything, writing nothing (arguments: ``create_run``)."""
    check_config()  # a config mistake is one line now, not a runner dying later
    # Exceptions of the lattice body propagate unchanged, as from Covalent's dispatch.
    graph = lattice.build_graph(*args, replacements=replacements, **kwargs)
    dispatch_id = dispatch_id or str(uuid.uuid4())
    pickle_local_modules_by_value(_source_file(lattice))
    packer = Packer()
    executors = ExecutorTable(secrets_from)
    sources = Sources()
    sources.workflow = capture(lattice)
    nodes = [_node_spec(node, graph, lattice, packer, executors, sources)
             for node in graph.nodes]
    _cache_reshaping(nodes)
    packer.add_named("workflow", lattice, "the lattice function")
    packer.add_named("inputs", {"args": list(args), "kwargs": dict(kwargs)}, "the lattice inputs")
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
        # Built here for another host (``--on``): this directory means nothing there, so the
        # tasks start in their run directory, as they do when no directory is recorded.
        cwd="" if os.environ.get(BUILD_FOR_HOST) else os.getcwd(),
        sys_path=_user_sys_path(lattice),
        created=datetime.now(timezone.utc).isoformat(),
        host=socket.gethostname(),
        user=_user(),
        versions=_versions(),
        inputs={"args": [_short_repr(a) for a in args],
                "kwargs": {k: _short_repr(v) for k, v in kwargs.items()}},
        blobs=packer.named,
        name=name if name is not None or parent else LABELS["name"],
        tags=list(tags or (() if parent else LABELS["tags"])),
    )
    return PreparedRun(lattice, tuple(args), dict(kwargs), manifest, packer.data(),
                       executors.secrets, sources.to_json(executors.secrets))


def create_run(lattice: Lattice, args: Sequence[Any], kwargs: Dict[str, Any], *,
               home: Optional[Path] = None, parent: Optional[Dict[str, Any]] = None,
               root_dispatch_id: Optional[str] = None,
               replacements: Optional[Dict[str, Any]] = None,
               reused: Optional[Reuse] = None,
               dispatch_id: Optional[str] = None,
               secrets_from: Optional[RunDir] = None,
               name: Optional[str] = None, tags: Sequence[str] = ()) -> RunDir:
    """Build the graph, pickle everything, and create the run directory (``name``, ``tags``:
    the user's label and tags for listings, ``cov dispatch --name/--tag``; ``dispatch_id``: a
    given id, for a run created again by a re-run task; if it exists it is returned as is;
    ``reused``: the results taken over from an older run, see ``Reuse``; ``secrets_from``: a
    redispatched run, whose executors' secrets are taken over). While an ``INTERCEPT`` hook
    is set the run is handed to it and not written."""
    prepared = prepare_run(lattice, args, kwargs, parent=parent,
                           root_dispatch_id=root_dispatch_id, replacements=replacements,
                           dispatch_id=dispatch_id, secrets_from=secrets_from,
                           name=name, tags=tags)
    manifest = prepared.manifest
    home = home or _home()
    if INTERCEPT:
        INTERCEPT[-1](prepared)
        return RunDir(home / manifest.dispatch_id)
    events: List[Event] = []
    results: List[Tuple[int, Union[Path, bytes]]] = []
    if reused is not None:
        events, results = reused(manifest, prepared.pack)
    run = write_run(prepared, home, events, results)
    if dispatch_id is None:  # a fresh id: this process alone created the run
        own_runs.remember(run, manifest)
    return run


def write_run(prepared: PreparedRun, home: Path, events: Sequence[Event] = (),
              results: Sequence[Tuple[int, Union[Path, bytes]]] = ()) -> RunDir:
    """Create the run directory of ``prepared`` (with reused ``results`` and their
    ``events``), whole or not at all."""
    try:
        run = RunDir.create(home, prepared.manifest, prepared.pack, events=events,
                            results=results, secret_values=prepared.secrets,
                            env=_environment(), sources=prepared.sources)
    except PermissionError:
        raise UserError(f"cannot write runs home {home}: permission denied",
                        "set COV_HOME to a writable directory") from None
    except OSError as exc:
        raise UserError(f"cannot create the run in {home}: {exc.strerror or exc}",
                        "free space or set COV_HOME elsewhere") from None
    DISPATCHED.append(prepared.manifest.dispatch_id)
    return run


# -- sublattices: built when their node runs, from its real inputs, as a child run -------------
def build_sublattice(sub_lattice: Any, metadata: str, *args: Any, **kwargs: Any) -> ChildRun:
    """Runs in a local worker: dispatch ``sub_lattice`` as a child of the current run.

    The child inherits the parent's executors where it sets none, lives beside the parent in the
    same home, and records ``parent`` and ``root_dispatch_id`` in its manifest. The runner makes
    this node's output the child's result when the child ends.

    The child's id follows from the parent run and the node, so that a re-run of this task (its
    runner was killed after the child was created) finds that child instead of creating a second
    one whose tasks would run again.
    """
    home = Path(CURRENT_TASK["run"]).parent
    child_id = child_dispatch_id(CURRENT_TASK["dispatch_id"], CURRENT_TASK["node"])
    if RunDir(home / child_id).exists():
        return ChildRun(child_id)
    inherited = json.loads(metadata) if metadata else {}
    if sub_lattice.executor is None and inherited.get("executor") is not None:
        sub_lattice.executor = _inherited_executor(inherited["executor"])
    if sub_lattice._workflow_executor is None and inherited.get("workflow_executor") is not None:
        sub_lattice._workflow_executor = _inherited_executor(inherited["workflow_executor"])
    parent_dir = RunDir(CURRENT_TASK["run"])
    parent = parent_dir.manifest
    run = create_run(sub_lattice, args, kwargs, home=home,
                     parent={"dispatch_id": parent.dispatch_id, "node": CURRENT_TASK["node"]},
                     root_dispatch_id=parent.root_dispatch_id, dispatch_id=child_id)
    return ChildRun(run.dispatch_id)


def child_dispatch_id(parent_id: str, node: int) -> str:
    """The one child run id of sublattice ``node`` of run ``parent_id`` (a UUID, like any)."""
    return str(uuid.uuid5(_CHILD_NAMESPACE, f"{parent_id}/{int(node)}"))


_CHILD_NAMESPACE = uuid.UUID("5b0c3c58-8e0f-4d53-9d0e-3a8a6f2f3c11")


def _inherited_executor(value: Any) -> Any:
    if isinstance(value, dict):
        params = {k: v for k, v in value.items() if k != "type"}
        cls = executor_mod.BY_TYPE.get(value.get("type", "local"))
        return cls(**params) if cls else value.get("type")
    return value


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


def _node_spec(node: GraphNode, graph: Graph, lattice: Lattice, packer: Packer,
               executors: ExecutorTable, sources: Sources) -> NodeSpec:
    spec = NodeSpec(id=node.id, name=node.name, kind=node.kind,
                    # empty: the shared empty tuple, as a manifest read from its file has
                    parents=[Edge(e.parent, e.param, e.type, e.index) for e in node.parents] or (),
                    waits=list(node.waits) or ())
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
        chosen = chosen if executor_type(chosen) == "local" else DEFAULT_EXECUTOR
    spec.executor, run_with = executors.key(chosen, node.name)
    bash, pip, before, after = node.hooks or (None, None, None, None)
    hooks = hooks_to_plain(bash or lattice.deps_bash, pip or lattice.deps_pip,
                           before if before is not None else lattice.call_before,
                           after if after is not None else lattice.call_after)
    transfers = [t.to_plain() for t in getattr(node.owner, "files", None) or ()]
    if transfers:
        hooks["files"] = transfers
        if not getattr(node.owner, "receives_files", True):
            hooks["files_arg"] = False
        # The runner carries these out itself, over the executor's connection: it reads them
        # from the manifest (it never unpickles a task's function).
        spec.files = [t for t in transfers if t["strategy"]["kind"] == "executor"] or None

    # A sublattice node's function is given here: the graph layer does not know dispatch.
    function = build_sublattice if node.kind == SUBLATTICE else node.function

    def make() -> Dict[str, Any]:
        blob: Dict[str, Any] = {"fn": function, "name": node.name}
        if hooks:
            blob["hooks"] = hooks
        if run_with is not None:
            blob["run_with"] = run_with
        return blob

    owner = node.owner if node.owner is not None else function
    spec.cache = node.kind == ELECTRON and (CACHE_ALL["on"] or bool(getattr(node.owner, "cache",
                                                                              False)))
    spec.fingerprint = packer.fingerprint(owner, function, hooks, spec.executor,
                                          executors.table.get(spec.executor or ""))
    if node.kind == ELECTRON:
        sources.add(spec.fingerprint, function)
    elif node.kind == SUBLATTICE:  # its function is build_sublattice: the source is the lattice's
        sources.add_node(node.id, next((graph.nodes[e.parent].value for e in node.parents
                                        if e.param == "sub_lattice"), None))
    spec.blob = packer.add_function((owner, spec.executor) if run_with else owner, make,
                                    f"task '{node.name}' (node {node.id})")
    return spec


def _cache_reshaping(nodes: List[NodeSpec]) -> None:
    """The lists, items and operators feeding a cache-enabled task are cached too: they are
    pure functions of their inputs, and a hit that waited for them to run would save little."""
    by_id = {n.id: n for n in nodes}
    todo = [n for n in nodes if n.cache]
    while todo:
        for edge in todo.pop().parents:
            parent = by_id[edge.node]
            if parent.kind in CACHED_RESHAPING and not parent.cache:
                parent.cache = True
                todo.append(parent)


def _consumer_name(param_id: int, graph: Graph) -> str:
    """``'x' of task 'f' (node 3)`` for the node a parameter feeds (its first consumer)."""
    for node in graph.nodes[param_id + 1:] + graph.nodes[:param_id]:
        for edge in node.parents:
            if edge.parent == param_id:
                return f"'{edge.param}' of task '{node.name}' (node {node.id})"
    return f"node {param_id}"


def _source_file(lattice: Lattice) -> Optional[str]:
    code = getattr(lattice.workflow_function, "__code__", None)
    if code is None or code.co_filename.startswith("<"):
        return None
    return os.path.abspath(code.co_filename)


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
    return {"cov": VERSION, "python": platform.python_version(),
            "cloudpickle": cloudpickle.__version__}


def _short_repr(value: Any, limit: int = 200) -> str:
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[:limit] + "..."
