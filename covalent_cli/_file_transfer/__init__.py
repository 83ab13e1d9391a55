"""``covalent._file_transfer`` (Covalent's ``ct.fs``): cov's ``covalent_cli.fs`` under
Covalent's module paths."""
from covalent_cli.fs import (File, FileTransfer, Folder, Order, TransferFromRemote,
                             TransferToRemote, strategies)

__all__ = ["File", "FileTransfer", "Folder", "Order", "TransferFromRemote", "TransferToRemote",
           "strategies"]
