"""Covalent's ``covalent._results_manager`` paths, as scripts and Covalent's tests import them."""
from covalent_cli.result import Result

__all__ = ["Result"]
