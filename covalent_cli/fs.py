"""File transfers (``ct.fs``): ``@ct.electron(files=[ct.fs.FileTransfer(...)])``.

As in Covalent, each transfer runs before the task (``Order.BEFORE``, the default, and
``TransferFromRemote``) or after it (``Order.AFTER``, and ``TransferToRemote``), and the task
receives ``files=[(from_path, to_path), ...]``, one pair per transfer in the order given. A
failed transfer fails the task, naming the path and the reason. Where each strategy copies:
``covalent_cli.fs_strategies`` and docs/executors.md ("File transfers").
"""
from __future__ import annotations

import enum
import os
import uuid
from typing import Any, Dict, List, Optional, Union
from urllib.parse import urlparse

from covalent_cli import fs_strategies as strategies
from covalent_cli.fs_strategies import FileTransferStrategy, Rsync, Shutil

RESERVED_FILES_KEYWORD = "files"  # the keyword argument the task receives the paths in


class Order(str, enum.Enum):
    BEFORE = "before"
    AFTER = "after"


class File:
    """A path (or ``file://`` URI). ``is_remote`` marks it as the remote side of a transfer;
    ``is_dir`` (or a trailing ``/``) makes it a folder; ``include_folder`` copies the folder
    itself rather than its contents. No path: a temporary file ``/tmp/<uuid>``, created empty
    before the transfers."""

    def __init__(self, filepath: Optional[str] = None, is_remote: bool = False,
                 is_dir: bool = False, include_folder: bool = False) -> None:
        if filepath is not None and not isinstance(filepath, str):
            raise AttributeError("Only strings are valid filepaths for a covalent File constructor.")
        self.id = str(uuid.uuid4())
        if filepath is None:
            filepath = self.get_temp_filepath()
        parsed = urlparse(filepath)
        if parsed.scheme not in ("", "file"):
            raise NotImplementedError(f"File scheme {parsed.scheme}:// is not supported by cov "
                                      f"({filepath}); only local paths and file:// URIs are")
        path = parsed.path if parsed.scheme == "file" else filepath
        self.scheme = "file"
        self._is_remote = bool(is_remote)
        self._is_dir = bool(is_dir) or path.endswith("/")
        self._include_folder = bool(include_folder)
        self._path = os.path.normpath(path) if path else path
        self.uri = f"file://{self._path}"

    def get_temp_filepath(self) -> str:
        return f"/tmp/{self.id}"

    @property
    def is_temp_file(self) -> bool:
        return self._path == self.get_temp_filepath()

    @property
    def is_remote(self) -> bool:
        return self._is_remote

    @property
    def is_dir(self) -> bool:
        return self._is_dir

    @property
    def filepath(self) -> str:
        """The path; a folder's ends with ``/`` (its contents are copied) unless
        ``include_folder``."""
        if self._is_dir and not self._include_folder:
            return self._path.rstrip("/") + "/"
        return self._path

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.filepath!r}{', remote' if self.is_remote else ''})"


class Folder(File):
    """A folder (``File`` with ``is_dir=True``)."""

    def __init__(self, filepath: Optional[str] = None, is_remote: bool = False,
                 is_dir: bool = True, include_folder: bool = False) -> None:
        super().__init__(filepath, is_remote, is_dir, include_folder)


class FileTransfer:
    """Copy ``from_file`` to ``to_file`` before (``order=Order.BEFORE``) or after the task.
    ``strategy`` defaults to ``Shutil`` for two local paths and ``Rsync()`` when one side is
    remote."""

    def __init__(self, from_file: Optional[Union[File, str]] = None,
                 to_file: Optional[Union[File, str]] = None, order: Order = Order.BEFORE,
                 strategy: Optional[FileTransferStrategy] = None) -> None:
        self.from_file = _as_file(from_file)
        self.to_file = _as_file(to_file)
        self.order = Order(order)
        if self.from_file.is_remote and self.to_file.is_remote:
            raise ValueError("FileTransfer currently does not support remote->remote file "
                             "transfers, please update from_filepath or to_filepath to "
                             "correspond to a local filepath.")
        remote = self.from_file.is_remote or self.to_file.is_remote
        if strategy is None:
            strategy = Rsync() if remote else Shutil()
        if not isinstance(strategy, FileTransferStrategy):
            raise TypeError(f"strategy must be one of ct.fs_strategies, not "
                            f"{type(strategy).__name__}")
        if remote and not strategy.remote_ok:
            raise ValueError(f"{type(strategy).__name__} copies local files only; use Rsync or "
                             f"ExecutorConnection for a remote path ({self._describe()})")
        if isinstance(strategy, strategies.ExecutorConnection) and not remote:
            raise ValueError("ExecutorConnection needs one side marked remote (the machine cov "
                             "runs on): use ct.fs.TransferFromRemote / TransferToRemote or "
                             f"File(path, is_remote=True) ({self._describe()})")
        if isinstance(strategy, Rsync) and remote and not strategy.host:
            raise ValueError(f"Rsync needs host= (and user=) for a remote path ({self._describe()})")
        self.strategy = strategy

    def _describe(self) -> str:
        return f"{self.from_file.filepath} -> {self.to_file.filepath}"

    @property
    def direction(self) -> str:
        """``cp`` (local to local), ``download`` (remote to local) or ``upload``."""
        if self.from_file.is_remote:
            return "download"
        if self.to_file.is_remote:
            return "upload"
        return "cp"

    def to_plain(self) -> Dict[str, Any]:
        """The worker's (and the runner's) view: plain data only."""
        temp = [p.filepath for p in (self.from_file, self.to_file) if p.is_temp_file]
        ends = [self.from_file.filepath, self.to_file.filepath]
        if isinstance(self.strategy, strategies.ExecutorConnection):
            # The runner copies this machine's side: relative to where the script runs, not
            # to the runner's own directory.
            side = 0 if self.from_file.is_remote else 1
            ends[side] = os.path.abspath(ends[side]) + ("/" if ends[side].endswith("/") else "")
        return {"from": ends[0], "to": ends[1],
                "order": self.order.value, "direction": self.direction,
                "strategy": self.strategy.to_plain(), "touch": temp}

    def __repr__(self) -> str:
        return (f"FileTransfer({self.from_file!r} -> {self.to_file!r}, order={self.order.value}, "
                f"strategy={self.strategy!r})")


def _as_file(value: Any) -> File:
    if value is None or isinstance(value, str):
        return File(value)
    if isinstance(value, File):
        return value
    raise AttributeError("FileTransfer() requires files to be either of type File, string, "
                         "or None.")


def TransferFromRemote(from_filepath: str, to_filepath: Optional[str] = None,
                       strategy: Optional[FileTransferStrategy] = None,
                       order: Order = Order.BEFORE) -> FileTransfer:
    """Copy the remote ``from_filepath`` to the local ``to_filepath`` before the task
    (Covalent's factory: ``order`` is accepted and ignored, as there)."""
    is_dir = from_filepath.endswith("/")
    if is_dir and not (to_filepath or "").endswith("/"):
        raise ValueError("Please specify a directory path (ending with '/') as the destination.")
    return FileTransfer(File(from_filepath, is_remote=True, is_dir=is_dir),
                        File(to_filepath, is_dir=is_dir), order=Order.BEFORE, strategy=strategy)


def TransferToRemote(to_filepath: str, from_filepath: Optional[str] = None,
                     strategy: Optional[FileTransferStrategy] = None,
                     order: Order = Order.AFTER) -> FileTransfer:
    """Copy the local ``from_filepath`` to the remote ``to_filepath`` after the task (the
    destination comes first, as in Covalent; ``order`` is accepted and ignored, as there)."""
    is_dir = bool(from_filepath and from_filepath.endswith("/"))
    if is_dir and not to_filepath.endswith("/"):
        raise ValueError("Please specify a directory path (ending with '/') as the destination.")
    return FileTransfer(File(from_filepath, is_dir=is_dir),
                        File(to_filepath, is_remote=True, is_dir=is_dir), order=Order.AFTER,
                        strategy=strategy)


def as_transfers(files: Any) -> List[FileTransfer]:
    """Check an electron's ``files=`` argument: a list of FileTransfer objects."""
    if files is None:
        return []
    items = files if isinstance(files, (list, tuple)) else [files]
    for item in items:
        if not isinstance(item, FileTransfer):
            raise TypeError(f"files= takes ct.fs.FileTransfer objects, got {type(item).__name__}")
    return list(items)


__all__ = ["File", "Folder", "FileTransfer", "TransferFromRemote", "TransferToRemote", "Order",
           "strategies"]
