"""GPU requests on the real single-node cluster: Slurm gives the job its devices and sets
``CUDA_VISIBLE_DEVICES`` itself.

The test cluster's node has ``Gres=gpu:2`` whose gres.conf ``File=`` entries are two character
devices made by tests/infra/slurm.sh (major 195, as the NVIDIA driver's; slurmd only checks that
each is a device, and with ``TaskPlugin=task/none`` no cgroup restricts them). So Slurm allocates
GPUs and sets ``CUDA_VISIBLE_DEVICES`` and ``GPU_DEVICE_ORDINAL`` as on a GPU node. The job
script's fallback (``CUDA_VISIBLE_DEVICES`` from ``SLURM_JOB_GPUS`` where Slurm set none) would
not set ``GPU_DEVICE_ORDINAL``: seeing both, equal, is seeing Slurm's own setting. No CUDA
program runs: there is no GPU.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from tests.backends.test_slurm import _task
from tests.infra.executors import dispatch_script, run_result, wait_status

SEEN = ("CUDA_VISIBLE_DEVICES", "GPU_DEVICE_ORDINAL", "SLURM_JOB_GPUS")


def test_a_task_asking_for_gpus_sees_the_devices_slurm_gave_it(slurm_home: Path,
                                                               run_cov: Callable,
                                                               tmp_path: Path) -> None:
    """Two tasks with ``gpus=1`` at the same time (each waits for the other to start) get one
    GPU each, a different one, in the job step (``srun``) and the batch step alike; ``gpus=2``
    gets both; a task asking for none sees no CUDA_VISIBLE_DEVICES."""
    marks = tmp_path / "marks"
    marks.mkdir()
    run_id = dispatch_script(run_cov, tmp_path, f"""
        SEEN = {SEEN!r}

        def devices(marks, name, meet):
            open(os.path.join(marks, name), "w").close()
            for _ in range(600):  # both hold their GPU at once
                if len(os.listdir(marks)) >= meet:
                    break
                time.sleep(0.1)
            return {{key: os.environ.get(key) for key in SEEN}}

        @ct.electron(executor=ct.executor.SlurmExecutor(poll_freq=0.3, partition="debug",
                                                        gpus=1))
        def one_in_a_step(marks):
            return devices(marks, "step", 2)

        @ct.electron(executor=ct.executor.SlurmExecutor(poll_freq=0.3, partition="debug",
                                                        gpus=1, use_srun=False))
        def one_in_the_batch_step(marks):
            return devices(marks, "batch", 2)

        @ct.electron(executor=ct.executor.SlurmExecutor(poll_freq=0.3, partition="debug",
                                                        gres="gpu:2", use_srun=False))
        def both(marks, after):
            return devices(marks, "both", 0)

        @ct.electron(executor=ct.executor.SlurmExecutor(poll_freq=0.3, partition="debug",
                                                        use_srun=False))
        def none(marks, after):
            return devices(marks, "none", 0)

        @ct.lattice
        def gpus(marks):
            pair = [one_in_a_step(marks), one_in_the_batch_step(marks)]
            return pair + [both(marks, pair), none(marks, pair)]
        """, "-a", f"marks={marks}")
    status = wait_status(run_cov, run_id, timeout=120)
    assert status["status"] == "COMPLETED", [t.get("error") for t in status["tasks"]]
    step, batch, both, none = run_result(run_cov, run_id)
    for seen in (step, batch, both):
        assert seen["CUDA_VISIBLE_DEVICES"] == seen["GPU_DEVICE_ORDINAL"] == \
            seen["SLURM_JOB_GPUS"], seen  # Slurm's own setting, not the script's fallback
    assert {step["CUDA_VISIBLE_DEVICES"], batch["CUDA_VISIBLE_DEVICES"]} == {"0", "1"}
    assert both["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert none == {key: None for key in SEEN}
    assert _task(status, "both")["job_id"]
