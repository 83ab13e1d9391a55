#!/bin/bash
#SBATCH --output=/shared/runs/4f1c/slurm/jobs/%j.out
#SBATCH --time=2
#SBATCH --partition=gpu
#SBATCH --cpus-per-task=4
#SBATCH -J "my job"
#SBATCH --comment="a \"quoted\" #1 \\ $HOME"
#SBATCH --exclusive
# cov: run 4f1c0000-1111-2222, 1 task(s): <node>.<attempt> below

export OMP_NUM_THREADS=4
export GREETING='it'"'"'s $HOME; `x`'
source "$HOME"/.bashrc
eval "$(conda shell.bash hook 2> /dev/null)"
conda activate 'my env' || { echo 'cov: cannot activate conda environment my env' >&2; exit 1; }
COV_ROOT=/shared/runs/4f1c
COV_TASK=7.3
COV_NODE=${COV_TASK%.*}
COV_CHECKPOINT_DIR="$COV_ROOT/checkpoints/$COV_NODE"
export COV_DISPATCH_ID=4f1c0000-1111-2222 COV_NODE COV_CHECKPOINT_DIR
COV_WORKDIR="$HOME"/'scratch dir'/4f1c0000-1111-2222/node_"$COV_NODE"
mkdir -p -- "$COV_WORKDIR" && cd -- "$COV_WORKDIR" || exit 1
module load cuda/12
nvidia-smi
COV_OUTCOME="$COV_ROOT/results/$COV_NODE.pkl"
COV_BEFORE=$(stat -c %i.%Y -- "$COV_OUTCOME" 2> /dev/null)
srun -n 1 --gpus=1 -x nsys profile '/opt/py 3/bin/python' "$COV_ROOT/slurm/worker.py" "$COV_ROOT/slurm/bundles/$COV_TASK.pkl" "$COV_ROOT/results/$COV_NODE.pkl" "$COV_ROOT/logs/$COV_NODE.out" "$COV_ROOT/logs/$COV_NODE.err"
COV_RC=$?
if [ "$COV_RC" -ne 0 ] && [ -z "${COV_WARNED:-}" ] && [ "$(stat -c %i.%Y -- "$COV_OUTCOME" 2> /dev/null)" = "$COV_BEFORE" ]; then  # no outcome
  printf '{"ok": false, "reason": "job_exit", "exit_code": %d, "host": "%s", "end": %s, "error": "the task process exited with status %d without writing an outcome"}\n' "$COV_RC" "${SLURMD_NODENAME:-}" "$(date +%s)" "$COV_RC" > "$COV_OUTCOME.tmp-$$" && mv -f -- "$COV_OUTCOME.tmp-$$" "$COV_OUTCOME"
fi
echo done
COV_LOG="$COV_ROOT/slurm/jobs/$SLURM_JOB_ID.out"  # the job's own output
[ -s "$COV_LOG" ] || rm -f -- "$COV_LOG"  # cleanup: only if empty
exit $COV_RC
