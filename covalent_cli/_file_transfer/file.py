"""``covalent._file_transfer.file``."""
from covalent_cli.fs import File

__all__ = ["File"]
