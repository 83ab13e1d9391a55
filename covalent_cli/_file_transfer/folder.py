"""``covalent._file_transfer.folder``."""
from covalent_cli.fs import Folder

__all__ = ["Folder"]
