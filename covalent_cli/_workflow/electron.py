"""``covalent._workflow.electron``."""
from covalent_cli.electron import Electron, electron, wait

__all__ = ["Electron", "electron", "wait"]
