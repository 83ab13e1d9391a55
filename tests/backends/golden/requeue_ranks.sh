#!/bin/bash
#SBATCH --job-name=cov-4f1c0000
#SBATCH --output=/shared/runs/4f1c/slurm/jobs/%A_%a.out
#SBATCH --array=0-1
#SBATCH --signal=B:USR1@120
#SBATCH --time=00:30:00
#SBATCH --partition=debug
#SBATCH --ntasks=4
# cov: run 4f1c0000-1111-2222, 2 task(s): <node>.<attempt> below

trap 'COV_WARNED=1; kill -USR1 "$COV_PID" 2> /dev/null' USR1  # the time limit is near: tell the worker
COV_ROOT=/shared/runs/4f1c
COV_TASKS=(2.1 5.3)
COV_TASK=${COV_TASKS[$SLURM_ARRAY_TASK_ID]}
COV_NODE=${COV_TASK%.*}
COV_CHECKPOINT_DIR="$COV_ROOT/checkpoints/$COV_NODE"
export COV_DISPATCH_ID=4f1c0000-1111-2222 COV_NODE COV_CHECKPOINT_DIR
COV_OUTCOME="$COV_ROOT/results/$COV_NODE.pkl"
COV_BEFORE=$(stat -c %i.%Y -- "$COV_OUTCOME" 2> /dev/null)
grep -qs '^{"ok": true' "$COV_OUTCOME" && { echo 'cov: the task already succeeded (a requeued job): not run again'; exit 0; }
for f in "$COV_ROOT/logs/$COV_NODE.out" "$COV_ROOT/logs/$COV_NODE.err"; do : > "$f"; done
rm -f -- "$COV_OUTCOME.rank0"
srun python3 "$COV_ROOT/slurm/worker.py" "$COV_ROOT/slurm/bundles/$COV_TASK.pkl" "$COV_ROOT/results/$COV_NODE.pkl.rank0" "$COV_ROOT/logs/$COV_NODE.out" "$COV_ROOT/logs/$COV_NODE.err" &
COV_PID=$!
until wait "$COV_PID"; COV_RC=$?; ! kill -0 "$COV_PID" 2> /dev/null; do :; done
wait "$COV_PID" 2> /dev/null; COV_LAST=$?; [ "$COV_LAST" -eq 127 ] || COV_RC=$COV_LAST
[ ! -e "$COV_OUTCOME.rank0" ] || mv -f -- "$COV_OUTCOME.rank0" "$COV_OUTCOME"
if [ "$COV_RC" -ne 0 ] && [ -z "${COV_WARNED:-}" ] && [ "$(stat -c %i.%Y -- "$COV_OUTCOME" 2> /dev/null)" = "$COV_BEFORE" ]; then  # no outcome
  printf '{"ok": false, "reason": "job_exit", "exit_code": %d, "host": "%s", "end": %s, "error": "the task process exited with status %d without writing an outcome"}\n' "$COV_RC" "${SLURMD_NODENAME:-}" "$(date +%s)" "$COV_RC" > "$COV_OUTCOME.tmp-$$" && mv -f -- "$COV_OUTCOME.tmp-$$" "$COV_OUTCOME"
fi
COV_LOG="$COV_ROOT/slurm/jobs/${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}.out"  # the job's own output
[ -s "$COV_LOG" ] || rm -f -- "$COV_LOG"  # cleanup: only if empty
exit $COV_RC
