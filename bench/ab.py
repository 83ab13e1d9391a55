"""This checkout against another, interleaved in one run: the figure to quote on a loaded machine.

    python bench/ab.py --against /path/to/old/checkout hello W2 W3      # 9 rounds each
    python bench/ab.py --against /path/to/old --n 5 W3 --env COV_FOLLOW_ONS=0

Each round runs every variant once, in turn (the old checkout, this one, and this one with each
``--env VAR=VALUE`` given), so that a load on the machine falls on all of them alike: absolute
times drift with the other jobs, the ratios of the medians do not. Trials are cold processes in
fresh homes, as in ``bench/run.py``: ``hello`` is ``cov dispatch workflows/hello.py --wait``
(no runner before it); ``W1``-``W4`` are ``bench/workloads.py`` (the steady figure is
``bench/steady.py``'s).
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.steady import steady_ms  # noqa: E402

BASE_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
Variant = Tuple[str, Path, Dict[str, str]]  # label, checkout, extra environment


def trial(what: str, root: Path, extra: Dict[str, str]) -> Tuple[float, Optional[float]]:
    """One cold trial of ``what`` with the code of ``root``: (wall seconds, steady ms)."""
    home = Path(tempfile.mkdtemp(prefix="cov-ab-"))
    (home / "config.yaml").write_text("runner:\n  idle_timeout: 2\n")
    env = {**BASE_ENV, "COV_HOME": str(home / "runs"), "COV_CONFIG": str(home / "config.yaml"),
           "PYTHONPATH": str(root), **extra}
    if what == "hello":
        command = [sys.executable, "-m", "covalent_cli.cli", "dispatch",
                   str(root / "workflows" / "hello.py"), "--wait"]
    else:
        command = [sys.executable, str(root / "bench" / "workloads.py"), what, "cov"]
    start = time.perf_counter()
    subprocess.run(command, env=env, cwd=str(root), capture_output=True, check=True, timeout=600)
    wall = time.perf_counter() - start
    subprocess.run([sys.executable, "-m", "covalent_cli.cli", "runner", "stop"], env=env,
                   capture_output=True, timeout=60)
    steady = None if what == "hello" else steady_ms(what, home / "runs")
    shutil.rmtree(home, ignore_errors=True)
    return wall, steady


def compare(what: str, variants: List[Variant], n: int) -> None:
    walls: Dict[str, List[float]] = {label: [] for label, _, _ in variants}
    steadies: Dict[str, List[float]] = {label: [] for label, _, _ in variants}
    for _ in range(n):
        for label, root, extra in variants:
            wall, steady = trial(what, root, extra)
            walls[label].append(wall)
            if steady is not None:
                steadies[label].append(steady)
    base = variants[0][0]
    for label, _, _ in variants:
        wall = statistics.median(walls[label])
        line = f"{what:5s} {label:32s} wall {wall:6.3f} s ({wall / statistics.median(walls[base]):.2f})"
        if steadies[label] and steadies[base]:
            steady = statistics.median(steadies[label])
            line += f"   steady {steady:6.2f} ms ({steady / statistics.median(steadies[base]):.2f})"
        print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", nargs="+", choices=["hello", "W1", "W2", "W3", "W4"])
    parser.add_argument("--against", required=True, help="the other checkout (the baseline)")
    parser.add_argument("--n", type=int, default=9, help="rounds (default 9)")
    parser.add_argument("--env", action="append", default=[], metavar="VAR=VALUE",
                        help="also this checkout with this variable set (repeatable)")
    args = parser.parse_args()
    variants: List[Variant] = [("baseline", Path(args.against).resolve(), {}),
                               ("this", ROOT, {})]
    for pair in args.env:
        name, _, value = pair.partition("=")
        variants.append((f"this {pair}", ROOT, {name: value}))
    for what in args.what:
        compare(what, variants, args.n)


if __name__ == "__main__":
    main()
