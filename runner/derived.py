"""A run's derived snapshot, ``snapshot.json``: its node table, folded state and pack locations,
made from the manifest and the event log, so that a reader of a large run neither parses the
manifest's node lines nor folds its event log (at 100,000 nodes, on a loaded machine: ~2 s and
~0.8 s of a ``cov status``'s CPU, against ~0.7 s for the snapshot).

The run directory stays the whole truth. The snapshot is optional and checked:

* the runner writes it (atomically: a temporary name, then a rename) when it retires a run, or
  finds a finished run without a current one, and while a large run is live
  (``runner.live_snapshot`` says when); readers may be read-only, and never write it;
* it names the manifest it was made from (the size and BLAKE2 digest of the bytes that runner
  parsed) and the event-log prefix its state is the fold of (the size, and the digest of exactly
  the bytes that runner read or appended, hashed as they went by: ``RunDir``);
* its last line holds the digest of the rest, and a key of the code that wrote it (a digest of
  the sources of ``runner.state``, ``runner.manifest``, ``runner.packed_reads`` and this
  module: what a node and a task state are, how events fold, where packed outcomes are);
* a reader takes the node table only for a manifest of that identity, and the state only if
  the event log still begins with those bytes (then folds what was appended since); a snapshot
  absent, unreadable, damaged, of other code or of other files is ignored, and the reader
  parses and folds as it would without one (``load`` never raises).

The file is two lines: the body (one JSON object of columns: a column whose values repeat is a
table of its distinct values and an index per row) and the trailer.
"""
from __future__ import annotations

import gc
import hashlib
import json
from contextlib import contextmanager
from dataclasses import fields
from operator import attrgetter
from typing import Any, BinaryIO, Callable, Dict, Iterator, List, Optional, Protocol, Tuple

from runner.manifest import PARAMETER, Edge, Manifest, NodeSpec
from runner.manifest_file import Identity
from runner.packed_reads import PackedIndex
from runner.state import RunState, Status, TaskState

VERSION = 1
_TASK_FIELDS = tuple(f.name for f in fields(TaskState))
_STATUS = {s.value: s for s in Status}
_EMPTY: Tuple[Any, ...] = ()
_SCALARS = frozenset({str, int, float, bool, type(None)})
_NUMBERS = frozenset({int, float, bool})


class SnapshotSource(Protocol):
    """What ``write`` needs of a run directory (a ``RunDir``)."""

    @property
    def snapshot_path(self) -> Any: ...

    def manifest_identity(self) -> Optional[Identity]: ...

    def events_identity(self) -> Optional[Identity]: ...

    def packed_index(self) -> Optional[PackedIndex]: ...


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while many acyclic objects are made (a node table, a
    fold): each collection walks every object alive, and at 100,000 nodes the collections
    triggered by the allocations took a third of a manifest's parse."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


_CODE: Optional[str] = None


def code_key() -> Optional[str]:
    """A digest of the sources that define what a snapshot holds; None if they cannot be read
    (then no snapshot is written or used)."""
    global _CODE
    if _CODE is None:
        import runner.manifest
        import runner.packed_reads
        import runner.state

        digest = hashlib.blake2b(digest_size=16)
        try:
            for module_file in (runner.state.__file__, runner.manifest.__file__,
                                runner.packed_reads.__file__, __file__):
                with open(module_file, "rb") as f:
                    digest.update(f.read())
        except (OSError, TypeError):
            return None
        _CODE = digest.hexdigest()
    return _CODE


# -- writing ------------------------------------------------------------------------------------
def write(run: SnapshotSource, manifest: Manifest, state: RunState) -> bool:
    """Write ``run``'s snapshot of ``manifest`` and ``state`` (the run's own objects, parsed
    and folded from the bytes ``run`` names, or begun from a snapshot of them); False,
    writing nothing, if ``run`` cannot say which bytes those were (a manifest handed over
    unparsed) or the code key is unknown. OSError if it cannot be written."""
    key = code_key()
    manifest_id, events_id = run.manifest_identity(), run.events_identity()
    if key is None or manifest_id is None or events_id is None:
        return False
    digest = hashlib.blake2b(digest_size=20)

    def pieces() -> Iterator[bytes]:
        for piece in _body(manifest, state, run.packed_index()):
            data = piece.encode()
            digest.update(data)
            yield data
        trailer = {"snapshot": VERSION, "code": key, "manifest": list(manifest_id),
                   "events": list(events_id), "body": digest.hexdigest()}
        yield b"\n" + json.dumps(trailer).encode() + b"\n"

    from runner.fs import atomic_write

    atomic_write(run.snapshot_path, pieces())
    return True


def _body(manifest: Manifest, state: RunState, packed: Optional[PackedIndex]
          ) -> Iterator[str]:
    """The body's JSON, a column at a time (none of them is held long: the runner writes this
    with a 100,000-node run in memory). ``packed``: where the folded ``end`` events put the
    packed outcomes and logs (``runner.packed_reads``), or None if unknown: without it a
    reader asking for one node's outcome re-read the whole log (1.4 s of a 100,000-node
    ``cov status`` under the profiler, for the result's preview alone)."""
    nodes = manifest.nodes
    yield '{"nodes": {"count": %d' % len(nodes)
    for name, column in _node_columns(nodes):
        yield ", %s: %s" % (json.dumps(name), json.dumps(column))
    yield '}, "run": ' + json.dumps({"status": state.status.value, "error": state.error,
                                      "started": state.started, "ended": state.ended})
    tasks = state.tasks
    yield ', "tasks": {"ids": ' + json.dumps(list(tasks))
    yield ', "fields": ' + json.dumps(_TASK_FIELDS)
    for name in _TASK_FIELDS:
        column = list(map(attrgetter(name), tasks.values()))
        if name == "status":
            column = [s.value for s in column]
        yield ", %s: %s" % (json.dumps(name), json.dumps(encode_column(column)))
    yield '}, "packed": '
    if packed is None:
        yield "null}"
        return
    columns = packed.columns()
    yield '{"names": ' + json.dumps(columns.pop("names"))
    for kind, (names, offsets, lengths) in columns.items():  # [count, name ids, offsets, lengths]
        yield ', %s: [%d, %s]' % (json.dumps(kind), len(names), ", ".join(
            json.dumps(encode_column(c)) for c in (names, offsets, lengths)))
    yield "}}"


def _node_columns(nodes: List[NodeSpec]) -> Iterator[Tuple[str, Any]]:
    yield "name", encode_column([n.name for n in nodes])
    yield "kind", encode_column([n.kind for n in nodes])
    yield "executor", encode_column([n.executor for n in nodes])
    yield "value", [n.value_repr for n in nodes]
    yield "fp", encode_column([n.fingerprint for n in nodes])
    yield "blob", [v for n in nodes for v in (n.blob or (-1, -1))]
    yield "edges", [len(n.parents) for n in nodes]
    yield "edge_node", [e.node for n in nodes for e in n.parents]
    yield "edge_param", encode_column([e.param for n in nodes for e in n.parents])
    yield "edge_type", encode_column([e.type for n in nodes for e in n.parents])
    yield "edge_index", [e.index for n in nodes for e in n.parents]
    yield "waits", [len(n.waits) for n in nodes]
    yield "wait_node", [w for n in nodes for w in n.waits]
    yield "files", {str(n.id): n.files for n in nodes if n.files is not None}
    yield "cache", [n.id for n in nodes if n.cache]


def encode_column(column: List[Any]) -> Any:
    """A column as it is, or as a table of its distinct values and an index per row when
    values repeat (a run's runner id, host, function name ...). Made at C speed (map, zip,
    dict): a loop over the values took 2.4 s for a 100,000-node run."""
    types = set(map(type, column))
    if not types <= _SCALARS or len(types & _NUMBERS) > 1:
        return column  # a handle (a mapping); or 1, 1.0 and True, equal keys but not equal JSON
    table = dict.fromkeys(column)
    if len(table) == 1 and len(column) > 1:
        return {"all": column[0], "count": len(column)}  # (a column of None, mostly)
    if len(table) * 2 > len(column):
        return column
    positions = {value: i for i, value in enumerate(table)}
    return {"values": list(table), "index": list(map(positions.__getitem__, column))}


# -- reading ------------------------------------------------------------------------------------
class Snapshot:
    """A snapshot file, read and checked whole (its body's digest, the code key); its parts
    are taken once each, for the files they were made from."""

    def __init__(self, body: Dict[str, Any], trailer: Dict[str, Any]) -> None:
        self._body = body
        self.manifest_id: Identity = (int(trailer["manifest"][0]), str(trailer["manifest"][1]))
        self.events_id: Identity = (int(trailer["events"][0]), str(trailer["events"][1]))

    def forget(self, part: str) -> None:
        """Drop a part not taken (``"nodes"``, or ``"state"``: of other files), so that a
        long-lived reader does not keep it."""
        for key in ("run", "tasks", "packed") if part == "state" else (part,):
            self._body.pop(key, None)

    def nodes(self) -> Optional[List[NodeSpec]]:
        """The node table (once), or None if it cannot be made."""
        body = self._body.pop("nodes", None)
        try:
            return _nodes(body) if body is not None else None
        except Exception:  # noqa: BLE001 - a damaged snapshot is only ignored
            return None

    def state(self) -> Optional[RunState]:
        """The folded state (once), or None if it cannot be made."""
        run, tasks = self._body.pop("run", None), self._body.pop("tasks", None)
        try:
            return _state(run, tasks) if run is not None and tasks is not None else None
        except Exception:  # noqa: BLE001 - a damaged snapshot is only ignored
            return None

    def packed(self) -> Optional[PackedIndex]:
        """Where the state's ``end`` events put packed outcomes and logs (once), as noted
        from the event-log prefix the state is the fold of; None if not recorded or unusable
        (the reader then reads the log for them)."""
        body = self._body.pop("packed", None)
        try:
            if body is None:
                return None
            columns: Dict[str, Any] = {"names": body["names"]}
            for kind in PackedIndex.KINDS:
                count, *encoded = body[kind]
                columns[kind] = [decode_column(c, int(count)) for c in encoded]
            return PackedIndex.from_columns(columns, self.events_id[0])
        except Exception:  # noqa: BLE001 - a damaged snapshot is only ignored
            return None


def body_digest(body: bytes) -> str:
    """The digest a snapshot's trailer holds of its body."""
    return hashlib.blake2b(body, digest_size=20).hexdigest()


def load(open_file: Callable[[Any], BinaryIO], path: Any) -> Optional[Snapshot]:
    """The snapshot at ``path`` (opened with ``open_file``, the run's contained opener), or
    None: absent, unreadable, damaged, or written by other code."""
    key = code_key()
    if key is None:
        return None
    try:
        with open_file(path) as f:
            data = f.read()
        body, _, trailer_line = data.rstrip(b"\n").rpartition(b"\n")
        trailer = json.loads(trailer_line)
        if not isinstance(trailer, dict) or trailer.get("snapshot") != VERSION or \
                trailer.get("code") != key or \
                trailer.get("body") != body_digest(body):
            return None
        with gc_paused():
            parsed = json.loads(body)
        return Snapshot(parsed, trailer) if isinstance(parsed, dict) else None
    except Exception:  # noqa: BLE001 - absent, unreadable or damaged: only ignored
        return None


def manifest_from(snap: Snapshot, f: BinaryIO) -> Optional[Tuple[Manifest, Identity]]:
    """The manifest in ``f`` (a binary file at its start) built from ``snap``'s node table and
    the file's header, and its identity; None if ``snap`` is not of this file or its table
    cannot be used (the caller then parses the file)."""
    import yaml

    from runner.manifest import ManifestError
    from runner.manifest_file import identity_of

    data = f.read()
    identity = identity_of(data)
    if identity != snap.manifest_id:
        return None
    at = data.find(b"\nnodes:\n")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        header = yaml.load(data[:at].decode("utf-8"), Loader=loader) if at >= 0 else None
    except (UnicodeDecodeError, yaml.YAMLError):
        return None
    del data
    nodes = snap.nodes() if isinstance(header, dict) else None
    if nodes is None or not isinstance(header, dict):
        return None
    try:
        # the graph was checked when the manifest of these very bytes was parsed for it
        return Manifest.from_nodes(header, nodes, checked_graph=True), identity
    except ManifestError:
        return None


def prefix_digest(f: BinaryIO, identity: Identity) -> Optional[Any]:
    """The digest object (BLAKE2b, as ``RunDir`` keeps it) of the file ``f``'s first bytes if
    they are those of ``identity`` (size, digest), else None: a reader that goes on from
    there hashes the bytes it reads next into it, so its state, begun from a snapshot, can
    still say which bytes it is the fold of (and be written as a snapshot again)."""
    size, expected = identity
    digest = hashlib.blake2b(digest_size=20)
    left = size
    while left > 0:
        block = f.read(min(left, 1 << 20))
        if not block:
            return None
        digest.update(block)
        left -= len(block)
    return digest if digest.hexdigest() == expected else None


def decode_column(value: Any, count: int) -> List[Any]:
    if isinstance(value, dict) and "all" in value:
        column = [value["all"]] * int(value["count"])
    elif isinstance(value, dict):
        values = value["values"]
        column = [values[i] for i in value["index"]]
    else:
        column = list(value)
    if len(column) != count:
        raise ValueError("a column of another length")
    return column


def _nodes(body: Dict[str, Any]) -> List[NodeSpec]:
    count = int(body["count"])
    names, kinds = decode_column(body["name"], count), decode_column(body["kind"], count)
    executors = decode_column(body["executor"], count)
    values = decode_column(body["value"], count)
    fps, blobs = decode_column(body["fp"], count), body["blob"]
    edge_counts = decode_column(body["edges"], count)
    wait_counts = decode_column(body["waits"], count)
    edge_total, wait_total = sum(edge_counts), sum(wait_counts)
    edge_nodes = decode_column(body["edge_node"], edge_total)
    edge_params = decode_column(body["edge_param"], edge_total)
    edge_types = decode_column(body["edge_type"], edge_total)
    edge_index = decode_column(body["edge_index"], edge_total)
    wait_nodes = decode_column(body["wait_node"], wait_total)
    files: Dict[str, Any] = body["files"]
    cached = set(body["cache"])
    if len(blobs) != 2 * count:
        raise ValueError("a column of another length")
    with gc_paused():
        # whole columns at a time (map, zip, slices): a Python loop over the nodes took 0.5 s
        edges = list(map(Edge, edge_nodes, edge_params, edge_types, edge_index))
        parents = _split(edges, edge_counts)
        waits = _split(wait_nodes, wait_counts)
        shared: Dict[Any, Any] = {}
        blob_pairs = [None if pair == (-1, -1) else
                      pair if kind == PARAMETER else shared.setdefault(pair, pair)
                      for pair, kind in zip(zip(blobs[0::2], blobs[1::2]), kinds)]
        return list(map(NodeSpec, range(count), names, kinds, executors, parents, waits,
                        blob_pairs, values, fps, [files.get(str(i)) for i in range(count)]
                        if files else [None] * count,
                        [i in cached for i in range(count)] if cached else [False] * count))


def _split(flat: List[Any], counts: List[int]) -> List[Any]:
    """``flat`` cut into consecutive lists of ``counts`` items (an empty one: ``()``)."""
    out: List[Any] = []
    at = 0
    for n in counts:
        if n:
            out.append(flat[at:at + n])
            at += n
        else:
            out.append(_EMPTY)
    return out


def _state(run: Dict[str, Any], tasks: Dict[str, Any]) -> RunState:
    if tuple(tasks["fields"]) != _TASK_FIELDS:
        raise ValueError("task states of other fields")
    ids = tasks["ids"]
    count = len(ids)
    columns = [decode_column(tasks[name], count) for name in _TASK_FIELDS]
    position = _TASK_FIELDS.index("status")
    columns[position] = [_STATUS[s] for s in columns[position]]
    with gc_paused():
        states = dict(zip([int(i) for i in ids], map(TaskState, *columns)))
    return RunState(status=_STATUS[run["status"]], error=run["error"], started=run["started"],
                    ended=run["ended"], tasks=states)
