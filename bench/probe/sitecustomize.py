"""Loaded by every interpreter of a ``bench/stall_probe.py`` trial (client, runner, workers, by
PYTHONPATH): logs each main-thread ``time.sleep`` and ``multiprocessing.connection.wait`` that
took over 50 ms, and the process's start, to ``$COV_PROBE_LOG``. Never on a user's path."""
import os
import sys
import threading
import time
import traceback

LOG = os.environ.get("COV_PROBE_LOG")
if LOG:
    def _log(kind: str, took: float, extra: str) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        frames = traceback.extract_stack(limit=6)[:-2]
        where = " < ".join(f"{os.path.basename(f.filename)}:{f.lineno}:{f.name}"
                           for f in reversed(frames))
        with open(LOG, "a") as f:
            f.write(f"{time.time():.3f} {os.getpid()} {kind} {took:.3f} {extra} {where}\n")

    _sleep = time.sleep

    def _timed_sleep(seconds: float) -> None:
        start = time.monotonic()
        _sleep(seconds)
        if time.monotonic() - start > 0.05:
            _log("sleep", time.monotonic() - start, f"asked={seconds:.3f}")

    time.sleep = _timed_sleep
    import multiprocessing.connection as _mc

    _wait = _mc.wait

    def _timed_wait(objects, timeout=None):  # type: ignore[no-untyped-def]
        start = time.monotonic()
        ready = _wait(objects, timeout)
        if time.monotonic() - start > 0.05:
            _log("wait", time.monotonic() - start, f"asked={timeout} ready={len(ready)}")
        return ready

    _mc.wait = _timed_wait
    with open(LOG, "a") as f:
        f.write(f"{time.time():.3f} {os.getpid()} start 0 {' '.join(sys.argv)[-60:]}\n")
