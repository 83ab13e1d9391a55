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
    if settings.warns and not settings.has_option("signal"):  # the batch shell passes it on
        lines.append(directive("signal", f"B:USR1@{settings.signal_delay}"))
    lines.extend(directive(key, value) for key, value in settings.options)
    lines.append(f"# cov: run {dispatch_id}, {len(tasks)} task(s): <node>.<attempt> below")
    lines.append("")
    lines.extend(environment_lines(settings, secrets_file))
    if settings.warns:  # set first: USR1 would end this shell even before the task starts
        lines.append("trap 'COV_WARNED=1; kill -USR1 \"$COV_PID\" 2> /dev/null' USR1  "
                     "# the time limit is near: tell the worker")
    lines.append(f"COV_ROOT={shlex.quote(root)}")
    names = [layout.attempt_name(node, attempt) for node, attempt in tasks]
    if array:
        lines.append("COV_TASKS=(" + " ".join(names) + ")")
        lines.append("COV_TASK=${COV_TASKS[$SLURM_ARRAY_TASK_ID]}")
    else:  # not indexed: a job submitted from inside an array job inherits its task id
        lines.append(f"COV_TASK={names[0]}")
    lines.append(f"COV_NODE={layout.attempt_node_shell('COV_TASK')}")
    lines.append(f'COV_CHECKPOINT_DIR="$COV_ROOT/{layout.checkpoint_rel("$COV_NODE")}"')
    lines.append("export COV_DISPATCH_ID=" + shlex.quote(dispatch_id) +
                 " COV_NODE COV_CHECKPOINT_DIR")
    if settings.has_option("gpus", "G", "gres", "gpus-per-task", "gpus-per-node"):
        # Slurm sets CUDA_VISIBLE_DEVICES where gres.conf says how; else from its GPU ids
        lines.append('[ -n "${CUDA_VISIBLE_DEVICES:-}" ] || [ -z "${SLURM_JOB_GPUS:-}" ] || '
                     'export CUDA_VISIBLE_DEVICES="$SLURM_JOB_GPUS"')
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
    ranks = settings.use_srun and _ranks(settings) > 1
    outcome = layout.outcome_rel("$COV_NODE") + (RANKS_SUFFIX if ranks else "")
    worker = " ".join([python] + [f'"$COV_ROOT/{rel}"' for rel in (
        layout.slurm_shipped_rel(layout.WORKER), layout.slurm_bundle_rel("$COV_TASK"),
        outcome, layout.log_rel("$COV_NODE", "out"), layout.log_rel("$COV_NODE", "err"))])
    lines.append(f'COV_OUTCOME="$COV_ROOT/{layout.outcome_rel("$COV_NODE")}"')
    lines.append(f"COV_BEFORE={_IDENTITY}")
    if ranks:
        # Every rank runs the task and appends to its logs (emptied here once); rank 0 writes
        # the outcome aside (worker.py), put in place once all ranks are done: the task ends
        # with its job step, and no rank finds another's outcome and skips (the script does).
        logs = " ".join(f'"$COV_ROOT/{layout.log_rel("$COV_NODE", s)}"' for s in layout.STREAMS)
        lines.append(f"grep -qs '^{{\"ok\": true' \"$COV_OUTCOME\" && {{ echo 'cov: the task "
                     "already succeeded (a requeued job): not run again'; exit 0; }")
        lines.append(f'for f in {logs}; do : > "$f"; done')
        lines.append(f'rm -f -- "$COV_OUTCOME{RANKS_SUFFIX}"')
    command_line = (launch + " " if launch else "") + worker
    if settings.warns:  # in the background, so that the trap runs while it works
        lines.append(command_line + " &")
        lines.append("COV_PID=$!")
        lines.append('until wait "$COV_PID"; COV_RC=$?; ! kill -0 "$COV_PID" 2> /dev/null; '
                     "do :; done")
        lines.append('wait "$COV_PID" 2> /dev/null; COV_LAST=$?; '
                     '[ "$COV_LAST" -eq 127 ] || COV_RC=$COV_LAST')
    else:
        lines.append(command_line)
        lines.append("COV_RC=$?")
    if ranks:
        lines.append(f'[ ! -e "$COV_OUTCOME{RANKS_SUFFIX}" ] || '
                     f'mv -f -- "$COV_OUTCOME{RANKS_SUFFIX}" "$COV_OUTCOME"')
    lines.extend(_exit_outcome())
    lines.extend(settings.postrun_commands)
    if settings.cleanup and not settings.has_option("output", "o"):
        log = "${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}" if array else "$SLURM_JOB_ID"
        lines.append(f'COV_LOG="$COV_ROOT/{layout.SLURM_JOBS}/{layout.job_log_file(log)}"'
                     "  # the job's own output")
        lines.append('[ -s "$COV_LOG" ] || rm -f -- "$COV_LOG"  # cleanup: only if empty')
    lines.append("exit $COV_RC")
    return "\n".join(lines) + "\n"


# The outcome file's identity (inode.mtime), to tell whether the worker wrote a new one.
_IDENTITY = '$(stat -c %i.%Y -- "$COV_OUTCOME" 2> /dev/null)'
EXIT_REASON = "job_exit"  # the reason of an outcome the script wrote for a worker that died
RANKS_SUFFIX = ".rank0"  # rank 0's outcome while other ranks run (a multi-rank job step)


def _exit_outcome() -> List[str]:
    """The worker died without an outcome (killed, out of memory, no Python): the script
    writes one itself (temporary name, then rename), so that the runner learns it within a
    second, not at its next scheduler query. Not reached when the job itself is killed
    (TIMEOUT, scancel, requeue, preemption): SIGTERM ends this shell too."""
    header = ('{"ok": false, "reason": "' + EXIT_REASON + '", "exit_code": %d, "host": "%s", '
              '"end": %s, "error": "the task process exited with status %d without writing '
              'an outcome"}\\n')
    fmt = shlex.quote(header)
    return [
        # (after the warning: the time limit ends the job, which may then be requeued)
        f'if [ "$COV_RC" -ne 0 ] && [ -z "${{COV_WARNED:-}}" ] && '
        f'[ "{_IDENTITY}" = "$COV_BEFORE" ]; then  # no outcome',
        f'  printf {fmt} "$COV_RC" "${{SLURMD_NODENAME:-}}" "$(date +%s)" "$COV_RC" '
        '> "$COV_OUTCOME.tmp-$$" && mv -f -- "$COV_OUTCOME.tmp-$$" "$COV_OUTCOME"',
        "fi",
    ]


def _ranks(settings: SlurmSettings) -> int:
    """How many ranks srun may start, as far as the options tell (``ntasks``/``-n``, else
    ``ntasks-per-node`` times ``nodes``; 2 for a node range: more than one)."""
    def count(*names: str) -> int:
        value = settings.option(*names)
        for key, option in settings.srun_options:
            if str(key).lstrip("-") in names:
                value = option
        text = str(value) if value is not None else "1"
        return 2 if "-" in text else int(text) if text.isdigit() else 1

    tasks = count("ntasks", "n")
    return tasks if tasks > 1 else count("ntasks-per-node") * count("nodes", "N")


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


def environment_lines(settings: SlurmSettings, secrets_file: Optional[str]) -> List[str]:
    """The job's environment, as every cov job script sets it up before its Python runs: the
    executor's variables (secret ones only through ``secrets_file``), the bashrc and the conda
    environment (a failed activation ends the job with the reason)."""
    lines = [f"export {key}={shlex.quote(value)}" for key, value in settings.variables
             if not is_secret(key)]
    if secrets_file:
        lines.append(f"source {shlex.quote(secrets_file)}")
    if settings.bashrc_path or settings.conda_env:
        lines.append(f"source {shell_path(settings.bashrc_path or '~/.bashrc')}")
    if settings.conda_env:
        env = shlex.quote(settings.conda_env)
        lines.append('eval "$(conda shell.bash hook 2> /dev/null)"')
        message = shlex.quote(f"cov: cannot activate conda environment {settings.conda_env}")
        lines.append(f"conda activate {env} || {{ echo {message} >&2; exit 1; }}")
    return lines
