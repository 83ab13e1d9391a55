"""``covalent._workflow.depspip``."""
from covalent_cli.deps import DepsPip

__all__ = ["DepsPip"]
