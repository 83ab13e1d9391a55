"""cov at scale: the 10,000-node figures of bench/run.py, measured again at N nodes in the same run.

    python bench/scale.py                      # 10k and 100k: dispatch, run, runner RSS, status
    python bench/scale.py --nodes 50000        # another size
    python bench/scale.py --no-run             # the dispatch only (no runner, seconds not minutes)
    python bench/scale.py --against /work/main # the same figures of another checkout, interleaved
    python bench/scale.py --live               # and `cov status --json` of a live run (+1 run a size)

The graph is the one bench/run.py uses at 10k: a wide fan-out (N/2 tasks, each with one
argument node) and, for the run, a reduce over it. Dispatch is timed inside the process
(graph building, pickles, run directory; no runner); the run from the dispatch to the result,
with the runner's peak RSS read from its /proc entry, then three `cov status --json` calls
timed from outside (wall, and the CPU they used: on a loaded machine the wall time is mostly
waiting for a core). Targets (issue 14): 100,000-node dispatch <= 10 s, runner RSS <= 150 MB,
`cov status --json` <= 2 s.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from bench.run import ROOT, dispatch_10k, run_10k  # noqa: E402
from bench.scale_live import live_status  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=100_000, help="the large size (default 100000)")
    parser.add_argument("--dispatches", type=int, default=3, help="dispatch trials per size")
    parser.add_argument("--no-run", action="store_true", help="measure the dispatch only")
    parser.add_argument("--against", type=Path, help="another checkout to measure in the same run")
    parser.add_argument("--live", action="store_true",
                        help="also `cov status --json` of a live run (bench/scale_live.py)")
    args = parser.parse_args()
    roots = [("this", ROOT)] + ([("against", args.against.resolve())] if args.against else [])
    sizes = [10_000, args.nodes]
    print(f"cov at scale on {os.cpu_count()} cores, load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}; medians (min-max)\n")
    print(f"{'nodes':>8} {'code':8} {'dispatch s':>20}" +
          ("" if args.no_run else f" {'run s':>8} {'runner MiB':>10} {'status --json s':>16} {'its CPU s':>9}")
          + (f" {'live status s':>13} {'its CPU s':>9}" if args.live and not args.no_run else ""))
    figures: dict = {}
    for size in sizes:
        for name, root in roots:  # interleaved: each size measures every checkout back to back
            d = dispatch_10k(args.dispatches, size, root)
            line = (f"{size:8d} {name:8} {d['median']:8.2f} ({d['min']:.2f}-{d['max']:.2f})")
            row = {"dispatch": d["median"]}
            if not args.no_run:
                r = run_10k(size, root)
                if not r["ok"]:
                    raise SystemExit(f"the {size}-node run of {root} did not complete")
                row.update(run=r["wall"], rss=r["rss"], status=r["status_median"],
                           status_cpu=r["status_cpu"])
                line += (f" {r['wall']:8.2f} {r['rss']:10.0f} {r['status_median']:16.2f}"
                         f" {r['status_cpu']:9.2f}")
                if args.live:
                    live = live_status(size, root)
                    row.update(live_status=live["status_median"], live_cpu=live["status_cpu"])
                    line += f" {live['status_median']:13.2f} {live['status_cpu']:9.2f}"
            figures[(size, name)] = row
            print(line, flush=True)
    print(f"\n{args.nodes:,} against 10,000 nodes (x{args.nodes / 10_000:g} the nodes):")
    for name, _ in roots:
        small, large = figures[(10_000, name)], figures[(args.nodes, name)]
        print(f"  {name:8} " + ", ".join(f"{key} x{large[key] / small[key]:.1f}" for key in small
                                          if small[key]))
    if args.against:
        print("\nthis / against:")
        for size in sizes:
            this, other = figures[(size, "this")], figures[(size, "against")]
            print(f"  {size:8d} " + ", ".join(f"{key} {this[key] / other[key]:.2f}" for key in this
                                              if other[key]))


if __name__ == "__main__":
    main()
