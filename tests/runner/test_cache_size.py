"""The result cache's size bookkeeping under concurrent runners (``runner.cache_size``): two
real processes add entries to one home's cache at once; the cache ends within its bound and
its recorded total is the bytes its entries hold."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from runner.cache import ResultCache
from runner.layout import CACHE_SIZE, cache_dir
from tests.conftest import REPO

PAYLOAD = 20_000
# Room for 40 entries.
MAX_SIZE = 40 * (PAYLOAD + 100)

# A long-lived runner: adds the entries it is told to ("N" on stdin), answers "ok N".
ADDER = textwrap.dedent(f"""
    import os, sys
    from pathlib import Path
    from runner.cache import KeyParts, ResultCache
    from runner.outcome import write_outcome

    home, tag = Path(sys.argv[1]), sys.argv[2]
    cache = ResultCache(home, max_size={MAX_SIZE})
    source = str(home / f"outcome-{{tag}}.pkl")
    done = 0
    for line in sys.stdin:
        for _ in range(int(line)):
            write_outcome(source, {{"ok": True}}, os.urandom({PAYLOAD}))
            assert cache.add(KeyParts(f"task-{{tag}}-{{done}}", "code", "local"),
                             Path(source), f"run-{{tag}}", done)
            done += 1
        print("ok", done, flush=True)
""")


class Adder:
    """One adder process."""

    def __init__(self, home: Path, tag: str) -> None:
        self.process = subprocess.Popen([sys.executable, "-c", ADDER, str(home), tag],
                                        cwd=REPO, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)

    def send(self, count: int) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(f"{count}\n")
        self.process.stdin.flush()

    def done(self) -> None:
        assert self.process.stdout is not None
        assert self.process.stdout.readline().startswith("ok"), "the adder failed"

    def add(self, count: int) -> None:
        self.send(count)
        self.done()

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        assert self.process.wait(timeout=60) == 0


def _actual_bytes(home: Path) -> int:
    return sum(entry["size"] for entry in ResultCache(home).entries())


def test_two_runners_adding_and_evicting_keep_the_size_right(tmp_path: Path) -> None:
    """Runner a adds one entry, then runner b fills the cache (evicting as it goes), then a
    adds more: a must see b's bytes (a count of its own would let the cache grow past its
    bound by all it adds). Then both add at once."""
    home = tmp_path / "home"
    home.mkdir()
    a, b = Adder(home, "a"), Adder(home, "b")
    try:
        a.add(1)
        b.add(60)
        assert _actual_bytes(home) <= MAX_SIZE
        a.add(30)
        assert _actual_bytes(home) <= MAX_SIZE
        a.send(100)  # at once
        b.send(100)
        a.done()
        b.done()
    finally:
        a.close()
        b.close()
    entries = list(ResultCache(home).entries())
    actual = _actual_bytes(home)
    assert 0 < actual <= MAX_SIZE
    recorded = int((cache_dir(home) / CACHE_SIZE).read_text())
    assert recorded == actual  # the shared total is the truth, not one process's view
    assert len(list(cache_dir(home).glob("*/*.pkl"))) == len(entries)  # no result left over


def test_clear_leaves_a_zero_total_and_the_next_add_counts_from_there(tmp_path: Path) -> None:
    from runner.cache import KeyParts
    from runner.outcome import write_outcome

    home = tmp_path / "home"
    home.mkdir()
    cache = ResultCache(home, max_size=MAX_SIZE)
    source = home / "outcome.pkl"
    for i in range(3):
        write_outcome(str(source), {"ok": True}, bytes(PAYLOAD))
        assert cache.add(KeyParts(f"t{i}", "code", "local"), source, "run", i)
    assert cache.size.total() == _actual_bytes(home) > 0
    assert len(ResultCache(home).clear()) == 3
    assert int((cache_dir(home) / CACHE_SIZE).read_text()) == 0
    write_outcome(str(source), {"ok": True}, bytes(PAYLOAD))
    other = ResultCache(home, max_size=MAX_SIZE)  # another process's view, after the clear
    assert other.add(KeyParts("again", "code", "local"), source, "run", 9)
    assert cache.size.total() == _actual_bytes(home) == json.loads(
        next(cache_dir(home).glob("*/*.json")).read_text())["size"]
