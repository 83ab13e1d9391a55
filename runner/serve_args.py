"""The command line of a process that serves a runs home: ``python -m runner`` (started by
``spawn_runner``) and ``python -m runner.runner_job`` (the runner inside its Slurm job) take
the same options, parsed here once."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional, Tuple


def serving_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """A parser with the options every serving runner takes; callers add their own."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--home", default=None)
    parser.add_argument("--poll", action="store_true", help="use the polling observer")
    parser.add_argument("--idle-timeout", type=float, default=None)
    parser.add_argument("--workers", type=int, default=None)
    return parser


def parse_serving(parser: argparse.ArgumentParser, argv: Optional[List[str]]
                  ) -> Tuple[argparse.Namespace, Optional[Path]]:
    """The parsed options and the runs home they name; the home is None after a config
    mistake, which is printed as one ``runner: ...`` line on stderr."""
    from runner.config import ConfigError, runs_home

    args = parser.parse_args(argv)
    try:
        return args, runs_home(args.home)
    except ConfigError as exc:
        print(f"runner: {exc}", file=sys.stderr)
        return args, None
