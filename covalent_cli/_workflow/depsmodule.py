"""``covalent._workflow.depsmodule``."""
from covalent_cli.deps import DepsModule

__all__ = ["DepsModule"]
