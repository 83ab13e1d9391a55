"""runner/flock.py: the local lock of runs and of the runner spawn, on a real file.

Behaviour, not timing: who can take the lock when, across nested acquires, a fork, and a lock
held by another program (util-linux ``flock``).
"""
from __future__ import annotations

import os
import subprocess
import time

import pytest

from runner.flock import FlockLock, LockTimeout
from runner.locks import make_lock, try_acquire


def test_a_held_lock_is_not_taken_by_another_until_the_outermost_release(tmp_path) -> None:
    path = str(tmp_path / "run.lock")
    first, second = make_lock(path), make_lock(path)
    assert isinstance(first, FlockLock)
    assert try_acquire(first, 0.01)
    assert try_acquire(first, 0.01)  # nested: the same holder
    assert not try_acquire(second, 0.02)
    first.release()
    assert first.is_locked and not try_acquire(second, 0.02)
    first.release()
    assert not first.is_locked
    assert try_acquire(second, 0.01)
    second.release()


def test_acquire_gives_up_after_its_timeout_with_lock_timeout(tmp_path) -> None:
    path = str(tmp_path / "run.lock")
    holder = FlockLock(path)
    holder.acquire()
    try:
        with pytest.raises(LockTimeout):
            FlockLock(path, timeout=0.05).acquire()
        with pytest.raises(LockTimeout):
            with FlockLock(path, timeout=0.05):
                pass
    finally:
        holder.release()
    with FlockLock(path, timeout=0.05) as lock:  # free again: the context manager takes it
        assert lock.is_locked
    assert not lock.is_locked


def test_a_process_forked_while_the_lock_is_held_neither_has_it_nor_keeps_it_alive(tmp_path) -> None:
    path = str(tmp_path / "run.lock")
    lock = make_lock(path)
    assert try_acquire(lock, 0.01)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: not the holder, and it stays alive past the parent's release
        os.close(read_end)
        mine = make_lock(path)
        os.write(write_end, b"1" if (not lock.is_locked and not try_acquire(mine, 0.01)) else b"0")
        time.sleep(1.0)
        os._exit(0)
    os.close(write_end)
    try:
        assert os.read(read_end, 1) == b"1"
        lock.release()
        other = make_lock(path)
        assert try_acquire(other, 0.01), "the forked child kept the parent's lock alive"
        other.release()
    finally:
        os.close(read_end)
        os.waitpid(pid, 0)


def test_a_lock_held_by_another_program_is_waited_for_and_then_taken(tmp_path) -> None:
    path = tmp_path / "run.lock"
    holder = subprocess.Popen(["flock", str(path), "sleep", "0.6"])
    try:
        deadline = time.monotonic() + 10
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)
        lock = make_lock(str(path))
        assert not try_acquire(lock, 0.02)
        assert try_acquire(lock, 10.0)  # polls until the holder exits
        lock.release()
    finally:
        holder.wait(timeout=10)
