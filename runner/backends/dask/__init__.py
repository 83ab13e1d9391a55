"""The Dask backend (``DaskBackend``, ``executor="dask"`` with a ``scheduler_address``).

Modules:
    backend     ``DaskBackend``: submits each attempt to the scheduler, cancels, re-attaches
    attempt     an attempt's bookkeeping and the files it returns, written into the run
    task        what runs on a Dask worker (pickled by value: the workers need no cov)
    zygote      the process on each Dask worker that forks one child per attempt (shipped
                there as ``dask_zygote.py``, beside the worker)
"""
