"""The runner: reads run directories, claims ready tasks under file locks and runs them.

Modules:
    fs          atomic writes and filesystem-type detection
    locks       the lock factory (flock locally, lock files on network filesystems)
    manifest    the graph of a run as written once at dispatch (``manifest.yaml``)
    rundir      ``RunDir``: the only code that knows the run directory's layout
    events      the append-only state log and its fold into task states
    scheduler   pure bookkeeping of ready/waiting/finished nodes
    service     the runner's main loop and heartbeats
    daemon      runner processes: start on demand, stop, keep unfinished runs served
    liveness    which runners are alive (heartbeat files)
    worker      executes one task; imports nothing from this project
    backends    where tasks run: local pool, SSH hosts, Slurm
"""
