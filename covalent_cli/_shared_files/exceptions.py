"""``covalent._shared_files.exceptions``."""
from covalent_cli.errors import MissingLatticeRecordError, NotSupportedByCov

__all__ = ["MissingLatticeRecordError", "NotSupportedByCov"]
