"""The runner's own inotify watch (runner/inotify.py, used by runner/watch.py on Linux): names
appearing in a watched directory are hints, appends are not, an unwatched directory says
nothing, and a directory that vanished is not an error."""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import List

import pytest

from runner import inotify
from runner.watch import Watcher

pytestmark = pytest.mark.skipif(not inotify.available(), reason="no inotify on this system")


class Hints:
    def __init__(self) -> None:
        self.paths: List[str] = []
        self.changed = threading.Condition()

    def __call__(self, path: str) -> None:
        with self.changed:
            self.paths.append(path)
            self.changed.notify_all()

    def wait_for(self, path: Path, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        with self.changed:
            while str(path) not in self.paths:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.changed.wait(left)
        return True


@pytest.fixture
def hints():
    return Hints()


def test_created_and_renamed_in_names_are_hints_appends_are_not(tmp_path, hints):
    watcher = Watcher(hints, str(tmp_path))
    assert watcher.mode == "inotify"
    watched, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    watched.mkdir()
    elsewhere.mkdir()
    watcher.watch(str(watched))
    try:
        log = watched / "events.jsonl"
        log.write_text("one\n")
        assert hints.wait_for(log)
        (elsewhere / "run").mkdir()
        os.rename(elsewhere / "run", watched / "run")  # a run renamed into the home
        assert hints.wait_for(watched / "run")
        with open(log, "a") as f:  # an append to a file that exists: no hint
            f.write("two\n")
        (watched / "last").write_text("")  # (after the append: every hint before it is in)
        assert hints.wait_for(watched / "last")
        assert hints.paths.count(str(log)) == 1
        assert not any(p.startswith(str(elsewhere)) for p in hints.paths)
    finally:
        watcher.stop()


def test_an_unwatched_directory_gives_no_more_hints(tmp_path, hints):
    watcher = Watcher(hints, str(tmp_path))
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    watcher.watch(str(first))
    watcher.watch(str(second))
    try:
        watcher.unwatch(str(first))
        (first / "x").write_text("")
        (second / "y").write_text("")
        assert hints.wait_for(second / "y")
        assert str(first / "x") not in hints.paths
    finally:
        watcher.stop()


def test_a_vanished_directory_is_not_an_error_and_keeps_inotify(tmp_path, hints):
    watcher = Watcher(hints, str(tmp_path))
    try:
        watcher.watch(str(tmp_path / "gone"))
        watcher.optional_path(str(tmp_path / "gone"))
        assert watcher.mode == "inotify"
        removed = tmp_path / "removed"
        removed.mkdir()
        watcher.watch(str(removed))
        removed.rmdir()  # its watch goes with it
        (tmp_path / "later").mkdir()
        watcher.watch(str(tmp_path / "later"))
        (tmp_path / "later" / "z").write_text("")
        assert hints.wait_for(tmp_path / "later" / "z")
    finally:
        watcher.stop()


def test_stop_ends_the_thread(tmp_path, hints):
    watcher = Watcher(hints, str(tmp_path))
    watcher.watch(str(tmp_path))
    watcher.stop()
    assert not any(t.name == "cov-inotify" and t.is_alive() for t in threading.enumerate())
