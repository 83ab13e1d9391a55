"""``python -m runner.runner_job``: the runner inside its Slurm job (the sbatch script runs it)."""
from __future__ import annotations

import sys
from typing import List, Optional


def main(argv: Optional[List[str]] = None) -> int:
    from runner.runner_job.serve import serve_as_job
    from runner.serve_args import parse_serving, serving_parser

    parser = serving_parser("python -m runner.runner_job", "Serve a runs home inside a Slurm job.")
    parser.add_argument("--margin", type=float, default=None,
                        help="hand over this many seconds before the walltime ends")
    args, home = parse_serving(parser, argv)
    if home is None:
        return 1
    return serve_as_job(home, margin=args.margin, poll=args.poll,
                        idle_timeout=args.idle_timeout, workers=args.workers)


if __name__ == "__main__":
    sys.exit(main())
