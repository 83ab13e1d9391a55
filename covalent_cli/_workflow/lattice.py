"""``covalent._workflow.lattice``."""
from covalent_cli.lattice import Lattice, lattice

__all__ = ["Lattice", "lattice"]
