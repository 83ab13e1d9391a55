"""The result cache across the runs of a home: a cache-enabled task whose code and inputs equal
an earlier completed task's takes that task's result instead of running (docs/cache.md).

A task's *key* is a hash of its parts (``KeyParts``): its name, its code fingerprint (its code,
the helpers it reads, its hooks and deps, its executor's settings with secrets masked), a hash
of its executor's manifest entry, and a content hash of each input: a literal argument's pickle,
or the pickled value of the parent result it consumes. It is computed when the task is ready
(its parents' results exist only then), so equal values give a hit however they were made.

An entry is two files under ``<home>/.result-cache/<key[:2]>/``: ``<key>.pkl``, a hard link of
the outcome file it came from (a copy across filesystems), and ``<key>.json``, its index (the
run and node, the task name, the size, the parts). The result is put in place first and the
index last, each by a rename, and eviction removes the index first: an entry with an index has
had a whole result. A reader links the result to a temporary name of its own, then checks the
linked file is a whole successful outcome before renaming it into the run: a file evicted (or
torn by hand) in between is a miss, never a partial result. The index's mtime is the entry's
last use (least recently used entries go first when the cache is over ``cache.max_size``).
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple, Union

from runner.cache_size import CacheSize
from runner.fs import atomic_write
from runner.layout import CACHE_INDEX_SUFFIX, cache_dir, cache_entry_paths
from runner.manifest import (ATTRIBUTE, COLLECTION, ELECTRON, OPERATOR, PARAMETER, Manifest,
                             NodeSpec)
from runner.outcome import read_outcome_payload
from runner.outcome_pack import parse_record
from runner.rundir import RunDir

DEFAULT_MAX_SIZE = 10 * 1024 ** 3  # cache.max_size when the config sets none: 10 GB
_UNITS = {"": 1, "B": 1, "K": 1024, "KB": 1024, "M": 1024 ** 2, "MB": 1024 ** 2,
          "G": 1024 ** 3, "GB": 1024 ** 3, "T": 1024 ** 4, "TB": 1024 ** 4}


def parse_size(value: Any) -> Optional[int]:
    """Bytes from ``10GB``, ``500MB``, ``1.5G`` or a plain number; None if it is none of them."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return int(value) if value >= 0 else None
    if not isinstance(value, str):
        return None
    text = value.strip().upper().replace(" ", "")
    number = text.rstrip("BKMGT")
    unit = text[len(number):]
    try:
        amount = float(number)
    except ValueError:
        return None
    if unit not in _UNITS or amount < 0:
        return None
    return int(amount * _UNITS[unit])


@dataclass
class KeyParts:
    """What a cache key is made of; ``--why`` compares them part by part."""

    name: str
    code: str  # the code fingerprint (code, helpers, hooks and deps, executor settings)
    executor: str  # a hash of the executor's manifest entry (secrets are never in it)
    inputs: List[Tuple[str, str]] = field(default_factory=list)  # (argument, content hash)

    def key(self) -> str:
        text = json.dumps([self.name, self.code, self.executor, self.inputs])
        return hashlib.sha256(text.encode()).hexdigest()

    def to_dict(self) -> Dict[str, Any]:
        return {"name": self.name, "code": self.code, "executor": self.executor,
                "inputs": [list(i) for i in self.inputs]}


# The reshaping nodes dispatch marks cached when they feed a cached task.
CACHED_RESHAPING = frozenset({COLLECTION, ATTRIBUTE, OPERATOR})


def cacheable(node: NodeSpec) -> bool:
    """A node the cache applies to: an electron marked ``cache=True`` (sublattices never) and
    the lists, items and operators that feed one."""
    return node.cache and (node.kind == ELECTRON or node.kind in CACHED_RESHAPING)


def input_label(param: str, index: Optional[int]) -> str:
    return param if index is None else f"{param}[{index}]"


class ResultCache:
    """The cache of one home, as a runner (or ``cov cache``) uses it."""

    def __init__(self, home: Path, max_size: int = DEFAULT_MAX_SIZE) -> None:
        self.home = home
        self.max_size = max_size
        # (run path, node) -> the hash of that node's pickled result; results never change
        self._hashes: Dict[Tuple[str, int], str] = {}
        self._executors: Dict[Tuple[str, Optional[str]], str] = {}  # (run, executor) -> hash
        # the bytes it holds: one total for every process of the home (runner.cache_size)
        self.size = CacheSize(home, self.entries, self.remove)

    # -- keys ------------------------------------------------------------------------------
    def key_parts(self, run: RunDir, manifest: Manifest, node_id: int) -> Optional[KeyParts]:
        """The parts of ``node_id``'s key, or None if an input's value cannot be read."""
        node = manifest.node(node_id)
        run_path = str(run.path)
        executor_hash = self._executors.get((run_path, node.executor))
        if executor_hash is None:
            executor = manifest.executors.get(node.executor or "local", {"type": "local"})
            executor_hash = self._executors[(run_path, node.executor)] = _digest(
                json.dumps(executor, sort_keys=True, default=str).encode())
        parts = KeyParts(node.name, node.fingerprint or "", executor_hash)
        params = [edge.param for edge in node.parents]
        for edge in node.parents:
            value = self._input_hash(run, run_path, manifest.node(edge.node))
            if value is None:
                return None
            # the edge's own order decides the call: the label is for people (--why)
            label = edge.param if params.count(edge.param) == 1 else \
                input_label(edge.param, edge.index)
            parts.inputs.append((label, value))
        return parts

    def _input_hash(self, run: RunDir, run_path: str, parent: NodeSpec) -> Optional[str]:
        memo = (run_path, parent.id)
        found = self._hashes.get(memo)
        if found is not None:
            return found
        if parent.kind == PARAMETER:
            data: Optional[bytes] = run.read_blob(parent.blob) if parent.blob else b""
        else:
            data = run.read_outcome(parent.id, payload=True)[1]  # packed or its own file
        if data is None:
            return None
        found = self._hashes[memo] = _digest(data)
        return found

    def note_value(self, run_path: str, node_id: int, payload: bytes) -> None:
        """``node_id``'s pickled value, known before a reader of the run could find it (a hit
        appended to a pack, whose ``end`` event is not written yet): its consumers' keys."""
        self._hashes[(run_path, node_id)] = _digest(payload)

    def forget_run(self, run_path: str) -> None:
        """Drop the hashes of a run no longer served."""
        for memo in [m for m in self._hashes if m[0] == run_path]:
            del self._hashes[memo]
        for known in [m for m in self._executors if m[0] == run_path]:
            del self._executors[known]

    # -- hits ------------------------------------------------------------------------------
    def has(self, key: str) -> bool:
        index, result = cache_entry_paths(self.home, key)
        return os.path.exists(index) and os.path.exists(result)

    def take(self, key: str, dest: Path) -> Optional[Dict[str, Any]]:
        """Put entry ``key``'s result at ``dest`` (a run's result file); its index, or None on
        a miss (absent, evicted meanwhile, torn)."""
        index_path, result = cache_entry_paths(self.home, key)
        entry = _read_index(index_path)
        if entry is None:
            return None
        tmp = f"{dest}.cache-{os.getpid()}-{secrets.token_hex(3)}"
        try:
            _link_or_copy(result, tmp)
        except OSError:
            return None  # evicted (or never whole): a miss
        # Linked first, checked after: a file removed from the cache after our link is still
        # ours whole; a torn one fails here.
        if read_outcome_payload(tmp) is None:
            _unlink(tmp)
            return None
        os.replace(tmp, dest)
        try:
            os.utime(index_path)  # its last use
        except OSError:
            pass
        return entry

    def take_record(self, key: str) -> Optional[Tuple[Dict[str, Any], Dict[str, Any], bytes]]:
        """Entry ``key``'s (index, outcome header, pickled value), read whole, for a run that
        packs its outcomes (format 2.0: the runner appends it to its pack, making no file);
        None on a miss (absent, evicted meanwhile, torn, not a success)."""
        index_path, result = cache_entry_paths(self.home, key)
        entry = _read_index(index_path)
        if entry is None:
            return None
        try:
            with open(result, "rb") as f:  # an eviction after the open leaves it readable
                data = f.read()
        except OSError:
            return None
        header, payload = parse_record(data)
        if header is None or not header.get("ok"):
            return None
        try:
            os.utime(index_path)  # its last use
        except OSError:
            pass
        return entry, header, payload

    # -- adding and evicting ----------------------------------------------------------------
    def add(self, parts: KeyParts, source: Union[Path, bytes], run_id: str, node: int) -> bool:
        """Add the completed result at ``source`` under ``parts``' key (True if added);
        ``source`` may be the outcome's bytes (a packed one: the entry is a file of its own)."""
        key = parts.key()
        index_path, result = cache_entry_paths(self.home, key)
        if self.has(key):
            return False
        if isinstance(source, bytes):
            header, _ = parse_record(source)
            if header is None or not header.get("ok"):
                return False
        elif read_outcome_payload(str(source)) is None:
            return False  # not a whole successful outcome: never cached
        with self.size.locked():  # the entry and the shared total change together
            if self.has(key):  # added by another runner meanwhile
                return False
            os.makedirs(os.path.dirname(index_path), exist_ok=True)
            tmp = f"{result}.tmp-{os.getpid()}-{secrets.token_hex(3)}"
            try:
                if isinstance(source, bytes):  # a packed record's (format 2.0)
                    atomic_write(tmp, source)
                else:
                    _link_or_copy(source, tmp)
                os.replace(tmp, result)
            except OSError:
                _unlink(tmp)
                return False
            size = os.stat(result).st_size
            entry = {"key": key, "name": parts.name, "run": run_id, "node": node,
                     "size": size, "created": time.time(), "parts": parts.to_dict()}
            atomic_write(index_path, json.dumps(entry).encode())
            self.size.added(size, self.max_size)
        return True

    def evict(self, limit: int) -> List[Dict[str, Any]]:
        """Remove least recently used entries until the cache holds at most ``limit`` bytes."""
        return self.size.evict(limit)

    def remove(self, key: str) -> None:
        index, result = cache_entry_paths(self.home, key)
        _unlink(index)  # the index first: an entry without one is never taken
        _unlink(result)

    def clear(self, older_than: Optional[float] = None) -> List[Dict[str, Any]]:
        """Remove every entry (or those last used more than ``older_than`` seconds ago)."""
        if not cache_dir(self.home).is_dir():
            return []
        now = time.time()
        with self.size.locked():
            removed = [e for e in self.entries()
                       if older_than is None or now - e["used"] > older_than]
            for entry in removed:
                self.remove(entry["key"])
            if older_than is None:  # leftovers too; the lock and total files stay
                for folder in cache_dir(self.home).iterdir():
                    if folder.is_dir():
                        shutil.rmtree(folder, ignore_errors=True)
            self.size.recount_locked()
        return removed

    # -- listing ---------------------------------------------------------------------------
    def entries(self) -> Iterator[Dict[str, Any]]:
        """Every entry's index, with ``used`` (its last use); torn ones are left out."""
        root = cache_dir(self.home)
        if not root.is_dir():
            return
        for folder in sorted(root.iterdir()):
            if not folder.is_dir():
                continue
            for path in sorted(folder.glob(f"*{CACHE_INDEX_SUFFIX}")):
                entry = _read_index(path)
                if entry is None:
                    continue
                try:
                    entry["used"] = path.stat().st_mtime
                except OSError:
                    continue
                yield entry


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read_index(path: "str | Path") -> Optional[Dict[str, Any]]:
    try:
        with open(path, "rb") as f:
            entry = json.loads(f.read())
    except (OSError, ValueError):
        return None
    if not isinstance(entry, dict) or not isinstance(entry.get("key"), str) or \
            not isinstance(entry.get("size"), int):
        return None
    return entry


def _link_or_copy(source: "str | Path", dest: str) -> None:
    """A hard link (a copy if ``dest`` is on another filesystem)."""
    try:
        os.link(source, dest)
    except OSError as exc:
        if exc.errno != 18:  # EXDEV
            raise
        shutil.copyfile(source, dest)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
