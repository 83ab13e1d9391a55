"""The runner as a Slurm job (``cov runner start --as-job``, ``cov dispatch --as-job``).

Modules:
    record   the home's record of its runner job, and whether that job still serves the home
             (what login-node commands look at instead of a pid they cannot see)
    submit   the request, the sbatch script, submitting (and resubmitting a lost job)
    serve    the runner inside the job: the walltime watch and the handover to a successor
"""
