"""``python -m runner.runner_job``: the runner inside its Slurm job (the sbatch script runs it)."""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional


def main(argv: Optional[List[str]] = None) -> int:
    from runner.config import ConfigError, runs_home
    from runner.runner_job.serve import serve_as_job

    parser = argparse.ArgumentParser(prog="python -m runner.runner_job",
                                     description="Serve a runs home inside a Slurm job.")
    parser.add_argument("--home", default=None)
    parser.add_argument("--margin", type=float, default=None,
                        help="hand over this many seconds before the walltime ends")
    parser.add_argument("--poll", action="store_true", help="use the polling observer")
    parser.add_argument("--idle-timeout", type=float, default=None)
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args(argv)
    try:
        home = runs_home(args.home)
    except ConfigError as exc:
        print(f"runner: {exc}", file=sys.stderr)
        return 1
    return serve_as_job(home, margin=args.margin, poll=args.poll,
                        idle_timeout=args.idle_timeout, workers=args.workers)


if __name__ == "__main__":
    sys.exit(main())
