"""Executor declarations: where a task should run (``ct.executor.LocalExecutor`` ...).

These are plain, picklable parameter holders with the names Covalent's executors and plugins
accept; the runner's *backends* (``runner/backends``) carry them out. An executor is written into
the manifest as ``{"type": <short name>, **parameters}``. Secret fields (``runner.redact``:
``password``, ``passphrase``, ``api_key``, ``token`` ...; not ``*_file`` paths) are masked there,
in ``repr()`` and in every pickle of an executor (``tasks.pkl`` holds the workflow with its
executors); their values go to the run's 0600 ``secrets/executors.json`` only.

A Covalent-style custom executor (a ``BaseExecutor`` subclass implementing ``run(function, args,
kwargs, task_metadata)``) works too: its ``run`` is called in a local pool worker.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Type

from runner.redact import mask_secrets


class BaseExecutor:
    """Base of executor declarations; ``short_name`` selects the runner backend."""

    short_name = "base"
    # Parameters every Covalent executor accepts.
    _base_defaults: Dict[str, Any] = {"log_stdout": "", "log_stderr": "", "cache_dir": "",
                                      "time_limit": -1, "retries": 0}

    def __init__(self, log_stdout: str = "", log_stderr: str = "", cache_dir: str = "",
                 time_limit: int = -1, retries: int = 0, **kwargs: Any) -> None:
        self.log_stdout = log_stdout
        self.log_stderr = log_stderr
        self.cache_dir = cache_dir
        self.time_limit = time_limit
        self.retries = retries
        for key, value in kwargs.items():
            setattr(self, key, value)

    def to_dict(self) -> Dict[str, Any]:
        """Covalent's serialized form."""
        return {"type": str(type(self)), "short_name": self.short_name,
                "attributes": dict(self.__dict__)}

    def to_config(self) -> Dict[str, Any]:
        """The manifest's form: type plus the parameters that differ from the defaults."""
        params = {k: v for k, v in self.__dict__.items()
                  if not k.startswith("_") and v is not None and v != self._base_defaults.get(k, ...)}
        return {"type": self.short_name, **params}

    def __getstate__(self) -> Dict[str, Any]:
        # Pickled executors land in tasks.pkl and task bundles, files others may read.
        return mask_secrets(self.__dict__)

    def run(self, function: Any, args: List[Any], kwargs: Dict[str, Any],
            task_metadata: Dict[str, Any]) -> Any:  # pragma: no cover - custom executors
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.__dict__ == other.__dict__

    def __hash__(self) -> int:
        return hash(self.short_name)

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in mask_secrets(self.to_config()).items()
                           if k != "type")
        return f"{type(self).__name__}({params})"


class LocalExecutor(BaseExecutor):
    """Run in the runner's pool of local worker processes.

    ``workdir``: run the task in this directory instead of the dispatch's cwd;
    ``create_unique_workdir``: a directory ``<workdir>/<dispatch_id>/node_<id>`` per task.
    """

    short_name = "local"

    def __init__(self, workdir: Optional[str] = None, create_unique_workdir: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.workdir = workdir
        self.create_unique_workdir = create_unique_workdir


class SSHExecutor(BaseExecutor):
    """Run on a host reached with ssh; the remote needs only a Python with cloudpickle.

    Accepts the covalent-ssh-plugin's parameters, plus ``port``, ``prelude`` (shell lines run
    first, e.g. ``module load python``), ``shared_filesystem`` (the host sees the run directory at
    the same path), ``max_concurrent`` (tasks in flight on the host) and the connection settings
    ``ssh_config``, ``known_hosts``, ``strict_host_key_checking``, ``connect_timeout``,
    ``keepalive``, ``max_sessions``, ``ship_cloudpickle``, ``ignore_versions``, and
    ``persistent_worker`` (default true: tasks are forked by one long-lived Python on the
    host; false: a Python start per task) (docs/executors.md).
    """

    short_name = "ssh"

    def __init__(self, username: Optional[str] = None, hostname: Optional[str] = None,
                 ssh_key_file: Optional[str] = None, python_path: Optional[str] = None,
                 conda_env: Optional[str] = None, remote_cache: Optional[str] = None,
                 run_local_on_ssh_fail: bool = False, remote_workdir: Optional[str] = None,
                 create_unique_workdir: Optional[bool] = None, poll_freq: Optional[float] = None,
                 do_cleanup: Optional[bool] = None, retry_connect: Optional[bool] = None,
                 max_connection_attempts: Optional[int] = None,
                 retry_wait_time: Optional[float] = None, port: Optional[int] = None,
                 prelude: Optional[List[str]] = None, shared_filesystem: Optional[bool] = None,
                 max_concurrent: Optional[int] = None, ssh_config: Optional[str] = None,
                 known_hosts: Optional[str] = None,
                 strict_host_key_checking: Optional[str] = None,
                 connect_timeout: Optional[float] = None, keepalive: Optional[float] = None,
                 max_sessions: Optional[int] = None, ship_cloudpickle: Optional[bool] = None,
                 ignore_versions: Optional[bool] = None,
                 persistent_worker: Optional[bool] = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.username = username
        self.hostname = hostname
        self.ssh_key_file = ssh_key_file
        self.python_path = python_path
        self.conda_env = conda_env
        self.remote_cache = remote_cache
        self.run_local_on_ssh_fail = run_local_on_ssh_fail or None
        self.remote_workdir = remote_workdir
        self.create_unique_workdir = create_unique_workdir
        self.poll_freq = poll_freq
        self.do_cleanup = do_cleanup
        self.retry_connect = retry_connect
        self.max_connection_attempts = max_connection_attempts
        self.retry_wait_time = retry_wait_time
        self.port = port
        self.prelude = prelude
        self.shared_filesystem = shared_filesystem
        self.max_concurrent = max_concurrent
        self.ssh_config = ssh_config
        self.known_hosts = known_hosts
        self.strict_host_key_checking = strict_host_key_checking
        self.connect_timeout = connect_timeout
        self.keepalive = keepalive
        self.max_sessions = max_sessions
        self.ship_cloudpickle = ship_cloudpickle
        self.ignore_versions = ignore_versions
        self.persistent_worker = persistent_worker


class SlurmExecutor(BaseExecutor):
    """Submit the task as a Slurm job (``sbatch``), on the login node or through SSH.

    Accepts the covalent-slurm-plugin's parameters; ``options`` become ``#SBATCH --key=value``.
    The named resources ``cpus_per_task``, ``mem``, ``mem_per_cpu``, ``gpus``, ``gpus_per_task``,
    ``gres``, ``time``, ``partition``, ``account``, ``qos``, ``constraint``, ``nodes``,
    ``ntasks`` (ranks: the function runs on each, rank 0's result is the task's) and
    ``ntasks_per_node`` are checked at dispatch; ``max_requeues`` submits a job that ended
    TIMEOUT, PREEMPTED or NODE_FAIL again, warned ``signal_delay`` seconds (90) before its limit
    (docs/executors.md, "Time limits, requeues and checkpoints"). A parameter no Slurm
    executor has is refused at dispatch, with the valid names.
    """

    short_name = "slurm"

    def __init__(self, username: Optional[str] = None, address: Optional[str] = None,
                 ssh_key_file: Optional[str] = None, cert_file: Optional[str] = None,
                 remote_workdir: Optional[str] = None, create_unique_workdir: Optional[bool] = None,
                 options: Optional[Dict[str, Any]] = None, variables: Optional[Dict[str, str]] = None,
                 conda_env: Optional[str] = None, prerun_commands: Optional[List[str]] = None,
                 postrun_commands: Optional[List[str]] = None, use_srun: Optional[bool] = None,
                 srun_options: Optional[Dict[str, Any]] = None, srun_append: Optional[str] = None,
                 bashrc_path: Optional[str] = None, slurm_path: Optional[str] = None,
                 poll_freq: Optional[float] = None, cleanup: Optional[bool] = None,
                 ignore_versions: Optional[bool] = None, python_path: Optional[str] = None,
                 cpus_per_task: Optional[int] = None, mem: Optional[str] = None,
                 gpus: Optional[Any] = None, gres: Optional[str] = None,
                 time: Optional[str] = None, partition: Optional[str] = None,
                 account: Optional[str] = None, qos: Optional[str] = None,
                 constraint: Optional[str] = None, ntasks: Optional[int] = None,
                 max_requeues: Optional[int] = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # named resources (runner.backends.slurm.settings.RESOURCES; more through kwargs)
        self.cpus_per_task, self.mem, self.gpus, self.gres = cpus_per_task, mem, gpus, gres
        self.time, self.partition, self.account, self.qos = time, partition, account, qos
        self.constraint, self.ntasks, self.max_requeues = constraint, ntasks, max_requeues
        self.username = username
        self.address = address
        self.ssh_key_file = ssh_key_file
        self.cert_file = cert_file
        self.remote_workdir = remote_workdir
        self.create_unique_workdir = create_unique_workdir
        self.options = options
        self.variables = variables
        self.conda_env = conda_env
        self.prerun_commands = prerun_commands
        self.postrun_commands = postrun_commands
        self.use_srun = use_srun
        self.srun_options = srun_options
        self.srun_append = srun_append
        self.bashrc_path = bashrc_path
        self.slurm_path = slurm_path
        self.poll_freq = poll_freq
        self.cleanup = cleanup
        self.ignore_versions = ignore_versions
        self.python_path = python_path


class DaskExecutor(BaseExecutor):
    """Run on a ``dask.distributed`` cluster: the scheduler at ``scheduler_address``
    (``tcp://host:8786``; needs the ``cov[dask]`` extra). The Dask workers need no cov and
    need not see the run directory. Without a scheduler address the task runs in the local
    pool, as before, and ``cov status`` says so.

    ``workdir`` and ``create_unique_workdir`` as for ``LocalExecutor`` (on the Dask worker);
    ``python_path``: the task's Python on the Dask workers (default: the workers' own);
    ``conda_env`` and ``current_env_on_conda_fail`` are accepted and ignored.
    """

    short_name = "dask"

    def __init__(self, scheduler_address: str = "", workdir: Optional[str] = None,
                 create_unique_workdir: bool = False, python_path: Optional[str] = None,
                 connect_timeout: Optional[float] = None, **kwargs: Any) -> None:
        kwargs.pop("conda_env", None)
        kwargs.pop("current_env_on_conda_fail", None)
        super().__init__(**kwargs)
        self.scheduler_address = scheduler_address or None
        self.workdir = workdir
        self.create_unique_workdir = create_unique_workdir or None
        self.python_path = python_path
        self.connect_timeout = connect_timeout


def resolve_config(config: Dict[str, Any]) -> Dict[str, Any]:
    """An executor's manifest config as the runner is to carry it out: a Dask executor without
    a ``scheduler_address`` runs in the local pool (Covalent's default executor is Dask; with no
    cluster to name, the local pool is what is there), marked ``requested: dask`` so that
    ``cov status`` can say so."""
    if config.get("type") == "dask" and not config.get("scheduler_address"):
        rest = {k: v for k, v in config.items()
                if k not in ("type", "scheduler_address", "python_path", "connect_timeout")}
        return {**rest, "type": "local", "requested": "dask"}
    return config


# By executor type (``short_name``): the SDK's class for each of the registry's built-in types
# (``runner.backends.BUILTIN``; a test holds the two to the same names).
BY_TYPE: Dict[str, Type[BaseExecutor]] = {
    cls.short_name: cls for cls in (LocalExecutor, SSHExecutor, SlurmExecutor, DaskExecutor)}
NAME_ALIASES: Dict[str, str] = {}  # executor names that stand for another (none left)

__all__ = ["BaseExecutor", "LocalExecutor", "SSHExecutor", "SlurmExecutor", "DaskExecutor"]
