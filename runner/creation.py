"""Creating a run directory: whole or absent (docs/run-directory.md, "Creation").

The run is built under a name of its own in the home (``layout.creating_path``: a dot name,
which readers skip) and renamed into place in one ``rename(2)``, so a run never looks complete
before it is, and a creator killed half-way leaves only a directory nobody reads.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

from runner.fs import DIR_MODE, append_whole, atomic_write, fsync_dir, write_private
from runner.layout import (ENV, EVENTS, LOGS, MANIFEST, PACK, RESULTS, SOURCES, RunPaths,
                           OUTCOME_PACK_SUFFIX, creating_path, outcome_file)
from runner.manifest import Manifest
from runner.manifest_checks import packs_outcomes
from runner.outcome_pack import RECORD_LIMIT, PackWriter, encode_record, parse_record
from runner.state import Event


def _pack_reused(results_dir: Path, results: List[Tuple[int, Union[Path, bytes]]],
                 events: Iterable[Event]
                 ) -> Tuple[List[Tuple[int, Union[Path, bytes]]], List[Event]]:
    """Format 2.0: the reused results go into one pack of the creator's (a file for all of
    them, not one per node), and their ``end`` events get its locations (``at``); returns
    the results left to be files of their own (too large for a pack, or unreadable: they then
    read as missing, as a cut file would) and the events."""
    writer = PackWriter(str(results_dir), OUTCOME_PACK_SUFFIX)
    left: List[Tuple[int, Union[Path, bytes]]] = []
    where: Dict[int, List[Any]] = {}
    try:
        for node, source in results:
            data = source if isinstance(source, bytes) else _read(source)
            header, payload = parse_record(data) if data is not None else (None, b"")
            if header is None:
                left.append((node, source))
                continue
            for field in ("at", "log_at"):  # the old run's locations, not this one's
                header.pop(field, None)
            header.update(node=node, attempt=0)  # the attempt of a reused node's end event
            record = encode_record(header, payload)
            if len(record) > RECORD_LIMIT:
                left.append((node, source))
                continue
            where[node] = writer.append(record)
    finally:
        writer.close()
    packed: List[Event] = []
    for event in events:
        if event.get("ev") == "end" and event.get("node") in where:
            event = event.copy()  # the caller's stays as it was
            event["at"] = where[event["node"]]
        packed.append(event)
    return left, packed


def _read(path: Union[Path, str]) -> Optional[bytes]:
    try:
        return Path(path).read_bytes()
    except OSError:
        return None


def create_run_dir(home: Path, manifest: Manifest, pack: bytes,
                   events: Iterable[Event] = (),
                   results: Iterable[Tuple[int, Union[Path, bytes]]] = (),
                   secret_values: Optional[Dict[str, Dict[str, Any]]] = None,
                   env: Optional[bytes] = None, sources: Optional[bytes] = None) -> Path:
    """Build the run under a temporary name and rename it into place; returns its path.
    ``secret_values`` ({executor key: secret fields}) go to a 0600 file, never the manifest.
    ``sources``: the ``sources.json`` text (the code as dispatched, for people).

    Idempotent for a given dispatch id (a sublattice's child, re-created by a re-run of its
    building task): if the run already exists, its path is returned and nothing written."""
    home.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    final = home / manifest.dispatch_id
    # A name of its own: a creator killed half-way leaves its directory, and two creators
    # of one child run never share one.
    tmp = creating_path(home, manifest.dispatch_id, secrets.token_hex(3))
    tmp.mkdir(mode=DIR_MODE)  # the owner's only: inputs, results and logs are inside
    try:
        (tmp / RESULTS).mkdir(mode=DIR_MODE)
        (tmp / LOGS).mkdir(mode=DIR_MODE)
        results = list(results)
        if results and packs_outcomes(manifest.format_version):
            results, events = _pack_reused(tmp / RESULTS, results, events)
        for node, source in results:  # reused results of a redispatch
            dest = tmp / RESULTS / outcome_file(node)
            if isinstance(source, bytes):  # a packed outcome's bytes (format 2.0)
                atomic_write(dest, source)
                continue
            try:
                os.link(source, dest)
            except OSError:
                atomic_write(dest, Path(source).read_bytes())
        atomic_write(tmp / PACK, pack, fsync=True)
        if sources is not None:
            atomic_write(tmp / SOURCES, sources)
        if secret_values:
            write_private(RunPaths(tmp).executor_secrets_path, json.dumps(secret_values).encode())
        if env is not None:  # secrets may be in it: readable by the user only
            fd = os.open(tmp / ENV, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                append_whole(fd, env, 0)
            finally:
                os.close(fd)
        lines = "".join(json.dumps(e) + "\n" for e in events)
        atomic_write(tmp / EVENTS, lines.encode(), fsync=bool(lines))
        atomic_write(tmp / MANIFEST, manifest.to_yaml().encode(), fsync=True)
        fsync_dir(tmp)
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / MANIFEST).is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another creator of this run won: it is whole
            return final
        fsync_dir(home)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final
