"""Reading ``manifest.yaml`` from its file: streamed, and with the file's identity.

The fast path reads the file line by line (the header through libyaml, the node lines in
chunks through ``json``, as ``Manifest.from_yaml`` does with text) without holding the whole
text: at 100,000 nodes the text took 18 MB beside the nodes being built, at the runner's peak.
A file of another shape (edited by hand into other YAML) is read again whole, the slow way.

The identity (size and a BLAKE2 digest of the bytes parsed) says which file the parsed
manifest is of: a run's snapshot (``runner.snapshot``) is used only for that same file.
"""
from __future__ import annotations

import hashlib
from typing import Any, BinaryIO, Dict, Iterator, List, Optional, Tuple

import yaml

from runner.manifest import Manifest
from runner.manifest_lines import NotJsonLines, byte_line_chunks, decode_node_lines

Identity = Tuple[int, str]  # (size, digest) of a file's bytes
_NODES = b"nodes:\n"
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def identity_of(data: bytes) -> Identity:
    """The identity of a file's whole content."""
    return len(data), hashlib.blake2b(data, digest_size=20).hexdigest()


class _Reader:
    """A binary file's lines, counted and digested as they are read."""

    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        self.size = 0
        self.digest = hashlib.blake2b(digest_size=20)

    def lines(self) -> Iterator[bytes]:
        update = self.digest.update
        for line in self.f:
            update(line)
            self.size += len(line)
            yield line

    def identity(self) -> Identity:
        return self.size, self.digest.hexdigest()


def read_manifest(f: BinaryIO) -> Tuple[Manifest, Identity]:
    """The manifest in ``f`` (a binary file at its start) and the identity of its bytes;
    ``ManifestError`` if it is malformed, ``UnicodeDecodeError`` if it is not text."""
    reader = _Reader(f)
    lines = reader.lines()
    head: List[bytes] = []
    header: Optional[Dict[str, Any]] = None
    for line in lines:
        if line == _NODES:
            try:
                found = yaml.load(b"".join(head).decode("utf-8"), Loader=_Loader)
            except yaml.YAMLError:
                found = None
            header = found if isinstance(found, dict) else None
            break
        head.append(line)
    if header is not None:
        try:
            manifest = Manifest._from_parts(header, decode_node_lines(byte_line_chunks(lines)))
        except NotJsonLines:  # a node line that is not JSON: perhaps YAML, read the slow way
            pass
        else:
            for _ in lines:  # the identity is of the whole file
                pass
            return manifest, reader.identity()
    f.seek(0)
    data = f.read()
    return Manifest.from_yaml(data.decode("utf-8")), identity_of(data)
