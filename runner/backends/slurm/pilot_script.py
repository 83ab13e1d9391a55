"""The sbatch script of one pilot block: pure text (its quoting is ``script``'s).

A block is one Slurm job running ``pilot_pool.py`` (shipped beside ``worker.py`` in
``<root>/slurm/``), which takes tasks from the run's queue until it is idle. A block of
``nodes`` > 1 (or whose ``options`` ask for Slurm tasks: ``ntasks``, ``ntasks-per-node``) starts
its pools with ``srun``, one per Slurm task (by default one per node), each pulling from the
same queue. The executor's
options, variables, conda env and prerun/postrun commands apply to the block as they would to
each job of an array: the tasks run inside it.
"""
from __future__ import annotations

import shlex
from typing import List

from runner import layout
from runner.backends.slurm.pilot_settings import PilotSettings
from runner.backends.slurm.script import directive, environment_lines, filename_pattern, shell_path
from runner.backends.slurm.settings import SlurmSettings


def render_block_script(settings: SlurmSettings, pilot: PilotSettings, *, root: str,
                        dispatch_id: str, block: str, name: str, python: str,
                        pythonpath: str = "", secrets_file: str = "") -> str:
    """The script of block ``block`` of the run at ``root`` (as the node sees it)."""
    lines: List[str] = ["#!/bin/bash"]
    if not settings.has_option("job-name", "J"):
        lines.append(directive("job-name", name))
    if not settings.has_option("output", "o"):
        lines.append(directive("output", filename_pattern(
            layout.pilot_block_dir(root, block) + "/" + layout.BLOCK_LOG)))
    minutes = pilot.walltime_minutes or settings.time_minutes
    if minutes is not None and not settings.has_option("time", "t"):
        lines.append(directive("time", minutes))
    if pilot.workers and not settings.has_option("cpus-per-task", "c"):
        lines.append(directive("cpus-per-task", pilot.workers))
    several = uses_srun(settings, pilot)
    if pilot.nodes > 1 and not settings.has_option("nodes", "N"):
        lines.append(directive("nodes", pilot.nodes))
    if several and not settings.has_option("ntasks-per-node", "ntasks", "n"):
        lines.append(directive("ntasks-per-node", 1))
    if not settings.has_option("requeue", "no-requeue"):
        # A requeued block would start a second pool under a job the runner took for gone.
        lines.append(directive("no-requeue", True))
    lines.extend(directive(key, value) for key, value in settings.options)
    lines.append(f"# cov: pilot block {block} of run {dispatch_id}")
    lines.append("")
    lines.extend(environment_lines(settings, secrets_file))
    lines.append(f"COV_ROOT={shlex.quote(root)}")
    lines.append("export COV_DISPATCH_ID=" + shlex.quote(dispatch_id))
    if settings.workdir:
        lines.append(f"COV_WORKDIR={shell_path(settings.workdir)}")
        lines.append('mkdir -p -- "$COV_WORKDIR" && cd -- "$COV_WORKDIR" || exit 1')
    lines.extend(settings.prerun_commands)
    if pythonpath:
        lines.append(f"export PYTHONPATH={shlex.quote(pythonpath)}${{PYTHONPATH:+:$PYTHONPATH}}")
    pool = f'"$COV_ROOT/{layout.slurm_shipped_rel(layout.POOL)}"'
    args = [shlex.quote(a) for a in (block, str(pilot.workers), f"{pilot.idle_timeout:g}",
                                     str((minutes or 0) * 60))]
    launch = [python, pool, '"$COV_ROOT"', *args]
    if several:
        # One pool per Slurm task; a pool that fails ends the step, so the job ends and the
        # runner hands that block's tickets to another (a pool idle exits with 0).
        launch = ["srun", "--kill-on-bad-exit=1",
                  '${SLURM_CPUS_PER_TASK:+--cpus-per-task="$SLURM_CPUS_PER_TASK"}',
                  *launch, "srun"]
    lines.append(" ".join(launch))
    lines.append("COV_RC=$?")
    lines.extend(settings.postrun_commands)
    lines.append("exit $COV_RC")
    return "\n".join(lines) + "\n"


def uses_srun(settings: SlurmSettings, pilot: PilotSettings) -> bool:
    """Whether the block starts its pools with ``srun`` (several nodes or tasks)."""
    return pilot.nodes > 1 or settings.has_option("ntasks-per-node", "ntasks", "n")
