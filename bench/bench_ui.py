"""How fast the web UI serves a run page's JSON for a 1,000-task and a 10,000-task run.

    python bench/bench_ui.py                  # 1,000 and 10,000 tasks, 5 cold processes each
    python bench/bench_ui.py --sizes 1000 --repeat 3

The runs are real: a map of ``n - 3`` tasks, a collection, a sum and the result node (``n``
tasks), dispatched with ``ct.dispatch_sync`` into a fresh home and run by cov's runner. Then, for
each trial, a *cold* Python process imports the app, builds it, and times through the WSGI app
(no sockets) the requests a browser makes when it opens the run page:

  state      GET /api/runs/<id>/state            every task's state: the first refresh
  delta      GET /api/runs/<id>/state?since=N    the next refreshes (nothing changed)
  detail     GET /api/runs/<id>                  run details (reads the manifest)
  graph      GET /api/runs/<id>/graph            the laid-out graph (grandalf; not drawn by
                                                 default above 3,000 nodes)
  graph*     GET /api/runs/<id>/graph?force=1    the layout the "Draw it anyway" button asks for
                                                 (measured once, where graph was not drawn)
  import     importing webui.app and create_app (before any request)

Medians over the trials are printed, one line per size. ``--keep DIR`` keeps (and reuses) the
runs home.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

WORKFLOW = '''
import json, sys, time
import covalent_cli as ct


@ct.electron
def square(x):
    return x * x


@ct.electron
def total(xs):
    return sum(xs)


@ct.lattice
def wide(n):
    """n independent tasks and one sum."""
    return total([square(i) for i in range(n)])


start = time.perf_counter()
result = ct.dispatch_sync(wide)(int(sys.argv[1]))
assert str(result.status) == "COMPLETED", result.status
print(json.dumps({"id": result.dispatch_id, "seconds": time.perf_counter() - start}))
'''

PROBE = '''
import json, sys, time
t0 = time.perf_counter()
from wsgiref.util import setup_testing_defaults
from webui.app import create_app
app = create_app(sys.argv[1])
out = {"import": time.perf_counter() - t0}


def get(path, query=""):
    env = {}
    setup_testing_defaults(env)
    env.update(PATH_INFO=path, QUERY_STRING=query, HTTP_HOST="127.0.0.1")
    status = []
    start = time.perf_counter()
    body = b"".join(app(env, lambda s, h, e=None: status.append(s)))
    took = time.perf_counter() - start
    assert status[0].startswith("200"), (path, status, body[:200])
    return took, body


run = sys.argv[2]
out["state"], body = get(f"/api/runs/{run}/state")
state = json.loads(body)
out["state_kb"] = len(body) / 1024
out["tasks"] = state["total"]
out["delta"], body = get(f"/api/runs/{run}/state", f"since={state['version']}")
out["delta_kb"] = len(body) / 1024
out["detail"], _ = get(f"/api/runs/{run}")
out["graph"], body = get(f"/api/runs/{run}/graph")
out["graph_drawn"] = json.loads(body)["laid_out"]
if "--force" in sys.argv and not out["graph_drawn"]:
    out["graph*"], body = get(f"/api/runs/{run}/graph", "force=1")
    out["graph*_kb"] = len(body) / 1024
print(json.dumps(out))
'''


def make_run(home: Path, tasks: int) -> str:
    """Dispatch and run a ``tasks``-task workflow for real; returns its dispatch id."""
    env = {**os.environ, "COV_HOME": str(home), "PYTHONPATH": str(ROOT),
           "COV_CONFIG": str(home.parent / "config.yaml")}
    env.pop("COV_NO_RUNNER", None)
    (home.parent / "config.yaml").write_text("runner:\n  idle_timeout: 2\n")
    script = home.parent / "wide.py"
    script.write_text(WORKFLOW)
    proc = subprocess.run([sys.executable, str(script), str(tasks - 3)], env=env,
                          capture_output=True, text=True, timeout=1800, cwd=str(home.parent))
    if proc.returncode != 0:
        raise SystemExit(f"the {tasks}-task run failed:\n{proc.stdout}\n{proc.stderr}")
    made = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"# ran a {tasks}-task workflow for real in {made['seconds']:.1f} s: {made['id']}",
          file=sys.stderr)
    subprocess.run([sys.executable, "-m", "covalent_cli.cli", "runner", "stop"], env=env,
                   capture_output=True, timeout=60)
    return made["id"]


def probe(home: Path, run: str, force: bool) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", PROBE, str(home), run] +
                          (["--force"] if force else []), env=env, capture_output=True,
                          text=True, timeout=600)
    if proc.returncode != 0:
        raise SystemExit(f"probe failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,10000", help="task counts (comma-separated)")
    parser.add_argument("--repeat", type=int, default=5, help="cold processes per size")
    parser.add_argument("--keep", metavar="DIR", help="keep (and reuse) the runs under DIR")
    args = parser.parse_args()
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="cov-bench-ui-"))
    base.mkdir(parents=True, exist_ok=True)
    print(f"{'tasks':>6} {'import':>8} {'state':>8} {'delta':>8} {'detail':>8} {'graph':>8} "
          f"{'graph*':>8}  {'state KB':>9} {'delta KB':>9} {'graph* KB':>9}   (medians of "
          f"{args.repeat} cold processes, seconds)")
    try:
        for size in (int(s) for s in args.sizes.split(",")):
            home = base / f"n{size}" / "runs"
            home.mkdir(parents=True, exist_ok=True)
            ids = [p.name for p in home.iterdir() if (p / "manifest.yaml").is_file()] \
                if args.keep else []
            run = ids[0] if ids else make_run(home, size)
            # graph* (a forced layout) once per size is enough to show its cost
            trials = [probe(home, run, force=(i == 0)) for i in range(args.repeat)]

            def med(key: str) -> float:
                found = [t[key] for t in trials if key in t]
                return statistics.median(found) if found else float("nan")

            cols = [f"{med(k):>8.{4 if k == 'delta' else 3}f}" for k in
                    ("import", "state", "delta", "detail", "graph", "graph*")]
            cols += [f"{med(k):>9.{2 if k == 'delta_kb' else 0}f}" for k in
                     ("state_kb", "delta_kb", "graph*_kb")]
            line = f"{trials[0]['tasks']:>6} " + " ".join(cols[:6]) + "  " + " ".join(cols[6:])
            print(line.replace("nan", "  -"), flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"# total {time.perf_counter() - start:.0f} s", file=sys.stderr)
