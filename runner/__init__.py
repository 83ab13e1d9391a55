"""The runner: reads run directories, claims ready tasks under file locks and runs them.

Modules (below them, ``covalent_cli`` (the SDK and CLI) and ``webui``; nothing here imports
either, ``tests/test_layers.py`` checks it):
    fs          atomic writes and filesystem-type detection
    locks       the lock factory (flock locally, lock files on network filesystems)
    config      the config file, held to a schema; the runs home
    redact      what is a secret in an executor's parameters, and masking it
    manifest    the graph of a run as written once at dispatch (``manifest.yaml``)
                (manifest_checks: its header's checks, the format version)
    state       the append-only event log's events and their fold into run and task states
    rundir      ``RunDir``: the only code that knows the run directory's layout
    contained   opening a run's files without leaving its directory; ``RunDirError``
    query       the read model: run summaries and task rows for ``cov`` and the web UI
                (query_node: one node; query_failures: why a run failed, through sublattices)
    scheduler   pure bookkeeping of ready/waiting/finished nodes
    engine      the per-run decisions as pure functions: end events, retries, cancel targets,
                orphan verdicts, the claim filter, building a task
    journal     the runs a runner serves and its writes to their event logs: locked appends,
                the full-disk stall, batched fsync
    service     the runner's main loop: discovery, collecting outcomes, writing, finishing;
                ``Runner`` is cut into parts: runner_base (its state, hints, the backends,
                heartbeats), sublattices (child runs), claims (claims, fencing, orphans, cancel)
    fencing     fences: a stopped runner must not run the claims others took over
    daemon      runner processes: start on demand, stop, keep unfinished runs served; cancel
    liveness    which runners are alive (heartbeat files under ``<home>/.runners``)
    watch       filesystem events that wake the loop (watchdog, polling on network filesystems)
    worker      runs one task bundle where cov is not installed (SSH hosts, Slurm jobs);
                imports only the stdlib, cloudpickle and the modules shipped beside it:
                worker_common (host, task context), worker_transfers (file transfers),
                worker_task (deps, hooks, the call: one task's outcome), outcome (the codec)
    worker_pool the local backend's pool process; worker_capture its live output capture
    backends    where tasks run: ``local`` (the worker pool), ``ssh``, ``slurm/`` (one folder
                per backend), on ``base`` (the contract and the shared plumbing)
    ssh         the SSH library: connections, the remote setup, the channel protocol (used by
                the SSH backend, Slurm over SSH and ``cov check``)
"""
