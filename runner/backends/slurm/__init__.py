"""The Slurm backend (``SlurmBackend``); all but ``remote`` work without a cluster.

Modules:
    engine      ``SlurmBackend``: queue, batching into job arrays, sbatch, polling, cancels
    settings    a Slurm executor's parameters, normalised and validated once
    script      the sbatch script of one job or job array (golden-file tested)
    client      the scheduler commands (sbatch, squeue, scancel, scontrol, sacct, the jobcomp
                file), run through a ``Shell``, and parsers for what they print
    jobs        the submitted jobs and what the scheduler's answers mean for them (no I/O)
    site        where job files live: the run directory itself (a shared filesystem)
    remote      the SSH mode: commands through ``runner.ssh``, files copied to and from the
                cluster
    pilot       the pilot mode (``pilot=...``): blocks (allocations) that each run a pool
                taking many tasks (``pilot_base``: its state and block submission;
                ``pilot_settings``, ``pilot_script``, ``pilot_blocks``; ``pilot_files``: where
                tickets move, ``pilot_remote``: the same through SSH without a shared
                filesystem; the node's side is ``runner/pilot_pool.py``)
"""
from typing import Any

__all__ = ["SlurmBackend"]


def __getattr__(name: str) -> Any:
    """``SlurmBackend`` on first use: dispatch checks an executor's ``settings`` without it."""
    if name == "SlurmBackend":
        from runner.backends.slurm.engine import SlurmBackend
        from runner.backends.slurm.pilot import PilotBackend

        SlurmBackend.pilot_class = PilotBackend  # an executor with ``pilot`` gets blocks
        return SlurmBackend
    raise AttributeError(name)
