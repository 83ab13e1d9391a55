"""``covalent._workflow.depsbash``."""
from covalent_cli.deps import DepsBash

__all__ = ["DepsBash"]
