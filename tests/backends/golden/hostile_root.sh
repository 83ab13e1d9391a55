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
export COV_DISPATCH_ID=4f1c0000-1111-2222 COV_NODE
/usr/bin/python3 "$COV_ROOT/slurm/worker.py" "$COV_ROOT/slurm/bundles/$COV_TASK.pkl" "$COV_ROOT/results/$COV_NODE.pkl" "$COV_ROOT/logs/$COV_NODE.out" "$COV_ROOT/logs/$COV_NODE.err"
COV_RC=$?
COV_LOG="$COV_ROOT/slurm/jobs/${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}.out"  # the job's own output
[ -s "$COV_LOG" ] || rm -f -- "$COV_LOG"  # cleanup: only if empty
exit $COV_RC
