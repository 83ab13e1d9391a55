"""``covalent._workflow.depscall``."""
from covalent_cli.deps import DepsCall

__all__ = ["DepsCall"]
