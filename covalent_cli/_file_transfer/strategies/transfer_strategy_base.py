"""``covalent._file_transfer.strategies.transfer_strategy_base``."""
from covalent_cli.fs_strategies import FileTransferStrategy

__all__ = ["FileTransferStrategy"]
