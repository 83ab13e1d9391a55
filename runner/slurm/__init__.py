"""Slurm support for ``runner.backends.slurm``: pure pieces, tested without a cluster.

Modules:
    settings    a Slurm executor's parameters, normalised and validated once
    script      the sbatch script of one job or job array (golden-file tested)
    client      the scheduler commands (sbatch, squeue, scancel, scontrol, sacct, jobcomp),
                run through a ``Shell`` (this host, or an SSH connection), and their parsers
    site        where job files live: the run directory itself, or a copy on a remote cluster
"""
