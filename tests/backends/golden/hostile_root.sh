#!/bin/bash
#SBATCH --job-name=cov-deadbeef
#SBATCH --output="/tmp/we'ird \"home\" 100%%/$x/run/slurm/jobs/%A_%a.out"
#SBATCH --array=0-2%2
#SBATCH --time=10
# cov: run 4f1c0000-1111-2222, 3 task(s): <node>.<attempt> below

COV_ROOT='/tmp/we'"'"'ird "home" 100%/$x/run'
COV_TASKS=(1.1 3.1 5.1)
COV_TASK=${COV_TASKS[$SLURM_ARRAY_TASK_ID]}
COV_NODE=${COV_TASK%.*}
COV_CHECKPOINT_DIR="$COV_ROOT/checkpoints/$COV_NODE"
export COV_DISPATCH_ID=4f1c0000-1111-2222 COV_NODE COV_CHECKPOINT_DIR
COV_OUTCOME="$COV_ROOT/results/$COV_NODE.pkl"
COV_BEFORE=$(stat -c %i.%Y -- "$COV_OUTCOME" 2> /dev/null)
/usr/bin/python3 "$COV_ROOT/slurm/worker.py" "$COV_ROOT/slurm/bundles/$COV_TASK.pkl" "$COV_ROOT/results/$COV_NODE.pkl" "$COV_ROOT/logs/$COV_NODE.out" "$COV_ROOT/logs/$COV_NODE.err"
COV_RC=$?
if [ "$COV_RC" -ne 0 ] && [ -z "${COV_WARNED:-}" ] && [ "$(stat -c %i.%Y -- "$COV_OUTCOME" 2> /dev/null)" = "$COV_BEFORE" ]; then  # no outcome
  printf '{"ok": false, "reason": "job_exit", "exit_code": %d, "host": "%s", "end": %s, "error": "the task process exited with status %d without writing an outcome"}\n' "$COV_RC" "${SLURMD_NODENAME:-}" "$(date +%s)" "$COV_RC" > "$COV_OUTCOME.tmp-$$" && mv -f -- "$COV_OUTCOME.tmp-$$" "$COV_OUTCOME"
fi
COV_LOG="$COV_ROOT/slurm/jobs/${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}.out"  # the job's own output
[ -s "$COV_LOG" ] || rm -f -- "$COV_LOG"  # cleanup: only if empty
exit $COV_RC
