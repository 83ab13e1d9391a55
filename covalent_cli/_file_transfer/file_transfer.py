"""``covalent._file_transfer.file_transfer``."""
from covalent_cli.fs import FileTransfer, TransferFromRemote, TransferToRemote

__all__ = ["FileTransfer", "TransferFromRemote", "TransferToRemote"]
