"""The manifest: a run's graph, written once by dispatch as ``manifest.yaml``.

The file is YAML a person can read and ``grep``/``yq`` can query. The header (format version,
ids, lattice, provenance) is block YAML; the node list holds one node per line as a JSON flow
mapping, which is valid YAML too. Reading uses that shape: the header through libyaml, each node
line through ``json`` (PyYAML's constructor needs ~6 s for 20,000 nodes, json 0.1 s). A manifest
edited by hand into other YAML is still read, through the slow path.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import yaml

FORMAT_VERSION = "1.0"
FORMAT_MAJOR = 1

try:  # libyaml where the wheel has it
    _Loader = yaml.CSafeLoader  # type: ignore[attr-defined]
except AttributeError:  # pragma: no cover
    _Loader = yaml.SafeLoader

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

Blob = Tuple[int, int]  # (offset, length) in tasks.pkl


class ManifestError(Exception):
    """A manifest that cannot be read: corrupted, or from a newer format."""


@dataclass
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


@dataclass
class NodeSpec:
    """One vertex of the graph."""

    id: int
    name: str
    kind: str
    executor: Optional[str] = None  # key into Manifest.executors; None for parameters
    parents: List[Edge] = field(default_factory=list)
    waits: List[int] = field(default_factory=list)  # nodes that must finish first, no value
    blob: Optional[Blob] = None  # function (+hooks) for tasks, the value for parameters
    value_repr: Optional[str] = None  # parameters only
    fingerprint: Optional[str] = None  # hash of the task's code and hooks (redispatch reuse)

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
            d["waits"] = self.waits
        if self.blob is not None:
            d["blob"] = list(self.blob)
        if self.value_repr is not None:
            d["value"] = self.value_repr
        if self.fingerprint is not None:
            d["fp"] = self.fingerprint
        return d

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "NodeSpec":
        blob = d.get("blob")
        return cls(
            id=int(d["id"]), name=str(d["name"]), kind=str(d["kind"]),
            executor=d.get("executor"),
            parents=[Edge(int(e["node"]), str(e["param"]), e.get("type", "arg"), e.get("index"))
                     for e in d.get("parents", ())],
            waits=[int(w) for w in d.get("waits", ())],
            blob=(int(blob[0]), int(blob[1])) if blob else None,
            value_repr=d.get("value"),
            fingerprint=d.get("fp"),
        )


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
    format_version: str = FORMAT_VERSION

    def node(self, node_id: int) -> NodeSpec:
        node = self.nodes[node_id]
        if node.id != node_id:  # ids are dense and ordered; this guards a hand-edited file
            node = next(n for n in self.nodes if n.id == node_id)
        return node

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
        text = yaml.safe_dump(header, sort_keys=False, default_flow_style=False, width=100)
        lines = [text, "nodes:\n"]
        lines.extend(f"  - {json.dumps(n.to_dict())}\n" for n in self.nodes)
        return "".join(lines)

    # -- reading -------------------------------------------------------------------------
    @classmethod
    def from_yaml(cls, text: str) -> "Manifest":
        try:
            header, nodes = _parse_fast(text)
        except (ValueError, yaml.YAMLError):
            try:
                doc = yaml.load(text, Loader=_Loader)
            except yaml.YAMLError as exc:
                raise ManifestError(f"manifest.yaml is not valid YAML ({_first_line(exc)})") from None
            if not isinstance(doc, dict) or "nodes" not in doc:
                raise ManifestError("manifest.yaml has no 'nodes' list") from None
            nodes = doc.pop("nodes")
            header = doc
        return cls._from_parts(header, nodes)

    @classmethod
    def _from_parts(cls, h: Dict[str, Any], node_dicts: List[Dict[str, Any]]) -> "Manifest":
        version = str(h.get("format_version", ""))
        check_format_version(version)
        try:
            lattice = h.get("lattice") or {}
            return cls(
                format_version=version,
                dispatch_id=str(h["dispatch_id"]),
                root_dispatch_id=str(h.get("root_dispatch_id") or h["dispatch_id"]),
                parent=h.get("parent"),
                lattice_name=str(lattice.get("name", "")),
                doc=lattice.get("doc") or "",
                source_file=lattice.get("source_file"),
                created=str(h.get("created", "")),
                cwd=str(h.get("cwd", "")),
                host=str(h.get("host", "")),
                user=str(h.get("user", "")),
                versions=dict(h.get("versions") or {}),
                sys_path=list(h.get("sys_path") or []),
                inputs=dict(h.get("inputs") or {}),
                blobs={k: (int(v[0]), int(v[1])) for k, v in (h.get("blobs") or {}).items()},
                output_node=int(h["output_node"]),
                executors=dict(h.get("executors") or {}),
                nodes=[NodeSpec.from_dict(d) for d in node_dicts],
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ManifestError(f"manifest.yaml is missing or has a malformed field ({exc})") from None


def check_format_version(version: str) -> None:
    """Refuse a run directory written by a newer major format; older ones stay readable."""
    try:
        major = int(version.split(".")[0])
    except ValueError:
        raise ManifestError(f"manifest.yaml has no valid format_version (found {version!r})") from None
    if major > FORMAT_MAJOR:
        raise ManifestError(
            f"run directory format {version} is newer than this cov reads ({FORMAT_VERSION}); "
            "upgrade cov to read it")


def _parse_fast(text: str) -> Tuple[Dict[str, Any], List[Dict[str, Any]]]:
    head, sep, body = text.partition("\nnodes:\n")
    if not sep:
        raise ValueError("no nodes section")
    header = yaml.load(head, Loader=_Loader)
    if not isinstance(header, dict):
        raise ValueError("header is not a mapping")
    nodes = []
    for line in body.splitlines():
        if not line.strip():
            continue
        if not line.startswith("  - {"):
            raise ValueError("not the one-node-per-line shape")
        nodes.append(json.loads(line[4:]))
    return header, nodes


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
