"""The manifest: a run's graph, written once by dispatch as ``manifest.yaml``.

The file is YAML a person can read and ``grep``/``yq`` can query. The header (format version,
ids, lattice, provenance) is block YAML; the node list holds one node per line as a JSON flow
mapping, which is valid YAML too. Reading uses that shape: the header through libyaml, each node
line through ``json`` (PyYAML's constructor needs ~6 s for 20,000 nodes, json 0.1 s). A manifest
edited by hand into other YAML is still read, through the slow path.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import yaml

from runner.manifest_checks import (FORMAT_VERSION, Blob, ManifestError, blob_field,
                                    check_header, executors_field, is_int, list_field,
                                    mapping_field)
from runner.manifest_lines import NotJsonLines, decode_node_lines, split_fast

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml where the wheel has it

# Node kinds. Only "parameter" nodes do not execute.
ELECTRON = "electron"
PARAMETER = "parameter"
COLLECTION = "collection"
ATTRIBUTE = "attribute"
OPERATOR = "operator"
SUBLATTICE = "sublattice"
POSTPROCESS = "postprocess"
# Kinds the runner always runs on the local backend: they only reshape values already at hand.
LOCAL_ONLY_KINDS = frozenset({COLLECTION, ATTRIBUTE, OPERATOR, SUBLATTICE, POSTPROCESS})
KINDS = LOCAL_ONLY_KINDS | {ELECTRON, PARAMETER}


# Slots where the dataclass has them (3.10+), and the strings nodes repeat (kind, executor,
# fingerprint, parameter names) shared: a 100,000-node manifest took 86 MB in memory in every
# reader and in the runner (tracemalloc), and its parse peaked at 157 MB.
_SLOTS: Dict[str, Any] = {"slots": True} if sys.version_info >= (3, 10) else {}
_intern = sys.intern


@dataclass(**_SLOTS)
class Edge:
    """An input of a node: the parent node and the parameter it fills."""

    node: int
    param: str
    type: str = "arg"  # "arg" | "kwarg"
    index: Optional[int] = None

    def to_dict(self) -> Dict[str, Any]:
        d: Dict[str, Any] = {"node": self.node, "param": self.param, "type": self.type}
        if self.index is not None:
            d["index"] = self.index
        return d


@dataclass(**_SLOTS)
class NodeSpec:
    """One vertex of the graph."""

    id: int
    name: str
    kind: str
    executor: Optional[str] = None  # key into Manifest.executors; None for parameters
    # Read from a manifest, a node without inputs or waits shares one empty tuple (100,000
    # empty lists took 5.6 MB in the runner).
    parents: Sequence[Edge] = field(default_factory=list)
    waits: Sequence[int] = field(default_factory=list)  # nodes that must finish first, no value
    blob: Optional[Blob] = None  # function (+hooks) for tasks, the value for parameters
    value_repr: Optional[str] = None  # parameters only
    fingerprint: Optional[str] = None  # hash of the task's code and hooks (redispatch reuse)
    # File transfers the runner does itself, over the executor's connection (plain dicts:
    # "from", "to", "order", "direction"; covalent_cli.fs). Other transfers run in the worker.
    files: Optional[List[Dict[str, Any]]] = None
    cache: bool = False  # an equal earlier task's result may stand in (runner/cache.py)

    @property
    def executes(self) -> bool:
        return self.kind != PARAMETER

    def to_dict(self) -> Dict[str, Any]:
        d: Dict[str, Any] = {"id": self.id, "name": self.name, "kind": self.kind}
        if self.executor is not None:
            d["executor"] = self.executor
        if self.parents:
            d["parents"] = [e.to_dict() for e in self.parents]
        if self.waits:
            d["waits"] = list(self.waits)
        if self.blob is not None:
            d["blob"] = list(self.blob)
        if self.value_repr is not None:
            d["value"] = self.value_repr
        if self.fingerprint is not None:
            d["fp"] = self.fingerprint
        if self.files:
            d["files"] = self.files
        if self.cache:
            d["cache"] = True
        return d

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "NodeSpec":
        """A node from its manifest line; ``ManifestError`` naming the field if it is malformed.
        A few cheap tests for a whole well-formed line, the edges checked as they are built
        (100,000 lines are read per manifest at scale: a single ``all()`` expression over
        generators took 13 us a line); ``_node_problem`` says what is wrong only when it fails."""
        try:
            node_id, name, kind, blob = d["id"], d["name"], d["kind"], d["blob"]
            get = d.get
            executor, value, fingerprint = get("executor"), get("value"), get("fp")
            parents, waits = get("parents", ()), get("waits", ())
            ok = (type(node_id) is int and node_id >= 0 and type(name) is str and
                  kind in KINDS and type(blob) is list and len(blob) == 2 and
                  type(blob[0]) is int and type(blob[1]) is int and blob[0] >= 0 and
                  blob[1] >= 0 and type(executor) in _TEXT and type(value) in _TEXT and
                  type(fingerprint) in _TEXT and type(parents) in _SEQUENCE and
                  type(waits) in _SEQUENCE)
            if ok and waits:
                ok = all(type(w) is int for w in waits)
            edges: List[Edge] = []
            if ok:
                for e in parents:
                    if type(e) is not dict:
                        ok = False
                        break
                    source, param = e["node"], e["param"]
                    edge_type, index = e.get("type", "arg"), e.get("index")
                    if type(source) is not int or type(param) is not str or \
                            edge_type not in _EDGE_TYPES or type(index) not in _INDEX:
                        ok = False
                        break
                    edges.append(Edge(source, _intern(param), _intern(edge_type), index))
        except (KeyError, TypeError):
            ok = False
        if not ok:
            raise ManifestError(_node_problem(d))
        kind = _intern(kind)
        return cls(node_id, name if kind == PARAMETER else _intern(name), kind,
                   executor and _intern(executor), edges or _EMPTY,
                   list(waits) if waits else _EMPTY, (blob[0], blob[1]),
                   value, fingerprint and _intern(fingerprint), _files(get("files")),
                   get("cache") is True)


def _files(value: Any) -> Optional[List[Dict[str, Any]]]:
    """A node's runner-side file transfers (absent in most lines, and in older runs)."""
    if value is None:
        return None
    if not isinstance(value, list) or not all(
            isinstance(t, dict) and isinstance(t.get("from"), str) and isinstance(t.get("to"), str)
            for t in value):
        raise ManifestError(f"manifest.yaml: a node's 'files' must be a list of transfers "
                            f"(found {value!r})")
    return value


_EMPTY: Tuple[Any, ...] = ()
_TEXT = frozenset({str, type(None)})
_SEQUENCE = frozenset({list, tuple})
_INDEX = frozenset({int, type(None)})
_EDGE_TYPES = frozenset({"arg", "kwarg"})


def _node_problem(d: Any) -> str:
    """What is wrong with a node line (the slow, precise path of ``NodeSpec.from_dict``)."""
    if not isinstance(d, dict):
        return f"manifest.yaml: a node line is {type(d).__name__}, not a mapping"
    node_id: Any = d.get("id")
    where = f"manifest.yaml: node {node_id!r}"
    if not is_int(node_id) or node_id < 0:
        return f"{where}: 'id' must be a non-negative integer"
    for name in ("name", "kind"):
        if not isinstance(d.get(name), str):
            return f"{where}: '{name}' must be text (found {d.get(name)!r})"
    if d["kind"] not in KINDS:
        return f"{where}: unknown kind {d['kind']!r}"
    for name in ("executor", "value", "fp"):
        if not isinstance(d.get(name), (str, type(None))):
            return f"{where}: '{name}' must be text (found {d.get(name)!r})"
    blob = d.get("blob")
    if not (isinstance(blob, list) and len(blob) == 2 and all(is_int(v) and v >= 0
                                                              for v in blob)):
        return f"{where}: 'blob' must be [offset, length] (found {blob!r})"
    parents, waits = d.get("parents", []), d.get("waits", [])
    if not isinstance(parents, list) or not isinstance(waits, list) or \
            not all(is_int(w) for w in waits):
        return f"{where}: 'parents' and 'waits' must be lists of node ids and inputs"
    return f"{where}: malformed input edge in {parents!r}"


@dataclass
class Manifest:
    """Everything dispatch knows about a run; never changed after dispatch."""

    dispatch_id: str
    root_dispatch_id: str
    lattice_name: str
    nodes: List[NodeSpec]
    output_node: int
    executors: Dict[str, Dict[str, Any]]
    doc: str = ""
    source_file: Optional[str] = None
    cwd: str = ""
    sys_path: List[str] = field(default_factory=list)
    created: str = ""
    host: str = ""
    user: str = ""
    versions: Dict[str, str] = field(default_factory=dict)
    inputs: Dict[str, Any] = field(default_factory=dict)  # reprs, for people
    blobs: Dict[str, Blob] = field(default_factory=dict)  # workflow function, inputs
    parent: Optional[Dict[str, Any]] = None  # {dispatch_id, node} for a sublattice's run
    name: Optional[str] = None  # `cov dispatch --name`: the user's label for the run
    tags: List[str] = field(default_factory=list)  # `cov dispatch --tag`, for filtering
    format_version: str = FORMAT_VERSION

    def node(self, node_id: int) -> NodeSpec:
        return self.nodes[node_id]  # ids are dense and ordered (checked when read)

    @property
    def task_count(self) -> int:
        return sum(1 for n in self.nodes if n.executes)

    # -- writing -------------------------------------------------------------------------
    def to_yaml(self) -> str:
        header = {
            "format_version": self.format_version,
            "dispatch_id": self.dispatch_id,
            "root_dispatch_id": self.root_dispatch_id,
            "parent": self.parent,
            "lattice": {"name": self.lattice_name, "doc": self.doc,
                        "source_file": self.source_file},
            "created": self.created,
            "cwd": self.cwd,
            "host": self.host,
            "user": self.user,
            "versions": self.versions,
            "sys_path": self.sys_path,
            "inputs": self.inputs,
            "blobs": {k: list(v) for k, v in self.blobs.items()},
            "output_node": self.output_node,
            "executors": self.executors,
            "task_count": self.task_count,
        }
        if self.name is not None:  # optional fields: written only when given
            header["name"] = self.name
        if self.tags:
            header["tags"] = list(self.tags)
        text = yaml.safe_dump(header, sort_keys=False, default_flow_style=False, width=100)
        lines = [text, "nodes:\n"]
        lines.extend(f"  - {json.dumps(n.to_dict())}\n" for n in self.nodes)
        return "".join(lines)

    # -- reading -------------------------------------------------------------------------
    @classmethod
    def from_yaml(cls, text: str) -> "Manifest":
        try:
            header, lines = split_fast(text)
        except (ValueError, yaml.YAMLError):
            return cls._from_yaml_slow(text)
        try:
            return cls._from_parts(header, decode_node_lines(lines))
        except NotJsonLines:  # a node line that is not JSON: perhaps YAML, read the slow way
            return cls._from_yaml_slow(text)

    @classmethod
    def _from_yaml_slow(cls, text: str) -> "Manifest":
        try:
            doc = yaml.load(text, Loader=_Loader)
        except yaml.YAMLError as exc:
            raise ManifestError(f"manifest.yaml is not valid YAML ({_first_line(exc)})") from None
        if not isinstance(doc, dict) or "nodes" not in doc:
            raise ManifestError("manifest.yaml has no 'nodes' list") from None
        nodes = doc.pop("nodes")
        return cls._from_parts(doc, nodes)

    @classmethod
    def _from_parts(cls, h: Dict[str, Any], node_dicts: Any) -> "Manifest":
        h = check_header(h)
        if not isinstance(node_dicts, (list, Iterator)):
            raise ManifestError("manifest.yaml: 'nodes' must be a list")
        try:
            nodes = _build_nodes(node_dicts)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ManifestError(f"manifest.yaml is missing or has a malformed field ({exc})") from None
        return cls.from_nodes(h, nodes, checked_header=True)

    @classmethod
    def from_nodes(cls, h: Dict[str, Any], nodes: List[NodeSpec],
                   checked_header: bool = False, checked_graph: bool = False) -> "Manifest":
        """The manifest of header ``h`` (as read from the file) and ``nodes`` (already
        built: parsed, or taken from a run's snapshot), checked as a parsed one is; the
        graph's references are not checked again for ``checked_graph`` (nodes of a manifest
        that was checked when parsed)."""
        if not checked_header:
            h = check_header(h)
        try:
            lattice = h["lattice"]
            manifest = cls(
                format_version=str(h["format_version"]),
                dispatch_id=h["dispatch_id"],
                root_dispatch_id=h["root_dispatch_id"],
                parent=h.get("parent"),
                lattice_name=str(lattice.get("name", "")),
                doc=str(lattice.get("doc") or ""),
                source_file=lattice.get("source_file"),
                created=h["created"],
                cwd=str(h.get("cwd", "")),
                host=str(h.get("host", "")),
                user=str(h.get("user", "")),
                versions=mapping_field(h, "versions"),
                sys_path=[str(p) for p in list_field(h, "sys_path")],
                inputs=mapping_field(h, "inputs"),
                blobs={str(k): blob_field(v, f"blobs.{k}") for k, v in mapping_field(h, "blobs").items()},
                output_node=h["output_node"],
                executors=executors_field(h),
                nodes=nodes,
                name=h["name"],
                tags=h["tags"],
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ManifestError(f"manifest.yaml is missing or has a malformed field ({exc})") from None
        if not checked_graph:
            manifest._check_graph()
        return manifest

    def _check_graph(self) -> None:
        """Every reference points at a node or executor that exists (ids are dense)."""
        count = len(self.nodes)
        for position, node in enumerate(self.nodes):
            if node.id != position:
                raise ManifestError(f"manifest.yaml: node ids must be 0..{count - 1} in order "
                                    f"(line {position} has id {node.id})")
            for edge in node.parents:  # loops, not a list per node: 100,000 nodes at scale
                if not 0 <= edge.node < count:
                    raise _missing(node, edge.node)
            for dep in node.waits:
                if not 0 <= dep < count:
                    raise _missing(node, dep)
            if node.executor is not None and node.executor not in self.executors:
                raise ManifestError(f"manifest.yaml: node {node.id} uses executor "
                                    f"{node.executor!r}, which is not in 'executors'")
        if not 0 <= self.output_node < count:
            raise ManifestError(f"manifest.yaml: output_node {self.output_node} does not exist")


def _missing(node: NodeSpec, dep: int) -> ManifestError:
    return ManifestError(f"manifest.yaml: node {node.id} depends on node {dep}, "
                         "which does not exist")


def _build_nodes(node_dicts: Iterable[Any]) -> List[NodeSpec]:
    """The nodes of decoded node lines. Tasks of one function share its packed pickle: their
    equal ``blob`` pairs are made one tuple (50,000 pairs and their ints took 6 MB)."""
    nodes = [NodeSpec.from_dict(d) for d in node_dicts]
    shared: Dict[Any, Any] = {}
    for node in nodes:
        if node.kind != PARAMETER:
            node.blob = shared.setdefault(node.blob, node.blob)
    return nodes


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
