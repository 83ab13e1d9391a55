#!/usr/bin/env bash
# A single-node Slurm cluster for tests (Debian 12: slurm-wlm 22.05 + munge), as root.
# Everything lives in DIR: its own munge key and socket, slurm.conf, cgroup.conf,
# state/, spool/, log/, dev/ (two fake GPU devices, see gres.conf) and the PID files
# slurmctld.pid, slurmd.pid, munge/munged.pid. /etc/slurm and /etc/munge are neither used nor
# changed.
#
# Node "localhost" (all CPUs, memory a consumable, Gres=gpu:2), partitions:
#   debug        the default; a preempted job is requeued by Slurm (PreemptMode=REQUEUE)
#   preemptible  a preempted job is cancelled: it ends PREEMPTED
#   urgent       higher PriorityTier: its jobs preempt those of the two above
# A job step over its memory (--mem, default a CPU's share) is killed (OverMemoryKill).
#
#   bash tests/infra/slurm.sh start DIR    # returns once node "localhost" is idle
#   bash tests/infra/slurm.sh stop  DIR    # cancels jobs, stops slurmd, slurmctld, munged
#
# Clients need SLURM_CONF=DIR/slurm.conf (sbatch, squeue, scontrol, scancel, sinfo).
# `sacct` does not work (no slurmdbd); use `scontrol show job -o ID` (finished jobs
# are kept MinJobAge=300 s) or DIR/log/jobcomp.txt (one line per finished job).
#
# Environment:
#   SLURMCTLD_PORT (6817), SLURMD_PORT (6818)  ports; the daemons listen on all
#       addresses but clients use 127.0.0.1. Set both for a second cluster.
#   SLURM_CPUS (nproc)            CPUs of the node
#   SLURM_START_TIMEOUT (30)      seconds to wait for the node to become idle
# Idempotent: daemons whose PID file points at a live process are left alone.
# Prints nothing on success; on failure prints the log tails to stderr.
set -euo pipefail
# root's tools (sshd, useradd, ip, slurmctld, munged) live in sbin; PATH may lack it
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

usage() { echo "usage: $0 start|stop DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
CMD=$1
DIR=$2
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
export SLURM_CONF="$DIR/slurm.conf"

running() { [ -r "/proc/$1/stat" ] && [ "$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null)" != Z ]; }
alive() { [ -f "$1" ] && running "$(cat "$1")"; }

stop_pidfile() {  # PIDFILE NAME
  local f=$1 name=$2 pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if running "$pid" && grep -qa "$name" "/proc/$pid/cmdline" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 150); do running "$pid" || break; sleep 0.02; done
    running "$pid" && kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

stop() {
  # Cancel this cluster's jobs first, so no slurmstepd / job process outlives it.
  if alive "$DIR/slurmctld.pid" && [ -f "$SLURM_CONF" ]; then
    if [ -n "$(squeue -h -o %i 2>/dev/null || true)" ]; then
      scancel --quiet --partition=debug 2>/dev/null || true
      for _ in $(seq 100); do
        [ -z "$(squeue -h -o %i -t RUNNING,COMPLETING,PENDING 2>/dev/null || true)" ] && break
        sleep 0.05
      done
    fi
  fi
  stop_pidfile "$DIR/slurmd.pid" slurmd
  stop_pidfile "$DIR/slurmctld.pid" slurmctld
  stop_pidfile "$DIR/munge/munged.pid" munged
}

fail() {
  echo "slurm.sh: $*" >&2
  for f in "$DIR/log/munged.log" "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log"; do
    [ -f "$f" ] && { echo "--- $f" >&2; tail -n 30 "$f" >&2; }
  done
  exit 1
}

start() {
  for b in slurmctld slurmd sinfo munged munge unmunge; do
    command -v "$b" >/dev/null || { echo "slurm.sh: '$b' missing; run tests/infra/install_system_deps.sh" >&2; exit 1; }
  done
  local sock="$DIR/munge/munge.socket"
  [ ${#sock} -lt 100 ] || { echo "slurm.sh: DIR too long for a unix socket path: $sock" >&2; exit 1; }
  local cpus=${SLURM_CPUS:-$(nproc)}
  # RealMemory must not exceed what slurmd detects.
  local mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 512 ))
  local timeout=${SLURM_START_TIMEOUT:-30}

  mkdir -p "$DIR"/{state,spool,log,munge}
  chmod 755 "$DIR" "$DIR/munge"   # socket reachable by non-root job users; key stays 0400

  # --- munge: own key and socket ---
  if [ ! -f "$DIR/munge/munge.key" ]; then
    dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
    chmod 400 "$DIR/munge/munge.key"
  fi
  if ! alive "$DIR/munge/munged.pid"; then
    rm -f "$sock" "$sock.lock"
    # --force: run as root and accept our key location. Daemonises, writes its PID file.
    munged --force \
      --key-file="$DIR/munge/munge.key" \
      --socket="$sock" \
      --pid-file="$DIR/munge/munged.pid" \
      --log-file="$DIR/log/munged.log" \
      --seed-file="$DIR/munge/munged.seed" </dev/null >/dev/null 2>&1 \
      || fail "munged failed to start"
    for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done
  fi
  munge -S "$sock" -n 2>/dev/null | unmunge -S "$sock" >/dev/null 2>&1 || fail "munge round-trip failed"

  # --- slurm.conf ---
  cat > "$DIR/slurm.conf.tmp" <<EOF
ClusterName=covtest
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=${SLURMCTLD_PORT:-6817}
SlurmdPort=${SLURMD_PORT:-6818}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$sock,cred_expire=5
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
# Memory is enforced as on a site without cgroups: every second each job step's processes are
# summed up, and a step over its job's memory (--mem; default DefMemPerCPU, a CPU's share of
# the node) is killed ("StepId=... exceeded memory limit"). The job ends FAILED: only
# task/cgroup makes Slurm say OUT_OF_MEMORY, and these tests do not take over the machine's
# cgroups.
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherParams=OverMemoryKill
JobAcctGatherFrequency=task=1
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/log/jobcomp.txt
SelectType=select/cons_tres
# memory is a consumable (so that --mem is a limit); a job asking for none gets a CPU's share
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$(( mem / cpus ))
SchedulerType=sched/backfill
# the default batch_sched_delay=3 makes every job wait for a 3 s tick
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
MpiDefault=none
ReturnToService=2
MinJobAge=300
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=2
# Preemption: a job in "urgent" (higher PriorityTier) preempts jobs of the lower partitions on
# the same node. Slurm requeues a preempted job of "debug" itself (it keeps its id, as
# on a site with PreemptMode=REQUEUE); one of "preemptible" is cancelled and ends PREEMPTED.
# Nothing is submitted to "urgent" but the tests of preemption.
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
# Two fake GPUs (gres.conf: File= entries naming character devices made here), so that Slurm
# gives a job asking for GPUs its devices and sets CUDA_VISIBLE_DEVICES, as on a GPU node.
GresTypes=gpu
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP PriorityTier=1
PartitionName=preemptible Nodes=localhost MaxTime=INFINITE State=UP PriorityTier=1 PreemptMode=CANCEL
PartitionName=urgent Nodes=localhost MaxTime=INFINITE State=UP PriorityTier=2 PreemptMode=OFF
EOF
  mv -f "$DIR/slurm.conf.tmp" "$SLURM_CONF"
  mkdir -p "$DIR/dev"
  # Character devices as the NVIDIA driver makes them (major 195): slurmd refuses a gres.conf
  # File= that is not a device (a regular file gives no GPU), and opens none of them.
  for i in 0 1; do
    [ -c "$DIR/dev/gpu$i" ] || { rm -f "$DIR/dev/gpu$i"; mknod "$DIR/dev/gpu$i" c 195 "$i"; }
  done
  printf 'NodeName=localhost Name=gpu File=%s\n' "$DIR/dev/gpu[0-1]" > "$DIR/gres.conf"
  # Not used with proctrack/linuxproc + task/none, but slurmd looks for it.
  printf 'CgroupPlugin=autodetect\nIgnoreSystemd=yes\n' > "$DIR/cgroup.conf"

  # --- daemons: they daemonise themselves and write their PID files ---
  if ! alive "$DIR/slurmctld.pid"; then
    slurmctld -f "$SLURM_CONF" </dev/null >>"$DIR/log/slurmctld.stdout" 2>&1 || fail "slurmctld failed to start"
  fi
  if ! alive "$DIR/slurmd.pid"; then
    slurmd -f "$SLURM_CONF" -N localhost </dev/null >>"$DIR/log/slurmd.stdout" 2>&1 || fail "slurmd failed to start"
  fi

  # --- wait for the node to be usable ---
  local st="" deadline=$(( $(date +%s) + timeout ))
  while :; do
    st=$(sinfo -h -n localhost -o %t 2>/dev/null || true)
    case "$st" in idle|mix|alloc) return 0 ;; esac
    [ "$(date +%s)" -lt "$deadline" ] || fail "node did not become idle within ${timeout}s (state: ${st:-?})"
    sleep 0.05
  done
}

case "$CMD" in
  start) start ;;
  stop) stop ;;
  *) usage ;;
esac
