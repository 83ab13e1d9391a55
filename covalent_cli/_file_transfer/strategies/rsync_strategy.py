"""``covalent._file_transfer.strategies.rsync_strategy``."""
from covalent_cli.fs_strategies import Rsync

__all__ = ["Rsync"]
