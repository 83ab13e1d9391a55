"""``covalent._workflow.deps``."""
from covalent_cli.deps import Deps

__all__ = ["Deps"]
