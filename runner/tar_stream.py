"""A tar stream of files held in memory, for a remote ``tar xf -`` (or Python's ``tarfile``)
to unpack: what the Slurm-through-SSH site, its pilot tickets and cov's shipped copy of
itself send over a connection in one command."""
from __future__ import annotations

import io
import tarfile
import time
from typing import Iterable, Optional, Tuple


def tar_files(files: Iterable[Tuple[str, bytes]], mode: int = 0o644,
              mtime: Optional[int] = None) -> bytes:
    """An uncompressed tar of ``(relative path, bytes)`` files, each with ``mode`` and
    ``mtime`` (default: now), in the order given."""
    stamp = int(time.time()) if mtime is None else mtime
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), stamp, mode
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()
