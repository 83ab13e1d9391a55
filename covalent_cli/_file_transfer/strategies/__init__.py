"""``covalent._file_transfer.strategies`` (Covalent's ``ct.fs_strategies``)."""
from covalent_cli.fs_strategies import (HTTP, S3, Blob, ExecutorConnection, FileTransferStrategy,
                                        GCloud, Rsync, Shutil)

__all__ = ["FileTransferStrategy", "Shutil", "Rsync", "ExecutorConnection", "HTTP", "S3", "Blob",
           "GCloud"]
