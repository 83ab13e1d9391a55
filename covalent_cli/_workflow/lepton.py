"""``covalent._workflow.lepton``."""
from covalent_cli.leptons import Lepton, bash

__all__ = ["Lepton", "bash"]
