"""The sbatch script of one job or job array: pure text, compared with golden files.

One script runs any number of tasks of one run: element ``i`` of the array runs the task
``COV_TASKS[i]``, named ``<node>.<attempt>``; a plain job runs one task. Everything a job needs is
under ``root``, the run directory as the job sees it::

    root/slurm/worker.py                    runner/worker.py (and the modules shipped with it),
                                            copied once per run
    root/slurm/bundles/<node>.<attempt>.pkl the task (``make_bundle``)
    root/results/<node>.pkl                 its outcome, written by the worker
    root/logs/<node>.out|err                its stdout and stderr
    root/slurm/jobs/<job id>.out            the job's own output (prerun, srun, slurmstepd);
                                            removed by the job at its end if empty (cleanup)

Secrets: variables with secret names (``runner.redact``) are not in the script (a file others may
read): the backend writes them to a 0600 file under ``root/secrets/`` that the script sources.

The paths are ``runner.layout``'s, rendered with shell variables for the node and attempt.

Quoting: commands are built with ``shlex.quote``; ``#SBATCH`` lines are read by sbatch, not by
a shell, so a value with spaces, quotes or ``#`` goes in double quotes with ``\\`` and ``"``
escaped (how sbatch reads them). User ``prerun_commands``/``postrun_commands`` are shell text
and go in as written.
"""
from __future__ import annotations

import re
import shlex
from typing import Any, Dict, List, Optional, Sequence, Tuple

from runner import layout
from runner.backends.slurm.settings import SettingsError, SlurmSettings
from runner.redact import is_secret

_BARE = re.compile(r"^[A-Za-z0-9_@%+=:,./-]*$")
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def directive_value(value: Any) -> str:
    """An ``#SBATCH`` value as sbatch reads it back unchanged."""
    text = str(value)
    if "\n" in text or "\r" in text or "\0" in text:
        raise SettingsError(f"Slurm option value {text!r} contains a line break")
    if _BARE.match(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def directive(key: str, value: Any) -> str:
    """``#SBATCH --key=value`` (``-k value`` for one-letter keys, ``--key`` for flags)."""
    flag = value is True or value == ""
    if len(key) == 1:
        return f"#SBATCH -{key}" + ("" if flag else f" {directive_value(value)}")
    return f"#SBATCH --{key}" + ("" if flag else f"={directive_value(value)}")


def filename_pattern(path: str) -> str:
    """A path for ``--output``: Slurm expands ``%x`` in file names, so a literal % is %%."""
    return path.replace("%", "%%")


def shell_path(path: str) -> str:
    """A quoted path for the job's shell; ``~``, ``$HOME`` and relative paths are under $HOME."""
    for prefix in ("~/", "$HOME/", "${HOME}/"):
        if path.startswith(prefix):
            rest = path[len(prefix):]
            return '"$HOME"/' + shlex.quote(rest) if rest else '"$HOME"'
    if path in ("~", "$HOME", "${HOME}"):
        return '"$HOME"'
    if not path.startswith("/"):
        return '"$HOME"/' + shlex.quote(path)
    return shlex.quote(path)


def job_name(dispatch_id: str, task_name: Optional[str] = None) -> str:
    """``cov-<dispatch id prefix>[-<task>]``: what ``squeue`` shows."""
    name = f"cov-{dispatch_id[:8]}"
    if task_name:
        name += "-" + _NAME_UNSAFE.sub("_", task_name).strip("_")
    return name[:64]


def array_spec(count: int, parallelism: int) -> str:
    """``0-N%K`` for ``--array`` (no throttle when K is 0 or not below the count)."""
    spec = "0" if count == 1 else f"0-{count - 1}"
    if 0 < parallelism < count:
        spec += f"%{parallelism}"
    return spec


def render_script(settings: SlurmSettings, *, root: str, dispatch_id: str,
                  tasks: Sequence[Tuple[int, int]], name: str, python: str,
                  array: bool, pythonpath: str = "", secrets_file: str = "") -> str:
    """The sbatch script running ``tasks`` ((node, attempt) pairs) as one job or one array;
    ``secrets_file`` (exports of the secret variables) is sourced where they would be set."""
    if not tasks:
        raise ValueError("no tasks")
    if not array and len(tasks) != 1:
        raise ValueError("a single job runs one task")
    lines: List[str] = ["#!/bin/bash"]
    if not settings.has_option("job-name", "J"):
        lines.append(directive("job-name", name))
    if not settings.has_option("output", "o"):
        log = filename_pattern(f"{root}/{layout.SLURM_JOBS}/") + \
            layout.job_log_file("%A_%a" if array else "%j")
        lines.append(directive("output", log))
    if array:
        lines.append(directive("array", array_spec(len(tasks), settings.array_parallelism)))
    if settings.time_minutes is not None and not settings.has_option("time", "t"):
        lines.append(directive("time", settings.time_minutes))
    lines.extend(directive(key, value) for key, value in settings.options)
    lines.append(f"# cov: run {dispatch_id}, {len(tasks)} task(s): <node>.<attempt> below")
    lines.append("")
    for key, value in settings.variables:
        if not is_secret(key):
            lines.append(f"export {key}={shlex.quote(value)}")
    if secrets_file:
        lines.append(f"source {shlex.quote(secrets_file)}")
    if settings.bashrc_path or settings.conda_env:
        lines.append(f"source {shell_path(settings.bashrc_path or '~/.bashrc')}")
    if settings.conda_env:
        env = shlex.quote(settings.conda_env)
        lines.append('eval "$(conda shell.bash hook 2> /dev/null)"')
        message = shlex.quote(f"cov: cannot activate conda environment {settings.conda_env}")
        lines.append(f"conda activate {env} || {{ echo {message} >&2; exit 1; }}")
    lines.append(f"COV_ROOT={shlex.quote(root)}")
    names = [layout.attempt_name(node, attempt) for node, attempt in tasks]
    if array:
        lines.append("COV_TASKS=(" + " ".join(names) + ")")
        lines.append("COV_TASK=${COV_TASKS[$SLURM_ARRAY_TASK_ID]}")
    else:  # not indexed: a job submitted from inside an array job inherits its task id
        lines.append(f"COV_TASK={names[0]}")
    lines.append(f"COV_NODE={layout.attempt_node_shell('COV_TASK')}")
    lines.append("export COV_DISPATCH_ID=" + shlex.quote(dispatch_id) + " COV_NODE")
    if settings.workdir:
        workdir = shell_path(settings.workdir)
        if settings.create_unique_workdir:
            workdir += "/" + shlex.quote(dispatch_id) + '/node_"$COV_NODE"'
        lines.append(f"COV_WORKDIR={workdir}")
        lines.append('mkdir -p -- "$COV_WORKDIR" && cd -- "$COV_WORKDIR" || exit 1')
    lines.extend(settings.prerun_commands)
    if pythonpath:  # cloudpickle shipped by cov (SSH mode, when the cluster has another)
        lines.append(f"export PYTHONPATH={shlex.quote(pythonpath)}${{PYTHONPATH:+:$PYTHONPATH}}")
    command = [] if not settings.use_srun else ["srun", *_srun_options(settings.srun_options)]
    launch = " ".join(shlex.quote(part) for part in command)
    if settings.use_srun and settings.srun_append:
        launch += " " + settings.srun_append
    worker = " ".join([python] + [f'"$COV_ROOT/{rel}"' for rel in (
        layout.slurm_shipped_rel(layout.WORKER), layout.slurm_bundle_rel("$COV_TASK"),
        layout.outcome_rel("$COV_NODE"), layout.log_rel("$COV_NODE", "out"),
        layout.log_rel("$COV_NODE", "err"))])
    lines.append((launch + " " if launch else "") + worker)
    lines.append("COV_RC=$?")
    lines.extend(settings.postrun_commands)
    if settings.cleanup and not settings.has_option("output", "o"):
        log = "${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}" if array else "$SLURM_JOB_ID"
        lines.append(f'COV_LOG="$COV_ROOT/{layout.SLURM_JOBS}/{layout.job_log_file(log)}"'
                     "  # the job's own output")
        lines.append('[ -s "$COV_LOG" ] || rm -f -- "$COV_LOG"  # cleanup: only if empty')
    lines.append("exit $COV_RC")
    return "\n".join(lines) + "\n"


def _srun_options(options: Sequence[Tuple[str, Any]]) -> List[str]:
    """Covalent's form: ``{"n": 2, "cpus-per-task": 4}`` -> ``-n 2 --cpus-per-task=4``."""
    argv: List[str] = []
    for key, value in options:
        key = str(key).lstrip("-")
        if value is False or value is None:
            continue
        flag = value is True or value == ""
        if len(key) == 1:
            argv += [f"-{key}"] + ([] if flag else [str(value)])
        else:
            argv.append(f"--{key}" + ("" if flag else f"={value}"))
    return argv


def secret_exports(settings: SlurmSettings, values: Dict[str, Any]) -> str:
    """The secrets file's text: the secret variables, with their values from ``values`` (the
    run's secrets) where the manifest holds them masked."""
    return "".join(f"export {key}={shlex.quote(str(values.get(key, value)))}\n"
                   for key, value in settings.variables if is_secret(key))


def python_command(settings: SlurmSettings, default: str) -> str:
    """The Python that runs the worker: ``python_path``, the conda env's, or ``default``."""
    if settings.python_path:
        return shell_path(settings.python_path) if "/" in settings.python_path else \
            shlex.quote(settings.python_path)
    if settings.conda_env:
        return "python"
    return shlex.quote(default) if "/" in default else default
