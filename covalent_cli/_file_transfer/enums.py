"""``covalent._file_transfer.enums``."""
from covalent_cli.fs import Order

__all__ = ["Order"]
