"""The runner: reads run directories, claims ready tasks under file locks and runs them.

Modules:
    fs          atomic writes and filesystem-type detection
    locks       the lock factory (flock locally, lock files on network filesystems)
    manifest    the graph of a run as written once at dispatch (``manifest.yaml``)
    rundir      ``RunDir``: the only code that knows the run directory's layout
    state       the append-only state log's events and their fold into task states
    scheduler   pure bookkeeping of ready/waiting/finished nodes
    engine      the per-run decisions as pure functions: end events, retries, cancel targets,
                orphan verdicts, the claim filter, building a task
    journal     the runs a runner serves and its writes to their event logs: locked appends,
                the full-disk stall, batched fsync
    service     the runner's main loop: hints, discovery, claims, children, heartbeats
    fencing     fences: a stopped runner must not run the claims others took over
    daemon      runner processes: start on demand, stop, keep unfinished runs served
    liveness    which runners are alive (heartbeat files)
    worker      executes one task; imports nothing from this project
    config      the config file, its schema, and where the runs live
    watch       filesystem events that wake the loop (watchdog, polling on network filesystems)
    redact      which executor parameters are secret, masked everywhere but the secrets file
    backends    where tasks run: ``local`` (the worker pool), ``ssh``, ``slurm/`` (one folder
                per backend), on ``base`` (the contract and the shared plumbing)
    ssh         the SSH library: connections, the remote setup, the channel protocol (used by
                the SSH backend, Slurm over SSH and ``cov check``)
"""
