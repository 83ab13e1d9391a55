"""The checks of a manifest's header as read from disk (``manifest.yaml``, format 2.0): each
field a listing or the runner reads has the type it needs, or ``ManifestError`` names it; a run
directory of a newer major format is refused.
"""
from __future__ import annotations

from typing import Any, Dict, List, Tuple

FORMAT_VERSION = "2.0"  # what dispatch writes
FORMAT_MAJOR = 2
# From format 2.0 on, pool workers pack small outcomes and logs (runner/outcome_pack.py):
# cov before it would see them as missing, so such a run is refused by it (a newer major).
PACKED_MAJOR = 2


def packs_outcomes(version: str) -> bool:
    """Whether the runner may write a run of this ``format_version`` in pack files (a 1.0
    run, dispatched by an older cov, keeps its per-node files whoever serves it)."""
    try:
        return int(str(version).split(".")[0]) >= PACKED_MAJOR
    except ValueError:
        return False

Blob = Tuple[int, int]  # (offset, length) in tasks.pkl


class ManifestError(Exception):
    """A manifest that cannot be read: corrupted, wrong-typed, or from a newer format."""


def is_int(value: Any) -> bool:
    """An int that is not a bool (YAML reads ``true`` as one)."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_header(h: Any) -> Dict[str, Any]:
    """The manifest header with its listing fields checked and normalised (``created`` as
    text, ``lattice`` a mapping); ``ManifestError`` naming the first bad field."""
    if not isinstance(h, dict):
        raise ManifestError("manifest.yaml's header is not a mapping")
    version = str(h.get("format_version", ""))
    check_format_version(version)
    dispatch_id = h.get("dispatch_id")
    if not isinstance(dispatch_id, str) or not dispatch_id:
        raise ManifestError(f"manifest.yaml: 'dispatch_id' must be text (found {dispatch_id!r})")
    lattice = h.get("lattice") or {}
    if not isinstance(lattice, dict) or not isinstance(lattice.get("name", ""), str):
        raise ManifestError(f"manifest.yaml: 'lattice' must be a mapping with a name "
                            f"(found {lattice!r})")
    parent = h.get("parent")
    if parent is not None and not (isinstance(parent, dict) and
                                   isinstance(parent.get("dispatch_id"), str) and
                                   is_int(parent.get("node"))):
        raise ManifestError(f"manifest.yaml: 'parent' must be {{dispatch_id, node}} "
                            f"(found {parent!r})")
    root = h.get("root_dispatch_id") or dispatch_id
    if not isinstance(root, str):
        raise ManifestError(f"manifest.yaml: 'root_dispatch_id' must be text (found {root!r})")
    for name in ("output_node", "task_count"):
        if name in h and not is_int(h[name]):
            raise ManifestError(f"manifest.yaml: '{name}' must be an integer (found {h[name]!r})")
    created = h.get("created", "")
    # An unquoted timestamp (hand edit) is a datetime to YAML: listings sort it as text.
    created = created.isoformat() if hasattr(created, "isoformat") else str(created or "")
    # Optional (runs before them have neither): a hand-edited odd value is read as text.
    label = h.get("name")
    tags = h.get("tags") or []
    return {**h, "format_version": version, "dispatch_id": dispatch_id, "lattice": lattice,
            "root_dispatch_id": root, "created": created,
            "name": None if label is None else str(label),
            "tags": [str(t) for t in tags] if isinstance(tags, list) else [str(tags)]}


def mapping_field(h: Dict[str, Any], name: str) -> Dict[str, Any]:
    """Header field ``name``: a mapping (absent: empty)."""
    value = h.get(name) or {}
    if not isinstance(value, dict):
        raise ManifestError(f"manifest.yaml: '{name}' must be a mapping (found {value!r})")
    return value


def list_field(h: Dict[str, Any], name: str) -> List[Any]:
    """Header field ``name``: a list (absent: empty)."""
    value = h.get(name) or []
    if not isinstance(value, list):
        raise ManifestError(f"manifest.yaml: '{name}' must be a list (found {value!r})")
    return value


def blob_field(value: Any, where: str) -> Blob:
    """A ``[offset, length]`` in tasks.pkl (``where``: the field, for the message)."""
    if not (isinstance(value, list) and len(value) == 2 and all(is_int(v) and v >= 0
                                                                for v in value)):
        raise ManifestError(f"manifest.yaml: '{where}' must be [offset, length] (found {value!r})")
    return value[0], value[1]


# Executor fields the runner itself reads, with their types (backends check their own).
_EXECUTOR_FIELDS: Dict[str, tuple] = {"type": (str,), "retries": (int, type(None)),
                                      "custom": (str, type(None))}


def executors_field(h: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    """The ``executors`` table, with the fields the runner itself reads type-checked."""
    table = mapping_field(h, "executors")
    for key, config in table.items():
        if not isinstance(config, dict):
            raise ManifestError(f"manifest.yaml: executor {key!r} must be a mapping "
                                f"(found {config!r})")
        for name, types in _EXECUTOR_FIELDS.items():
            value = config.get(name)
            if name in config and (not isinstance(value, types) or isinstance(value, bool)):
                raise ManifestError(f"manifest.yaml: executor {key!r} has {name}={value!r} "
                                    "(wrong type)")
    return table


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
