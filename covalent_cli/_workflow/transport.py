"""``covalent._workflow.transport``."""
from covalent_cli.transport import TransportableObject

__all__ = ["TransportableObject"]
