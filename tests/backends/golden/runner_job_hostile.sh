#!/bin/bash
#SBATCH --job-name=cov-runner-03330571
#SBATCH --output="/tmp/we'ird \"home\" 100%%/$x/.runners/runner-job-%j.out"
#SBATCH --dependency=singleton
#SBATCH --time=00:30:00
#SBATCH --partition="debug queue"
#SBATCH --cpus-per-task=4
# cov: the runner of a runs home as a Slurm job (cov runner start --as-job)
export PYTHONPATH=REPO${PYTHONPATH:+:$PYTHONPATH}
exec PYTHON -m runner.runner_job --home '/tmp/we'"'"'ird "home" 100%/$x' --margin 60 --poll >> '/tmp/we'"'"'ird "home" 100%/$x/.runners/runner.log' 2>&1
