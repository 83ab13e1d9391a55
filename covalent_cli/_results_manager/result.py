"""``covalent._results_manager.result``."""
from covalent_cli.result import Result

__all__ = ["Result"]
