"""``covalent._shared_files.util_classes``: ``RESULT_STATUS`` and ``Status``."""
from covalent_cli.status import RESULT_STATUS, Status

__all__ = ["RESULT_STATUS", "Status"]
