"""``covalent._file_transfer.strategies.shutil_strategy``."""
from covalent_cli.fs_strategies import Shutil

__all__ = ["Shutil"]
